// Resume.cpp: implements the resume metadata of training checkpoints (Resume.h), their checksums (crc32, and the gradc-hash64 of earlier versions) and the cleanup of temporary files left by killed writers.
#include "Resume.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>
#include <zlib.h>

#include "Driver.h"
#include "Json.h"

namespace gradc::rt {

namespace {

/// A double as a C99 hexadecimal float (printf's "%a"), exact.
std::string hexFloat(double v) { return fmt::format("{:a}", v); }

/// 16 lower-case hex digits.
std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

/// Reads metadata values, reporting malformed ones as DataError naming the file and key.
struct Reader {
  const SafetensorsMetadata &meta;
  const std::string &path;

  const std::string &raw(const char *key) const {
    auto it = meta.find(key);
    if (it == meta.end())
      throw DataError(path + ": the checkpoint's resume information lacks '" + key + "'");
    return it->second;
  }
  [[noreturn]] void bad(const char *key, const char *what) const {
    throw DataError(path + ": the checkpoint's resume value '" + key + "' = '" +
                    printableForMessage(raw(key), 60) + "' is not " + what);
  }
  int64_t i64(const char *key, int64_t lo = INT64_MIN) const {
    const std::string &s = raw(key);
    int64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || v < lo) bad(key, "an integer in range");
    return v;
  }
  uint64_t u64(const char *key, int base = 10) const {
    const std::string &s = raw(key);
    uint64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) bad(key, "an unsigned integer");
    return v;
  }
  double f64(const char *key) const {
    const std::string &s = raw(key);
    char *end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size()) bad(key, "a number");
    return v;
  }
  bool flag(const char *key) const {
    const std::string &s = raw(key);
    if (s != "0" && s != "1") bad(key, "0 or 1");
    return s == "1";
  }
};

constexpr uint64_t kHashSeed = 0x6A09E667F3BCC909ull;

uint64_t mix(uint64_t h, uint64_t w) {
  h ^= w;
  h *= 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}

} // namespace

void encodeResume(const ResumeState &r, SafetensorsMetadata &m) {
  m["gradc.model"] = r.model;
  m["gradc.seed"] = std::to_string(r.seed);
  m["gradc.shuffle"] = r.shuffle ? "1" : "0";
  m["gradc.lr"] = hexFloat(r.lr);
  m["gradc.batch"] = std::to_string(r.batch);
  m["gradc.train_samples"] = std::to_string(r.trainCount);
  m["gradc.data_hash"] = hex64(r.dataHash);
  m["gradc.epoch"] = std::to_string(r.epoch);
  m["gradc.epoch_step"] = std::to_string(r.epochStep);
  m["gradc.step"] = std::to_string(r.step);
  m["gradc.order_hash"] = hex64(r.orderHash);
  m["gradc.epoch_loss_sum"] = hexFloat(r.epochLossSum);
  m["gradc.ran"] = r.ran ? "1" : "0";
  m["gradc.final_loss"] = hexFloat(r.finalLoss);
  m["gradc.final_val"] = hexFloat(r.finalVal);
  m["gradc.last_eval"] = hexFloat(r.lastEval);
  m["gradc.last_eval_step"] = std::to_string(r.lastEvalStep);
  m["gradc.best_val"] = hexFloat(r.bestVal);
  m["gradc.best_epoch"] = std::to_string(r.bestEpoch);
  m["gradc.bad"] = std::to_string(r.bad);
  m["gradc.has_best"] = r.hasBest ? "1" : "0";
  if (!r.schedule.empty()) {
    m["gradc.schedule"] = r.schedule;
    m["gradc.schedule_lr"] = hexFloat(r.scheduleLr);
    m["gradc.schedule_count"] = std::to_string(r.scheduleCount);
    m["gradc.schedule_best"] = hexFloat(r.scheduleBest);
    m["gradc.schedule_bad"] = std::to_string(r.scheduleBad);
  }
}

bool decodeResume(const SafetensorsMetadata &meta, const std::string &path, ResumeState &r) {
  if (meta.find("gradc.epoch") == meta.end()) return false;
  Reader rd{meta, path};
  r.model = rd.raw("gradc.model");
  r.seed = rd.u64("gradc.seed");
  r.shuffle = rd.flag("gradc.shuffle");
  r.lr = rd.f64("gradc.lr");
  r.batch = rd.i64("gradc.batch", 1);
  r.trainCount = rd.i64("gradc.train_samples", 0);
  r.dataHash = rd.u64("gradc.data_hash", 16);
  r.epoch = rd.i64("gradc.epoch", 1);
  r.epochStep = rd.i64("gradc.epoch_step", 0);
  r.step = rd.i64("gradc.step", 0);
  r.orderHash = rd.u64("gradc.order_hash", 16);
  r.epochLossSum = rd.f64("gradc.epoch_loss_sum");
  r.ran = rd.flag("gradc.ran");
  r.finalLoss = rd.f64("gradc.final_loss");
  r.finalVal = rd.f64("gradc.final_val");
  r.lastEval = rd.f64("gradc.last_eval");
  r.lastEvalStep = rd.i64("gradc.last_eval_step", -1);
  r.bestVal = rd.f64("gradc.best_val");
  r.bestEpoch = rd.i64("gradc.best_epoch", 0);
  r.bad = rd.i64("gradc.bad", 0);
  r.hasBest = rd.flag("gradc.has_best");
  if (meta.count("gradc.schedule")) {
    r.schedule = rd.raw("gradc.schedule");
    r.scheduleLr = rd.f64("gradc.schedule_lr");
    r.scheduleCount = rd.i64("gradc.schedule_count", 0);
    r.scheduleBest = rd.f64("gradc.schedule_best");
    r.scheduleBad = rd.i64("gradc.schedule_bad", 0);
    if (!(r.scheduleLr >= 0) || std::isinf(r.scheduleLr)) rd.bad("gradc.schedule_lr", "a non-negative number");
  }
  if (!(r.lr >= 0)) rd.bad("gradc.lr", "a non-negative number");
  return true;
}

