// Driver.cpp: implements runMain, the training driver shared by generated executables, the interpreter and the JIT (flags, data, epochs, validation, early stopping, checkpoints, --predict and --gradcheck), and the helpers declared in Driver.h.
#include "Driver.h"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cctype>
#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <new>
#include <thread>
#include <utility>

#include <unistd.h>

#include "DataSources.h"
#include "FiniteCheck.h"
#include "Interrupt.h"
#include "Json.h"
#include "Safetensors.h"

// The random transforms must round identically everywhere: no a*b+c fused into one FMA.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace gradc::rt {

namespace {

using Clock = std::chrono::steady_clock;

/// When the program started (static initialisation, before main): --timing's origin.
const Clock::time_point gProcessStart = Clock::now();

/// A user-supplied string in single quotes, made printable.
std::string quoted(std::string_view s) { return "'" + printableForMessage(s, 200) + "'"; }

/// printf-style formatting into a std::string (for messages, never per step).
template <class... A> std::string format(const char *fmt, A... args) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, fmt, args...);
  return n < 0 ? std::string() : std::string(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

/// A loss or other value for the output lines: 6 significant digits ("%.6g"); NaN is
/// always "nan" (printf may write "-nan").
std::string g6(double v) { return std::isnan(v) ? std::string("nan") : format("%.6g", v); }

/// A relative error for the gradcheck lines ("%.3e", NaN as "nan").
std::string e3(double v) { return std::isnan(v) ? std::string("nan") : format("%.3e", v); }

/// Number of elements of a shape; throws if it is invalid.
int64_t numelOf(const std::vector<int64_t> &shape) {
  int64_t n = 0;
  if (!checkedNumel(shape, n)) throw std::runtime_error("invalid shape " + shapeString(shape));
  return n;
}

/// Elements of one sample of a batched spec shape [B, ...].
int64_t sampleNumel(const std::vector<int64_t> &shape) {
  return numelOf(std::vector<int64_t>(shape.begin() + 1, shape.end()));
}

/// The model-language spelling of a dtype ("f32").
std::string langDType(DType t) {
  std::string s = dtypeName(t);
  for (char &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// "input x: f32[32, 30, 1]" / "target y: i32[32]".
std::string describeEntry(const ModelSpec &spec, size_t i) {
  const TensorSpec &t = spec.inputs[i];
  return std::string(i < spec.numInputs ? "input " : "target ") + t.name + ": " + langDType(t.dtype) +
         shapeString(t.shape);
}

/// True if `s` ends with `suffix`, ignoring ASCII case.
bool endsWithNoCase(const std::string &s, const std::string &suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) !=
        std::tolower(static_cast<unsigned char>(suffix[i])))
      return false;
  return true;
}

/// Storage of state tensor `s` in a backend whose float type is `ft`.
DType storageType(const StateSpec &s, DType ft) {
  switch (s.dtype) {
  case DType::F32:
  case DType::F64: return ft;
  case DType::I64: return DType::I64;
  case DType::I32: break;
  }
  throw std::runtime_error("state tensor '" + s.name + "' has dtype I32; state must be F32 or I64");
}

/// Checks what the driver relies on in the backend (a programming error if violated).
void checkBackend(Backend &b) {
  DType ft = b.floatType();
  if (ft != DType::F32 && ft != DType::F64)
    throw std::runtime_error(std::string("backend float type is ") + dtypeName(ft) + ", not F32 or F64");
}

/// Checks the model's tensors have a leading batch axis of spec.batch. Throws DataError.
void checkSpec(const ModelSpec &spec) {
  if (spec.batch < 1) throw DataError("the model's batch size is " + std::to_string(spec.batch) + "; it must be at least 1");
  if (spec.numInputs > spec.inputs.size()) throw std::runtime_error("ModelSpec::numInputs exceeds the number of inputs");
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const TensorSpec &t = spec.inputs[i];
    if (t.shape.empty() || t.shape[0] != spec.batch)
      throw DataError("model " + describeEntry(spec, i) + " has no leading batch axis of size " +
                      std::to_string(spec.batch) + ", so it cannot be fed from data");
    if (t.dtype != DType::F32 && t.dtype != DType::I32)
      throw DataError("model " + describeEntry(spec, i) + ": inputs and targets must be f32 or i32");
    (void)sampleNumel(t.shape);
  }
  for (const TensorSpec &t : spec.outputs)
    if (t.shape.empty() || t.shape[0] != spec.batch)
      throw DataError("model output " + t.name + " " + shapeString(t.shape) + " has no leading batch axis of size " +
                      std::to_string(spec.batch));
}

/// Bytes of state tensor i as stored by the backend.
size_t stateBytes(const StateSpec &s, DType ft) {
  return static_cast<size_t>(numelOf(s.shape)) * dtypeSize(storageType(s, ft));
}

/// Shortest round-trip text of a value.
template <class T> size_t toChars(char *buf, size_t cap, T v) {
  auto r = std::to_chars(buf, buf + cap, v);
  return r.ec == std::errc() ? static_cast<size_t>(r.ptr - buf) : 0;
}

} // namespace

// ---------------------------------------------------------------------------------------
// Threads

namespace {
std::atomic<int> gThreads{0};
int defaultThreads() {
  unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : static_cast<int>(std::min<unsigned>(h, 1u << 16));
}
} // namespace

int threads() {
  int t = gThreads.load();
  return t > 0 ? t : defaultThreads();
}

void setThreads(int n) { gThreads.store(n < 1 ? 1 : n); }

// ---------------------------------------------------------------------------------------
// Random numbers

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

uint64_t streamSeed(uint64_t seed, std::string_view stream, uint64_t index) {
  uint64_t s = splitmix64(seed);
  s = splitmix64(s ^ fnv1a64(stream));
  return splitmix64(s ^ index);
}

double detLog(double x) {
  if (std::isnan(x) || x < 0) return std::numeric_limits<double>::quiet_NaN();
  if (x == 0) return -std::numeric_limits<double>::infinity();
  if (std::isinf(x)) return x;
  int e = 0;
  double m = std::frexp(x, &e); // x = m * 2^e, m in [0.5, 1); exact
  if (m < 0.70710678118654752440) {
    m *= 2; // exact
    --e;
  }
  // m in [1/sqrt(2), sqrt(2)): log m = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 + ...), |z| < 0.1716,
  // so 16 terms leave a truncation error below 1e-25.
  const double z = (m - 1) / (m + 1);
  const double z2 = z * z;
  double p = 1.0 / 31;
  for (int k = 29; k >= 1; k -= 2) p = p * z2 + 1.0 / k;
  const double lnm = 2 * z * p;
  // fdlibm's split of log(2): ln2Hi has trailing zero bits, so e * ln2Hi is exact.
  const double ln2Hi = 6.93147180369123816490e-01, ln2Lo = 1.90821492927058770002e-10;
  const double de = static_cast<double>(e);
  return de * ln2Hi + (de * ln2Lo + lnm);
}

uint64_t Rng::below(uint64_t n) {
  const uint64_t threshold = (0 - n) % n; // 2^64 mod n: values below it would bias r % n
  for (;;) {
    uint64_t r = next();
    if (r >= threshold) return r % n;
  }
}

double Rng::normal() {
  if (haveSpare_) {
    haveSpare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2 * uniform01() - 1;
    v = 2 * uniform01() - 1;
    s = u * u + v * v;
  } while (s >= 1 || s == 0);
  const double f = std::sqrt(-2 * detLog(s) / s);
  spare_ = v * f;
  haveSpare_ = true;
  return u * f;
}

void epochOrder(std::vector<int64_t> &perm, uint64_t seed, int64_t epoch, bool shuffle) {
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
  if (!shuffle || perm.size() < 2) return;
  Rng rng(streamSeed(seed, "shuffle", static_cast<uint64_t>(epoch)));
  for (size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);
}

// ---------------------------------------------------------------------------------------
// Flags

namespace {

int64_t parseIntValue(const std::string &flag, const std::string &v, int64_t lo, int64_t hi, const char *what) {
  int64_t out = 0;
  const char *b = v.data(), *e = v.data() + v.size();
  auto r = std::from_chars(b, e, out);
  if (v.empty() || r.ec == std::errc::invalid_argument || r.ptr != e)
    throw UsageError("option '" + flag + "' expects " + what + ", found " + quoted(v));
  if (r.ec == std::errc::result_out_of_range || out < lo || out > hi)
    throw UsageError("option '" + flag + "' expects " + what + ", found " + quoted(v) + " (out of range)");
  return out;
}

double parseDoubleValue(const std::string &flag, const std::string &v, bool allowZero, const char *what) {
  double out = 0;
  const char *b = v.data(), *e = v.data() + v.size();
  auto r = std::from_chars(b, e, out, std::chars_format::general);
  if (v.empty() || r.ec != std::errc() || r.ptr != e || !std::isfinite(out) || out < 0 || (!allowZero && out == 0))
    throw UsageError("option '" + flag + "' expects " + what + ", found " + quoted(v));
  return out;
}

} // namespace

