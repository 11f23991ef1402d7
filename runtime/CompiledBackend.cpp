// CompiledBackend.cpp: the runtime side of the LLVM backend: the Backend over emitted graph
// functions, the C entry points the emitted code calls, and the ModelSpec's JSON form.
#include "CompiledBackend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "Gemm.h"
#include "Json.h"
#include "Philox.h"

namespace gradc::rt {

// --- The ModelSpec as JSON.

namespace {

std::string num(double v) { return fmt::format("{:.17g}", v); }

std::string shapeJson(const std::vector<int64_t> &s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i)
    o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

std::string tensorJson(const TensorSpec &t) {
  return "{\"name\":" + jsonQuote(t.name) + ",\"dtype\":\"" + dtypeName(t.dtype) + "\",\"shape\":" + shapeJson(t.shape) +
         (t.bound > 0 ? ",\"bound\":" + std::to_string(t.bound) + ",\"boundWhere\":" + jsonQuote(t.boundWhere) : "") + "}";
}

const JsonValue &member(const JsonValue &o, const char *key) {
  const JsonValue *v = o.find(key);
  if (!v)
    throw DataError(std::string("model spec: missing '") + key + "'");
  return *v;
}
std::string str(const JsonValue &o, const char *key) {
  const JsonValue &v = member(o, key);
  if (v.kind != JsonValue::Kind::String)
    throw DataError(std::string("model spec: '") + key + "' is not a string");
  return v.text;
}
int64_t integer(const JsonValue &o, const char *key) {
  int64_t x;
  if (!member(o, key).asInt64(x))
    throw DataError(std::string("model spec: '") + key + "' is not an integer");
  return x;
}
double real(const JsonValue &o, const char *key) {
  double x;
  if (!member(o, key).asDouble(x))
    throw DataError(std::string("model spec: '") + key + "' is not a number");
  return x;
}
const std::vector<JsonValue> &array(const JsonValue &o, const char *key) {
  const JsonValue &v = member(o, key);
  if (v.kind != JsonValue::Kind::Array)
    throw DataError(std::string("model spec: '") + key + "' is not an array");
  return v.items;
}
std::vector<int64_t> shapeOf(const JsonValue &o) {
  std::vector<int64_t> s;
  for (const JsonValue &d : array(o, "shape")) {
    int64_t x;
    if (!d.asInt64(x))
      throw DataError("model spec: a shape holds a non-integer");
    s.push_back(x);
  }
  return s;
}
DType dtypeOf(const JsonValue &o) {
  DType t;
  if (!parseDType(str(o, "dtype"), t))
    throw DataError("model spec: unknown dtype");
  return t;
}

} // namespace

namespace {
/// A JSON array of tensor specs.
std::string tensorsJson(const std::vector<TensorSpec> &v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i)
    o += (i ? "," : "") + tensorJson(v[i]);
  return o + "]";
}
/// A JSON array of strings.
std::string stringsJson(const std::vector<std::string> &v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i)
    o += (i ? "," : "") + jsonQuote(v[i]);
  return o + "]";
}
} // namespace

