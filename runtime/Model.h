// Model.h: what a compiled model tells the runtime (its tensors, state and train block)
// and the Backend interface through which the training driver runs its steps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "Tensor.h"

namespace gradc::rt {

/// A fed or returned tensor; shape[0] is the static batch size (a rank's share under MPI).
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  /// An integer input read as table rows (an Embedding's indices): each element must lie in
  /// [0, bound), which the driver checks as it makes each batch; 0 = unchecked.
  int64_t bound = 0;
  std::string boundWhere; ///< The model line reading it ("char_lstm.model:9"), "" if unknown.
};

/// A parameter, buffer or optimizer state tensor, and how it is initialised.
struct StateSpec {
  enum Kind { Param, Buffer, OptState };
  enum Init { Zeros, Ones, Full, Uniform, Normal };
  std::string name;  ///< "lstm.weight_ih_l0", "bn.running_mean", "optimizer.step".
  Kind kind = Param;
  DType dtype = DType::F32; ///< F32 (stored as the backend's float type) or I64.
  std::vector<int64_t> shape;
  Init init = Zeros;
  double a = 0, b = 0; ///< Full: a; Uniform: [a, b); Normal: mean a, std b.
  int64_t zeroRow = -1; ///< A row on axis 0 that is zero after the draw (an Embedding's padding row), -1 for none.
  std::string where; ///< Its layer and that layer's model line ("layer head, tiny.model:6"), "" if unknown.
};

/// The train block's learning-rate schedule (docs/language.md, Train block), as
/// torch.optim.lr_scheduler's StepLR, CosineAnnealingLR, OneCycleLR (cycle_momentum=False)
/// and ReduceLROnPlateau; Schedule.h steps it.
struct ScheduleSpec {
  std::string kind;        ///< "" (constant learning rate), "step", "cosine", "onecycle", "plateau".
  int64_t stepSize = 0;    ///< step: epochs between decays.
  double gamma = 0.1;      ///< step: the decay factor.
  int64_t tMax = 0;        ///< cosine: epochs of the half cosine.
  double etaMin = 0;       ///< cosine: the smallest learning rate.
  double maxLr = 0;        ///< onecycle: the peak learning rate.
  int64_t totalSteps = 0;  ///< onecycle: training steps of the cycle.
  double pctStart = 0.3;   ///< onecycle: share of the steps spent warming up.
  double factor = 0.1;     ///< plateau: the reduction factor.
  int64_t patience = 10;   ///< plateau: validations without improvement tolerated.
};

/// The train block, with defaults filled in and paths made absolute.
struct TrainSpec {
  std::string optimizer = "adam"; ///< "sgd", "adam" or "adamw" (the update itself is compiled).
  double lr = 1e-3;               ///< The compiled learning rate (--lr rescales it).
  int64_t epochs = 1;
  int64_t seed = 0;
  std::string dataKind;           ///< "", "windows", "idx", "tensors", "text".
  std::string dataPath, dataLabels, column = "value", scale = "minmax";
  /// windows(columns = [...], target = NAME): the input columns, in order (empty for the
  /// single-column form, whose one column is `column`); the target is then `column`.
  std::vector<std::string> columns;
  /// A held-out validation source (`validation = idx(...)` or `tensors(...)`): "" if none.
  std::string valKind, valPath, valLabels;
  int64_t length = 0, horizon = 1;
  double split = 0.8;
  bool earlyStopping = false;
  int64_t patience = 0;
  double delta = 0;
  int64_t validateEvery = 0; ///< Steps; 0 = once per epoch.
  /// "f32" or "bf16" (the train block's `precision`; --precision overrides it): in bf16 the
  /// float matrix multiplies round their operands to bf16 and accumulate in fp32 (GemmBf16.h).
  std::string precision = "f32";
  ScheduleSpec schedule;     ///< kind "" = the learning rate stays constant.
};