DriverOptions parseArgs(const std::vector<std::string> &args) {
  DriverOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &a = args[i];
    if (a == "-h") {
      o.help = true;
      continue;
    }
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      if (!a.empty() && a[0] == '-') throw UsageError("unknown option " + quoted(a));
      throw UsageError("unexpected argument " + quoted(a) + " (options start with '--')");
    }
    std::string name = a, inlineValue;
    bool hasInline = false;
    if (size_t eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      inlineValue = a.substr(eq + 1);
      hasInline = true;
    }
    auto value = [&]() -> std::string {
      if (hasInline) return inlineValue;
      if (i + 1 >= args.size()) throw UsageError("option '" + name + "' needs a value");
      return args[++i];
    };
    auto path = [&]() -> std::string {
      std::string v = value();
      if (v.empty()) throw UsageError("option '" + name + "' needs a file name, found an empty value");
      return v;
    };
    auto flag = [&]() {
      if (hasInline) throw UsageError("option '" + name + "' takes no value, found " + quoted(a));
    };
    const int64_t big = std::numeric_limits<int64_t>::max();
    if (name == "--epochs") o.epochs = parseIntValue(name, value(), 0, big, "a non-negative integer");
    else if (name == "--lr") o.lr = parseDoubleValue(name, value(), true, "a non-negative number");
    else if (name == "--seed") o.seed = parseIntValue(name, value(), std::numeric_limits<int64_t>::min(), big, "an integer");
    else if (name == "--batch-limit") o.batchLimit = parseIntValue(name, value(), 0, big, "a non-negative integer");
    else if (name == "--data") o.data = path();
    else if (name == "--no-shuffle") { flag(); o.noShuffle = true; }
    else if (name == "--load") o.load = path();
    else if (name == "--save") o.save = path();
    else if (name == "--predict") { flag(); o.predict = true; }
    else if (name == "--out") o.out = path();
    else if (name == "--gradcheck") { flag(); o.gradcheck = true; }
    else if (name == "--gradcheck-tol") o.gradcheckTol = parseDoubleValue(name, value(), false, "a positive number");
    else if (name == "--threads") o.threads = static_cast<int>(parseIntValue(name, value(), 1, 1 << 16, "a positive integer"));
    else if (name == "--quiet") { flag(); o.quiet = true; }
    else if (name == "--timing") { flag(); o.timing = true; }
    else if (name == "--help") { flag(); o.help = true; }
    else if (name == "--resume") o.resume = path();
    else if (name == "--check-finite") { flag(); o.checkFinite = true; }
    else if (name == "--checkpoint-every") o.checkpointEvery = parseIntValue(name, value(), 1, big, "a positive integer");
    else if (name == "--interrupt-after-steps") o.interruptAfter = parseIntValue(name, value(), 1, big, "a positive integer");
    else throw UsageError("unknown option " + quoted(name));
  }
  if (o.help) return o;
  if (!o.out.empty() && !o.predict) throw UsageError("option '--out' needs '--predict'");
  if (o.predict && o.gradcheck) throw UsageError("options '--predict' and '--gradcheck' cannot be combined");
  if (o.gradcheck && !o.save.empty()) throw UsageError("options '--gradcheck' and '--save' cannot be combined");
  if (o.gradcheckTol && !o.gradcheck) throw UsageError("option '--gradcheck-tol' needs '--gradcheck'");
  if (!o.resume.empty() && !o.load.empty()) throw UsageError("options '--resume' and '--load' cannot be combined");
  if (!o.resume.empty() && (o.predict || o.gradcheck))
    throw UsageError(std::string("option '--resume' continues training; it cannot be combined with '") +
                     (o.predict ? "--predict" : "--gradcheck") + "' (use '--load')");
  if (o.checkpointEvery && o.save.empty()) throw UsageError("option '--checkpoint-every' needs '--save'");
  return o;
}

std::string usageText(const std::string &exe, const ModelSpec &spec) {
  const TrainSpec &t = spec.train;
  std::string data = t.dataKind.empty() ? std::string("none") : t.dataKind + " " + t.dataPath;
  std::string s;
  s += "usage: " + exe + " [options]\n";
  s += "Trains model " + spec.name + " (batch " + std::to_string(spec.batch) + ", data: " + data + ").\n\n";
  s += "  --epochs N          number of epochs (default " + std::to_string(t.epochs) + ")\n";
  s += "  --lr X              learning rate (default " + format("%g", t.lr) + ")\n";
  s += "  --seed N            seed of initialisation and shuffling (default " + std::to_string(t.seed) + ")\n";
  s += "  --batch-limit N     stop after N training steps in total\n";
  s += "  --data PATH         data: a .safetensors file with a tensor per input and target\n"
       "                      (leading axis N), or a .csv file for a windows data source\n";
  s += "  --no-shuffle        take batches in file order (default: shuffled with the seed)\n";
  s += "  --load CKPT         read parameters and buffers (.safetensors) before running\n";
  s += "  --save CKPT         write parameters, buffers and optimizer state (.safetensors)\n";
  s += "  --predict           inference on the data; the outputs as CSV on stdout\n";
  s += "  --out FILE          with --predict: write the outputs to FILE (.safetensors, else CSV)\n";
  s += "  --gradcheck         compare every parameter's gradient with finite differences\n";
  s += "  --gradcheck-tol X   gradcheck tolerance (default 1e-6 in double, 1e-2 in float)\n";
  s += "  --threads N         worker threads (default: all cores, " + std::to_string(defaultThreads()) + ")\n";
  s += "  --timing            at the end, on stderr: time to the first step, ms per step\n";
  s += "  --resume CKPT       continue the run that wrote CKPT (--save, --checkpoint-every or an\n"
       "                      interruption) exactly where it stopped; --epochs counts from its start\n";
  s += "  --checkpoint-every N\n"
       "                      with --save: also write a resumable checkpoint every N steps\n";
  s += "  --check-finite      stop at the first NaN or Inf of any step (always on for the first " +
       std::to_string(kAlwaysCheckedSteps) + ")\n";
  s += "  --quiet             no progress bar; one line per epoch: epoch E loss L [val_loss V]\n";
  s += "  --help              show this help\n";
  s += "Options also take the form --option=value. Ctrl-C (SIGINT) or SIGTERM stops training between\n"
       "steps and saves a resumable checkpoint to --save (or " + interruptedCheckpointPath(spec) + ").\n";
  return s;
}

// ---------------------------------------------------------------------------------------
// State

namespace {

/// Writes value v (a double) as element k of storage `p` of type `t`.
void storeValue(void *p, DType t, int64_t k, double v) {
  switch (t) {
  case DType::F32: static_cast<float *>(p)[k] = static_cast<float>(v); break;
  case DType::F64: static_cast<double *>(p)[k] = v; break;
  case DType::I64: {
    double f = std::floor(v);
    int64_t i = 0;
    if (f >= 9.2233720368547758e18) i = std::numeric_limits<int64_t>::max();
    else if (f < -9.2233720368547758e18 || std::isnan(f)) i = std::numeric_limits<int64_t>::min();
    else i = static_cast<int64_t>(f);
    static_cast<int64_t *>(p)[k] = i;
    break;
  }
  case DType::I32: static_cast<int32_t *>(p)[k] = static_cast<int32_t>(v); break;
  }
}

} // namespace

void initState(const ModelSpec &spec, Backend &backend, uint64_t seed) {
  checkBackend(backend);
  const DType ft = backend.floatType();
  for (size_t i = 0; i < spec.state.size(); ++i) {
    const StateSpec &s = spec.state[i];
    const DType st = storageType(s, ft);
    const int64_t n = numelOf(s.shape);
    void *p = backend.stateData(i);
    if (n > 0 && !p) throw std::runtime_error("backend has no storage for state tensor '" + s.name + "'");
    Rng rng(streamSeed(seed, "init:" + s.name));
    for (int64_t k = 0; k < n; ++k) {
      double v = 0;
      switch (s.init) {
      case StateSpec::Zeros: v = 0; break;
      case StateSpec::Ones: v = 1; break;
      case StateSpec::Full: v = s.a; break;
      case StateSpec::Uniform: v = rng.uniform(s.a, s.b); break;
      case StateSpec::Normal: v = s.a + s.b * rng.normal(); break;
      }
      storeValue(p, st, k, v);
    }
  }
}