std::string specToJson(const ModelSpec &s) {
  std::string o = "{\"name\":" + jsonQuote(s.name) + ",\"batch\":" + std::to_string(s.batch) +
                  ",\"numInputs\":" + std::to_string(s.numInputs) + ",\"inputs\":" + tensorsJson(s.inputs) +
                  ",\"outputs\":" + tensorsJson(s.outputs) + ",\"state\":[";
  for (size_t i = 0; i < s.state.size(); ++i) {
    const StateSpec &st = s.state[i];
    o += std::string(i ? "," : "") + "{\"name\":" + jsonQuote(st.name) + ",\"kind\":" + std::to_string(st.kind) + ",\"dtype\":\"" +
         dtypeName(st.dtype) + "\",\"shape\":" + shapeJson(st.shape) + ",\"init\":" + std::to_string(st.init) +
         ",\"a\":" + num(st.a) + ",\"b\":" + num(st.b) + ",\"where\":" + jsonQuote(st.where) +
         (st.zeroRow >= 0 ? ",\"zeroRow\":" + std::to_string(st.zeroRow) : "") + "}";
  }
  const TrainSpec &t = s.train;
  o += "],\"train\":{\"optimizer\":" + jsonQuote(t.optimizer) + ",\"lr\":" + num(t.lr) + ",\"epochs\":" + std::to_string(t.epochs) +
       ",\"seed\":" + std::to_string(t.seed) + ",\"dataKind\":" + jsonQuote(t.dataKind) + ",\"dataPath\":" + jsonQuote(t.dataPath) +
       ",\"dataLabels\":" + jsonQuote(t.dataLabels) + ",\"column\":" + jsonQuote(t.column) + ",\"columns\":" + stringsJson(t.columns) + ",\"scale\":" + jsonQuote(t.scale) +
       ",\"valKind\":" + jsonQuote(t.valKind) + ",\"valPath\":" + jsonQuote(t.valPath) + ",\"valLabels\":" + jsonQuote(t.valLabels) +
       ",\"length\":" + std::to_string(t.length) + ",\"horizon\":" + std::to_string(t.horizon) + ",\"split\":" + num(t.split) +
       ",\"earlyStopping\":" + (t.earlyStopping ? "true" : "false") + ",\"patience\":" + std::to_string(t.patience) +
       ",\"delta\":" + num(t.delta) + ",\"validateEvery\":" + std::to_string(t.validateEvery);
  if (t.precision != "f32") o += ",\"precision\":" + jsonQuote(t.precision); // absent: f32, as before
  // Only a model with a schedule has the key, so other models' specs stay as they were.
  if (const ScheduleSpec &sc = t.schedule; !sc.kind.empty())
    o += ",\"schedule\":{\"kind\":" + jsonQuote(sc.kind) + ",\"stepSize\":" + std::to_string(sc.stepSize) +
         ",\"gamma\":" + num(sc.gamma) + ",\"tMax\":" + std::to_string(sc.tMax) + ",\"etaMin\":" + num(sc.etaMin) +
         ",\"maxLr\":" + num(sc.maxLr) + ",\"totalSteps\":" + std::to_string(sc.totalSteps) +
         ",\"pctStart\":" + num(sc.pctStart) + ",\"factor\":" + num(sc.factor) +
         ",\"patience\":" + std::to_string(sc.patience) + "}";
  o += "},\"lossWhere\":" + jsonQuote(s.lossWhere) + (s.ranks != 1 ? ",\"ranks\":" + std::to_string(s.ranks) : "");
  // Only a text model has the step keys (--generate), so other models' specs stay as they were.
  if (!s.stepInputs.empty() || !s.stepWhy.empty()) {
    o += ",\"stepWhy\":" + jsonQuote(s.stepWhy) + ",\"stepInputs\":" + tensorsJson(s.stepInputs) +
         ",\"stepOutputs\":" + tensorsJson(s.stepOutputs);
  }
  return o + "}";
}

ModelSpec specFromJson(std::string_view json) {
  JsonValue root;
  try {
    root = parseJson(json);
  } catch (const JsonError &e) {
    throw DataError(std::string("model spec: ") + e.what());
  }
  ModelSpec s;
  s.name = str(root, "name");
  s.batch = integer(root, "batch");
  s.numInputs = static_cast<size_t>(integer(root, "numInputs"));
  for (const char *key : {"inputs", "outputs", "stepInputs", "stepOutputs"}) {
    if (key[0] == 's' && !root.find(key))
      continue; // absent: no step function
    for (const JsonValue &t : array(root, key)) {
      TensorSpec ts;
      ts.name = str(t, "name");
      ts.dtype = dtypeOf(t);
      ts.shape = shapeOf(t);
      if (t.find("bound")) ts.bound = integer(t, "bound"), ts.boundWhere = str(t, "boundWhere"); // absent: unchecked
      std::string k = key;
      (k == "inputs" ? s.inputs : k == "outputs" ? s.outputs : k == "stepInputs" ? s.stepInputs : s.stepOutputs).push_back(ts);
    }
  }
  if (root.find("stepWhy")) s.stepWhy = str(root, "stepWhy");
  for (const JsonValue &j : array(root, "state")) {
    StateSpec st;
    st.name = str(j, "name");
    st.kind = static_cast<StateSpec::Kind>(integer(j, "kind"));
    st.dtype = dtypeOf(j);
    st.shape = shapeOf(j);
    st.init = static_cast<StateSpec::Init>(integer(j, "init"));
    st.a = real(j, "a");
    st.b = real(j, "b");
    st.where = str(j, "where");
    if (j.find("zeroRow")) st.zeroRow = integer(j, "zeroRow"); // absent: no zero row
    s.state.push_back(st);
  }
  const JsonValue &j = member(root, "train");
  TrainSpec &t = s.train;
  t.optimizer = str(j, "optimizer");
  t.lr = real(j, "lr");
  t.epochs = integer(j, "epochs");
  t.seed = integer(j, "seed");
  t.dataKind = str(j, "dataKind");
  t.dataPath = str(j, "dataPath");
  t.dataLabels = str(j, "dataLabels");
  t.column = str(j, "column");
  for (const JsonValue &c : array(j, "columns")) {
    if (c.kind != JsonValue::Kind::String)
      throw DataError("model spec: 'columns' holds a non-string");
    t.columns.push_back(c.text);
  }
  t.scale = str(j, "scale");
  t.valKind = str(j, "valKind");
  t.valPath = str(j, "valPath");
  t.valLabels = str(j, "valLabels");
  t.length = integer(j, "length");
  t.horizon = integer(j, "horizon");
  t.split = real(j, "split");
  t.earlyStopping = member(j, "earlyStopping").boolean;
  t.patience = integer(j, "patience");
  t.delta = real(j, "delta");
  t.validateEvery = integer(j, "validateEvery");
  if (j.find("precision")) t.precision = str(j, "precision");
  if (const JsonValue *sj = j.find("schedule")) {
    ScheduleSpec &sc = t.schedule;
    sc.kind = str(*sj, "kind");
    sc.stepSize = integer(*sj, "stepSize");
    sc.gamma = real(*sj, "gamma");
    sc.tMax = integer(*sj, "tMax");
    sc.etaMin = real(*sj, "etaMin");
    sc.maxLr = real(*sj, "maxLr");
    sc.totalSteps = integer(*sj, "totalSteps");
    sc.pctStart = real(*sj, "pctStart");
    sc.factor = real(*sj, "factor");
    sc.patience = integer(*sj, "patience");
  }
  s.lossWhere = str(root, "lossWhere");
  if (root.find("ranks")) s.ranks = integer(root, "ranks"); // absent: compiled for one process
  return s;
}

