// Gemm.h: the runtime's dense matrix multiply C = alpha·op(A)·op(B) + beta·C (row-major, float and double) that generated training code calls for every matmul, forward and backward.
#pragma once

#include <cstdint>

namespace gradc::rt {

/// C = alpha·op(A)·op(B) + beta·C for row-major matrices, where op(X) = X, or Xᵀ when the
/// flag is set (the transpose is never materialised). op(A) is M×K, op(B) is K×N and C is
/// M×N; lda, ldb and ldc are the row strides (in elements) of the matrices as stored, so A
/// is M×K with lda ≥ K (K×M with lda ≥ M when transA), B is K×N with ldb ≥ N (N×K with
/// ldb ≥ K when transB), and ldc ≥ N.
///
/// BLAS conventions: beta == 0 never reads C (it may hold NaN or garbage); alpha == 0 or
/// K == 0 reads neither A nor B and only scales C by beta. M, N or K may be 0.
///
/// `threads` (values below 1 count as 1) is an upper bound on the threads used, itself
/// capped at the hardware threads; small products (< 2^20 multiply-adds) and
/// matrix-vector products always run on the calling thread. Workers are created on first
/// use, spin for ~50 µs after each job, then sleep. The result is bitwise identical for
/// every thread count: threads split C into disjoint blocks, and every element is reduced
/// over K in the same fixed order whatever the split. No heap allocation happens in the
/// steady state (per-thread packing buffers grow to their high-water mark once).
/// Safe to call from several threads at once. C must not overlap A or B (std::logic_error
/// otherwise: the blocked kernels read A and B after writing parts of C).
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
          const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
          int64_t ldc, int threads = 1);

/// The double-precision gemm (same contract as the float one); used by gradient checks.
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha,
          const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C,
          int64_t ldc, int threads = 1);

/// gemm with a loop-invariant B: the same arguments and a bitwise identical result, but
/// op(B) is packed once into this thread's `slot` (a small non-negative number the caller
/// picks; each distinct B needs its own) and reused by later calls on the same slot, until
/// gemmInvariantReset marks it stale. A call repacks when the slot is stale or was packed
/// from a different B, ldb, N, K or transB. The caller guarantees that the contents of B
/// do not change between a slot's reset and its last use: generated code resets a scan's
/// slots at the scan's entry, and uses them only for matmuls whose B every step of that
/// scan reads unchanged. Slot buffers are 64-byte aligned and only grow (no allocation in
/// the steady state). Matrix-vector shapes (M or N == 1), K == 0 and alpha == 0 never pack
/// and behave exactly like gemm.
void gemmInvariantB(int64_t slot, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                    int threads = 1);

/// The double-precision gemmInvariantB (its slots are separate from the float ones).
void gemmInvariantB(int64_t slot, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha,
                    const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C,
                    int64_t ldc, int threads = 1);

/// Marks this thread's gemmInvariantB slots [first, first+count) stale (float and double),
/// so that each repacks on its next call. Cheap: no memory is freed or touched.
void gemmInvariantReset(int64_t first, int64_t count);

/// The instruction set the gemm kernels were compiled for: "avx512", "avx2" or "generic".
const char *gemmIsa();

} // namespace gradc::rt