namespace {

/// loadCheckpoint; with `requireAll` optimizer state must be present too. Returns the file's
/// tensors (their contents copied into the backend) and, in `meta`, its metadata.
std::map<std::string, HostTensor> loadCheckpointImpl(const std::string &path, const ModelSpec &spec, Backend &backend,
                                                     bool requireAll, SafetensorsMetadata &meta) {
  checkBackend(backend);
  const DType ft = backend.floatType();
  std::map<std::string, HostTensor> file = readSafetensors(path, &meta);
  {
    std::vector<std::pair<std::string, const HostTensor *>> all;
    for (const auto &kv : file) all.emplace_back(kv.first, &kv.second);
    verifyChecksum(path, meta, all);
  }
  // Check everything first, so that a bad checkpoint leaves the state as it was.
  std::vector<const HostTensor *> found(spec.state.size(), nullptr);
  for (size_t i = 0; i < spec.state.size(); ++i) {
    const StateSpec &s = spec.state[i];
    const bool isFloat = storageType(s, ft) != DType::I64;
    const char *kind = s.kind == StateSpec::Param ? "parameter" : s.kind == StateSpec::Buffer ? "buffer" : "optimizer state";
    std::string want = std::string(isFloat ? "F32" : "I64") + shapeString(s.shape);
    auto it = file.find(s.name);
    if (it == file.end()) {
      if (s.kind == StateSpec::OptState && !requireAll) continue;
      if (requireAll)
        throw DataError(path + ": missing tensor " + quoted(s.name) + " (" + kind + ", expected " + want +
                        "), which resuming needs");
      throw DataError(path + ": missing tensor " + quoted(s.name) + " (" + kind + ", expected " + want + ")");
    }
    const HostTensor &t = it->second;
    const bool dtypeOk = isFloat ? (t.dtype == DType::F32 || t.dtype == DType::F64)
                                 : (t.dtype == DType::I64 || t.dtype == DType::I32);
    if (!dtypeOk || t.shape != s.shape)
      throw DataError(path + ": tensor " + quoted(s.name) + " (" + kind + "): expected " + want +
                      (isFloat ? " (or F64)" : " (or I32)") + ", found " + t.typeString());
    found[i] = &t;
  }
  for (size_t i = 0; i < spec.state.size(); ++i) {
    if (!found[i]) continue;
    const HostTensor &t = *found[i];
    const DType st = storageType(spec.state[i], ft);
    const int64_t n = t.numel();
    void *p = backend.stateData(i);
    if (n > 0 && !p) throw std::runtime_error("backend has no storage for state tensor '" + spec.state[i].name + "'");
    if (t.dtype == st) {
      if (n > 0) std::memcpy(p, t.bytes.data(), t.bytes.size());
      continue;
    }
    for (int64_t k = 0; k < n; ++k) {
      switch (t.dtype) {
      case DType::F32: storeValue(p, st, k, t.f32()[k]); break;
      case DType::F64: storeValue(p, st, k, t.f64()[k]); break;
      case DType::I32: static_cast<int64_t *>(p)[k] = t.i32()[k]; break;
      case DType::I64: static_cast<int64_t *>(p)[k] = t.i64()[k]; break;
      }
    }
  }
  return file;
}

} // namespace

void loadCheckpoint(const std::string &path, const ModelSpec &spec, Backend &backend) {
  SafetensorsMetadata meta;
  (void)loadCheckpointImpl(path, spec, backend, false, meta);
}

ResumeInput loadResumeCheckpoint(const std::string &path, const ModelSpec &spec, Backend &backend) {
  ResumeInput in;
  in.path = path;
  SafetensorsMetadata meta;
  // Read and check the resume information before the state changes.
  std::map<std::string, HostTensor> file = readSafetensors(path, &meta);
  if (!decodeResume(meta, path, in.state))
    throw DataError(path + ": the checkpoint has no resume information (it was not written by a training run of "
                    "this version, or early stopping had restored its best state); use --load to start from it");
  if (in.state.model != spec.name)
    throw DataError(path + ": the checkpoint is from model " + quoted(in.state.model) + ", this is model " +
                    quoted(spec.name));
  file = loadCheckpointImpl(path, spec, backend, true, meta);
  if (in.state.hasBest) {
    const std::string prefix = kBestPrefix;
    for (auto &kv : file)
      if (kv.first.compare(0, prefix.size(), prefix) == 0) in.best[kv.first.substr(prefix.size())] = std::move(kv.second);
  }
  return in;
}

std::string interruptedCheckpointPath(const ModelSpec &spec) {
  std::string name = spec.name.empty() ? std::string("model") : spec.name;
  for (char &c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) c = '_';
  return name + ".interrupted.safetensors";
}

void saveCheckpoint(const std::string &path, const ModelSpec &spec, Backend &backend, const ResumeState *resume,
                    const std::vector<std::pair<std::string, const HostTensor *>> &extra) {
  checkBackend(backend);
  const DType ft = backend.floatType();
  if (auto bad = firstNonFiniteState(spec, backend, ~0u))
    throw DataError(path + ": not written: " + bad->tensor + (bad->where.empty() ? "" : " (" + bad->where + ")") +
                    " element " + (bad->index.empty() ? "" : bad->index + " ") + "is " + nonFiniteText(bad->value) +
                    " (the run diverged; use --check-finite to stop at the step "
                    "where it first appears); the file keeps its previous contents");
  removeStaleTemporaries(path);
  std::vector<HostTensor> tensors;
  tensors.reserve(spec.state.size());
  for (size_t i = 0; i < spec.state.size(); ++i) {
    const StateSpec &s = spec.state[i];
    tensors.emplace_back(storageType(s, ft), s.shape);
    HostTensor &t = tensors.back();
    if (!t.bytes.empty()) std::memcpy(t.bytes.data(), backend.stateData(i), t.bytes.size());
  }
  std::vector<std::pair<std::string, const HostTensor *>> named;
  for (size_t i = 0; i < spec.state.size(); ++i) named.emplace_back(spec.state[i].name, &tensors[i]);
  for (const auto &e : extra) named.push_back(e);
  SafetensorsMetadata meta{{"format", "pt"}};
  if (resume) encodeResume(*resume, meta);
  char sum[32];
  std::snprintf(sum, sizeof sum, "%016llx", static_cast<unsigned long long>(checksumTensors(named)));
  meta[kChecksumKey] = sum;
  writeSafetensors(path, named, meta);
}

// ---------------------------------------------------------------------------------------
// Data

namespace {

/// Converts data tensor `t` (read from `file`, called `what` in messages) to spec entry i:
/// checks the per-sample shape and dtype; converts F64 -> F32 and I64 -> I32; with
/// `allowReshape` accepts any per-sample shape with the same number of elements.
HostTensor adopt(const ModelSpec &spec, size_t i, HostTensor t, const std::string &file, const std::string &what,
                 bool allowReshape) {
  const TensorSpec &ts = spec.inputs[i];
  std::vector<int64_t> sample(ts.shape.begin() + 1, ts.shape.end());
  auto fail = [&](const std::string &extra) {
    std::string want = std::string(dtypeName(ts.dtype)) + "[*";
    for (int64_t d : sample) want += ", " + std::to_string(d);
    throw DataError(file + ": " + what + ": expected " + want + "] (" + describeEntry(spec, i) + "), found " +
                    t.typeString() + extra);
  };
  const bool dtypeOk = t.dtype == ts.dtype || (ts.dtype == DType::F32 && t.dtype == DType::F64) ||
                       (ts.dtype == DType::I32 && t.dtype == DType::I64);
  if (!dtypeOk || t.shape.empty()) fail("");
  std::vector<int64_t> have(t.shape.begin() + 1, t.shape.end());
  if (have != sample) {
    int64_t a = 0, b = 0;
    if (!(allowReshape && checkedNumel(have, a) && checkedNumel(sample, b) && a == b)) fail("");
  }
  std::vector<int64_t> shape = sample;
  shape.insert(shape.begin(), t.shape[0]);
  if (t.dtype == ts.dtype) {
    t.shape = shape;
    return t;
  }
  HostTensor out(ts.dtype, shape);
  const int64_t n = out.numel();
  if (ts.dtype == DType::F32) {
    const double *src = t.f64();
    float *dst = out.f32();
    for (int64_t k = 0; k < n; ++k) {
      dst[k] = static_cast<float>(src[k]);
      if (std::isfinite(src[k]) && !std::isfinite(dst[k]))
        throw DataError(file + ": " + what + ": element " + std::to_string(k) + " (" + format("%g", src[k]) +
                        ") is outside the range of f32");
    }
  } else {
    const int64_t *src = t.i64();
    int32_t *dst = out.i32();
    for (int64_t k = 0; k < n; ++k) {
      if (src[k] < INT32_MIN || src[k] > INT32_MAX)
        throw DataError(file + ": " + what + ": element " + std::to_string(k) + " (" + std::to_string(src[k]) +
                        ") is outside the range of i32");
      dst[k] = static_cast<int32_t>(src[k]);
    }
  }
  return out;
}

/// For windows and idx: the model must have one input and at most one target.
void requireOneInput(const ModelSpec &spec, const std::string &file, const char *source) {
  if (spec.numInputs != 1 || spec.inputs.size() > 2)
    throw DataError(file + ": a " + source + " data source feeds one input and one target, but the model has " +
                    std::to_string(spec.numInputs) + " input(s) and " +
                    std::to_string(spec.inputs.size() - spec.numInputs) + " target(s)");
}

} // namespace