// --- The Backend.

namespace {
constexpr size_t kArenaAlign = 64; // the emitted code assumes it (align 64 on the arena)
}

template <typename T>
CompiledBackend<T>::CompiledBackend(const ModelSpec &spec, int64_t arenaElements, std::function<GradcGraphs()> resolve)
    : spec_(spec), resolve_(std::move(resolve)), arenaElements_(arenaElements), lr_(spec.train.lr) {
  for (const StateSpec &s : spec.state)
    if (s.kind == StateSpec::Param)
      ++numParams_;
}

template <typename T> void CompiledBackend<T>::ensureState() {
  if (!statePtrs_.empty() || spec_.state.empty())
    return;
  sf_.resize(spec_.state.size());
  si_.resize(spec_.state.size());
  for (size_t i = 0; i < spec_.state.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : spec_.state[i].shape)
      n *= d;
    if (spec_.state[i].dtype == DType::I64)
      si_[i].assign(static_cast<size_t>(n), 0);
    else
      sf_[i].assign(static_cast<size_t>(n), T(0));
  }
  for (size_t i = 0; i < spec_.state.size(); ++i)
    statePtrs_.push_back(si_[i].empty() ? static_cast<void *>(sf_[i].data()) : static_cast<void *>(si_[i].data()));
}

template <typename T> CompiledBackend<T>::~CompiledBackend() {
  if (arena_)
    ::operator delete(arena_, std::align_val_t(kArenaAlign));
}

template <typename T> void *CompiledBackend<T>::stateData(size_t i) {
  ensureState();
  return statePtrs_.at(i);
}

