// Safetensors.cpp: implements the validating safetensors reader and writer, the whole-file read and the atomic file write declared in Safetensors.h.
#include "Safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "Json.h"

namespace gradc::rt {

namespace {

/// A name in single quotes, made printable.
std::string quoted(const std::string &name) { return "'" + printableForMessage(name, 200) + "'"; }

/// Throws DataError "FILE: byte N: WHAT".
[[noreturn]] void failAt(const std::string &file, uint64_t byte, const std::string &what) {
  throw DataError(file + ": byte " + std::to_string(byte) + ": " + what);
}

/// safetensors dtypes gradc knows but does not compute with.
bool isUnsupportedSafetensorsDType(const std::string &s) {
  static const char *const names[] = {"BOOL", "U8",  "I8",      "I16",     "U16",     "F16",     "BF16",
                                      "U32",  "U64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2",
                                      "F4",   "C64"};
  for (const char *n : names)
    if (s == n) return true;
  return false;
}

/// A non-negative JSON integer; false if `v` is anything else.
bool nonNegativeInt(const JsonValue &v, int64_t &out) { return v.asInt64(out) && out >= 0; }

/// One validated tensor entry of the header.
struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
  size_t jsonOffset; // of the data_offsets array
};

} // namespace

std::map<std::string, HostTensor> parseSafetensors(const unsigned char *data, size_t size,
                                                   const std::string &file,
                                                   SafetensorsMetadata *metadata) {
  if (metadata) metadata->clear();
  if (size < 8)
    failAt(file, 0,
           "file is too short for a safetensors file: expected an 8-byte header length, found " +
               std::to_string(size) + " byte" + (size == 1 ? "" : "s"));
  uint64_t headerLen = 0;
  for (int k = 7; k >= 0; --k) headerLen = (headerLen << 8) | data[k];
  if (headerLen > kMaxSafetensorsHeaderBytes)
    failAt(file, 0,
           "header length " + std::to_string(headerLen) + " exceeds the limit of " +
               std::to_string(kMaxSafetensorsHeaderBytes) + " bytes (not a safetensors file?)");
  if (headerLen > size - 8)
    failAt(file, 0,
           "header length " + std::to_string(headerLen) + " runs past the end of the file (only " +
               std::to_string(size - 8) + " bytes follow the length field; file truncated?)");
  if (headerLen == 0) failAt(file, 8, "header is empty: expected a JSON object");
  const size_t headerStart = 8;
  const size_t bufferStart = headerStart + static_cast<size_t>(headerLen);
  const uint64_t bufferSize = size - bufferStart;
  std::string_view headerText(reinterpret_cast<const char *>(data) + headerStart, static_cast<size_t>(headerLen));

  JsonValue root;
  try {
    root = parseJson(headerText, headerStart);
  } catch (const JsonError &e) {
    failAt(file, headerStart, std::string("header is not valid JSON: ") + e.what());
  }
  if (root.kind != JsonValue::Kind::Object)
    failAt(file, root.offset, std::string("header must be a JSON object, found ") + root.kindName());

  std::vector<Entry> entries;
  std::set<std::string> seen;
  bool haveMetadata = false;
  for (const auto &member : root.members) {
    const std::string &name = member.key;
    const JsonValue &v = member.value;
    if (name == "__metadata__") {
      if (haveMetadata) failAt(file, v.offset, "duplicate \"__metadata__\" entry");
      haveMetadata = true;
      if (v.kind != JsonValue::Kind::Object)
        failAt(file, v.offset, std::string("\"__metadata__\" must be an object of strings, found ") + v.kindName());
      std::set<std::string> keys;
      for (const auto &m : v.members) {
        if (m.value.kind != JsonValue::Kind::String)
          failAt(file, m.value.offset,
                 "\"__metadata__\" value for key " + quoted(m.key) + " must be a string, found " +
                     m.value.kindName());
        if (!keys.insert(m.key).second)
          failAt(file, m.value.offset, "duplicate \"__metadata__\" key " + quoted(m.key));
        if (metadata) (*metadata)[m.key] = m.value.text;
      }
      continue;
    }
    const std::string what = "tensor " + quoted(name) + ": ";
    if (!seen.insert(name).second) failAt(file, v.offset, "duplicate tensor name " + quoted(name));
    if (v.kind != JsonValue::Kind::Object)
      failAt(file, v.offset,
             what + "expected an object with \"dtype\", \"shape\" and \"data_offsets\", found " + v.kindName());
    const JsonValue *dtypeV = nullptr, *shapeV = nullptr, *offsetsV = nullptr;
    for (const auto &m : v.members) {
      const JsonValue **slot = nullptr;
      if (m.key == "dtype") slot = &dtypeV;
      else if (m.key == "shape") slot = &shapeV;
      else if (m.key == "data_offsets") slot = &offsetsV;
      else
        failAt(file, m.value.offset,
               what + "unexpected key " + quoted(m.key) + " (expected \"dtype\", \"shape\" and \"data_offsets\")");
      if (*slot) failAt(file, m.value.offset, what + "duplicate key " + quoted(m.key));
      *slot = &m.value;
    }
    if (!dtypeV) failAt(file, v.offset, what + "missing \"dtype\"");
    if (!shapeV) failAt(file, v.offset, what + "missing \"shape\"");
    if (!offsetsV) failAt(file, v.offset, what + "missing \"data_offsets\"");

    Entry e;
    e.name = name;
    if (dtypeV->kind != JsonValue::Kind::String)
      failAt(file, dtypeV->offset, what + "\"dtype\" must be a string, found " + dtypeV->kindName());
    if (!parseDType(dtypeV->text, e.dtype)) {
      if (isUnsupportedSafetensorsDType(dtypeV->text))
        failAt(file, dtypeV->offset,
               what + "unsupported dtype " + quoted(dtypeV->text) + " (gradc reads F32, F64, I32 and I64)");
      failAt(file, dtypeV->offset,
             what + "unknown dtype " + quoted(dtypeV->text) + " (expected F32, F64, I32 or I64)");
    }

    if (shapeV->kind != JsonValue::Kind::Array)
      failAt(file, shapeV->offset, what + "\"shape\" must be an array of integers, found " + shapeV->kindName());
    for (const JsonValue &d : shapeV->items) {
      int64_t extent = 0;
      if (!nonNegativeInt(d, extent))
        failAt(file, d.offset,
               what + "\"shape\" entries must be non-negative integers, found " +
                   (d.kind == JsonValue::Kind::Number ? "'" + d.text + "'" : std::string(d.kindName())));
      e.shape.push_back(extent);
    }
    int64_t numel = 0;
    if (!checkedNumel(e.shape, numel) ||
        static_cast<uint64_t>(numel) > UINT64_MAX / dtypeSize(e.dtype))
      failAt(file, shapeV->offset, what + "shape " + shapeString(e.shape) + " has too many elements");
    const uint64_t nbytes = static_cast<uint64_t>(numel) * dtypeSize(e.dtype);

    if (offsetsV->kind != JsonValue::Kind::Array || offsetsV->items.size() != 2)
      failAt(file, offsetsV->offset,
             what + "\"data_offsets\" must be an array of two integers [begin, end], found " +
                 (offsetsV->kind == JsonValue::Kind::Array
                      ? "an array of " + std::to_string(offsetsV->items.size())
                      : std::string(offsetsV->kindName())));
    int64_t b = 0, en = 0;
    if (!nonNegativeInt(offsetsV->items[0], b))
      failAt(file, offsetsV->items[0].offset, what + "\"data_offsets\" begin must be a non-negative integer");
    if (!nonNegativeInt(offsetsV->items[1], en))
      failAt(file, offsetsV->items[1].offset, what + "\"data_offsets\" end must be a non-negative integer");
    e.begin = static_cast<uint64_t>(b);
    e.end = static_cast<uint64_t>(en);
    e.jsonOffset = offsetsV->offset;
    const std::string range = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.end < e.begin)
      failAt(file, e.jsonOffset, what + "\"data_offsets\" " + range + " end before they begin");
    if (e.end > bufferSize)
      failAt(file, e.jsonOffset,
             what + "\"data_offsets\" " + range + " run past the end of the data buffer (" +
                 std::to_string(bufferSize) + " bytes; file truncated?)");
    if (e.end - e.begin != nbytes)
      failAt(file, e.jsonOffset,
             what + "\"data_offsets\" " + range + " span " + std::to_string(e.end - e.begin) + " bytes, but " +
                 dtypeName(e.dtype) + shapeString(e.shape) + " needs " + std::to_string(nbytes));
    entries.push_back(std::move(e));
  }

  // The tensors must tile the data buffer: no overlap, no gap, nothing after the last one.
  std::vector<const Entry *> order;
  for (const Entry &e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry *a, const Entry *b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  const Entry *prev = nullptr;
  for (const Entry *e : order) {
    if (e->begin < cursor)
      failAt(file, e->jsonOffset,
             "tensor " + quoted(e->name) + " (data bytes [" + std::to_string(e->begin) + ", " +
                 std::to_string(e->end) + "]) overlaps tensor " + quoted(prev->name) + " (data bytes [" +
                 std::to_string(prev->begin) + ", " + std::to_string(prev->end) + "])");
    if (e->begin > cursor)
      failAt(file, bufferStart + cursor,
             "data bytes [" + std::to_string(cursor) + ", " + std::to_string(e->begin) +
                 "] belong to no tensor (expected the tensors to be contiguous)");
    cursor = e->end;
    prev = e;
  }
  if (cursor != bufferSize)
    failAt(file, bufferStart + cursor,
           std::to_string(bufferSize - cursor) + " bytes after the last tensor's data (the tensors end at data byte " +
               std::to_string(cursor) + ", the file has " + std::to_string(bufferSize) + " data bytes)");

  std::map<std::string, HostTensor> out;
  for (const Entry &e : entries) {
    HostTensor t;
    t.dtype = e.dtype;
    t.shape = e.shape;
    const unsigned char *p = data + bufferStart + e.begin;
    t.bytes.assign(p, p + (e.end - e.begin));
    out.emplace(e.name, std::move(t));
  }
  return out;
}