bool findClassification(const ModelSpec &spec, size_t &output, size_t &target) {
  bool haveOut = false, haveTarget = false;
  for (size_t i = 0; i < spec.outputs.size() && !haveOut; ++i) {
    const TensorSpec &t = spec.outputs[i];
    if (t.shape.size() == 2 && t.shape[0] == spec.batch && t.shape[1] > 1) {
      output = i;
      haveOut = true;
    }
  }
  for (size_t i = spec.numInputs; i < spec.inputs.size() && !haveTarget; ++i) {
    const TensorSpec &t = spec.inputs[i];
    if (t.dtype == DType::I32 && t.shape.size() == 1 && t.shape[0] == spec.batch) {
      target = i;
      haveTarget = true;
    }
  }
  return haveOut && haveTarget;
}

DriverData loadDriverData(const ModelSpec &spec, const std::string &dataPath, bool targetsOptional) {
  checkSpec(spec);
  const TrainSpec &tr = spec.train;
  std::string kind, path = dataPath;
  if (!dataPath.empty()) {
    if (endsWithNoCase(dataPath, ".safetensors")) kind = "tensors";
    else if (endsWithNoCase(dataPath, ".csv")) kind = "windows";
    else
      throw DataError(dataPath + ": --data expects a .safetensors file, or a .csv file for a windows data source");
  } else {
    kind = tr.dataKind;
    path = tr.dataPath;
    if (kind.empty())
      throw DataError("model " + spec.name + " has no data source (its train block sets no `data`); pass --data PATH");
  }

  DriverData d;
  d.source = path;
  d.tensors.resize(spec.inputs.size());
  d.present.assign(spec.inputs.size(), false);
  const size_t target = spec.numInputs; // the first target, for windows and idx

  if (kind == "tensors") {
    std::map<std::string, HostTensor> all = readSafetensors(path);
    std::string firstName;
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      const std::string &name = spec.inputs[i].name;
      auto it = all.find(name);
      if (it == all.end()) {
        if (targetsOptional && i >= spec.numInputs) continue;
        std::string have;
        for (const auto &kv : all) have += (have.empty() ? "" : ", ") + quoted(kv.first);
        throw DataError(path + ": no tensor named " + quoted(name) + " for " + describeEntry(spec, i) + "; " +
                        (all.empty() ? std::string("the file has no tensors") : "the file has " + have));
      }
      d.tensors[i] = adopt(spec, i, std::move(it->second), path, "tensor " + quoted(name), false);
      d.present[i] = true;
      const int64_t n = d.tensors[i].shape[0];
      if (firstName.empty()) {
        firstName = name;
        d.n = n;
      } else if (n != d.n) {
        throw DataError(path + ": tensor " + quoted(name) + " has " + std::to_string(n) + " samples but tensor " +
                        quoted(firstName) + " has " + std::to_string(d.n) + " (the leading axes must agree)");
      }
    }
    if (firstName.empty()) throw DataError(path + ": the model has no inputs to read");
    d.trainCount = d.n;
  } else if (kind == "windows") {
    requireOneInput(spec, path, "windows");
    std::string column = "value", scale = "minmax";
    int64_t length = 0, horizon = 1;
    double split = 0.8;
    if (tr.dataKind == "windows") {
      column = tr.column;
      scale = tr.scale;
      length = tr.length;
      horizon = tr.horizon;
      split = tr.split;
    } else {
      const TensorSpec &x = spec.inputs[0];
      if (x.shape.size() != 3 || x.shape[2] != 1)
        throw DataError(path + ": a CSV file is read as windows, which feed an input f32[B, T, 1]; the model has " +
                        describeEntry(spec, 0));
      length = x.shape[1];
    }
    Dataset ds = loadWindows(path, column, length, horizon, split, scale);
    d.tensors[0] = adopt(spec, 0, std::move(ds.x), path, "windows of column " + quoted(column), false);
    d.present[0] = true;
    if (target < spec.inputs.size()) {
      d.tensors[target] = adopt(spec, target, std::move(ds.y), path, "window targets", false);
      d.present[target] = true;
    }
    d.n = ds.n;
    d.trainCount = ds.trainCount;
  } else if (kind == "idx") {
    requireOneInput(spec, path, "idx");
    size_t out = 0, tgt = 0;
    int64_t classes = 256; // any byte label
    if (findClassification(spec, out, tgt)) classes = spec.outputs[out].shape[1];
    Dataset ds = loadIdx(path, tr.dataLabels, classes);
    d.tensors[0] = adopt(spec, 0, std::move(ds.x), path, "images", true);
    d.present[0] = true;
    if (target < spec.inputs.size()) {
      d.tensors[target] = adopt(spec, target, std::move(ds.y), tr.dataLabels, "labels", false);
      d.present[target] = true;
    }
    d.n = ds.n;
    d.trainCount = ds.trainCount;
  } else {
    throw DataError("model " + spec.name + ": unknown data source kind " + quoted(kind));
  }
  if (d.n <= 0) throw DataError(path + ": the data has no samples");
  // A held-out validation source: its samples follow the training ones.
  if (dataPath.empty() && !tr.valKind.empty() && d.validationCount() == 0) {
    ModelSpec vs = spec;
    vs.train.dataKind = tr.valKind;
    vs.train.dataPath = tr.valPath;
    vs.train.dataLabels = tr.valLabels;
    vs.train.valKind.clear();
    DriverData v = loadDriverData(vs, "", targetsOptional);
    for (size_t i = 0; i < d.tensors.size(); ++i) {
      if (!d.present[i]) continue;
      if (!v.present[i]) throw DataError(v.source + ": the validation data lacks " + describeEntry(spec, i));
      d.tensors[i].bytes.insert(d.tensors[i].bytes.end(), v.tensors[i].bytes.begin(), v.tensors[i].bytes.end());
      d.tensors[i].shape[0] += v.n;
    }
    d.n += v.n;
  }
  return d;
}

Batcher::Batcher(const ModelSpec &spec, const DriverData &data) : data_(data), batch_(spec.batch) {
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const TensorSpec &t = spec.inputs[i];
    sampleBytes_.push_back(static_cast<size_t>(sampleNumel(t.shape)) * dtypeSize(t.dtype));
    bufs_.emplace_back(sampleBytes_.back() * static_cast<size_t>(batch_), 0);
    b_.data.push_back(bufs_.back().data());
  }
}

const Batch &Batcher::gather(const int64_t *idx, int64_t count) {
  for (size_t e = 0; e < bufs_.size(); ++e) {
    if (!data_.present[e] || sampleBytes_[e] == 0) continue;
    const unsigned char *src = data_.tensors[e].bytes.data();
    unsigned char *dst = bufs_[e].data();
    const size_t sb = sampleBytes_[e];
    for (int64_t r = 0; r < batch_; ++r) {
      const int64_t s = idx[r < count ? r : count - 1];
      std::memcpy(dst + static_cast<size_t>(r) * sb, src + static_cast<size_t>(s) * sb, sb);
    }
  }
  return b_;
}

const Batch &Batcher::fillWith(int64_t i) { return gather(&i, 1); }

// ---------------------------------------------------------------------------------------
// Running

