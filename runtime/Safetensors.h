// Safetensors.h: reading and writing the Hugging Face safetensors format (checkpoints and tensor data sets), plus the whole-file read and atomic file write the runtime's loaders and writers share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "Tensor.h"

namespace gradc::rt {

/// Largest header a safetensors file may declare (the reference implementation's limit).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100000000;

/// The metadata map stored under "__metadata__" in a safetensors header.
using SafetensorsMetadata = std::map<std::string, std::string>;

/// Reads a whole safetensors file. Every tensor must have dtype F32, F64, I32 or I64; the
/// header and the layout are validated completely (see parseSafetensors). If `metadata` is
/// given it receives "__metadata__" (empty if absent). Throws DataError naming `path` and
/// the byte offset of the problem.
std::map<std::string, HostTensor> readSafetensors(const std::string &path,
                                                  SafetensorsMetadata *metadata = nullptr);

/// Parses a safetensors file held in memory; `nameForErrors` starts every error message.
/// Checks: the 8-byte little-endian header length is at most 100 MB and within the data;
/// the header is strict JSON (depth limit 64) and an object; each tensor entry has exactly
/// "dtype", "shape" and "data_offsets"; shapes are non-negative integers whose product does
/// not overflow; data_offsets = [begin, end] lie within the data buffer with
/// end - begin == numel * itemsize; tensor names are unique; the tensors neither overlap
/// nor leave gaps and cover the data buffer exactly (as the reference implementation
/// requires). Unsupported safetensors dtypes (BOOL, U8, I8, I16, F16, BF16, ...) are
/// reported as such. Throws DataError.
std::map<std::string, HostTensor> parseSafetensors(const unsigned char *data, size_t size,
                                                   const std::string &nameForErrors,
                                                   SafetensorsMetadata *metadata = nullptr);

/// Encodes tensors as a safetensors file in memory: header with the tensors in the given
/// order ("__metadata__" first when non-empty), padded with spaces to a multiple of 8,
/// followed by the tensors' bytes, contiguous and in the same order. Throws DataError
/// (starting with `nameForErrors`) for a null tensor, a duplicate or reserved name, a
/// name or metadata string that is not valid UTF-8, or a tensor whose byte count does not
/// match its shape.
std::vector<unsigned char>
serializeSafetensors(const std::vector<std::pair<std::string, const HostTensor *>> &tensors,
                     const SafetensorsMetadata &metadata = {},
                     const std::string &nameForErrors = "safetensors");

/// Writes tensors as a safetensors file (layout as serializeSafetensors), atomically (see
/// writeFileAtomic). Throws DataError naming `path`.
void writeSafetensors(const std::string &path,
                      const std::vector<std::pair<std::string, const HostTensor *>> &tensors,
                      const SafetensorsMetadata &metadata = {});

/// Reads a regular file completely. Throws DataError naming `path` if it cannot be opened
/// or read, is not a regular file (so a FIFO or device can never block or stream forever),
/// or is larger than `maxBytes`.
std::vector<unsigned char> readFileBytes(const std::string &path, uint64_t maxBytes = UINT64_MAX);

/// One piece of a file being written: a pointer and a byte count.
using ByteChunk = std::pair<const void *, size_t>;

/// Writes the concatenation of `chunks` to `path` atomically: the bytes go to
/// "PATH.tmp.<pid>" in the same directory, which is fsync'ed and renamed over `path`
/// (then the directory is fsync'ed, best effort). On any failure the temporary file is
/// removed and DataError (naming `path` and the system error) is thrown; `path` is then
/// unchanged.
void writeFileAtomic(const std::string &path, const std::vector<ByteChunk> &chunks);

/// writeFileAtomic for a single buffer.
void writeFileAtomic(const std::string &path, const void *data, size_t size);

} // namespace gradc::rt
