// DataSources.cpp: implements the CSV windows, IDX and safetensors-tensor loaders declared in DataSources.h.
#include "DataSources.h"

#include <algorithm>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <new>

#include <fmt/format.h>
#include <zlib.h>

#include "Json.h"
#include "Safetensors.h"

namespace gradc::rt {

namespace {

/// A value in single quotes, made printable.
std::string quoted(std::string_view s) { return "'" + printableForMessage(s, 80) + "'"; }

/// Formats a double for a message (shortest round-trip form).
std::string numberString(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// ---------------------------------------------------------------------------------------
// CSV

/// Reads RFC 4180 records one at a time, tracking physical line numbers.
class CsvReader {
public:
  /// Starts reading `text` (skipping a UTF-8 byte order mark); `name` prefixes errors.
  CsvReader(std::string_view text, const std::string &name) : s_(text), name_(name) {
    if (s_.size() >= 3 && s_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3; // UTF-8 byte order mark
  }

  /// True when all the text has been read.
  bool atEnd() const { return pos_ >= s_.size(); }
  /// The current 1-based line number.
  size_t line() const { return line_; }

  /// True if the next line is empty (just a line end).
  bool atEmptyLine() const {
    return pos_ < s_.size() && (s_[pos_] == '\n' || (s_[pos_] == '\r' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '\n'));
  }
  /// Skips one empty line (atEmptyLine() must hold).
  void skipEmptyLine() {
    pos_ += s_[pos_] == '\r' ? 2 : 1;
    ++line_;
  }

  /// Reads the next record into `fields`; `recordLine` gets the line it starts on.
  /// Must not be called atEnd().
  void next(std::vector<std::string> &fields, size_t &recordLine) {
    fields.clear();
    recordLine = line_;
    for (;;) {
      fields.emplace_back();
      std::string &f = fields.back();
      if (pos_ < s_.size() && s_[pos_] == '"') {
        const size_t openLine = line_;
        ++pos_;
        for (;;) {
          if (pos_ >= s_.size())
            fail(openLine, "quoted field is not closed: expected a closing '\"' before the end of the file");
          char c = s_[pos_];
          if (c == '"') {
            if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '"') {
              f += '"';
              pos_ += 2;
              continue;
            }
            ++pos_;
            break;
          }
          if (c == '\n') ++line_;
          f += c;
          ++pos_;
        }
        if (!(pos_ >= s_.size() || s_[pos_] == ',' || s_[pos_] == '\n' ||
              (s_[pos_] == '\r' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '\n')))
          fail(line_, "expected ',' or the end of the line after the closing '\"' of a quoted field, found " +
                          quoted(s_.substr(pos_, 1)));
      } else {
        size_t start = pos_;
        while (pos_ < s_.size()) {
          char c = s_[pos_];
          if (c == ',' || c == '\n' || (c == '\r' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '\n')) break;
          if (c == '"')
            fail(line_, "unexpected '\"' inside an unquoted field (a field containing quotes must be quoted "
                        "as a whole, with the quotes doubled)");
          ++pos_;
        }
        f.assign(s_.data() + start, pos_ - start);
      }
      // Field separator or record end.
      if (pos_ >= s_.size()) return;
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      pos_ += s_[pos_] == '\r' ? 2 : 1; // "\n" or "\r\n"
      ++line_;
      return;
    }
  }

  /// Throws DataError "NAME:LINE: WHAT".
  [[noreturn]] void fail(size_t line, const std::string &what) const {
    throw DataError(name_ + ":" + std::to_string(line) + ": " + what);
  }

private:
  std::string_view s_;
  const std::string &name_;
  size_t pos_ = 0;
  size_t line_ = 1;
};

/// `s` without leading and trailing spaces and tabs.
std::string trimSpaces(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

/// Parses a cell as a finite double; on failure sets `why`.
bool parseNumberCell(const std::string &cell, double &out, std::string &why) {
  std::string t = trimSpaces(cell);
  if (t.empty()) {
    why = "expected a number, found an empty cell";
    return false;
  }
  const char *b = t.data(), *e = t.data() + t.size();
  const char *p = b;
  if (*p == '+') ++p;
  if (p == e || *p == '+' || (*p == '-' && *b == '+')) {
    why = "expected a number, found " + quoted(cell);
    return false;
  }
  auto r = std::from_chars(p, e, out, std::chars_format::general);
  if (r.ec == std::errc::result_out_of_range) {
    why = "expected a number, found " + quoted(cell) + " (out of the range of a double)";
    return false;
  }
  if (r.ec != std::errc() || r.ptr != e) {
    why = "expected a number, found " + quoted(cell);
    return false;
  }
  if (!std::isfinite(out)) {
    why = "expected a finite number, found " + quoted(cell);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// IDX

/// Error context for binary data: "NAME: byte N[ of the decompressed data]: ".
struct BinCtx {
  const std::string &name;
  bool decompressed;
  /// Throws DataError "NAME: byte N[ of the decompressed data]: WHAT".
  [[noreturn]] void fail(uint64_t byte, const std::string &what) const {
    throw DataError(name + ": byte " + std::to_string(byte) + (decompressed ? " of the decompressed data" : "") +
                    ": " + what);
  }
};

/// A big-endian 32-bit integer.
uint32_t be32(const unsigned char *p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

/// `v` as "0x" and 8 hex digits.
std::string hex32(uint32_t v) {
  static const char *hex = "0123456789abcdef";
  std::string s = "0x";
  for (int k = 28; k >= 0; k -= 4) s += hex[(v >> k) & 15];
  return s;
}

/// Checks the IDX magic number: unsigned bytes (0x08) and `dims` dimensions.
void checkIdxMagic(const BinCtx &ctx, const unsigned char *data, size_t size, unsigned dims, const char *kind) {
  const uint32_t want = 0x00000800u | dims;
  const std::string expect = std::string("expected an IDX ") + kind + " file starting with the magic number " +
                             hex32(want) + " (unsigned bytes, " + std::to_string(dims) + " dimension" +
                             (dims == 1 ? "" : "s") + ")";
  if (size < 4) ctx.fail(size, expect + ", found only " + std::to_string(size) + " bytes (file truncated?)");
  const uint32_t magic = be32(data);
  if (magic == want) return;
  std::string found = ", found " + hex32(magic);
  if (data[0] != 0 || data[1] != 0) ctx.fail(0, expect + found + " (not an IDX file)");
  if (data[2] != 0x08)
    ctx.fail(2, expect + found + " (element type " + hex32(data[2]).replace(2, 6, "") +
                    " is not unsigned bytes, 0x08; gradc reads only unsigned-byte IDX files)");
  if (data[3] == 1 && dims == 3) ctx.fail(3, expect + found + " (a label file? check the order of images and labels)");
  if (data[3] == 3 && dims == 1) ctx.fail(3, expect + found + " (an image file? check the order of images and labels)");
  ctx.fail(3, expect + found + " (" + std::to_string(data[3]) + " dimensions)");
}

} // namespace

// ---------------------------------------------------------------------------------------
// windows

std::vector<std::vector<double>> parseCsvColumns(std::string_view text, const std::vector<std::string> &columns,
                                                 const std::string &name, std::vector<int64_t> *lines) {
  CsvReader rd(text, name);
  if (lines) lines->clear();
  if (rd.atEnd() || rd.atEmptyLine())
    rd.fail(1, "expected a header row naming the columns, found " +
                   std::string(rd.atEnd() ? "an empty file" : "an empty line"));
  std::vector<std::string> header, fields;
  size_t headerLine = 0;
  rd.next(header, headerLine);

  // Find each column: exactly, else after trimming spaces; it must be unique.
  std::vector<size_t> cols;
  for (const std::string &column : columns) {
    auto findColumn = [&](bool trimmed) {
      std::vector<size_t> hits;
      for (size_t i = 0; i < header.size(); ++i)
        if ((trimmed ? trimSpaces(header[i]) : header[i]) == (trimmed ? trimSpaces(column) : column)) hits.push_back(i);
      return hits;
    };
    std::vector<size_t> hits = findColumn(false);
    if (hits.empty()) hits = findColumn(true);
    if (hits.empty()) {
      std::string have;
      for (size_t i = 0; i < header.size(); ++i) have += (i ? ", " : "") + quoted(header[i]);
      rd.fail(headerLine, "no column " + quoted(column) + " in the header; the columns are " + have);
    }
    if (hits.size() > 1)
      rd.fail(headerLine, "column " + quoted(column) + " appears more than once in the header (fields " +
                              std::to_string(hits[0] + 1) + " and " + std::to_string(hits[1] + 1) + ")");
    if (std::find(cols.begin(), cols.end(), hits[0]) != cols.end())
      throw DataError(name + ": column " + quoted(column) + " is asked for twice");
    cols.push_back(hits[0]);
  }

  std::vector<std::vector<double>> values(columns.size());
  while (!rd.atEnd()) {
    if (rd.atEmptyLine()) {
      const size_t emptyLine = rd.line();
      while (rd.atEmptyLine()) rd.skipEmptyLine();
      if (!rd.atEnd())
        rd.fail(emptyLine, "empty line before the end of the data (empty lines are allowed only at the end of the file)");
      break;
    }
    size_t recordLine = 0;
    rd.next(fields, recordLine);
    if (fields.size() != header.size())
      rd.fail(recordLine, "expected " + std::to_string(header.size()) + " field" + (header.size() == 1 ? "" : "s") +
                              " as in the header, found " + std::to_string(fields.size()));
    for (size_t k = 0; k < cols.size(); ++k) {
      double v = 0;
      std::string why;
      if (!parseNumberCell(fields[cols[k]], v, why)) rd.fail(recordLine, "column " + quoted(columns[k]) + ": " + why);
      values[k].push_back(v);
    }
    if (lines) lines->push_back(static_cast<int64_t>(recordLine));
  }
  return values;
}

std::vector<double> parseCsvColumn(std::string_view text, const std::string &column, const std::string &name,
                                   std::vector<int64_t> *lines) {
  return std::move(parseCsvColumns(text, {column}, name, lines)[0]);
}

namespace {

/// Fits the scaling `method` on series[0, s) (a zero scale becomes 1). Throws DataError via `fail`.
ColumnScaling fitScaling(const std::vector<double> &series, int64_t s, const std::string &method,
                         const std::string &column, const std::function<void(const std::string &)> &fail) {
  ColumnScaling c;
  c.name = column;
  if (method == "minmax") {
    double lo = series[0], hi = series[0];
    for (int64_t i = 1; i < s; ++i) {
      lo = std::min(lo, series[i]);
      hi = std::max(hi, series[i]);
    }
    c.offset = lo;
    c.scale = hi - lo;
  } else if (method == "standard") {
    long double sum = 0;
    for (int64_t i = 0; i < s; ++i) sum += series[i];
    const long double mean = sum / s;
    long double sq = 0;
    for (int64_t i = 0; i < s; ++i) sq += (series[i] - mean) * (series[i] - mean);
    c.offset = static_cast<double>(mean);
    c.scale = static_cast<double>(std::sqrt(sq / s));
  }
  if (!std::isfinite(c.offset) || !std::isfinite(c.scale))
    fail("column " + quoted(column) + ": the training values span too wide a range to scale with \"" + method + "\"");
  if (c.scale == 0.0) c.scale = 1.0; // a constant training series: shift only
  return c;
}

/// `series` scaled into float32; throws via `fail` naming the line of a value outside it.
std::vector<float> applyScaling(const std::vector<double> &series, const ColumnScaling &c,
                                const std::vector<int64_t> *lines, const std::function<void(const std::string &)> &fail) {
  const int64_t len = static_cast<int64_t>(series.size());
  std::vector<float> v(series.size());
  for (int64_t i = 0; i < len; ++i) {
    const double scaled = (series[i] - c.offset) / c.scale;
    if (!(std::fabs(scaled) <= static_cast<double>(FLT_MAX))) {
      std::string where = lines && static_cast<int64_t>(lines->size()) == len ? "line " + std::to_string((*lines)[i])
                                                                              : "value " + std::to_string(i + 1);
      fail(where + ": column " + quoted(c.name) + ": value " + numberString(series[i]) +
           " is outside the float32 range after scaling");
    }
    v[i] = static_cast<float>(scaled);
  }
  return v;
}

} // namespace

Dataset makeMultiWindows(const std::vector<std::vector<double>> &inputs, const std::vector<double> &target,
                         const WindowsOptions &o, const std::string &name, const std::vector<int64_t> *lines,
                         const WindowsScaling *fixed) {
  std::function<void(const std::string &)> fail = [&](const std::string &what) {
    throw DataError(name + ": " + what);
  };
  const int64_t length = o.length, horizon = o.horizon;
  const double split = o.split;
  if (length < 1) fail("windows: length must be at least 1, found " + std::to_string(length));
  if (horizon < 1) fail("windows: horizon must be at least 1, found " + std::to_string(horizon));
  if (!(split > 0.0 && split <= 1.0)) fail("windows: split must be in (0, 1], found " + numberString(split));
  if (o.scale != "minmax" && o.scale != "standard" && o.scale != "none")
    fail("windows: unknown scale " + quoted(o.scale) + " (expected \"minmax\", \"standard\" or \"none\")");
  if (inputs.empty() || inputs.size() != o.columns.size())
    fail("windows: expected one series per input column, found " + std::to_string(inputs.size()));

  const int64_t len = static_cast<int64_t>(target.size());
  const int64_t K = static_cast<int64_t>(inputs.size());
  auto checkFinite = [&](const std::vector<double> &series, const std::string &column) {
    if (static_cast<int64_t>(series.size()) != len)
      fail("windows: column " + quoted(column) + " has " + std::to_string(series.size()) + " values, the target " +
           std::to_string(len));
    for (int64_t i = 0; i < len; ++i)
      if (!std::isfinite(series[i]))
        fail((lines && static_cast<int64_t>(lines->size()) == len ? "line " + std::to_string((*lines)[i])
                                                                    : "value " + std::to_string(i + 1)) +
             ": expected a finite number, found " + numberString(series[i]));
  };
  for (int64_t k = 0; k < K; ++k) checkFinite(inputs[k], o.columns[k]);
  checkFinite(target, o.target);
  const std::string windowsOf =
      "windows of length " + std::to_string(length) + " and horizon " + std::to_string(horizon);
  if (length > len || horizon > len - length)
    fail("the series has " + std::to_string(len) + " value" + (len == 1 ? "" : "s") + ", too few for " + windowsOf +
         " (needs at least " + std::to_string(length) + " + " + std::to_string(horizon) + ")");
  const int64_t n = len - length - horizon + 1;

  int64_t s = static_cast<int64_t>(std::floor(split * static_cast<double>(len)));
  if (s > len) s = len;
  if (s < 0) s = 0;
  const int64_t trainCount = std::min(n, std::max<int64_t>(0, s - length - horizon + 1));
  if (trainCount < 1)
    fail("the training split (the first " + std::to_string(s) + " of " + std::to_string(len) +
         " values, split " + numberString(split) + ") is too short for one of the " + windowsOf);

  // The scaling: fitted on the training part v[0, s) of each column, or the given one.
  WindowsScaling sc;
  if (fixed) {
    sc = *fixed;
    if (sc.inputs.size() != inputs.size()) fail("windows: the scaling has " + std::to_string(sc.inputs.size()) +
                                                 " input columns, the data " + std::to_string(inputs.size()));
  } else {
    sc.method = o.scale;
    for (int64_t k = 0; k < K; ++k) sc.inputs.push_back(fitScaling(inputs[k], s, o.scale, o.columns[k], fail));
    sc.target = fitScaling(target, s, o.scale, o.target, fail);
  }
  std::vector<std::vector<float>> v;
  for (int64_t k = 0; k < K; ++k) v.push_back(applyScaling(inputs[k], sc.inputs[k], lines, fail));
  const std::vector<float> t = applyScaling(target, sc.target, lines, fail);

  // x: [n, length, K]; guard its size (n * length * K floats).
  constexpr uint64_t kMaxWindowBytes = uint64_t(1) << 34; // 16 GiB
  if (static_cast<uint64_t>(n) > kMaxWindowBytes / 4 / static_cast<uint64_t>(length) / static_cast<uint64_t>(K))
    fail(std::to_string(n) + " " + windowsOf + " would need more than 16 GiB of memory");
  Dataset d;
  try {
    d.x = HostTensor(DType::F32, {n, length, K});
    d.y = HostTensor(DType::F32, {n, 1});
  } catch (const std::bad_alloc &) {
    fail("not enough memory for " + std::to_string(n) + " " + windowsOf);
  }
  float *x = d.x.f32();
  float *y = d.y.f32();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < length; ++j)
      for (int64_t k = 0; k < K; ++k) x[(i * length + j) * K + k] = v[static_cast<size_t>(k)][static_cast<size_t>(i + j)];
    y[i] = t[static_cast<size_t>(i + length + horizon - 1)];
  }
  d.n = n;
  d.trainCount = trainCount;
  d.scaling = std::move(sc);
  return d;
}

Dataset makeWindows(const std::vector<double> &series, int64_t length, int64_t horizon, double split,
                    const std::string &scale, const std::string &name, const std::vector<int64_t> *lines) {
  WindowsOptions o;
  o.length = length;
  o.horizon = horizon;
  o.split = split;
  o.scale = scale;
  return makeMultiWindows({series}, series, o, name, lines);
}

Dataset loadWindows(const std::string &csvPath, const WindowsOptions &o, const WindowsScaling *fixed) {
  std::vector<unsigned char> bytes = readFileBytes(csvPath, uint64_t(1) << 32);
  std::vector<int64_t> lines;
  // The target is read once even when it is also an input column.
  std::vector<std::string> names = o.columns;
  const auto at = std::find(names.begin(), names.end(), o.target);
  const size_t targetIndex = static_cast<size_t>(at - names.begin());
  if (at == names.end()) names.push_back(o.target);
  std::vector<std::vector<double>> cols = parseCsvColumns(
      std::string_view(reinterpret_cast<const char *>(bytes.data()), bytes.size()), names, csvPath, &lines);
  bytes.clear();
  bytes.shrink_to_fit();
  std::vector<double> target = cols[targetIndex];
  cols.resize(o.columns.size());
  return makeMultiWindows(cols, target, o, csvPath, &lines, fixed);
}

Dataset loadWindows(const std::string &csvPath, const std::string &column, int64_t length, int64_t horizon,
                    double split, const std::string &scale) {
  WindowsOptions o;
  o.columns = {column};
  o.target = column;
  o.length = length;
  o.horizon = horizon;
  o.split = split;
  o.scale = scale;
  return loadWindows(csvPath, o);
}

// ---------------------------------------------------------------------------------------
// text

std::vector<uint32_t> decodeUtf8(const unsigned char *data, size_t size, const std::string &name,
                                 std::vector<size_t> *offsets) {
  auto fail = [&](size_t byte, const std::string &what) -> void {
    throw DataError(name + ": byte " + std::to_string(byte) + ": malformed UTF-8: " + what);
  };
  auto hex = [](unsigned b) { return fmt::format("0x{:02x}", b); };
  std::vector<uint32_t> out;
  if (offsets) offsets->clear();
  size_t i = size >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF ? 3 : 0; // byte order mark
  out.reserve(size - i);
  while (i < size) {
    const unsigned b = data[i];
    uint32_t cp = 0, min = 0;
    size_t n = 0;
    if (b < 0x80) {
      cp = b;
    } else if (b >= 0xC2 && b <= 0xDF) {
      cp = b & 0x1F, n = 1, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
      cp = b & 0x0F, n = 2, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
      cp = b & 0x07, n = 3, min = 0x10000;
    } else {
      fail(i, "byte " + hex(b) + (b >= 0x80 && b <= 0xBF ? " is a continuation byte without a lead byte"
                                                         : " never occurs in UTF-8"));
    }
    if (n > 0 && size - i - 1 < n) fail(i, "the file ends inside the " + std::to_string(n + 1) + "-byte sequence starting here");
    for (size_t k = 1; k <= n; ++k) {
      const unsigned c = data[i + k];
      if ((c & 0xC0) != 0x80)
        fail(i + k, "expected a continuation byte (0x80 to 0xbf) of the sequence starting at byte " + std::to_string(i) +
                        ", found " + hex(c));
      cp = (cp << 6) | (c & 0x3F);
    }
    if (cp < min) fail(i, "overlong encoding of U+" + fmt::format("{:04X}", cp));
    if (cp >= 0xD800 && cp <= 0xDFFF) fail(i, "encoded surrogate U+" + fmt::format("{:04X}", cp));
    if (cp > 0x10FFFF) fail(i, "code point above U+10FFFF");
    out.push_back(cp);
    if (offsets) offsets->push_back(i);
    i += n + 1;
  }
  return out;
}

void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

/// A code point for a message: the character itself if printable, and U+XXXX.
std::string describeChar(uint32_t cp) {
  std::string c;
  if (cp >= 0x20 && cp != 0x7F) appendUtf8(c, cp);
  return (c.empty() ? std::string() : "'" + c + "' ") + fmt::format("(U+{:04X})", cp);
}

} // namespace

Dataset parseText(const unsigned char *data, size_t size, int64_t length, double split, const std::string &name,
                  const std::vector<uint32_t> *fixed) {
  auto fail = [&](const std::string &what) -> void { throw DataError(name + ": " + what); };
  if (length < 1) fail("text: length must be at least 1, found " + std::to_string(length));
  if (!(split > 0.0 && split <= 1.0)) fail("text: split must be in (0, 1], found " + numberString(split));
  std::vector<size_t> offsets;
  std::vector<uint32_t> cps = decodeUtf8(data, size, name, &offsets);
  const int64_t len = static_cast<int64_t>(cps.size());

  Dataset d;
  if (fixed) {
    d.vocabulary = *fixed;
  } else {
    d.vocabulary = cps;
    std::sort(d.vocabulary.begin(), d.vocabulary.end());
    d.vocabulary.erase(std::unique(d.vocabulary.begin(), d.vocabulary.end()), d.vocabulary.end());
  }
  // The text as indices into the vocabulary (sorted, so a binary search).
  std::vector<int32_t> idx(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    auto it = std::lower_bound(d.vocabulary.begin(), d.vocabulary.end(), cps[i]);
    if (it == d.vocabulary.end() || *it != cps[i])
      throw DataError(name + ": byte " + std::to_string(offsets[i]) + ": character " + describeChar(cps[i]) +
                      " is not in the checkpoint's vocabulary of " + std::to_string(d.vocabulary.size()) + " characters");
    idx[i] = static_cast<int32_t>(it - d.vocabulary.begin());
  }
  const std::string windowsOf = "windows of length " + std::to_string(length);
  if (len < length + 1)
    fail("the text has " + std::to_string(len) + " character" + (len == 1 ? "" : "s") + ", too few for one of the " +
         windowsOf + " (needs at least " + std::to_string(length) + " + 1)");
  const int64_t n = (len - 1) / length;
  int64_t s = static_cast<int64_t>(std::floor(split * static_cast<double>(len)));
  s = std::min(std::max<int64_t>(s, 0), len);
  // Window i is a training window when its last target character, i*length + length, is below s.
  const int64_t trainCount = std::min(n, s >= length + 1 ? (s - 1) / length : 0);
  if (trainCount < 1)
    fail("the training split (the first " + std::to_string(s) + " of " + std::to_string(len) + " characters, split " +
         numberString(split) + ") is too short for one of the " + windowsOf);
  try {
    d.x = HostTensor(DType::I32, {n, length});
    d.y = HostTensor(DType::I32, {n, length});
  } catch (const std::bad_alloc &) {
    fail("not enough memory for " + std::to_string(n) + " " + windowsOf);
  }
  int32_t *x = d.x.i32();
  int32_t *y = d.y.i32();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < length; ++t) {
      x[i * length + t] = idx[static_cast<size_t>(i * length + t)];
      y[i * length + t] = idx[static_cast<size_t>(i * length + t + 1)];
    }
  d.n = n;
  d.trainCount = trainCount;
  return d;
}

Dataset loadText(const std::string &path, int64_t length, double split, const std::vector<uint32_t> *fixed) {
  std::vector<unsigned char> bytes = readFileBytes(path, uint64_t(1) << 30);
  return parseText(bytes.data(), bytes.size(), length, split, path, fixed);
}

// ---------------------------------------------------------------------------------------
// idx

bool isGzip(const unsigned char *data, size_t size) { return size >= 2 && data[0] == 0x1f && data[1] == 0x8b; }

std::vector<unsigned char> gunzip(const unsigned char *data, size_t size, const std::string &name, uint64_t maxBytes) {
  auto fail = [&](uint64_t byte, const std::string &what) -> void {
    throw DataError(name + ": byte " + std::to_string(byte) + ": " + what);
  };
  if (!isGzip(data, size)) fail(0, "expected the gzip magic bytes 0x1f 0x8b");
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw DataError(name + ": cannot initialise zlib");
  struct Ender {
    z_stream *zs;
    ~Ender() { inflateEnd(zs); }
  } ender{&zs};

  std::vector<unsigned char> out;
  size_t inPos = 0;    // bytes of `data` handed to zlib so far
  uint64_t produced = 0;
  constexpr size_t kMaxIn = size_t(1) << 30;
  try {
    out.resize(static_cast<size_t>(std::min<uint64_t>(std::max<uint64_t>(size * 4, 4096), maxBytes + 1)));
    for (;;) {
      if (zs.avail_in == 0 && inPos < size) {
        size_t chunk = std::min(size - inPos, kMaxIn);
        zs.next_in = const_cast<Bytef *>(data + inPos);
        zs.avail_in = static_cast<uInt>(chunk);
        inPos += chunk;
      }
      if (produced == out.size()) {
        if (produced > maxBytes)
          fail(0, "decompresses to more than " + std::to_string(maxBytes) + " bytes (the limit)");
        uint64_t grow = std::min<uint64_t>(out.size(), maxBytes + 1 - produced);
        grow = std::min<uint64_t>(grow, kMaxIn);
        out.resize(static_cast<size_t>(produced + grow));
      }
      zs.next_out = out.data() + produced;
      zs.avail_out = static_cast<uInt>(std::min<uint64_t>(out.size() - produced, kMaxIn));
      const uInt outBefore = zs.avail_out;
      const uInt inBefore = zs.avail_in;
      int rc = inflate(&zs, Z_NO_FLUSH);
      produced += outBefore - zs.avail_out;
      const uint64_t consumed = inPos - zs.avail_in; // offset of the next unread compressed byte
      if (produced > maxBytes)
        fail(0, "decompresses to more than " + std::to_string(maxBytes) + " bytes (the limit)");
      if (rc == Z_STREAM_END) {
        if (consumed == size && zs.avail_in == 0) break;
        // Another gzip member may follow (as gzip itself allows); anything else is garbage.
        size_t rest = size - static_cast<size_t>(consumed);
        if (rest >= 2 && data[consumed] == 0x1f && data[consumed + 1] == 0x8b) {
          if (inflateReset(&zs) != Z_OK) throw DataError(name + ": zlib reset failed");
          continue;
        }
        fail(consumed, "unexpected data after the end of the gzip stream");
      }
      if (rc == Z_DATA_ERROR)
        fail(consumed, std::string("corrupt gzip data: ") + (zs.msg ? zs.msg : "invalid deflate stream"));
      if (rc == Z_MEM_ERROR) throw DataError(name + ": out of memory while decompressing");
      if (rc == Z_NEED_DICT) fail(consumed, "corrupt gzip data: a preset dictionary is required");
      if (rc == Z_BUF_ERROR || rc == Z_OK) {
        const bool noProgress = inBefore == zs.avail_in && outBefore == zs.avail_out;
        if (zs.avail_in == 0 && inPos == size && (noProgress || zs.avail_out > 0))
          fail(size, "gzip data is truncated (the compressed stream ends before its end marker)");
        continue;
      }
      fail(consumed, "corrupt gzip data (zlib error " + std::to_string(rc) + ")");
    }
  } catch (const std::bad_alloc &) {
    throw DataError(name + ": not enough memory to decompress");
  }
  out.resize(static_cast<size_t>(produced));
  return out;
}

HostTensor parseIdxImages(const unsigned char *data, size_t size, const std::string &name, bool decompressed) {
  BinCtx ctx{name, decompressed};
  checkIdxMagic(ctx, data, size, 3, "image");
  if (size < 16) ctx.fail(size, "expected three 4-byte dimensions after the magic number, found the end of the data (file truncated?)");
  const uint32_t count = be32(data + 4), rows = be32(data + 8), cols = be32(data + 12);
  if (count == 0) ctx.fail(4, "the file contains no images (count 0)");
  if (rows == 0) ctx.fail(8, "the images have 0 rows");
  if (cols == 0) ctx.fail(12, "the images have 0 columns");
  // Up to 2^96: compare against the data actually present without overflow.
  const uint64_t perImage = uint64_t(rows) * cols;
  const uint64_t have = size - 16;
  const std::string dims = std::to_string(count) + " images of " + std::to_string(rows) + "x" + std::to_string(cols);
  if (perImage > have || count > have / perImage) {
    // Compute the needed size as text if it might overflow.
    const bool fits = perImage <= UINT64_MAX / count;
    ctx.fail(size, "expected " + (fits ? std::to_string(perImage * count) : std::string("more than 2^64")) +
                       " bytes of pixels for " + dims + ", found " + std::to_string(have) + " (file truncated?)");
  }
  const uint64_t total = perImage * count;
  if (have != total)
    ctx.fail(16 + total, "unexpected data after the last image (" + std::to_string(have - total) +
                             " bytes more than the " + std::to_string(total) + " bytes of pixels for " + dims + ")");
  HostTensor t;
  try {
    t = HostTensor(DType::F32, {int64_t(count), int64_t(rows), int64_t(cols)});
  } catch (const std::bad_alloc &) {
    throw DataError(name + ": not enough memory for " + dims);
  }
  float *x = t.f32();
  const unsigned char *px = data + 16;
  for (uint64_t i = 0; i < total; ++i) x[i] = static_cast<float>(px[i]) / 255.0f;
  return t;
}

HostTensor parseIdxLabels(const unsigned char *data, size_t size, const std::string &name, int64_t classes,
                          bool decompressed) {
  BinCtx ctx{name, decompressed};
  if (classes < 1) throw DataError(name + ": the number of classes must be at least 1, found " + std::to_string(classes));
  checkIdxMagic(ctx, data, size, 1, "label");
  if (size < 8) ctx.fail(size, "expected a 4-byte count after the magic number, found the end of the data (file truncated?)");
  const uint32_t count = be32(data + 4);
  if (count == 0) ctx.fail(4, "the file contains no labels (count 0)");
  const uint64_t have = size - 8;
  if (have < count)
    ctx.fail(size, "expected " + std::to_string(count) + " bytes of labels, found " + std::to_string(have) +
                       " (file truncated?)");
  if (have > count)
    ctx.fail(8 + uint64_t(count), "unexpected data after the last label (" + std::to_string(have - count) +
                                      " bytes more than the " + std::to_string(count) + " labels)");
  HostTensor t(DType::I32, {int64_t(count)});
  int32_t *y = t.i32();
  for (uint32_t i = 0; i < count; ++i) {
    const unsigned char l = data[8 + i];
    if (l >= classes)
      ctx.fail(8 + uint64_t(i), "label " + std::to_string(l) + " of sample " + std::to_string(i) +
                                    " is out of range (expected 0 to " + std::to_string(classes - 1) + " for " +
                                    std::to_string(classes) + " classes)");
    y[i] = l;
  }
  return t;
}

Dataset parseIdx(const unsigned char *images, size_t imagesSize, const unsigned char *labels, size_t labelsSize,
                 const std::string &imagesName, const std::string &labelsName, int64_t classes) {
  Dataset d;
  {
    std::vector<unsigned char> raw;
    const bool gz = isGzip(images, imagesSize);
    if (gz) raw = gunzip(images, imagesSize, imagesName);
    d.x = gz ? parseIdxImages(raw.data(), raw.size(), imagesName, true)
             : parseIdxImages(images, imagesSize, imagesName, false);
  }
  {
    std::vector<unsigned char> raw;
    const bool gz = isGzip(labels, labelsSize);
    if (gz) raw = gunzip(labels, labelsSize, labelsName);
    d.y = gz ? parseIdxLabels(raw.data(), raw.size(), labelsName, classes, true)
             : parseIdxLabels(labels, labelsSize, labelsName, classes, false);
  }
  if (d.x.shape[0] != d.y.shape[0])
    throw DataError(imagesName + " has " + std::to_string(d.x.shape[0]) + " images but " + labelsName + " has " +
                    std::to_string(d.y.shape[0]) + " labels (expected one label per image)");
  d.n = d.x.shape[0];
  d.trainCount = d.n;
  return d;
}

Dataset loadIdx(const std::string &imagesPath, const std::string &labelsPath, int64_t classes) {
  if (classes < 1)
    throw DataError(labelsPath + ": the number of classes must be at least 1, found " + std::to_string(classes));
  std::vector<unsigned char> images = readFileBytes(imagesPath, kMaxDecompressedBytes);
  std::vector<unsigned char> labels = readFileBytes(labelsPath, kMaxDecompressedBytes);
  return parseIdx(images.data(), images.size(), labels.data(), labels.size(), imagesPath, labelsPath, classes);
}

// ---------------------------------------------------------------------------------------
// tensors

std::map<std::string, HostTensor> loadTensors(const std::string &path, const std::vector<std::string> &names) {
  std::map<std::string, HostTensor> all = readSafetensors(path);
  if (names.empty()) return all;
  std::map<std::string, HostTensor> out;
  for (const std::string &n : names) {
    auto it = all.find(n);
    if (it == all.end()) {
      std::string have;
      for (const auto &kv : all) have += (have.empty() ? "" : ", ") + quoted(kv.first);
      throw DataError(path + ": no tensor named " + quoted(n) + "; " +
                      (all.empty() ? std::string("the file has no tensors") : "the file has " + have));
    }
    if (!out.count(n)) out.emplace(n, std::move(it->second));
  }
  return out;
}

Dataset loadTensorDataset(const std::string &path, const std::string &xName, const std::string &yName) {
  std::map<std::string, HostTensor> t = loadTensors(path, {xName, yName});
  Dataset d;
  // Moved, not copied (a copy of x alone is most of the start-up of a large data set); one
  // tensor named for both x and y is copied once.
  d.y = t[yName];
  d.x = xName == yName ? t[xName] : std::move(t[xName]);
  if (d.x.shape.empty())
    throw DataError(path + ": tensor " + quoted(xName) + " is a scalar; expected a sample axis first ([N, ...])");
  if (d.y.shape.empty())
    throw DataError(path + ": tensor " + quoted(yName) + " is a scalar; expected a sample axis first ([N, ...])");
  if (d.x.shape[0] != d.y.shape[0])
    throw DataError(path + ": tensors " + quoted(xName) + " " + d.x.typeString() + " and " + quoted(yName) + " " +
                    d.y.typeString() + " have different numbers of samples (" + std::to_string(d.x.shape[0]) +
                    " and " + std::to_string(d.y.shape[0]) + ")");
  if (d.x.shape[0] == 0) throw DataError(path + ": the data set has no samples (tensor " + quoted(xName) + " is " + d.x.typeString() + ")");
  d.n = d.x.shape[0];
  d.trainCount = d.n;
  return d;
}

void expectTensor(const std::string &file, const std::string &name, const HostTensor &t, DType dtype,
                  const std::vector<int64_t> &shape) {
  bool ok = t.dtype == dtype && t.shape.size() == shape.size();
  for (size_t i = 0; ok && i < shape.size(); ++i)
    if (shape[i] != -1 && shape[i] != t.shape[i]) ok = false;
  if (ok) return;
  std::string want = std::string(dtypeName(dtype)) + "[";
  for (size_t i = 0; i < shape.size(); ++i)
    want += (i ? ", " : "") + (shape[i] == -1 ? std::string("*") : std::to_string(shape[i]));
  want += "]";
  throw DataError(file + ": tensor " + quoted(name) + ": expected " + want + ", found " + t.typeString());
}

} // namespace gradc::rt