namespace {

/// "1h02m", "3m07s", "12s".
void formatDuration(char *buf, size_t cap, double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) {
    std::snprintf(buf, cap, "?");
    return;
  }
  long long s = static_cast<long long>(seconds + 0.5);
  if (s >= 3600) std::snprintf(buf, cap, "%lldh%02lldm", s / 3600, (s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, cap, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(buf, cap, "%llds", s);
}

/// The progress bar on stderr (only on a terminal, and not with --quiet): redrawn at most
/// ten times a second; cleared before anything is printed and when destroyed.
class Progress {
public:
  Progress(bool enabled, int64_t totalSteps, int64_t batch)
      : enabled_(enabled), total_(totalSteps), batch_(batch), start_(Clock::now()) {}
  ~Progress() { clear(); }
  Progress(const Progress &) = delete;
  Progress &operator=(const Progress &) = delete;

  void update(int64_t step, int64_t epoch, int64_t epochs, double loss) {
    if (!enabled_) return;
    const Clock::time_point now = Clock::now();
    if (shown_ && step < total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(step * batch_) / elapsed : 0;
    char eta[32];
    formatDuration(eta, sizeof eta, step > 0 ? elapsed * static_cast<double>(total_ - step) / static_cast<double>(step) : -1);
    constexpr int width = 24;
    char bar[width + 1];
    const int64_t filled = total_ > 0 ? std::min<int64_t>(width, step * width / total_) : width;
    for (int i = 0; i < width; ++i) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[width] = 0;
    std::fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] %lld/%lld loss %.5g %.0f samples/s ETA %s",
                 static_cast<long long>(epoch), static_cast<long long>(epochs), bar, static_cast<long long>(step),
                 static_cast<long long>(total_), loss, rate, eta);
    std::fflush(stderr);
    shown_ = true;
  }

  void clear() {
    if (!shown_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    shown_ = false;
  }

private:
  bool enabled_;
  int64_t total_, batch_;
  Clock::time_point start_, last_;
  bool shown_ = false;
};

/// Copies of some state tensors of a backend: early stopping's best params and buffers,
/// and --gradcheck's check that nothing but the perturbed parameter changes.
class StateSnapshot {
public:
  /// Which tensors a snapshot holds.
  enum Which { ParamsAndBuffers, ParamsOnly, AllButParams, All };
  StateSnapshot(const ModelSpec &spec, Backend &be, Which which) : spec_(spec), be_(be) {
    const DType ft = be.floatType();
    for (size_t i = 0; i < spec.state.size(); ++i) {
      const StateSpec::Kind k = spec.state[i].kind;
      const bool in = which == All                ? true
                      : which == ParamsAndBuffers ? k != StateSpec::OptState
                      : which == ParamsOnly       ? k == StateSpec::Param
                                                  : k != StateSpec::Param;
      if (!in) continue;
      idx_.push_back(i);
      bytes_.emplace_back(stateBytes(spec.state[i], ft), 0);
    }
  }
  void take() {
    for (size_t k = 0; k < idx_.size(); ++k)
      if (!bytes_[k].empty()) std::memcpy(bytes_[k].data(), be_.stateData(idx_[k]), bytes_[k].size());
  }
  void restore() {
    for (size_t k = 0; k < idx_.size(); ++k)
      if (!bytes_[k].empty()) std::memcpy(be_.stateData(idx_[k]), bytes_[k].data(), bytes_[k].size());
  }
  /// The snapshot as tensors (storage dtype) named like the state, for a checkpoint.
  std::vector<HostTensor> tensors() const {
    std::vector<HostTensor> out;
    const DType ft = be_.floatType();
    for (size_t k = 0; k < idx_.size(); ++k) {
      const StateSpec &s = spec_.state[idx_[k]];
      out.emplace_back(storageType(s, ft), s.shape);
      if (!bytes_[k].empty()) std::memcpy(out.back().bytes.data(), bytes_[k].data(), bytes_[k].size());
    }
    return out;
  }
  /// Name of the k-th tensor of the snapshot.
  const std::string &name(size_t k) const { return spec_.state[idx_[k]].name; }
  /// Sets the snapshot from tensors keyed by state name (a resumed run's best state).
  /// Throws DataError naming `file` if one is missing or of the wrong size.
  void set(const std::map<std::string, HostTensor> &from, const std::string &file) {
    for (size_t k = 0; k < idx_.size(); ++k) {
      auto it = from.find(name(k));
      if (it == from.end() || it->second.bytes.size() != bytes_[k].size() ||
          it->second.dtype != storageType(spec_.state[idx_[k]], be_.floatType()))
        throw DataError(file + ": early stopping's best state lacks a matching tensor " + quoted(kBestPrefix + name(k)));
      if (!bytes_[k].empty()) std::memcpy(bytes_[k].data(), it->second.bytes.data(), bytes_[k].size());
    }
  }
  /// Name of the first tensor whose contents differ from the snapshot ("" if none).
  std::string firstDifference() {
    for (size_t k = 0; k < idx_.size(); ++k)
      if (!bytes_[k].empty() && std::memcmp(bytes_[k].data(), be_.stateData(idx_[k]), bytes_[k].size()) != 0)
        return spec_.state[idx_[k]].name;
    return "";
  }

private:
  const ModelSpec &spec_;
  Backend &be_;
  std::vector<size_t> idx_;
  std::vector<std::vector<unsigned char>> bytes_;
};

/// Output buffers for backend.predict, allocated once.
struct OutputBuffers {
  std::vector<int64_t> perSample; ///< Elements of one sample of each output.
  std::vector<std::vector<unsigned char>> bufs;
  std::vector<void *> ptrs;
  size_t elemSize = 4;
  OutputBuffers(const ModelSpec &spec, DType ft) : elemSize(dtypeSize(ft)) {
    for (const TensorSpec &t : spec.outputs) {
      perSample.push_back(sampleNumel(t.shape));
      bufs.emplace_back(static_cast<size_t>(perSample.back() * spec.batch) * elemSize, 0);
      ptrs.push_back(bufs.back().data());
    }
  }
  double value(size_t o, int64_t k) const {
    return elemSize == 4 ? static_cast<const float *>(ptrs[o])[k] : static_cast<const double *>(ptrs[o])[k];
  }
};

/// Prints one line to stdout (clearing the progress bar first) and flushes it.
void printLine(Progress *progress, const std::string &line) {
  if (progress) progress->clear();
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

/// The training run: epochs, validation, early stopping.
class Trainer {
public:
  Trainer(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &o, uint64_t seed,
          const std::string &exe, const ResumeInput *resume)
      : spec_(spec), be_(be), data_(data), o_(o), seed_(seed), exe_(exe), resume_(resume), batcher_(spec, data),
        outs_(spec, be.floatType()) {}

  int run() {
    const int64_t B = spec_.batch;
    if (data_.trainCount < B)
      throw DataError(data_.source + ": the training split has " + std::to_string(data_.trainCount) +
                      " samples, fewer than the batch size " + std::to_string(B));
    const int64_t epochs = o_.epochs.value_or(spec_.train.epochs);
    const int64_t perEpoch = data_.trainCount / B;
    const int64_t limit = o_.batchLimit.value_or(std::numeric_limits<int64_t>::max());
    const int64_t total = std::min(limit, epochs > std::numeric_limits<int64_t>::max() / perEpoch
                                              ? std::numeric_limits<int64_t>::max()
                                              : epochs * perEpoch);
    const bool hasVal = data_.validationCount() > 0;
    const int64_t every = spec_.train.validateEvery;
    size_t accOut = 0, accTarget = 0;
    const bool acc = hasVal && !o_.quiet && findClassification(spec_, accOut, accTarget) &&
                     data_.present[accTarget];
    const bool early = spec_.train.earlyStopping && hasVal;
    if (spec_.train.earlyStopping && !hasVal) {
      std::fflush(stdout);
      std::fprintf(stderr, "%s: warning: early stopping needs a validation split and %s has none; it is off\n",
                   exe_.c_str(), data_.source.c_str());
    }

    std::vector<int64_t> perm(static_cast<size_t>(data_.trainCount));
    valIdx_.resize(static_cast<size_t>(data_.validationCount()));
    for (size_t k = 0; k < valIdx_.size(); ++k) valIdx_[k] = data_.trainCount + static_cast<int64_t>(k);
    if (early) best_.emplace(spec_, be_, StateSnapshot::ParamsAndBuffers);

    // The run's position: what a resumable checkpoint records.
    st_ = ResumeState{};
    st_.model = spec_.name;
    st_.seed = seed_;
    st_.shuffle = !o_.noShuffle;
    st_.lr = o_.lr.value_or(spec_.train.lr);
    st_.batch = B;
    st_.trainCount = data_.trainCount;
    st_.bestVal = std::numeric_limits<double>::infinity();
    if (resume_) startFrom(*resume_, perEpoch, early);
    const int64_t startStep = st_.step;
    lastSaveStep_ = st_.step;

    Progress progress(!o_.quiet && isatty(STDERR_FILENO), total - startStep, B);
    InterruptGuard interrupts;

    int64_t stoppedAt = 0;
    // --timing: steps after the first kWarmupSteps of this run are timed (validation excluded).
    constexpr int64_t kWarmupSteps = 3;
    Clock::time_point firstStepEnd;
    int64_t timedSteps = 0;
    double timedSeconds = 0;
    bool stop = false;
    std::optional<StateSnapshot> before; // the state before a checked step
    // One evaluation of early stopping; true when patience is exhausted.
    auto observe = [&](double v, int64_t epoch) {
      if (v < st_.bestVal - spec_.train.delta) {
        st_.bestVal = v;
        st_.bestEpoch = epoch;
        st_.bad = 0;
        best_->take();
        return false;
      }
      return ++st_.bad >= spec_.train.patience;
    };

    for (int64_t epoch = st_.epoch; epoch <= epochs && st_.step < total && !stop; ++epoch) {
      const Clock::time_point t0 = Clock::now();
      epochOrder(perm, seed_, epoch - 1, st_.shuffle);
      const uint64_t orderHash = hashOrder(perm);
      if (epoch == st_.epoch && st_.epochStep > 0) {
        if (orderHash != st_.orderHash)
          throw DataError(resume_->path + ": the sample order of epoch " + std::to_string(epoch) +
                          " differs from the one the checkpoint's run used (different data?)");
      } else {
        st_.epochStep = 0;
        st_.epochLossSum = 0;
      }
      st_.epoch = epoch;
      st_.orderHash = orderHash;
      for (int64_t s = st_.epochStep; s < perEpoch && st_.step < total; ++s) {
        const Batch &batch = batcher_.gather(perm.data() + s * B, B);
        const bool check = o_.checkFinite || st_.step - startStep < kAlwaysCheckedSteps;
        if (check) {
          if (!before) before.emplace(spec_, be_, StateSnapshot::All);
          before->take();
        }
        const Clock::time_point s0 = Clock::now();
        const double loss = be_.trainStep(batch);
        const Clock::time_point s1 = Clock::now();
        if (check) {
          std::optional<NonFiniteValue> bad;
          if (!std::isfinite(loss) || (bad = firstNonFiniteState(spec_, be_, ~0u)))
            return nonFinite(*before, batch, loss, bad, perEpoch, progress);
        }
        if (st_.step == startStep) firstStepEnd = s1;
        else if (st_.step - startStep >= kWarmupSteps) {
          timedSteps += 1;
          timedSeconds += std::chrono::duration<double>(s1 - s0).count();
        }
        st_.epochLossSum += loss;
        ++st_.epochStep;
        ++st_.step;
        progress.update(st_.step - startStep, epoch, epochs, st_.epochLossSum / static_cast<double>(st_.epochStep));
        if (o_.interruptAfter && st_.step == *o_.interruptAfter) std::raise(SIGINT);
        if (hasVal && every > 0 && st_.step % every == 0) {
          st_.lastEval = validationLoss();
          st_.lastEvalStep = st_.step;
          printLine(&progress, "step " + std::to_string(st_.step) + " val_loss " + g6(st_.lastEval));
          if (early && observe(st_.lastEval, epoch)) {
            stop = true;
            break;
          }
        }
        if (st_.epochStep < perEpoch && st_.step < total)
          if (int rc = safePoint(progress, perEpoch); rc >= 0) return rc;
      }
      const double trainLoss = st_.epochLossSum / static_cast<double>(st_.epochStep);
      std::string line = "epoch " + std::to_string(epoch) + " loss " + g6(trainLoss);
      if (hasVal) {
        const bool fresh = st_.lastEvalStep != st_.step;
        const double v = fresh ? validationLoss() : st_.lastEval;
        st_.lastEval = v;
        st_.lastEvalStep = st_.step;
        if (early && fresh && !stop) stop = observe(v, epoch);
        line += " val_loss " + g6(v);
        if (acc) line += format(" val_acc %.4f", accuracy(accOut, accTarget));
        st_.finalVal = v;
      }
      if (!o_.quiet)
        line += format(" time %.2fs", std::chrono::duration<double>(Clock::now() - t0).count());
      printLine(&progress, line);
      st_.finalLoss = trainLoss;
      st_.ran = true;
      if (stop) stoppedAt = epoch;
      if (st_.epochStep == perEpoch) { // the epoch is complete: the position is the next one's start
        st_.epoch = epoch + 1;
        st_.epochStep = 0;
        st_.epochLossSum = 0;
        st_.orderHash = 0;
      }
      if (!stop && epoch < epochs && st_.step < total)
        if (int rc = safePoint(progress, perEpoch); rc >= 0) return rc;
    }
    progress.clear();
    if (o_.timing && st_.step > startStep) {
      std::fflush(stdout);
      std::fprintf(stderr, "timing first_step_s %.6f steps %lld ms_per_step %.6f\n",
                   std::chrono::duration<double>(firstStepEnd - gProcessStart).count(),
                   static_cast<long long>(timedSteps),
                   timedSteps > 0 ? 1000.0 * timedSeconds / static_cast<double>(timedSteps) : NAN);
    }
    bool restored = false;
    if (early && st_.bestEpoch > 0) {
      best_->restore();
      st_.finalVal = st_.bestVal;
      restored = true;
    }
    if (stop)
      printLine(nullptr, "early stopping at epoch " + std::to_string(stoppedAt) +
                             (st_.bestEpoch > 0 ? " (best val_loss " + g6(st_.bestVal) + " at epoch " +
                                                      std::to_string(st_.bestEpoch) + ")"
                                                : std::string(" (val_loss never improved)")));
    if (st_.ran) {
      printLine(nullptr, "final loss " + g6(st_.finalLoss));
      if (hasVal) printLine(nullptr, "final val_loss " + g6(st_.finalVal));
    }
    // The best state early stopping restored is not where the run stands: not resumable.
    if (!o_.save.empty()) saveState(o_.save, !restored);
    return 0;
  }

private:
  /// Takes over the position of a resumed run, checking it fits this model and data.
  void startFrom(const ResumeInput &in, int64_t perEpoch, bool early) {
    const ResumeState &r = in.state;
    if (r.batch != spec_.batch || r.trainCount != data_.trainCount)
      throw DataError(in.path + ": the checkpoint's run had " + std::to_string(r.trainCount) +
                      " training samples in batches of " + std::to_string(r.batch) + "; this one has " +
                      std::to_string(data_.trainCount) + " in batches of " + std::to_string(spec_.batch) +
                      ", so its position cannot be continued (use --load to start a new run from it)");
    if (r.epochStep >= perEpoch)
      throw DataError(in.path + ": the checkpoint's position (step " + std::to_string(r.epochStep) + " of epoch " +
                      std::to_string(r.epoch) + ") is past the end of an epoch of " + std::to_string(perEpoch) +
                      " steps");
    st_.dataHash = hashData(data_);
    haveDataHash_ = true;
    if (st_.dataHash != r.dataHash) {
      std::fflush(stdout);
      std::fprintf(stderr, "%s: warning: the training data differ from those of the run that wrote %s; continuing "
                   "from its position anyway\n", exe_.c_str(), in.path.c_str());
    }
    st_.epoch = r.epoch;
    st_.epochStep = r.epochStep;
    st_.step = r.step;
    st_.orderHash = r.orderHash;
    st_.epochLossSum = r.epochLossSum;
    st_.ran = r.ran;
    st_.finalLoss = r.finalLoss;
    st_.finalVal = r.finalVal;
    st_.lastEval = r.lastEval;
    st_.lastEvalStep = r.lastEvalStep;
    if (early) {
      st_.bestVal = r.bestVal;
      st_.bestEpoch = r.bestEpoch;
      st_.bad = r.bad;
      if (r.bestEpoch > 0) {
        if (!r.hasBest) throw DataError(in.path + ": the checkpoint lacks early stopping's best state");
        best_->set(in.best, in.path);
      }
    }
  }

  /// Writes the state to `path`; with `resumable` also the position and early stopping's best state.
  void saveState(const std::string &path, bool resumable) {
    std::vector<HostTensor> bestTensors;
    std::vector<std::pair<std::string, const HostTensor *>> extra;
    st_.hasBest = resumable && best_ && st_.bestEpoch > 0;
    if (st_.hasBest) {
      bestTensors = best_->tensors();
      for (size_t k = 0; k < bestTensors.size(); ++k) extra.emplace_back(kBestPrefix + best_->name(k), &bestTensors[k]);
    }
    if (resumable && !haveDataHash_) {
      st_.dataHash = hashData(data_);
      haveDataHash_ = true;
    }
    saveCheckpoint(path, spec_, be_, resumable ? &st_ : nullptr, extra);
  }

  /// Between steps: an interruption saves a resumable checkpoint and ends the run (returns
  /// 128 + the signal); --checkpoint-every saves one when due. Returns -1 to go on.
  int safePoint(Progress &progress, int64_t perEpoch) {
    if (int sig = InterruptGuard::pending()) {
      progress.clear();
      const std::string path = o_.save.empty() ? interruptedCheckpointPath(spec_) : o_.save;
      saveState(path, true);
      std::fflush(stdout);
      std::fprintf(stderr,
                   "%s: interrupted by %s after step %lld (epoch %lld, %lld of %lld steps done); saved a resumable "
                   "checkpoint to %s\n%s: note: continue with --resume %s and the same other options\n",
                   exe_.c_str(), signalName(sig), static_cast<long long>(st_.step),
                   static_cast<long long>(st_.epoch), static_cast<long long>(st_.epochStep),
                   static_cast<long long>(perEpoch), path.c_str(), exe_.c_str(), path.c_str());
      std::fflush(stderr);
      return 128 + sig;
    }
    if (o_.checkpointEvery && st_.step - lastSaveStep_ >= *o_.checkpointEvery) {
      saveState(o_.save, true);
      lastSaveStep_ = st_.step;
    }
    return -1;
  }

  /// A NaN or Inf after the step at the current position: undoes the step, reports where
  /// the value first appeared, keeps the last good state and returns the exit code 1.
  int nonFinite(StateSnapshot &before, const Batch &batch, double loss, const std::optional<NonFiniteValue> &after,
                int64_t perEpoch, Progress &progress) {
    progress.clear();
    before.restore();
    const NonFiniteValue v = locateNonFinite(spec_, be_, batch, loss, after);
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: non-finite value at step %lld (epoch %lld, step %lld of %lld): %s%s is %s%s%s\n",
                 exe_.c_str(), static_cast<long long>(st_.step + 1), static_cast<long long>(st_.epoch),
                 static_cast<long long>(st_.epochStep + 1), static_cast<long long>(perEpoch), v.tensor.c_str(),
                 v.index.empty() ? "" : (" element " + v.index).c_str(), nonFiniteText(v.value).c_str(),
                 v.beforeStep ? " before the step" : "", v.where.empty() ? "" : (" (" + v.where + ")").c_str());
    std::fprintf(stderr, "%s: note: %s\n", exe_.c_str(), nonFiniteHint(v).c_str());
    if (o_.save.empty()) {
      std::fprintf(stderr, "%s: note: training stopped; nothing was saved (no --save)\n", exe_.c_str());
    } else {
      try {
        saveState(o_.save, true);
        std::fprintf(stderr,
                     "%s: note: training stopped; the last good state (before step %lld) was saved to %s "
                     "(--resume %s repeats the step)\n",
                     exe_.c_str(), static_cast<long long>(st_.step + 1), o_.save.c_str(), o_.save.c_str());
      } catch (const DataError &e) {
        std::fprintf(stderr, "%s: note: training stopped; %s\n", exe_.c_str(), e.what());
      }
    }
    std::fflush(stderr);
    return 1;
  }

  /// Mean per-sample validation loss over all validation samples. Full batches count
  /// B × evalLoss; a final partial batch of r samples is padded with its last sample, and
  /// the padding's share is removed with the loss of a batch made only of that sample:
  /// sum_r = B·L(padded) − (B − r)·L(last). Exact for losses that are a mean over the
  /// batch (mse, cross_entropy, bce_with_logits) in inference mode.
  double validationLoss() {
    const int64_t B = spec_.batch, nv = static_cast<int64_t>(valIdx_.size());
    const int64_t full = nv / B, r = nv % B;
    const double dB = static_cast<double>(B);
    double sum = 0;
    for (int64_t j = 0; j < full; ++j) sum += dB * be_.evalLoss(batcher_.gather(valIdx_.data() + j * B, B));
    if (r > 0) {
      const double padded = be_.evalLoss(batcher_.gather(valIdx_.data() + full * B, r));
      const double last = be_.evalLoss(batcher_.fillWith(valIdx_.back()));
      sum += dB * padded - static_cast<double>(B - r) * last;
    }
    return sum / static_cast<double>(nv);
  }

  /// Fraction of validation samples whose arg-max of output `o` equals target `t`.
  double accuracy(size_t o, size_t t) {
    const int64_t B = spec_.batch, nv = static_cast<int64_t>(valIdx_.size());
    const int64_t C = outs_.perSample[o];
    const int32_t *labels = data_.tensors[t].i32();
    int64_t correct = 0;
    for (int64_t start = 0; start < nv; start += B) {
      const int64_t cnt = std::min(B, nv - start);
      be_.predict(batcher_.gather(valIdx_.data() + start, cnt), outs_.ptrs);
      for (int64_t r = 0; r < cnt; ++r) {
        int64_t arg = 0;
        double bestV = outs_.value(o, r * C);
        for (int64_t c = 1; c < C; ++c) {
          const double v = outs_.value(o, r * C + c);
          if (v > bestV || (std::isnan(v) && !std::isnan(bestV))) {
            bestV = v;
            arg = c;
          }
        }
        if (arg == labels[valIdx_[static_cast<size_t>(start + r)]]) ++correct;
      }
    }
    return static_cast<double>(correct) / static_cast<double>(nv);
  }

  const ModelSpec &spec_;
  Backend &be_;
  const DriverData &data_;
  const DriverOptions &o_;
  uint64_t seed_;
  std::string exe_;
  const ResumeInput *resume_;
  Batcher batcher_;
  OutputBuffers outs_;
  std::vector<int64_t> valIdx_;
  ResumeState st_;                     ///< Where the run stands.
  std::optional<StateSnapshot> best_;  ///< Early stopping's best params and buffers.
  int64_t lastSaveStep_ = 0;           ///< The step of the last --checkpoint-every save.
  bool haveDataHash_ = false;          ///< st_.dataHash is computed.
};

/// --predict: every sample of the data, in order; CSV on stdout or to --out.
int predictAll(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &o) {
  if (spec.outputs.empty()) throw DataError("model " + spec.name + " has no `output`, so --predict has nothing to write");
  const int64_t B = spec.batch, N = data.n;
  const DType ft = be.floatType();
  Batcher batcher(spec, data);
  OutputBuffers outs(spec, ft);
  std::vector<int64_t> idx(static_cast<size_t>(B));
  const bool toSafetensors = !o.out.empty() && endsWithNoCase(o.out, ".safetensors");
  const bool toStdout = o.out.empty();

  std::vector<HostTensor> results;
  if (toSafetensors)
    for (const TensorSpec &t : spec.outputs) {
      std::vector<int64_t> shape = t.shape;
      shape[0] = N;
      results.emplace_back(ft, shape);
    }

  std::string csv;
  auto flushCsv = [&](bool force) {
    if (toStdout && (force || csv.size() >= (1u << 20))) {
      std::fwrite(csv.data(), 1, csv.size(), stdout);
      csv.clear();
    }
  };
  if (!toSafetensors) {
    std::string header;
    for (size_t k = 0; k < spec.outputs.size(); ++k) {
      const std::string &name = spec.outputs[k].name;
      const bool needsQuotes = name.find_first_of(",\"\r\n") != std::string::npos;
      auto col = [&](const std::string &c) {
        if (!header.empty()) header += ',';
        if (!needsQuotes) {
          header += c;
          return;
        }
        header += '"';
        for (char ch : c) header += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        header += '"';
      };
      if (outs.perSample[k] == 1) col(name);
      else
        for (int64_t j = 0; j < outs.perSample[k]; ++j) col(name + "_" + std::to_string(j));
    }
    csv += header + "\n";
  }

  char num[64];
  for (int64_t start = 0; start < N; start += B) {
    const int64_t cnt = std::min(B, N - start);
    for (int64_t r = 0; r < cnt; ++r) idx[static_cast<size_t>(r)] = start + r;
    be.predict(batcher.gather(idx.data(), cnt), outs.ptrs);
    for (int64_t r = 0; r < cnt; ++r) {
      if (toSafetensors) {
        for (size_t k = 0; k < results.size(); ++k) {
          const size_t rowBytes = static_cast<size_t>(outs.perSample[k]) * outs.elemSize;
          std::memcpy(results[k].bytes.data() + static_cast<size_t>(start + r) * rowBytes,
                      outs.bufs[k].data() + static_cast<size_t>(r) * rowBytes, rowBytes);
        }
        continue;
      }
      bool first = true;
      for (size_t k = 0; k < spec.outputs.size(); ++k)
        for (int64_t j = 0; j < outs.perSample[k]; ++j) {
          if (!first) csv += ',';
          first = false;
          const int64_t e = r * outs.perSample[k] + j;
          const size_t len = ft == DType::F32 ? toChars(num, sizeof num, static_cast<const float *>(outs.ptrs[k])[e])
                                              : toChars(num, sizeof num, static_cast<const double *>(outs.ptrs[k])[e]);
          csv.append(num, len);
        }
      csv += '\n';
      flushCsv(false);
    }
  }
  if (toSafetensors) {
    std::vector<std::pair<std::string, const HostTensor *>> named;
    for (size_t k = 0; k < results.size(); ++k) named.emplace_back(spec.outputs[k].name, &results[k]);
    writeSafetensors(o.out, named);
  } else if (toStdout) {
    flushCsv(true);
    std::fflush(stdout);
  } else {
    writeFileAtomic(o.out, csv.data(), csv.size());
  }
  return 0;
}

/// --gradcheck on the first training batch (samples 0 .. B-1 in file order).
int gradcheck(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &o, uint64_t seed,
              const std::string &exe) {
  const int64_t B = spec.batch;
  if (data.trainCount < B)
    throw DataError(data.source + ": the training split has " + std::to_string(data.trainCount) +
                    " samples, fewer than the batch size " + std::to_string(B));
  const bool isDouble = be.floatType() == DType::F64;
  // Float: central differences with h = 1e-3 (double: see below).
  const double relStep = 1e-3;
  const double tol = o.gradcheckTol.value_or(isDouble ? 1e-6 : 1e-2);
  Batcher batcher(spec, data);
  std::vector<int64_t> first(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) first[static_cast<size_t>(i)] = i;
  const Batch &batch = batcher.gather(first.data(), B);

  StateSnapshot others(spec, be, StateSnapshot::AllButParams); // buffers and optimizer state: must not change
  StateSnapshot params(spec, be, StateSnapshot::ParamsOnly);
  others.take();
  params.take();
  std::vector<std::vector<double>> grads;
  be.lossAndGrads(batch, grads);

  size_t nParams = 0;
  for (const StateSpec &s : spec.state) nParams += s.kind == StateSpec::Param;
  if (grads.size() != nParams)
    throw std::runtime_error("lossAndGrads returned " + std::to_string(grads.size()) + " gradients for " +
                             std::to_string(nParams) + " parameters");

  double worst = 0;
  std::string worstName;
  size_t g = 0;
  for (size_t i = 0; i < spec.state.size(); ++i) {
    const StateSpec &s = spec.state[i];
    if (s.kind != StateSpec::Param) continue;
    const std::vector<double> &ad = grads[g++];
    const int64_t n = numelOf(s.shape);
    if (static_cast<int64_t>(ad.size()) != n)
      throw std::runtime_error("lossAndGrads returned " + std::to_string(ad.size()) + " gradient elements for '" +
                               s.name + "' " + shapeString(s.shape));
    std::vector<int64_t> elems;
    if (n <= 256) {
      for (int64_t k = 0; k < n; ++k) elems.push_back(k);
    } else {
      std::vector<int64_t> all(static_cast<size_t>(n));
      for (int64_t k = 0; k < n; ++k) all[static_cast<size_t>(k)] = k;
      Rng rng(streamSeed(seed, "gradcheck:" + s.name));
      for (size_t k = 0; k < 256; ++k) std::swap(all[k], all[k + rng.below(all.size() - k)]);
      elems.assign(all.begin(), all.begin() + 256);
      std::sort(elems.begin(), elems.end());
    }
    double maxDiff = 0, maxFd = 0;
    bool nan = false;
    void *p = be.stateData(i);
    for (int64_t e : elems) {
      double fd = 0;
      if (isDouble) {
        // Central differences at h = 1e-4 (relative) first: 2 loss evaluations, about 1e-8
        // relative error on smooth losses. Where that estimate and the gradient being checked
        // differ by more than a tenth of the tolerance, a more accurate estimate replaces it,
        // computed without looking at the gradient: five-point differences (truncation
        // O(h^4), rounding ~eps/h) at h = 1e-3, 1e-4, 1e-5, keeping the larger step of the
        // closest-agreeing pair (Ridders' idea; its error is about their difference). One step
        // cannot serve both a sharply curved loss (BatchNorm over a batch with little variance
        // needs a small h) and a gradient that is truly zero (needs a large h).
        double &x = static_cast<double *>(p)[e];
        const double orig = x, scale = std::max(1.0, std::fabs(orig));
        auto at = [&](double step) {
          x = orig + step;
          const double l = be.loss(batch);
          x = orig;
          return l;
        };
        {
          const double h = 1e-4 * scale;
          fd = (at(h) - at(-h)) / (2 * h);
        }
        const double adE = ad[static_cast<size_t>(e)];
        if (!(std::fabs(adE - fd) <= 0.1 * tol * std::max(std::fabs(fd), 1e-6))) {
          auto fivePoint = [&](double h) { return (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h); };
          double prev = fivePoint(1e-3 * scale), best = INFINITY;
          fd = prev;
          for (double rel : {1e-4, 1e-5}) {
            const double cur = fivePoint(rel * scale);
            const double gap = std::fabs(cur - prev);
            if (gap < best) {
              best = gap;
              fd = prev;
            }
            prev = cur;
          }
        }
      } else {
        float &x = static_cast<float *>(p)[e];
        const float orig = x;
        const double h = relStep * std::max(1.0, std::fabs(static_cast<double>(orig)));
        x = static_cast<float>(orig + h);
        const double xp = x, lp = be.loss(batch);
        x = static_cast<float>(orig - h);
        const double xm = x, lm = be.loss(batch);
        x = orig;
        fd = (lp - lm) / (xp - xm);
      }
      const double diff = std::fabs(ad[static_cast<size_t>(e)] - fd);
      if (std::isnan(diff)) nan = true;
      maxDiff = std::max(maxDiff, diff);
      maxFd = std::max(maxFd, std::fabs(fd));
    }
    const double err = nan ? std::numeric_limits<double>::quiet_NaN() : maxDiff / std::max(maxFd, 1e-6); // truly zero gradients compare absolutely
    printLine(nullptr, "gradcheck " + s.name + " max_rel_err " + e3(err) + " (" + std::to_string(elems.size()) +
                           " of " + std::to_string(n) + " elements)");
    if (worstName.empty() || (std::isnan(err) && !std::isnan(worst)) || err > worst) {
      worst = err;
      worstName = s.name;
    }
  }
  if (std::string changed = others.firstDifference(); !changed.empty())
    throw std::runtime_error("the backend changed state tensor '" + changed +
                             "' while computing the loss (loss and lossAndGrads must not change state)");
  if (std::string changed = params.firstDifference(); !changed.empty())
    throw std::runtime_error("parameter '" + changed + "' was not restored after the finite differences");
  printLine(nullptr, "gradcheck worst " + e3(worst));
  if (!(worst <= tol)) {
    std::fprintf(stderr, "%s: error: gradcheck failed: worst relative error %s (parameter '%s') is above the tolerance %.3g\n",
                 exe.c_str(), e3(worst).c_str(), worstName.c_str(), tol);
    return 1;
  }
  return 0;
}

/// The program name for messages: the last component of argv[0].
std::string exeName(int argc, char **argv, const ModelSpec &spec) {
  if (argc < 1 || !argv || !argv[0] || !*argv[0]) return spec.name.empty() ? "gradc-model" : spec.name;
  std::string s = argv[0];
  size_t slash = s.find_last_of('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

int runMainImpl(const ModelSpec &spec, Backend &backend, int argc, char **argv, Backend *precise,
                const std::string &exe) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i] ? argv[i] : "");
  DriverOptions o;
  try {
    o = parseArgs(args);
  } catch (const UsageError &e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n%s", exe.c_str(), e.what(), usageText(exe, spec).c_str());
    return 1;
  }
  if (o.help) {
    std::fputs(usageText(exe, spec).c_str(), stdout);
    std::fflush(stdout);
    return 0;
  }
  setThreads(o.threads.value_or(defaultThreads()));
  uint64_t seed = static_cast<uint64_t>(o.seed.value_or(spec.train.seed));
  Backend &be = o.gradcheck && precise ? *precise : backend;
  checkBackend(be);
  checkSpec(spec);
  if (o.lr && !(spec.train.lr > 0))
    throw DataError(format("--lr: the model's compiled learning rate is %g, so it cannot be rescaled", spec.train.lr));

  DriverData data = loadDriverData(spec, o.data, o.predict);
  initState(spec, be, seed);
  if (!o.load.empty()) loadCheckpoint(o.load, spec, be);
  std::optional<ResumeInput> resume;
  if (!o.resume.empty()) {
    // The run continues with the seed, shuffling and learning rate of the one it resumes.
    resume = loadResumeCheckpoint(o.resume, spec, be);
    const ResumeState &r = resume->state;
    if (o.seed && static_cast<uint64_t>(*o.seed) != r.seed)
      throw DataError(o.resume + ": the checkpoint's run used seed " + std::to_string(static_cast<int64_t>(r.seed)) +
                      ", not " + std::to_string(*o.seed) + " (omit --seed when resuming)");
    if (o.noShuffle && r.shuffle)
      throw DataError(o.resume + ": the checkpoint's run shuffled its batches (omit --no-shuffle when resuming)");
    seed = r.seed;
    o.noShuffle = !r.shuffle;
    if (!o.lr && r.lr != spec.train.lr) o.lr = r.lr;
  }
  if (o.lr) be.setLearningRateScale(*o.lr / spec.train.lr);

  int rc = 0;
  if (o.gradcheck) rc = gradcheck(spec, be, data, o, seed, exe);
  else if (o.predict) rc = predictAll(spec, be, data, o);
  else return runTraining(spec, be, data, o, seed, exe, resume ? &*resume : nullptr); // saves --save itself
  if (rc == 0 && !o.save.empty()) saveCheckpoint(o.save, spec, be);
  return rc;
}

} // namespace

