// GemmBf16.cpp: the float gemm's bf16 mode (precision = "bf16"): op(A) and op(B) rounded to bf16 (round to nearest even), products summed in fp32 by AVX512-BF16's VDPBF16PS, C = alpha·acc + beta·C in fp32.
//
// Layout: K is taken in pairs (k, k+1), the unit of VDPBF16PS, which adds a0·b0 + a1·b1 of
// two bf16 pairs to an fp32 lane. op(A) is packed row by row into M × ceil(K/2) pairs, op(B)
// into ceil(K/2) × N16 pairs (N16: N rounded up to 16, zero-padded; an odd K pads the last
// pair with a zero); VCVTNE2PS2BF16 converts 32 floats at a time (round to nearest even, a
// denormal read as zero), and a transposed operand's pairs are scattered 16 at a time. A
// B that is not loop-invariant is packed block by block (64 pairs × 64 columns) by the thread
// that uses it, right before the block is used, so it stays in L1. The micro-kernel keeps a 6 × 64 tile of C in 24
// zmm accumulators and, per pair, loads 4 vectors of packed B and broadcasts 6 pairs of packed
// A, over blocks of 64 pairs (the B block stays in L1 across the row tiles; C = alpha·acc +
// beta·C after the first block, += alpha·acc after the others). Every element of C is reduced
// over the pairs in order whatever the thread count (threads split C into column blocks), so
// results are bitwise identical at any --threads. A loop-invariant B (gemmInvariantB: a scan's
// recurrent weight) is packed once per slot validity, as in the fp32 path.
#include "GemmBf16.h"
#include "InvariantSlots.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define GRADC_HAVE_BF16 1
#endif