/// Everything the driver needs to know about a model.
struct ModelSpec {
  std::string name;
  int64_t batch = 1;
  std::vector<TensorSpec> inputs;   ///< Inputs, then targets, in declaration order.
  size_t numInputs = 0;             ///< How many of `inputs` are inputs (the rest are targets).
  std::vector<TensorSpec> outputs;  ///< What inference returns.
  std::vector<StateSpec> state;     ///< Params, buffers, optimizer state.
  TrainSpec train;
  std::string lossWhere;            ///< The model line computing the loss ("tiny.model:12"), "" if unknown.
  /// The MPI ranks the step is compiled for (gradc --ranks): `batch` is each rank's share, the
  /// local batch, and batch × ranks the global batch (the model's B).
  int64_t ranks = 1;
  /// --generate's step function (Backend::generateStep) of a text model: its inputs, one
  /// character index i32[1, 1] then the recurrences' carries; its outputs, the logits
  /// [1, 1, vocabulary] then the carries' final values (stepOutputs[k] is stepInputs[k]'s next
  /// value for k >= 1). Both empty when the model has none; stepWhy then says why.
  std::vector<TensorSpec> stepInputs, stepOutputs;
  std::string stepWhy;
};

/// One batch: a pointer per entry of ModelSpec::inputs, each to batch × sample elements of
/// its dtype (F32 as float, I32 as int32_t), contiguous.
struct Batch {
  std::vector<const void *> data;
  /// The key of the step's random numbers (dropout, Philox.h): the seed and the number of
  /// training steps taken before this one. Losses recomputed on the same batch (--gradcheck,
  /// --check-finite) reuse it, and so draw the same masks.
  uint64_t rng[2] = {0, 0};
};

/// Runs a model's steps. The compiled executable, the JIT and the reference interpreter
/// each implement it; the driver does everything else (data, epochs, checkpoints, flags).
class Backend {
public:
  virtual ~Backend() = default;
  /// The float type parameters are stored in: F32 (compiled code) or F64 (interpreter).
  virtual DType floatType() const = 0;
  /// Storage of state tensor i (ModelSpec::state order): floatType() for F32 specs, int64_t for I64.
  virtual void *stateData(size_t i) = 0;
  /// Multiplies the learning rate compiled into the update by `factor` (--lr).
  virtual void setLearningRateScale(double factor) = 0;
  /// Forward, backward and update on one batch; returns the loss (before the update).
  virtual double trainStep(const Batch &b) = 0;
  /// The loss in inference mode (running statistics), changing no state.
  virtual double evalLoss(const Batch &b) = 0;
  /// Inference outputs, each ModelSpec::outputs[i] sized, as floatType().
  virtual void predict(const Batch &b, const std::vector<void *> &outputs) = 0;
  /// Training-mode loss and the gradient of every parameter (ModelSpec::state order, params
  /// only, as double), changing no state. Used by --gradcheck.
  virtual double lossAndGrads(const Batch &b, std::vector<std::vector<double>> &grads) = 0;
  /// Training-mode loss only, changing no state (the finite differences of --gradcheck).
  virtual double loss(const Batch &b) = 0;
  /// One step of --generate (ModelSpec::stepInputs / stepOutputs): `in` points to each step
  /// input (I32 as int32_t, F32 as float), `out` to each step output (as floatType()). Throws
  /// DataError when the backend has no step function.
  virtual void generateStep(const std::vector<const void *> &in, const std::vector<void *> &out);
};

/// Worker threads a backend may use: --threads N, by default std::thread::hardware_concurrency()
/// (at least 1). Defined in Driver.cpp.
int threads();
/// Sets threads() (runMain calls it for --threads; values below 1 count as 1).
void setThreads(int n);

/// The training executable's main: parses the executable's flags (README.md, --help), loads data,
/// trains, validates, saves, predicts or checks gradients. `precise`, when given, is a
/// double-precision build of the same model that --gradcheck uses. Returns the exit code.
int runMain(const ModelSpec &spec, Backend &backend, int argc, char **argv, Backend *precise = nullptr);

} // namespace gradc::rt
