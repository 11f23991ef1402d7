// CompiledBackend.h: the C interface between code emitted by gradc's LLVM backend and the
// runtime, and the Backend that runs such code (linked executables and `gradc run`'s JIT).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "Model.h"

extern "C" {

/// One graph of an emitted model for one float type T. `arena` holds arenaElements T values,
/// 64-byte aligned; `state[i]` is state tensor i's storage (T for F32 specs, int64_t for I64);
/// `batch` the Batch's pointers followed by one to its random key (Batch::rng); `outputs` the inference outputs (T, infer only); `lr` the
/// learning rate after --lr; `sinks` is passed back to gradc_rt_update / gradc_rt_grad.
/// Returns the loss (0 for infer).
typedef double (*GradcGraphFn)(void *arena, void *const *state, const void *const *batch, void *const *outputs, double lr,
                               void *sinks);

/// The train, eval and infer graphs of one float type, and --generate's step graph (null for a
/// model without one; its `batch` is the step inputs' pointers, its `outputs` the step outputs).
struct GradcGraphs {
  GradcGraphFn train, eval, infer, step;
};

/// What an emitted object file exports as `gradc_model` (layout fixed: the emitter builds it).
struct GradcCompiledModel {
  int64_t abiVersion;   ///< kGradcAbiVersion.
  const char *specJson; ///< The ModelSpec as JSON (specToJson / specFromJson).
  int64_t arenaElements;
  GradcGraphs f32, f64;
};

/// The main() of an executable linked from an emitted object: runs the training driver
/// (rt::runMain) over `model`'s float build, with the double build for --gradcheck.
int gradc_rt_llvm_main(const GradcCompiledModel *model, int argc, char **argv);

/// rt::gemm in single and double precision, for the emitted code (flags as 0/1).
void gradc_rt_sgemm(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int32_t threads);
void gradc_rt_dgemm(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, double alpha, const double *A, int64_t lda,
                    const double *B, int64_t ldb, double beta, double *C, int64_t ldc, int32_t threads);
/// rt::gemmInvariantB in single and double precision (op(B) packed once into `slot`).
void gradc_rt_sgemm_invariant(int64_t slot, int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha,
                              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                              int32_t threads);
void gradc_rt_dgemm_invariant(int64_t slot, int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, double alpha,
                              const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc,
                              int32_t threads);
/// rt::gemmInvariantReset: slots [first, first+count) repack on their next call.
void gradc_rt_gemm_invariant_reset(int64_t first, int64_t count);
/// rt::threads().
int32_t gradc_rt_threads(void);
/// An `update` sink: state tensor `state` takes `values` (T, alive to the end of the step).
void gradc_rt_update(void *sinks, int64_t state, const void *values);
/// A `grad` sink: the gradient of parameter number `param` (T, `n` elements), read now.
void gradc_rt_grad(void *sinks, int64_t param, const void *values, int64_t n);
}

namespace gradc::rt {

/// The version of GradcCompiledModel and of the graph functions' signature.
constexpr int64_t kGradcAbiVersion = 2; // 2: GradcGraphs::step

/// The ModelSpec as JSON, and back (throws DataError on a malformed or incomplete text).
std::string specToJson(const ModelSpec &spec);
ModelSpec specFromJson(std::string_view json);

/// What one run of a graph function collects through gradc_rt_update / gradc_rt_grad.
struct CompiledSinks {
  std::vector<std::pair<int64_t, const void *>> updates; ///< (state index, T values).
  std::vector<std::vector<double>> *grads = nullptr;     ///< Null unless gradients are asked for.
  bool isDouble = false;                                 ///< T is double.
};

/// Runs emitted graph functions for float type T (float for training, double for
/// --gradcheck): owns the arena (allocated at the first step) and the state (at first use),
/// applies updates after each step as the C++ backend's generated class does.
template <typename T> class CompiledBackend final : public Backend {
public:
  /// `resolve` returns the graph functions; it is called once, before the first step (so a
  /// JIT can compile the double build only when --gradcheck needs it). It may throw.
  CompiledBackend(const ModelSpec &spec, int64_t arenaElements, std::function<GradcGraphs()> resolve);
  ~CompiledBackend() override;

  DType floatType() const override { return sizeof(T) == 4 ? DType::F32 : DType::F64; }
  void *stateData(size_t i) override;
  void setLearningRateScale(double f) override { lr_ = spec_.train.lr * f; }
  double trainStep(const Batch &b) override { return train(b, true, nullptr); }
  double loss(const Batch &b) override { return train(b, false, nullptr); }
  double lossAndGrads(const Batch &b, std::vector<std::vector<double>> &g) override;
  void predict(const Batch &b, const std::vector<void *> &out) override;
  double evalLoss(const Batch &b) override;
  void generateStep(const std::vector<const void *> &in, const std::vector<void *> &out) override;

private:
  double train(const Batch &b, bool apply, std::vector<std::vector<double>> *grads);
  const GradcGraphs &fns();
  /// The graph functions' `batch` argument: b's pointers, then its random key.
  const void *const *batchPointers(const Batch &b);
  /// Allocates the state on first use (so the double build that only --gradcheck runs costs
  /// neither memory nor start-up time).
  void ensureState();

  ModelSpec spec_;
  std::function<GradcGraphs()> resolve_;
  GradcGraphs fns_{};
  bool resolved_ = false;
  int64_t arenaElements_;
  T *arena_ = nullptr; ///< Allocated (64-byte aligned, zeroed) before the first step.
  std::vector<std::vector<T>> sf_;       ///< Float state, spec order (empty for I64).
  std::vector<std::vector<int64_t>> si_; ///< Integer state (empty for float).
  std::vector<void *> statePtrs_;
  std::vector<const void *> batchPtrs_;
  size_t numParams_ = 0;
  double lr_ = 0;
};

extern template class CompiledBackend<float>;
extern template class CompiledBackend<double>;

} // namespace gradc::rt