namespace gradc::rt {

namespace {

bool gBf16 = false;

/// A growing, 64-byte aligned buffer of 32-bit words.
struct Words {
  std::unique_ptr<uint32_t[], void (*)(uint32_t *)> data{nullptr, [](uint32_t *p) { ::operator delete[](p, std::align_val_t(64)); }};
  size_t size = 0;
  uint32_t *get(size_t n) {
    if (n > size) {
      data.reset(static_cast<uint32_t *>(::operator new[](n * 4, std::align_val_t(64))));
      size = n;
    }
    return data.get();
  }
};

#if GRADC_HAVE_BF16
// Packing. VCVTNE2PS2BF16 rounds to nearest even, keeps a NaN a quiet NaN and reads a denormal
// input as a zero of its sign; each 16-bit lane of its result is one bf16.

/// A mask of the first n (clamped to [0, 16]) lanes.
inline __mmask16 lanes16(int64_t n) { return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }
/// A mask of the first n (clamped to [0, 32]) 16-bit lanes.
inline __mmask32 lanes32(int64_t n) { return n >= 32 ? ~__mmask32(0) : n <= 0 ? __mmask32(0) : __mmask32((1u << n) - 1); }

/// 16 pairs: 32-bit lane m holds (bf16(lo[m]), bf16(hi[m])), lo in the low half.
inline __m512i pairs(__m512 lo, __m512 hi) {
  alignas(64) static const uint16_t kIdx[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_permutexvar_epi16(_mm512_load_si512(kIdx), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}
/// The n (clamped to [0, 32]) floats at p as bf16 in order, zeros after them: 16 pairs.
inline __m512i run32(const float *p, int64_t n) {
  return (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(lanes16(n - 16), p + 16), _mm512_maskz_loadu_ps(lanes16(n), p));
}
/// Lane m: m · stride (scatter indices, in 32-bit words).
inline __m512i strided(int64_t stride) {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(static_cast<int>(stride)));
}

/// op(A) (M × K) as M rows of kp pairs: word i·kp + p holds (bf16(a(i, 2p)), bf16(a(i, 2p+1)));
/// an odd K's last half-word is zero.
void packA(bool transA, const float *A, int64_t lda, int64_t M, int64_t K, int64_t kp, uint32_t *dst) {
  if (!transA) { // a row of A is a row of pairs
    for (int64_t i = 0; i < M; ++i) {
      uint16_t *out = reinterpret_cast<uint16_t *>(dst + i * kp);
      for (int64_t k = 0; k < 2 * kp; k += 32)
        _mm512_mask_storeu_epi16(out + k, lanes32(2 * kp - k), run32(A + i * lda + k, K - k));
    }
    return;
  }
  // a(i, k) = A[k·lda + i]: rows 2p and 2p+1 of A give pair p of 16 rows i, scattered.
  const __m512i index = strided(kp);
  for (int64_t i0 = 0; i0 < M; i0 += 16) {
    const __mmask16 m = lanes16(M - i0);
    for (int64_t p = 0; p < kp; ++p) {
      const __m512 lo = _mm512_maskz_loadu_ps(m, A + 2 * p * lda + i0);
      const __m512 hi = 2 * p + 1 < K ? _mm512_maskz_loadu_ps(m, A + (2 * p + 1) * lda + i0) : _mm512_setzero_ps();
      _mm512_mask_i32scatter_epi32(dst + i0 * kp + p, m, index, pairs(lo, hi), 4);
    }
  }
}

/// Pairs [p0, p1) of columns [c0, c1) (multiples of 16, c1 <= N rounded up to 16) of op(B)
/// (K × N): word (p - p0)·ldd + (j - c0) of dst holds (bf16(b(2p, j)), bf16(b(2p+1, j)));
/// columns from N on and an odd K's last half-words are zero.
void packB(bool transB, const float *B, int64_t ldb, int64_t N, int64_t K, int64_t p0, int64_t p1, int64_t c0,
           int64_t c1, uint32_t *dst, int64_t ldd) {
  if (!transB) { // rows 2p and 2p+1 of B give row p of pairs
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t j = c0; j < c1; j += 16) {
        const __mmask16 m = lanes16(N - j);
        const __m512 lo = _mm512_maskz_loadu_ps(m, B + 2 * p * ldb + j);
        const __m512 hi = 2 * p + 1 < K ? _mm512_maskz_loadu_ps(m, B + (2 * p + 1) * ldb + j) : _mm512_setzero_ps();
        _mm512_storeu_si512(dst + (p - p0) * ldd + (j - c0), pairs(lo, hi));
      }
    return;
  }
  // b(k, j) = B[j·ldb + k]: row j of B is column j of pairs, scattered 16 pairs at a time.
  const __m512i index = strided(ldd);
  const int64_t e = std::min(c1, N);
  for (int64_t j0 = c0; j0 < e; j0 += 16)
    for (int64_t k = 2 * p0; k < 2 * p1; k += 32)
      for (int64_t j = j0; j < std::min(e, j0 + 16); ++j)
        _mm512_mask_i32scatter_epi32(dst + (k / 2 - p0) * ldd + (j - c0), lanes16(p1 - k / 2), index,
                                     run32(B + j * ldb + k, K - k), 4);
  for (int64_t p = p0; p < p1 && e < c1; ++p) // columns N.. are zero
    std::fill(dst + (p - p0) * ldd + (std::max(e, c0) - c0), dst + (p - p0) * ldd + (c1 - c0), 0u);
}

constexpr int kMR = 6, kNV = 4; // the micro-tile: 6 rows × 4 vectors of 16 columns

/// Pairs of K per block: a 64-column panel of them (16 KiB) stays in L1 across the row tiles.
constexpr int64_t kKC = 64;

/// C[0..R, 0..16·NVr) (the last vector masked to `lastMask`) = alpha·Σ_p A·B + beta·C over the
/// kp pairs given (the first K block), or += alpha·Σ (a later block: beta = 1, `first` false).
template <int R, int NVr>
void microKernel(int64_t kp, const uint32_t *a, int64_t lda, const uint32_t *b, int64_t ldb, float *c, int64_t ldc,
                 __mmask16 lastMask, float alpha, float beta) {
  __m512 acc[R][NVr];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NVr; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh bv[NVr];
    for (int v = 0; v < NVr; ++v) bv[v] = (__m512bh)_mm512_load_si512(b + p * ldb + 16 * v);
    for (int r = 0; r < R; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * lda + p]));
      for (int v = 0; v < NVr; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NVr; ++v) {
      const __mmask16 m = v + 1 == NVr ? lastMask : __mmask16(0xffff);
      float *dst = c + r * ldc + 16 * v;
      __m512 out = _mm512_mul_ps(va, acc[r][v]);
      if (beta != 0.0f) out = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, dst), out);
      _mm512_mask_storeu_ps(dst, m, out);
    }
}

using KernelFn = void (*)(int64_t, const uint32_t *, int64_t, const uint32_t *, int64_t, float *, int64_t, __mmask16,
                          float, float);

template <int R> constexpr KernelFn kernelFor(int nv) {
  return nv == 1 ? &microKernel<R, 1> : nv == 2 ? &microKernel<R, 2> : nv == 3 ? &microKernel<R, 3> : &microKernel<R, 4>;
}
KernelFn kernel(int rows, int nv) {
  switch (rows) {
  case 1: return kernelFor<1>(nv);
  case 2: return kernelFor<2>(nv);
  case 3: return kernelFor<3>(nv);
  case 4: return kernelFor<4>(nv);
  case 5: return kernelFor<5>(nv);
  default: return kernelFor<6>(nv);
  }
}