uint64_t hashBytes(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = static_cast<const unsigned char *>(data);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = 0;
    for (int k = 7; k >= 0; --k) w = (w << 8) | p[i + static_cast<size_t>(k)];
    h = mix(h, w);
  }
  uint64_t w = 0;
  for (size_t k = n; k > i; --k) w = (w << 8) | p[k - 1];
  return mix(h, w ^ (static_cast<uint64_t>(n - i) << 56));
}

namespace {

using NamedTensors = std::vector<std::pair<std::string, const HostTensor *>>;

/// The entries of `tensors` in ascending byte order of their names.
std::vector<const NamedTensors::value_type *> byName(const NamedTensors &tensors) {
  std::vector<const NamedTensors::value_type *> order;
  for (const auto &t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto *a, auto *b) { return a->first < b->first; });
  return order;
}

/// Continues crc32 `crc` over `n` bytes (in pieces zlib's uInt length can hold).
uLong crcBytes(uLong crc, const void *data, size_t n) {
  const Bytef *p = static_cast<const Bytef *>(data);
  while (n > 0) {
    const size_t piece = std::min<size_t>(n, 1u << 30);
    crc = ::crc32(crc, p, static_cast<uInt>(piece));
    p += piece;
    n -= piece;
  }
  return crc;
}

/// Continues crc32 `crc` over v as 8 bytes little-endian.
uLong crcU64(uLong crc, uint64_t v) {
  unsigned char b[8];
  for (int k = 0; k < 8; ++k) b[k] = static_cast<unsigned char>(v >> (8 * k));
  return crcBytes(crc, b, 8);
}

} // namespace

uint32_t checksumTensors(const NamedTensors &tensors) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  for (const auto *e : byName(tensors)) {
    const HostTensor &t = *e->second;
    const std::string dtype = dtypeName(t.dtype);
    crc = crcU64(crc, e->first.size());
    crc = crcBytes(crc, e->first.data(), e->first.size());
    crc = crcU64(crc, dtype.size());
    crc = crcBytes(crc, dtype.data(), dtype.size());
    crc = crcU64(crc, t.shape.size());
    for (int64_t d : t.shape) crc = crcU64(crc, static_cast<uint64_t>(d));
    crc = crcU64(crc, t.bytes.size());
    crc = crcBytes(crc, t.bytes.data(), t.bytes.size());
  }
  return static_cast<uint32_t>(crc);
}

uint64_t legacyChecksumTensors(const NamedTensors &tensors) {
  uint64_t h = kHashSeed;
  for (const auto *e : byName(tensors)) {
    const HostTensor &t = *e->second;
    h = hashBytes(h, e->first.data(), e->first.size());
    h = mix(h, static_cast<uint64_t>(t.dtype));
    h = mix(h, t.shape.size());
    for (int64_t d : t.shape) h = mix(h, static_cast<uint64_t>(d));
    h = hashBytes(h, t.bytes.data(), t.bytes.size());
  }
  return h;
}

uint64_t hashData(const DriverData &data) {
  uint64_t h = kHashSeed;
  h = mix(h, static_cast<uint64_t>(data.trainCount));
  for (size_t i = 0; i < data.tensors.size(); ++i) {
    if (i >= data.present.size() || !data.present[i]) continue;
    const HostTensor &t = data.tensors[i];
    if (t.shape.empty() || t.shape[0] <= 0) continue;
    const size_t perSample = t.bytes.size() / static_cast<size_t>(t.shape[0]);
    h = hashBytes(h, t.bytes.data(), perSample * static_cast<size_t>(data.trainCount));
  }
  return h;
}

uint64_t hashOrder(const std::vector<int64_t> &perm) {
  return hashBytes(kHashSeed, perm.data(), perm.size() * sizeof(int64_t));
}

void verifyChecksum(const std::string &path, const SafetensorsMetadata &meta,
                    const std::vector<std::pair<std::string, const HostTensor *>> &tensors) {
  auto check = [&](const char *key, const std::string &want) {
    auto it = meta.find(key);
    if (it != meta.end() && it->second != want)
      throw DataError(path + ": checksum mismatch (the file says " + printableForMessage(it->second, 40) +
                      ", its tensors hash to " + want + "): the checkpoint is damaged");
  };
  if (meta.count(kChecksumKey)) check(kChecksumKey, fmt::format("{:08x}", checksumTensors(tensors)));
  if (meta.count(kLegacyChecksumKey)) check(kLegacyChecksumKey, hex64(legacyChecksumTensors(tensors)));
}

void removeStaleTemporaries(const std::string &path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR *d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (struct dirent *e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pidText = name.substr(prefix.size());
    long long pid = 0;
    auto r = std::from_chars(pidText.data(), pidText.data() + pidText.size(), pid);
    if (r.ec != std::errc() || r.ptr != pidText.data() + pidText.size() || pid <= 0) continue;
    if (pid == static_cast<long long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH) stale.push_back(dir + "/" + name);
  }
  ::closedir(d);
  for (const std::string &f : stale) ::unlink(f.c_str());
}

} // namespace gradc::rt