std::map<std::string, HostTensor> readSafetensors(const std::string &path, SafetensorsMetadata *metadata) {
  std::vector<unsigned char> bytes = readFileBytes(path);
  return parseSafetensors(bytes.data(), bytes.size(), path, metadata);
}

namespace {

/// The padded JSON header for `tensors` (validated) and `metadata`.
std::string buildHeader(const std::vector<std::pair<std::string, const HostTensor *>> &tensors,
                        const SafetensorsMetadata &metadata, const std::string &file) {
  std::string h = "{";
  bool first = true;
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool firstKey = true;
    for (const auto &kv : metadata) {
      if (!isValidUtf8(kv.first))
        throw DataError(file + ": metadata key " + quoted(kv.first) + " is not valid UTF-8");
      if (!isValidUtf8(kv.second))
        throw DataError(file + ": metadata value for key " + quoted(kv.first) + " is not valid UTF-8");
      if (!firstKey) h += ",";
      firstKey = false;
      h += jsonQuote(kv.first) + ":" + jsonQuote(kv.second);
    }
    h += "}";
    first = false;
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto &nt : tensors) {
    const std::string &name = nt.first;
    const HostTensor *t = nt.second;
    const std::string what = file + ": cannot write tensor " + quoted(name) + ": ";
    if (!t) throw DataError(what + "no tensor given (null pointer)");
    if (name == "__metadata__") throw DataError(what + "the name \"__metadata__\" is reserved");
    if (!isValidUtf8(name)) throw DataError(what + "the name is not valid UTF-8");
    if (!names.insert(name).second) throw DataError(what + "duplicate tensor name");
    if (!t->consistent())
      throw DataError(what + "it has " + std::to_string(t->bytes.size()) + " bytes, which does not match " +
                      t->typeString());
    const uint64_t end = offset + t->bytes.size();
    if (!first) h += ",";
    first = false;
    h += jsonQuote(name) + ":{\"dtype\":\"" + dtypeName(t->dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i) h += ",";
      h += std::to_string(t->shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  if (h.size() > kMaxSafetensorsHeaderBytes)
    throw DataError(file + ": the header would be " + std::to_string(h.size()) + " bytes, more than the limit of " +
                    std::to_string(kMaxSafetensorsHeaderBytes));
  return h;
}

/// Writes `n` as 8 little-endian bytes.
void encodeLength(unsigned char out[8], uint64_t n) {
  for (int k = 0; k < 8; ++k) out[k] = static_cast<unsigned char>(n >> (8 * k));
}

} // namespace

std::vector<unsigned char>
serializeSafetensors(const std::vector<std::pair<std::string, const HostTensor *>> &tensors,
                     const SafetensorsMetadata &metadata, const std::string &nameForErrors) {
  const std::string header = buildHeader(tensors, metadata, nameForErrors);
  std::vector<unsigned char> out(8);
  encodeLength(out.data(), header.size());
  out.insert(out.end(), header.begin(), header.end());
  for (const auto &nt : tensors) out.insert(out.end(), nt.second->bytes.begin(), nt.second->bytes.end());
  return out;
}

void writeSafetensors(const std::string &path,
                      const std::vector<std::pair<std::string, const HostTensor *>> &tensors,
                      const SafetensorsMetadata &metadata) {
  const std::string header = buildHeader(tensors, metadata, path);
  unsigned char len[8];
  encodeLength(len, header.size());
  std::vector<ByteChunk> chunks;
  chunks.emplace_back(len, sizeof len);
  chunks.emplace_back(header.data(), header.size());
  for (const auto &nt : tensors)
    if (!nt.second->bytes.empty()) chunks.emplace_back(nt.second->bytes.data(), nt.second->bytes.size());
  writeFileAtomic(path, chunks);
}

std::vector<unsigned char> readFileBytes(const std::string &path, uint64_t maxBytes) {
  auto sysFail = [&](const char *what, int err) -> void {
    throw DataError(path + ": " + what + ": " + std::strerror(err));
  };
  // O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) sysFail("cannot open", errno);
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) sysFail("cannot stat", errno);
  if (S_ISDIR(st.st_mode)) throw DataError(path + ": is a directory, expected a file");
  if (!S_ISREG(st.st_mode)) throw DataError(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > maxBytes)
    throw DataError(path + ": file has " + std::to_string(st.st_size) + " bytes, more than the limit of " +
                    std::to_string(maxBytes));
  std::vector<unsigned char> bytes;
  try {
    bytes.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    for (;;) {
      if (got == bytes.size()) {
        // The file may have grown since fstat: keep reading, within the limit.
        if (got >= maxBytes) {
          unsigned char probe;
          ssize_t r = ::read(fd, &probe, 1);
          if (r > 0)
            throw DataError(path + ": file has more than " + std::to_string(maxBytes) + " bytes (the limit)");
          if (r < 0 && errno == EINTR) continue;
          if (r < 0) sysFail("read error", errno);
          break;
        }
        size_t grow = bytes.size() < 65536 ? 65536 : bytes.size();
        if (grow > maxBytes - got) grow = static_cast<size_t>(maxBytes - got);
        bytes.resize(got + grow);
      }
      ssize_t r = ::read(fd, bytes.data() + got, bytes.size() - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) sysFail("read error", errno);
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    bytes.resize(got);
  } catch (const std::bad_alloc &) {
    throw DataError(path + ": not enough memory to load the file (" + std::to_string(st.st_size) + " bytes)");
  }
  return bytes;
}

void writeFileAtomic(const std::string &path, const std::vector<ByteChunk> &chunks) {
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0)
    throw DataError(path + ": cannot create the temporary file " + tmp + ": " + std::strerror(errno));
  auto fail = [&](const char *what, int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw DataError(path + ": " + what + ": " + std::strerror(err));
  };
  // Testing hook (tests/tools/kill_during_save.py): GRADC_TEST_WRITE_PAUSE_MS=N pauses N ms
  // after the first chunk, so that a SIGKILL lands in the middle of a write.
  static const long pauseMs = [] {
    const char *e = std::getenv("GRADC_TEST_WRITE_PAUSE_MS");
    return e ? std::strtol(e, nullptr, 10) : 0L;
  }();
  for (const ByteChunk &c : chunks) {
    if (&c == chunks.data() + 1 && pauseMs > 0) ::usleep(static_cast<useconds_t>(std::min(pauseMs, 10000L) * 1000));
    const unsigned char *p = static_cast<const unsigned char *>(c.first);
    size_t left = c.second;
    while (left > 0) {
      ssize_t w = ::write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) fail("cannot write", errno);
      if (w == 0) fail("cannot write", EIO);
      p += w;
      left -= static_cast<size_t>(w);
    }
  }
  if (::fsync(fd) != 0) fail("cannot sync to disk", errno);
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) fail("cannot write (close failed)", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename the temporary file over it", errno);
  // Make the rename durable; failure here does not undo the write, so it is not an error.
  std::string dir = ".";
  size_t slash = path.find_last_of('/');
  if (slash != std::string::npos) dir = slash == 0 ? "/" : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void writeFileAtomic(const std::string &path, const void *data, size_t size) {
  writeFileAtomic(path, std::vector<ByteChunk>{ByteChunk(data, size)});
}

} // namespace gradc::rt