/// One gemm on packed A, split into column blocks of 64 for `parts` threads; with `B` set, each
/// part packs each block of op(B) (64 pairs × 64 columns, 16 KiB) into its own buffer right
/// before using it, so packed B never leaves L1 (else `b` holds all of op(B) packed).
struct Job {
  int64_t M, N, kp, n16;
  const uint32_t *a, *b;
  float alpha, beta, *C;
  int64_t ldc;
  int parts;
  const float *B; ///< op(B) still to pack, or null
  bool transB;
  int64_t ldb, K;
  void run(int part) const {
    const int64_t blocks = (N + 16 * kNV - 1) / (16 * kNV);
    const int64_t jb0 = blocks * part / parts, jb1 = blocks * (part + 1) / parts;
    static thread_local Words block;
    uint32_t *blk = B ? block.get(static_cast<size_t>(kKC * 16 * kNV)) : nullptr;
    for (int64_t jb = jb0; jb < jb1; ++jb) {
      const int64_t j0 = jb * 16 * kNV, cols = std::min<int64_t>(16 * kNV, N - j0);
      const int nv = static_cast<int>((cols + 15) / 16);
      const int rem = static_cast<int>(cols - 16 * (nv - 1));
      const __mmask16 last = static_cast<__mmask16>(rem == 16 ? 0xffff : (1u << rem) - 1);
      for (int64_t p0 = 0; p0 < kp; p0 += kKC) { // K blocks in order: the reduction order is fixed
        const int64_t pc = std::min(kKC, kp - p0);
        const uint32_t *bp = blk; // this block of B: packed now into blk, or found in b
        int64_t ldbp = 16 * kNV;
        if (B) {
          packB(transB, B, ldb, N, K, p0, p0 + pc, j0, j0 + 16 * nv, blk, ldbp);
        } else {
          bp = b + p0 * n16 + j0;
          ldbp = n16;
        }
        for (int64_t i0 = 0; i0 < M; i0 += kMR) {
          const int rows = static_cast<int>(std::min<int64_t>(kMR, M - i0));
          kernel(rows, nv)(pc, a + i0 * kp + p0, kp, bp, ldbp, C + i0 * ldc + j0, ldc, last, alpha,
                           p0 == 0 ? beta : 1.0f);
        }
      }
    }
  }
  static void call(void *ctx, int part) { static_cast<const Job *>(ctx)->run(part); }
};
#endif

/// An invariant-B slot: the packed B and what it was packed from.
struct Slot {
  Words words;
  PackedFrom from;
};
/// This thread's packed A, and its invariant-B slots.
thread_local Words tlA;
thread_local SlotTable<Slot> tlSlots;

} // namespace

bool bf16Supported() {
#if GRADC_HAVE_BF16
  static const bool disabled = std::getenv("GRADC_DISABLE_BF16") != nullptr; // the f32 fallback, for its tests
  return !disabled;
#else
  return false;
#endif
}

void setMatmulBf16(bool on) { gBf16 = on && bf16Supported(); }
bool matmulBf16() { return gBf16; }

void gemmBf16ResetSlots(int64_t first, int64_t count) { tlSlots.reset(first, count); }

void gemmBf16(int64_t slot, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int threads,
              void (*parallel)(int parts, void (*fn)(void *, int), void *ctx)) {
#if GRADC_HAVE_BF16
  const int64_t kp = (K + 1) / 2, n16 = (N + 15) / 16 * 16;
  uint32_t *a = tlA.get(static_cast<size_t>(M * kp));
  packA(transA, A, lda, M, K, kp, a);
  const uint32_t *b;
  const float *toPack = nullptr; // B packed by the parts themselves, each its own columns
  if (slot >= 0) { // a loop-invariant B: packed once while its slot stays valid
    Slot &s = tlSlots.at(slot);
    if (!s.from.holds(B, ldb, N, K, transB)) {
      packB(transB, B, ldb, N, K, 0, kp, 0, n16, s.words.get(static_cast<size_t>(kp * n16)), n16);
      s.from.set(B, ldb, N, K, transB);
    }
    b = s.words.data.get();
  } else {
    b = nullptr;
    toPack = B;
  }
  const int64_t blocks = (N + 16 * kNV - 1) / (16 * kNV);
  const double fma = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const int parts = threads > 1 && fma >= double(1 << 20) ? static_cast<int>(std::min<int64_t>(threads, blocks)) : 1;
  Job job{M, N, kp, n16, a, b, alpha, beta, C, ldc, parts, toPack, transB, ldb, K};
  if (parts > 1)
    parallel(parts, &Job::call, &job);
  else
    job.run(0);
#else
  (void)slot, (void)transA, (void)transB, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb;
  (void)beta, (void)C, (void)ldc, (void)threads, (void)parallel;
#endif
}

} // namespace gradc::rt
