// DeployRuntime.h: the C interface between a model library written by `gradc --emit=lib` and the small runtime archived into it (batching, padding, per-thread arenas, GEMM).
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The inference graph of an emitted model (GradcGraphFn of CompiledBackend.h, float build).
typedef double (*GradcDeployInferFn)(void *arena, void *const *state, const void *const *batch, void *const *outputs,
                                     double lr, void *sinks);

/// What `gradc --emit=lib` emits per model (layout fixed: compiler/deploy/Library.cpp builds it).
struct GradcDeployModel {
  GradcDeployInferFn infer;  ///< The inference graph.
  void *const *state;        ///< The embedded weights, in the model's state order.
  int64_t arenaElements;     ///< Floats of the model's arena.
  int64_t batch;             ///< B: the samples one call of `infer` takes.
  int64_t inputElements;     ///< Elements of one sample of the input.
  int64_t inputBytes;        ///< Bytes of one input element (4: f32 or i32).
  int64_t outputElements;    ///< Elements of one sample of the output (floats).
};

/// Runs `model` on n samples `x` (row-major), writing n outputs to `out`: full batches of B
/// straight from `x`, the last partial one copied into a zero-padded batch. Each calling
/// thread gets its own arena and padding buffers, allocated at its first call for this
/// model and kept until the thread ends. Returns 0; 1 (writing nothing) when n < 1 or a
/// pointer is null; 2 when the thread's buffers cannot be allocated.
int gradc_deploy_predict(const struct GradcDeployModel *model, const void *x, float *out, int64_t n);

#ifdef __cplusplus
}
#endif
