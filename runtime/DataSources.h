// DataSources.h: the training-data loaders of the model language's data sources (windows over CSV columns, character windows of a UTF-8 text, MNIST-style IDX files, safetensors tensors), with their parse-from-memory cores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "Tensor.h"

namespace gradc::rt {

/// The fitted scaling of one CSV column: scaled = (v - offset) / scale.
struct ColumnScaling {
  std::string name; ///< The column's header name.
  double offset = 0.0;
  double scale = 1.0; ///< Positive; 1 when unscaled.
};

/// The scaling of a windows data set: how it was fitted, each input column's (in the
/// order of x's last axis) and the target's.
struct WindowsScaling {
  std::string method = "minmax"; ///< "minmax", "standard" or "none".
  std::vector<ColumnScaling> inputs;
  ColumnScaling target;
};

/// A loaded data set: inputs x and targets y, both with the sample axis first.
/// Samples [0, trainCount) form the training split, [trainCount, n) the validation split.
struct Dataset {
  /// The inputs, shape [n, ...].
  HostTensor x;
  /// The targets, shape [n, ...].
  HostTensor y;
  /// Number of samples.
  int64_t n = 0;
  /// Samples in the training split (the first ones); equal to n when there is no validation.
  int64_t trainCount = 0;
  /// The scaling applied to the values (windows only).
  WindowsScaling scaling;
  /// The vocabulary (text only): sorted Unicode code points; index k encodes vocabulary[k].
  std::vector<uint32_t> vocabulary;

