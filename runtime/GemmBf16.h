// GemmBf16.h: the float gemm's bf16 mode (train block `precision = "bf16"`, --precision bf16): matrix-multiply operands rounded to bf16, fp32 accumulation (AVX512-BF16), used by gemm / gemmInvariantB while it is on.
#pragma once

#include <cstdint>

namespace gradc::rt {

/// Whether this build of the runtime has the bf16 kernels (compiled for a CPU with AVX512-BF16)
/// and the environment does not set GRADC_DISABLE_BF16 (which tests the f32 fallback).
bool bf16Supported();
/// Turns the bf16 mode of the float gemm on or off (on only takes effect where bf16Supported()).
/// While on, every float gemm and gemmInvariantB with M > 1 and N > 1 rounds op(A) and op(B)
/// to bf16 and accumulates in fp32; matrix-vector products, the double gemm and everything
/// else stay as they are. Set once, before training (not thread-safe against running gemms).
void setMatmulBf16(bool on);
/// Whether the bf16 mode is on.
bool matmulBf16();

/// The bf16 gemm (Gemm.cpp calls it in bf16 mode): C = alpha·bf16(op(A))·bf16(op(B)) + beta·C,
/// the same argument conventions as gemm; slot >= 0 keeps op(B) packed in that invariant slot
/// (as gemmInvariantB). `parallel` runs fn(ctx, p) for p < parts (the gemm's thread pool).
/// Bitwise identical for every thread count.
void gemmBf16(int64_t slot, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int threads,
              void (*parallel)(int parts, void (*fn)(void *, int), void *ctx));
/// Marks this thread's bf16 invariant slots [first, first+count) stale (with gemmInvariantReset).
void gemmBf16ResetSlots(int64_t first, int64_t count);

} // namespace gradc::rt