int runTraining(const ModelSpec &spec, Backend &backend, const DriverData &data, const DriverOptions &options,
                uint64_t seed, const std::string &exe, const ResumeInput *resume) {
  checkBackend(backend);
  checkSpec(spec);
  if (data.tensors.size() != spec.inputs.size() || data.present.size() != spec.inputs.size() ||
      data.trainCount < 0 || data.trainCount > data.n)
    throw std::runtime_error("runTraining: the data does not match the model");
  return Trainer(spec, backend, data, options, seed, exe, resume).run();
}

int runMain(const ModelSpec &spec, Backend &backend, int argc, char **argv, Backend *precise) {
  std::string exe = "gradc-model";
  auto report = [&](const char *what, const char *msg, int code) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s%s\n", exe.c_str(), what, msg);
    std::fflush(stderr);
    return code;
  };
  try {
    exe = exeName(argc, argv, spec);
    return runMainImpl(spec, backend, argc, argv, precise, exe);
  } catch (const DataError &e) {
    return report("", e.what(), 1);
  } catch (const UsageError &e) {
    return report("", e.what(), 1);
  } catch (const std::bad_alloc &) {
    return report("", "out of memory", 2);
  } catch (const std::exception &e) {
    return report("internal error: ", e.what(), 2);
  } catch (...) {
    return report("internal error: ", "unknown exception", 2);
  }
}

} // namespace gradc::rt