  /// True if some samples are held out for validation.
  bool hasValidation() const { return trainCount < n; }
  /// Maps a scaled target back to the original units: v = scaled * scale + offset.
  double unscale(double scaled) const { return scaled * scaling.target.scale + scaling.target.offset; }
};

// ---- windows(path, column, length, horizon = 1, split = 0.8, scale = "minmax") ----

/// Parses CSV text (RFC 4180: a header row, ',' separators, "..." quoting with "" for a
/// quote, CRLF or LF line ends, an optional UTF-8 byte order mark, empty lines allowed only
/// at the end) and returns the values of the column named `column` (matched exactly, or
/// else after trimming spaces). Every row must have as many fields as the header; every
/// cell of the column must be a finite number (surrounding spaces allowed). If `lines` is
/// given it receives the 1-based line number of each value. Errors read
/// "NAME:LINE: what was expected" and are thrown as DataError.
std::vector<double> parseCsvColumn(std::string_view text, const std::string &column,
                                   const std::string &nameForErrors, std::vector<int64_t> *lines = nullptr);

/// parseCsvColumn for several columns at once: result[k] holds column columns[k] (each
/// name found as parseCsvColumn finds one; a name may be given once only).
std::vector<std::vector<double>> parseCsvColumns(std::string_view text, const std::vector<std::string> &columns,
                                                 const std::string &nameForErrors,
                                                 std::vector<int64_t> *lines = nullptr);

/// What windows(...) reads: the input columns (x's last axis, in order), the target
/// column, and the window parameters.
struct WindowsOptions {
  std::vector<std::string> columns{"value"};
  std::string target = "value";
  int64_t length = 0, horizon = 1;
  double split = 0.8;
  std::string scale = "minmax";
};

/// Multi-column sliding windows: sample i has x[i, t, k] = inputs[k][i + t] for t in
/// [0, length) (F32 [N, length, K]) and y = target[i + length + horizon - 1] (F32 [N, 1]),
/// each column scaled with its own offset and scale, fitted on its first
/// s = floor(split * len) values as makeWindows fits one (or, when `fixed` is given, taken
/// from it: a checkpoint's scaling, never refitted; its columns must be named as in `o`).
/// Every column must have the same length. `lines` as for makeWindows. Throws DataError.
Dataset makeMultiWindows(const std::vector<std::vector<double>> &inputs, const std::vector<double> &target,
                         const WindowsOptions &o, const std::string &nameForErrors,
                         const std::vector<int64_t> *lines = nullptr, const WindowsScaling *fixed = nullptr);

/// Builds sliding windows over `series`: sample i has x = v[i .. i+length-1] (F32
/// [N, length, 1]) and y = v[i+length+horizon-1] (F32 [N, 1]), N = len - length - horizon + 1.
/// The series is split at s = floor(split * len): the scaling ("minmax": offset = min,
/// scale = max - min; "standard": offset = mean, scale = population standard deviation;
/// "none": 0 and 1; a zero scale becomes 1) is fitted on v[0, s) and applied to all
/// values; training windows are those whose target index is below s (trainCount of them,
/// the first ones), the rest are validation. `lines` (optional, one per value) improves
/// messages. Throws DataError (starting with `nameForErrors`) for bad parameters, a series
/// too short for one window or one training window, or values outside float32 after scaling.
Dataset makeWindows(const std::vector<double> &series, int64_t length, int64_t horizon, double split,
                    const std::string &scale, const std::string &nameForErrors,
                    const std::vector<int64_t> *lines = nullptr);

/// Reads `csvPath` (at most 4 GiB) and builds its windows: parseCsvColumn followed by
/// makeWindows. Errors name the file and, for its contents, the line.
Dataset loadWindows(const std::string &csvPath, const std::string &column, int64_t length,
                    int64_t horizon = 1, double split = 0.8, const std::string &scale = "minmax");

/// Reads `csvPath` (at most 4 GiB) and builds its multi-column windows: parseCsvColumns
/// followed by makeMultiWindows (with the scaling `fixed` when given).
Dataset loadWindows(const std::string &csvPath, const WindowsOptions &o, const WindowsScaling *fixed = nullptr);

// ---- text(path, length, split = 0.9) ----

/// Decodes UTF-8 text into code points; `offsets` (optional) receives each one's byte
/// offset. Strict (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. A
/// byte order mark at the start is skipped. Throws DataError "NAME: byte N: ..." naming
/// the first malformed byte.
std::vector<uint32_t> decodeUtf8(const unsigned char *data, size_t size, const std::string &nameForErrors,
                                 std::vector<size_t> *offsets = nullptr);

/// `cp` encoded as UTF-8 (appended to `out`).
void appendUtf8(std::string &out, uint32_t cp);

/// Character windows of a UTF-8 text held in memory: the vocabulary is the sorted set of
/// its code points (or `fixed`, a checkpoint's vocabulary: then a character outside it is
/// a DataError naming its byte offset); with c = the text as vocabulary indices, sample i
/// has x = c[i*length .. i*length + length) and y = c[i*length + 1 .. i*length + length]
/// (I32 [N, length] each, N = floor((len - 1) / length): windows do not overlap). With
/// s = floor(split * len) characters for training, the training windows are the first
/// ones, whose y lies inside c[0, s); the rest are validation. Throws DataError.
Dataset parseText(const unsigned char *data, size_t size, int64_t length, double split,
                  const std::string &nameForErrors, const std::vector<uint32_t> *fixed = nullptr);

/// Reads `path` (at most 1 GiB) and builds its character windows (see parseText).
Dataset loadText(const std::string &path, int64_t length, double split, const std::vector<uint32_t> *fixed = nullptr);

// ---- idx(images, labels) ----

/// Largest decompressed size accepted from a gzip file (a guard against decompression bombs).
constexpr uint64_t kMaxDecompressedBytes = uint64_t(1) << 30;

/// True if the data starts with the gzip magic bytes 0x1f 0x8b.
bool isGzip(const unsigned char *data, size_t size);

/// Decompresses gzip data (all members of a multi-member file). Throws DataError naming
/// `nameForErrors` and the compressed byte offset for corrupt or truncated data, trailing
/// garbage, or output larger than `maxBytes`.
std::vector<unsigned char> gunzip(const unsigned char *data, size_t size, const std::string &nameForErrors,
                                  uint64_t maxBytes = kMaxDecompressedBytes);

/// Parses an IDX image file (magic 0x00000803: unsigned bytes, 3 dimensions N, rows, cols;
/// big-endian) held in memory, not compressed, into F32 [N, rows, cols] with values
/// pixel / 255. The data must be exactly 16 + N*rows*cols bytes; N, rows and cols must be
/// positive. Errors name `nameForErrors` and the byte offset ("of the decompressed data"
/// if `decompressed`).
HostTensor parseIdxImages(const unsigned char *data, size_t size, const std::string &nameForErrors,
                          bool decompressed = false);

/// Parses an IDX label file (magic 0x00000801: unsigned bytes, 1 dimension N) held in
/// memory, not compressed, into I32 [N]; every label must be below `classes`.
HostTensor parseIdxLabels(const unsigned char *data, size_t size, const std::string &nameForErrors,
                          int64_t classes = 10, bool decompressed = false);

/// Parses an image file and a label file held in memory, each gzip-compressed or raw
/// (detected by the gzip magic), and checks that they hold the same number of samples.
/// x = F32 [N, rows, cols] in [0, 1], y = I32 [N], trainCount = n.
Dataset parseIdx(const unsigned char *images, size_t imagesSize, const unsigned char *labels,
                 size_t labelsSize, const std::string &imagesName, const std::string &labelsName,
                 int64_t classes = 10);

/// Reads MNIST / Fashion-MNIST style IDX files (gzip or raw): see parseIdx. Files (and
/// decompressed data) larger than kMaxDecompressedBytes are rejected.
Dataset loadIdx(const std::string &imagesPath, const std::string &labelsPath, int64_t classes = 10);

// ---- tensors(path) ----

/// Reads a safetensors file and returns the tensors named in `names` (all of them if
/// `names` is empty). A missing name is a DataError that lists the tensors present.
std::map<std::string, HostTensor> loadTensors(const std::string &path, const std::vector<std::string> &names);

/// Reads a safetensors data set with inputs `xName` and targets `yName`: both at least
/// 1-D with the same, positive, leading extent n; trainCount = n.
Dataset loadTensorDataset(const std::string &path, const std::string &xName = "x",
                          const std::string &yName = "y");

/// Checks that tensor `name` (read from `file`) has dtype `dtype` and shape `shape`, where
/// an extent of -1 matches any extent; throws DataError such as
/// `data.safetensors: tensor 'x': expected F32[*, 30, 1], found F64[100, 30]`.
void expectTensor(const std::string &file, const std::string &name, const HostTensor &t, DType dtype,
                  const std::vector<int64_t> &shape);

} // namespace gradc::rt
