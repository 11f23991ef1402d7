// Driver.cpp: implements runMain, the training driver shared by generated executables, the interpreter and the JIT (flags, data, checkpoints, --predict and --gradcheck; the training loop is in Trainer.cpp), and the helpers declared in Driver.h.
#include "Driver.h"

#include <algorithm>
#include <atomic>
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
#include "DriverInternal.h"
#include "FiniteCheck.h"
#include "Json.h"
#include "Safetensors.h"

// The random transforms must round identically everywhere: no a*b+c fused into one FMA.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace gradc::rt {

using namespace detail;


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
  s += "  --timing            at the end, on stderr: seconds from exec to the end of the first step, ms per\n"
       "                      step, seconds from exec to the start of the first step (ready_s)\n";
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