template <typename T> const GradcGraphs &CompiledBackend<T>::fns() {
  ensureState();
  if (!resolved_) {
    fns_ = resolve_();
    resolved_ = true;
  }
  if (!arena_) { // at the first step: a build that never runs (the double one without --gradcheck) costs no memory
    size_t bytes = (static_cast<size_t>(std::max<int64_t>(arenaElements_, 1)) * sizeof(T) + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
    arena_ = static_cast<T *>(::operator new(bytes, std::align_val_t(kArenaAlign)));
    std::memset(arena_, 0, bytes);
  }
  return fns_;
}

template <typename T> const void *const *CompiledBackend<T>::batchPointers(const Batch &b) {
  batchPtrs_.assign(b.data.begin(), b.data.end());
  batchPtrs_.push_back(b.rng);
  return batchPtrs_.data();
}

template <typename T> double CompiledBackend<T>::train(const Batch &b, bool apply, std::vector<std::vector<double>> *grads) {
  CompiledSinks sinks;
  sinks.grads = grads;
  sinks.isDouble = sizeof(T) == 8;
  const GradcGraphs &f = fns();
  double loss = f.train(arena_, statePtrs_.data(), batchPointers(b), nullptr, lr_, &sinks);
  if (apply)
    for (auto &[i, p] : sinks.updates) {
      const T *v = static_cast<const T *>(p);
      if (!si_[i].empty())
        for (size_t k = 0; k < si_[i].size(); ++k)
          si_[i][k] = static_cast<int64_t>(std::llround(v[k]));
      else
        std::copy(v, v + sf_[i].size(), sf_[i].data());
    }
  return loss;
}

template <typename T> double CompiledBackend<T>::lossAndGrads(const Batch &b, std::vector<std::vector<double>> &g) {
  g.assign(numParams_, {});
  return train(b, false, &g);
}

template <typename T> void CompiledBackend<T>::predict(const Batch &b, const std::vector<void *> &out) {
  CompiledSinks sinks;
  sinks.isDouble = sizeof(T) == 8;
  const GradcGraphs &f = fns();
  f.infer(arena_, statePtrs_.data(), batchPointers(b), out.data(), lr_, &sinks);
}

template <typename T> void CompiledBackend<T>::generateStep(const std::vector<const void *> &in, const std::vector<void *> &out) {
  CompiledSinks sinks;
  sinks.isDouble = sizeof(T) == 8;
  const GradcGraphs &f = fns();
  if (!f.step)
    Backend::generateStep(in, out); // throws: no step function
  batchPtrs_.assign(in.begin(), in.end());
  batchPtrs_.push_back(nullptr); // the random key: the step graph draws no random numbers
  f.step(arena_, statePtrs_.data(), batchPtrs_.data(), out.data(), lr_, &sinks);
}

template <typename T> double CompiledBackend<T>::evalLoss(const Batch &b) {
  CompiledSinks sinks;
  sinks.isDouble = sizeof(T) == 8;
  const GradcGraphs &f = fns();
  return f.eval(arena_, statePtrs_.data(), batchPointers(b), nullptr, lr_, &sinks);
}

template class CompiledBackend<float>;
template class CompiledBackend<double>;

} // namespace gradc::rt

// --- The C entry points of the emitted code.

using namespace gradc::rt;

extern "C" {

void gradc_rt_sgemm(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int32_t threads) {
  gemm(transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void gradc_rt_dgemm(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, double alpha, const double *A, int64_t lda,
                    const double *B, int64_t ldb, double beta, double *C, int64_t ldc, int32_t threads) {
  gemm(transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void gradc_rt_sgemm_invariant(int64_t slot, int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha,
                              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                              int32_t threads) {
  gemmInvariantB(slot, transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void gradc_rt_dgemm_invariant(int64_t slot, int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, double alpha,
                              const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc,
                              int32_t threads) {
  gemmInvariantB(slot, transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void gradc_rt_gemm_invariant_reset(int64_t first, int64_t count) { gemmInvariantReset(first, count); }

int32_t gradc_rt_threads(void) { return threads(); }

void gradc_rt_update(void *sinks, int64_t state, const void *values) {
  static_cast<CompiledSinks *>(sinks)->updates.emplace_back(state, values);
}

void gradc_rt_grad(void *sinks, int64_t param, const void *values, int64_t n) {
  CompiledSinks &s = *static_cast<CompiledSinks *>(sinks);
  if (!s.grads)
    return;
  std::vector<double> &g = (*s.grads)[static_cast<size_t>(param)];
  if (s.isDouble)
    g.assign(static_cast<const double *>(values), static_cast<const double *>(values) + n);
  else
    g.assign(static_cast<const float *>(values), static_cast<const float *>(values) + n);
}

int gradc_rt_llvm_main(const GradcCompiledModel *model, int argc, char **argv) {
  if (!model || model->abiVersion != kGradcAbiVersion) {
    fmt::print(stderr, "{}: error: the model was compiled for another version of the gradc runtime\n",
               argc > 0 && argv[0] ? argv[0] : "gradc-model");
    return 2;
  }
  static ModelSpec spec;
  try {
    spec = specFromJson(model->specJson);
  } catch (const std::exception &e) {
    fmt::print(stderr, "{}: internal error: {}\n", argc > 0 && argv[0] ? argv[0] : "gradc-model", e.what());
    return 2;
  }
  static CompiledBackend<float> net(spec, model->arenaElements, [model] { return model->f32; });
  static CompiledBackend<double> precise(spec, model->arenaElements, [model] { return model->f64; });
  return runMain(spec, net, argc, argv, &precise);
}

} // extern "C"
