// Gemm.cpp: the runtime's packed, register-blocked GEMM (AVX-512 micro-kernels, or portable SIMD fallback) for float and double, with a small persistent thread pool and per-thread slots of pre-packed loop-invariant B.
//
// Design (BLIS-style). C is row-major, so the micro-kernel vectorises along N: it keeps an
// MR×NR tile of C in registers (NR = NV vectors; 8×32 floats = 16 zmm accumulators with
// AVX-512), and per k broadcasts MR values of packed A and loads NV vectors of packed B.
// Loops, outermost first:
//   jc over N in NC columns  →  pc over K in KC steps (B panel KC×NC packed once)
//   →  ic over M in MC rows (A block MC×KC packed)  →  jr over NR  →  ir over MR  →  kernel.
// The packed B micro-panel (KC×NR) stays in L1 while the A block streams from L2. When M
// fits one A block (the LSTM batch sizes), A is packed once per K block and B is packed in
// chunks of a few micro-panels right before use, so the packed copy never round-trips
// through L3. Packing reads either layout of A and B (transposes use 16×16 / 8×8
// in-register transposes), pads B panels with zeros, and edge tiles use kernels
// instantiated for fewer rows (m < MR) and fewer vectors, with masked loads/stores of C, so
// no work is wasted at the edges. M == 1 or N == 1 (matrix-vector) skip packing entirely.
//
// A loop-invariant B (gemmInvariantB: the recurrent weight of a scan) is packed whole once,
// every K block and every NR panel exactly as packB would pack them, into a per-thread
// slot; gemmBlocked then points at those panels instead of packing chunks, so the kernels
// read the same values in the same order and C is bitwise what gemm computes.
//
// Determinism: every element of C is reduced over k = 0..K-1 in order, in KC blocks whose
// boundaries depend only on K; C = alpha·acc + beta·C after the first block and
// C = alpha·acc + C after each further one. Threads split C into disjoint column (or row)
// blocks, and every kernel variant performs exactly the same per-lane operations, so the
// result does not depend on the thread count.
//
// bf16 mode (setMatmulBf16, GemmBf16.cpp): every float gemm that would pack (M, N > 1)
// goes to gemmBf16 instead, which runs on this file's thread pool (runParallel).
#include "Gemm.h"
#include "GemmBf16.h"
#include "InvariantSlots.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized (_mm512_undefined_ps; GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__AVX512F__)
#include <immintrin.h>
#define GRADC_GEMM_AVX512 1
#endif

#if defined(__GNUC__)
#define GRADC_INLINE inline __attribute__((always_inline))
#else
#define GRADC_INLINE inline
#endif

namespace gradc::rt {
namespace {

// ---------------------------------------------------------------------------------------
// Compile-time unrolling

/// unroll's helper: one call of f per index.
template <class F, std::size_t... I>
GRADC_INLINE void unrollImpl(F &&f, std::index_sequence<I...>) {
  (f(std::integral_constant<int, static_cast<int>(I)>{}), ...);
}
/// Calls f(integral_constant<int, i>) for i = 0..N-1, fully unrolled.
template <int N, class F> GRADC_INLINE void unroll(F &&f) {
  unrollImpl(f, std::make_index_sequence<static_cast<std::size_t>(N)>{});
}

// ---------------------------------------------------------------------------------------
// SIMD abstraction: Simd<T> has a vector type V of W lanes and the few operations the
// kernels need. loadn/storen touch only the first n lanes (loadn zeroes the rest).

#if GRADC_GEMM_AVX512

/// The SIMD operations for element type T (16 floats / 8 doubles per zmm vector).
template <class T> struct Simd;

/// AVX-512 float: 16 lanes.
template <> struct Simd<float> {
  using V = __m512;
  static constexpr int W = 16;
  static GRADC_INLINE __mmask16 mask(int n) {
    return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n < 0 ? 0 : n)) - 1u);
  }
  static GRADC_INLINE V zero() { return _mm512_setzero_ps(); }
  static GRADC_INLINE V set1(float x) { return _mm512_set1_ps(x); }
  static GRADC_INLINE V load(const float *p) { return _mm512_loadu_ps(p); }
  static GRADC_INLINE V loadn(const float *p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static GRADC_INLINE void store(float *p, V v) { _mm512_storeu_ps(p, v); }
  static GRADC_INLINE void storen(float *p, V v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static GRADC_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static GRADC_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static GRADC_INLINE V add(V a, V b) { return _mm512_add_ps(a, b); }

  /// Transposes the 16×16 block r[0..15] (rows) in place.
  static GRADC_INLINE void transpose(V r[16]) {
    V t[16], u[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // Group g = rows 4g..4g+3: u[4g+j] lane L holds column 4L+j of those rows.
    for (int g = 0; g < 4; ++g) {
      __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
      __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
      u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
      u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int j = 0; j < 4; ++j) {
      V v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), w0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
      V v1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
      r[j] = _mm512_shuffle_f32x4(v0, v1, 0x88);
      r[8 + j] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
      r[4 + j] = _mm512_shuffle_f32x4(w0, w1, 0x88);
      r[12 + j] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
    }
  }
};

/// AVX-512 double: 8 lanes.
template <> struct Simd<double> {
  using V = __m512d;
  static constexpr int W = 8;
  static GRADC_INLINE __mmask8 mask(int n) {
    return n >= 8 ? __mmask8(0xFF) : __mmask8((1u << (n < 0 ? 0 : n)) - 1u);
  }
  static GRADC_INLINE V zero() { return _mm512_setzero_pd(); }
  static GRADC_INLINE V set1(double x) { return _mm512_set1_pd(x); }
  static GRADC_INLINE V load(const double *p) { return _mm512_loadu_pd(p); }
  static GRADC_INLINE V loadn(const double *p, int n) { return _mm512_maskz_loadu_pd(mask(n), p); }
  static GRADC_INLINE void store(double *p, V v) { _mm512_storeu_pd(p, v); }
  static GRADC_INLINE void storen(double *p, V v, int n) { _mm512_mask_storeu_pd(p, mask(n), v); }
  static GRADC_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static GRADC_INLINE V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static GRADC_INLINE V add(V a, V b) { return _mm512_add_pd(a, b); }

  /// Transposes the 8×8 block r[0..7] (rows) in place.
  static GRADC_INLINE void transpose(V r[8]) {
    V t[8];
    // Pair p = rows 2p, 2p+1: t[2p+j] lane L holds column 2L+j of those rows.
    for (int p = 0; p < 4; ++p) {
      t[2 * p] = _mm512_unpacklo_pd(r[2 * p], r[2 * p + 1]);
      t[2 * p + 1] = _mm512_unpackhi_pd(r[2 * p], r[2 * p + 1]);
    }
    for (int j = 0; j < 2; ++j) {
      V v0 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0x88), w0 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0xDD);
      V v1 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0x88), w1 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0xDD);
      r[j] = _mm512_shuffle_f64x2(v0, v1, 0x88);
      r[4 + j] = _mm512_shuffle_f64x2(v0, v1, 0xDD);
      r[2 + j] = _mm512_shuffle_f64x2(w0, w1, 0x88);
      r[6 + j] = _mm512_shuffle_f64x2(w0, w1, 0xDD);
    }
  }
};

/// What gemmIsa() reports.
constexpr const char *kIsa = "avx512";

#else // portable fallback: GCC/Clang vector extensions (ymm with AVX, else 16-byte vectors)

/// Vector width of the fallback: ymm with AVX, else 16 bytes (SSE, NEON).
#if defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

/// Portable SIMD operations on GCC/Clang vector types (W lanes).
template <class T> struct Simd {
  static constexpr int W = kVectorBytes / static_cast<int>(sizeof(T));
  typedef T V __attribute__((vector_size(kVectorBytes)));
  static GRADC_INLINE V zero() { return V{}; }
  static GRADC_INLINE V set1(T x) { return V{} + x; }
  static GRADC_INLINE V load(const T *p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static GRADC_INLINE V loadn(const T *p, int n) {
    if (n >= W) return load(p);
    V v{};
    for (int i = 0; i < n; ++i) v[i] = p[i];
    return v;
  }
  static GRADC_INLINE void store(T *p, V v) { std::memcpy(p, &v, sizeof v); }
  static GRADC_INLINE void storen(T *p, V v, int n) {
    if (n >= W) return store(p, v);
    for (int i = 0; i < n; ++i) p[i] = v[i];
  }
  static GRADC_INLINE V fma(V a, V b, V c) { return a * b + c; }
  static GRADC_INLINE V mul(V a, V b) { return a * b; }
  static GRADC_INLINE V add(V a, V b) { return a + b; }
  static GRADC_INLINE void transpose(V r[W]) {
    T tmp[W][W];
    for (int i = 0; i < W; ++i)
      for (int j = 0; j < W; ++j) tmp[j][i] = r[i][j];
    for (int i = 0; i < W; ++i) std::memcpy(&r[i], tmp[i], sizeof(V));
  }
};

/// What gemmIsa() reports.
#if defined(__AVX2__)
constexpr const char *kIsa = "avx2";
#else
constexpr const char *kIsa = "generic";
#endif

#endif

// ---------------------------------------------------------------------------------------
// Blocking parameters (per element type). MR rows × NV vectors is the register tile;
// KC, MC, NC are the cache blocks (MC a multiple of MR, NC a multiple of NR). The float
// values were tuned on Zen 5 (8×32 tile, KC 256, MC 192); the GRADC_GEMM_* macros exist
// for re-tuning (results stay deterministic for any choice, but do change with it).

#ifndef GRADC_GEMM_MR_F
#if GRADC_GEMM_AVX512
#define GRADC_GEMM_MR_F 8
#else
#define GRADC_GEMM_MR_F 6
#endif
#endif
#ifndef GRADC_GEMM_NV_F
#define GRADC_GEMM_NV_F 2
#endif
#ifndef GRADC_GEMM_KC_F
#define GRADC_GEMM_KC_F 256
#endif
#ifndef GRADC_GEMM_MCB_F
#define GRADC_GEMM_MCB_F 24 // MC = MCB·MR
#endif

/// Register tile (MR × NV vectors) and cache blocks (KC, MC, NC) for element type T.
template <class T> struct Cfg;
template <> struct Cfg<float> {
  static constexpr int MR = GRADC_GEMM_MR_F, NV = GRADC_GEMM_NV_F;
  static constexpr int KC = GRADC_GEMM_KC_F, MC = GRADC_GEMM_MCB_F * MR, NC = 4096;
};
/// Double: an 8×16 tile (8 rows × 2 zmm) with AVX-512.
template <> struct Cfg<double> {
#if GRADC_GEMM_AVX512
  static constexpr int MR = 8, NV = 2;
#else
  static constexpr int MR = 6, NV = 2;
#endif
  static constexpr int KC = 256, MC = 8 * MR, NC = 2048;
};

// ---------------------------------------------------------------------------------------
// Micro-kernel: C[0..M)[0..n) = alpha·Σ_k a[k]·b[k] (+ beta·C if readC) for an M×(NVk·W)
// tile, n ≤ NVk·W valid columns. `a` is packed with stride Cfg::MR per k, `b` with stride
// NR = Cfg::NV·W per k.

/// The M-row, NVk-vector micro-kernel (see above).
template <class T, int M, int NVk>
void microKernel(int64_t kc, const T *__restrict a, const T *__restrict b, T *c, int64_t ldc, int n,
                 T alpha, T beta, bool readC) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W, MRS = Cfg<T>::MR, NR = Cfg<T>::NV * W;
  V acc[M][NVk];
  unroll<M>([&](auto r) { unroll<NVk>([&](auto v) { acc[r][v] = S::zero(); }); });
  // Bring the C tile towards L1 while the k loop runs.
  if (readC)
    unroll<M>([&](auto r) { __builtin_prefetch(c + r * ldc, 1, 3); });
#if defined(__clang__)
#pragma clang loop unroll_count(4)
#elif defined(__GNUC__)
#pragma GCC unroll 4
#endif
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NVk];
    unroll<NVk>([&](auto v) { bv[v] = S::load(b + v * W); });
    unroll<M>([&](auto r) {
      V av = S::set1(a[r]);
      unroll<NVk>([&](auto v) { acc[r][v] = S::fma(av, bv[v], acc[r][v]); });
    });
    a += MRS;
    b += NR;
  }
  const V va = S::set1(alpha), vb = S::set1(beta);
  unroll<M>([&](auto r) {
    T *cr = c + r * ldc;
    unroll<NVk>([&](auto v) {
      int nn = n - v * W;
      if (nn <= 0) return;
      V x = S::mul(va, acc[r][v]);
      if (readC) x = S::fma(vb, S::loadn(cr + v * W, nn), x);
      S::storen(cr + v * W, x, nn);
    });
  });
}

/// A micro-kernel: (kc, packed A, packed B, C, ldc, n, alpha, beta, readC).
template <class T>
using KernelFn = void (*)(int64_t, const T *, const T *, T *, int64_t, int, T, T, bool);

/// The kernels for 1..MR rows with NVk vectors.
template <class T, int NVk, std::size_t... I>
constexpr std::array<KernelFn<T>, sizeof...(I)> kernelRow(std::index_sequence<I...>) {
  return {{&microKernel<T, static_cast<int>(I) + 1, NVk>...}};
}
/// The kernels for every row count and vector count.
template <class T, std::size_t... J>
constexpr std::array<std::array<KernelFn<T>, Cfg<T>::MR>, sizeof...(J)>
kernelTable(std::index_sequence<J...>) {
  return {{kernelRow<T, static_cast<int>(J) + 1>(std::make_index_sequence<Cfg<T>::MR>{})...}};
}
/// kKernels<T>[nv-1][m-1]: the kernel for m rows and nv vectors.
template <class T>
constexpr auto kKernels = kernelTable<T>(std::make_index_sequence<Cfg<T>::NV>{});

// ---------------------------------------------------------------------------------------
// Packing

/// dst[c·ldd + r] = src[r·lds + c] for c < cols, r < lanes (0 for r ≥ rows); rows, cols ≤ W.
template <class T>
GRADC_INLINE void transposeBlock(const T *src, int64_t lds, int rows, int cols, T *dst, int64_t ldd,
                                 int lanes) {
  using S = Simd<T>;
  constexpr int W = S::W;
  typename S::V r[W];
  if (cols == W) {
    for (int i = 0; i < W; ++i) r[i] = i < rows ? S::load(src + i * lds) : S::zero();
  } else {
    for (int i = 0; i < W; ++i) r[i] = i < rows ? S::loadn(src + i * lds, cols) : S::zero();
  }
  S::transpose(r);
  if (lanes == W) {
    for (int i = 0; i < cols; ++i) S::store(dst + i * ldd, r[i]);
  } else {
    for (int i = 0; i < cols; ++i) S::storen(dst + i * ldd, r[i], lanes);
  }
}

/// Packs rows [i0, i0+mc) × k in [k0, k0+kc) of op(A) into MR-row panels: panel p (rows
/// i0+p·MR…) at dst + p·MR·kc, element (r, k) at [k·MR + r]. Rows past mc are not written.
template <class T>
void packA(bool transA, const T *A, int64_t lda, int64_t i0, int64_t mc, int64_t k0, int64_t kc, T *dst) {
  using S = Simd<T>;
  constexpr int W = S::W, MR = Cfg<T>::MR;
  for (int64_t ip = 0; ip < mc; ip += MR) {
    const int m = static_cast<int>(std::min<int64_t>(MR, mc - ip));
    T *panel = dst + ip * kc;
    if (transA) { // op(A)[i][k] = A[k·lda + i]: each k is a contiguous run of m values.
      const T *src = A + k0 * lda + i0 + ip;
      for (int64_t k = 0; k < kc; ++k) {
        for (int g = 0; g < m; g += W) S::storen(panel + k * MR + g, S::loadn(src + k * lda + g, m - g), m - g);
      }
    } else { // op(A)[i][k] = A[i·lda + k]: transpose W×W blocks.
      for (int g = 0; g < m; g += W) {
        const int rows = std::min(W, m - g);
        const T *src = A + (i0 + ip + g) * lda + k0;
        for (int64_t k = 0; k < kc; k += W) {
          const int cols = static_cast<int>(std::min<int64_t>(W, kc - k));
          transposeBlock(src + k, lda, rows, cols, panel + k * MR + g, MR, rows);
        }
      }
    }
  }
}

/// Packs k in [k0, k0+kc) × columns [j0, j0+nc) of op(B) into NR-column panels: panel p
/// at dst + p·NR·kc, element (k, j) at [k·NR + j], zero-padded to NR columns.
template <class T>
void packB(bool transB, const T *B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0, int64_t nc, T *dst) {
  using S = Simd<T>;
  constexpr int W = S::W, NV = Cfg<T>::NV, NR = NV * W;
  if (!transB) {
    // op(B)[k][j] = B[k·ldb + j]: read each row of B once, left to right (so the hardware
    // prefetcher sees long contiguous runs), scattering it over the panels.
    const int64_t full = nc / NR * NR;
    for (int64_t k = 0; k < kc; ++k) {
      const T *src = B + (k0 + k) * ldb + j0;
      T *d = dst + k * NR;
      for (int64_t jp = 0; jp < full; jp += NR, d += NR * kc)
        unroll<NV>([&](auto v) { S::store(d + v * W, S::load(src + jp + v * W)); });
      if (full < nc) {
        const int n = static_cast<int>(nc - full);
        unroll<NV>([&](auto v) { S::store(d + v * W, S::loadn(src + full + v * W, n - v * W)); });
      }
    }
    return;
  }
  // op(B)[k][j] = B[j·ldb + k]: transpose W×W blocks.
  for (int64_t jp = 0; jp < nc; jp += NR) {
    const int n = static_cast<int>(std::min<int64_t>(NR, nc - jp));
    T *panel = dst + jp * kc;
    for (int g = 0; g < NV; ++g) {
      const int rows = std::max(0, std::min(W, n - g * W));
      const T *src = B + (j0 + jp + g * W) * ldb + k0;
      for (int64_t k = 0; k < kc; k += W) {
        const int cols = static_cast<int>(std::min<int64_t>(W, kc - k));
        if (rows == 0) {
          for (int i = 0; i < cols; ++i) S::store(panel + (k + i) * NR + g * W, S::zero());
        } else {
          transposeBlock(src + k, ldb, rows, cols, panel + k * NR + g * W, NR, W);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Per-thread packing buffers (grow to the high-water mark, never shrink).

/// A 64-byte aligned buffer that only grows.
template <class T> struct AlignedBuffer {
  struct Free {
    void operator()(T *p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  std::unique_ptr<T[], Free> data;
  std::size_t size = 0;
  T *get(std::size_t n) {
    if (n > size) {
      data.reset(static_cast<T *>(::operator new[](n * sizeof(T), std::align_val_t(64))));
      size = n;
    }
    return data.get();
  }
};

/// The packing buffers of one thread.
template <class T> struct PackBuffers {
  AlignedBuffer<T> a, b;
};
/// This thread's packing buffers for element type T.
template <class T> PackBuffers<T> &packBuffers() {
  thread_local PackBuffers<T> buffers;
  return buffers;
}

// ---------------------------------------------------------------------------------------
// Single-threaded blocked GEMM on one block of C.

/// Sets C = beta·C (beta == 0 writes zeros without reading C).
template <class T> void scaleC(int64_t M, int64_t N, T beta, T *C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T *c = C + i * ldc;
    if (beta == T(0))
      std::fill(c, c + N, T(0));
    else if (beta != T(1))
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
}

/// The K block size: K split into ceil(K / KC) nearly equal blocks (depends on K only).
template <class T> int64_t kBlock(int64_t K) {
  const int64_t nb = (K + Cfg<T>::KC - 1) / Cfg<T>::KC;
  return (K + nb - 1) / nb;
}

#ifndef GRADC_GEMM_CHUNK_PANELS
#define GRADC_GEMM_CHUNK_PANELS 4
#endif

/// op(B) packed once for every K block (packWhole), seen from column `col0` of the whole
/// matrix (a multiple of NR): the K block starting at row pc begins at data + pc·ld, and in
/// it the NR-column panel of column j at + (col0 + j)·kc, laid out exactly as packB
/// writes it (so the micro-kernels read the same values as from a freshly packed chunk).
template <class T> struct PackedView {
  const T *data = nullptr;
  int64_t ld = 0;   ///< The whole matrix's N rounded up to NR.
  int64_t col0 = 0; ///< The first column of this view.
};

/// The padded width of a packed op(B) with N columns: N rounded up to NR.
template <class T> int64_t packedWidth(int64_t N) {
  constexpr int64_t NR = Cfg<T>::NV * Simd<T>::W;
  return (N + NR - 1) / NR * NR;
}

/// Packs the whole of op(B) (K×N) into dst (K·packedWidth(N) elements): the K blocks of
/// kBlock(K) rows one after the other, each as packB packs it for columns [0, N).
template <class T> void packWhole(bool transB, const T *B, int64_t ldb, int64_t N, int64_t K, T *dst) {
  const int64_t KB = kBlock<T>(K), ld = packedWidth<T>(N);
  for (int64_t pc = 0; pc < K; pc += KB)
    packB(transB, B, ldb, pc, std::min(KB, K - pc), 0, N, dst + pc * ld);
}

/// Single-threaded packed GEMM on the whole of the given C (arguments as gemm). With
/// `packed`, op(B) is read from that pre-packed copy instead of being packed here; the
/// micro-kernels then see the same values in the same order, so C is bitwise the same.
template <class T>
void gemmBlocked(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T *A, int64_t lda,
                 const T *B, int64_t ldb, T beta, T *C, int64_t ldc, const PackedView<T> *packed = nullptr) {
  using S = Simd<T>;
  constexpr int W = S::W, MR = Cfg<T>::MR, NR = Cfg<T>::NV * W;
  constexpr int64_t MC = Cfg<T>::MC, NC = Cfg<T>::NC;
  const int64_t KB = kBlock<T>(K);
  const int64_t mcMax = std::min<int64_t>(MC, (M + MR - 1) / MR * MR);
  // With several A blocks (M > MC) the whole KC×NC panel of B is packed once and shared by
  // them. With one A block, B is packed in chunks of a few micro-panels just before use:
  // the rows of B are still read in long runs, and the packed chunk stays in L2.
  const int64_t chunk = M > MC ? NC : int64_t(GRADC_GEMM_CHUNK_PANELS) * NR;
  const int64_t ncMax = std::min<int64_t>(chunk, (N + NR - 1) / NR * NR);
  PackBuffers<T> &buf = packBuffers<T>();
  T *Ap = buf.a.get(static_cast<std::size_t>(mcMax * KB));
  T *Bbuf = packed ? nullptr : buf.b.get(static_cast<std::size_t>(ncMax * KB));
  const int64_t NCouter = M > MC ? NC : N; // one A block: A is packed once per K block
  for (int64_t jc = 0; jc < N; jc += NCouter) {
    const int64_t ncOuter = std::min(NCouter, N - jc);
    for (int64_t pc = 0; pc < K; pc += KB) {
      const int64_t kc = std::min(KB, K - pc);
      const bool first = pc == 0;
      const bool readC = !(first && beta == T(0));
      const T betaEff = first ? beta : T(1);
      if (M <= MC) packA(transA, A, lda, 0, M, pc, kc, Ap);
      for (int64_t jb = 0; jb < ncOuter; jb += chunk) {
        const int64_t nc = std::min(chunk, ncOuter - jb);
        const T *Bp = Bbuf;
        if (packed)
          Bp = packed->data + pc * packed->ld + (packed->col0 + jc + jb) * kc;
        else
          packB(transB, B, ldb, pc, kc, jc + jb, nc, Bbuf);
        for (int64_t ic = 0; ic < M; ic += MC) {
          const int64_t mc = std::min(MC, M - ic);
          if (M > MC) packA(transA, A, lda, ic, mc, pc, kc, Ap);
          for (int64_t jr = 0; jr < nc; jr += NR) {
            const int n = static_cast<int>(std::min<int64_t>(NR, nc - jr));
            const int nv = (n + W - 1) / W;
            const auto &row = kKernels<T>[nv - 1];
            T *cj = C + ic * ldc + jc + jb + jr;
            const T *bp = Bp + jr * kc;
            for (int64_t ir = 0; ir < mc; ir += MR) {
              const int m = static_cast<int>(std::min<int64_t>(MR, mc - ir));
              row[m - 1](kc, Ap + ir * kc, bp, cj + ir * ldc, ldc, n, alpha, betaEff, readC);
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Matrix-vector products (M == 1 or N == 1), without packing.

/// Writes y[i·incy] = alpha·acc[i] (+ beta·y[i·incy] unless beta == 0) for i < n.
template <class T> GRADC_INLINE void storeOut(T *y, int64_t incy, const T *acc, int n, T alpha, T beta) {
  using S = Simd<T>;
  if (incy == 1) { // contiguous: the same operations, vectorised
    const typename S::V va = S::set1(alpha), vb = S::set1(beta);
    for (int i = 0; i < n; i += S::W) {
      typename S::V x = S::mul(va, S::loadn(acc + i, n - i));
      if (beta != T(0)) x = S::fma(vb, S::loadn(y + i, n - i), x);
      S::storen(y + i, x, n - i);
    }
    return;
  }
  if (beta == T(0)) {
    for (int i = 0; i < n; ++i) y[i * incy] = alpha * acc[i];
  } else {
    for (int i = 0; i < n; ++i) y[i * incy] = std::fma(beta, y[i * incy], alpha * acc[i]);
  }
}

/// y[j·incy] = alpha·Σ_k s[k·incs]·R[k·ldr + j] + beta·y[j·incy] for j < n: streams the
/// rows of R (one row per k) in chunks of kChunk vectors.
template <class T>
void gemvRows(int64_t n, int64_t K, T alpha, const T *s, int64_t incs, const T *R, int64_t ldr, T beta, T *y,
              int64_t incy) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W, kChunk = 8;
  alignas(64) T out[kChunk * W];
  for (int64_t j0 = 0; j0 < n; j0 += kChunk * W) {
    const int nj = static_cast<int>(std::min<int64_t>(kChunk * W, n - j0));
    V acc[kChunk];
    unroll<kChunk>([&](auto v) { acc[v] = S::zero(); });
    const T *r = R + j0;
    if (nj == kChunk * W) {
      for (int64_t k = 0; k < K; ++k, r += ldr) {
        const V sk = S::set1(s[k * incs]);
        unroll<kChunk>([&](auto v) { acc[v] = S::fma(sk, S::load(r + v * W), acc[v]); });
      }
    } else {
      const int nv = (nj + W - 1) / W;
      for (int64_t k = 0; k < K; ++k, r += ldr) {
        const V sk = S::set1(s[k * incs]);
        for (int v = 0; v < nv; ++v) acc[v] = S::fma(sk, S::loadn(r + v * W, nj - v * W), acc[v]);
      }
    }
    unroll<kChunk>([&](auto v) { S::store(out + v * W, acc[v]); });
    storeOut(y + j0 * incy, incy, out, nj, alpha, beta);
  }
}

/// Sum of the lanes of v, in a fixed order.
template <class T> GRADC_INLINE T hsum(typename Simd<T>::V v) {
  alignas(64) T lanes[Simd<T>::W];
  Simd<T>::store(lanes, v);
  constexpr int P = Simd<T>::W < 4 ? Simd<T>::W : 4;
  T s[P] = {};
  for (int i = 0; i < Simd<T>::W; i += P)
    for (int j = 0; j < P; ++j) s[j] += lanes[i + j];
  T r = s[0];
  for (int j = 1; j < P; ++j) r += s[j];
  return r;
}

/// Rows i0..i0+NRows-1 of gemvDots (NRows ≤ 4).
template <class T, int NRows>
GRADC_INLINE void dotRows(int64_t K, const T *u, const T *R, int64_t ldr, T *acc) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  V a0[NRows], a1[NRows];
  unroll<NRows>([&](auto r) { a0[r] = S::zero(), a1[r] = S::zero(); });
  int64_t k = 0;
  for (; k + 2 * W <= K; k += 2 * W) {
    const V u0 = S::load(u + k), u1 = S::load(u + k + W);
    unroll<NRows>([&](auto r) {
      a0[r] = S::fma(S::load(R + r * ldr + k), u0, a0[r]);
      a1[r] = S::fma(S::load(R + r * ldr + k + W), u1, a1[r]);
    });
  }
  if (k < K) {
    const int t = static_cast<int>(K - k);
    const V u0 = S::loadn(u + k, t), u1 = S::loadn(u + k + W, t - W);
    unroll<NRows>([&](auto r) {
      a0[r] = S::fma(S::loadn(R + r * ldr + k, t), u0, a0[r]);
      if (t > W) a1[r] = S::fma(S::loadn(R + r * ldr + k + W, t - W), u1, a1[r]);
    });
  }
  unroll<NRows>([&](auto r) { acc[r] = hsum<T>(S::add(a0[r], a1[r])); });
}

/// y[i·incy] = alpha·Σ_k R[i·ldr + k]·u[k·incu] + beta·y[i·incy] for i < n: dot products
/// of the rows of R with u (copied to a contiguous buffer first when strided).
template <class T>
void gemvDots(int64_t n, int64_t K, T alpha, const T *R, int64_t ldr, const T *u, int64_t incu, T beta, T *y,
              int64_t incy) {
  if (incu != 1) {
    T *packed = packBuffers<T>().a.get(static_cast<std::size_t>(K));
    for (int64_t k = 0; k < K; ++k) packed[k] = u[k * incu];
    u = packed;
  }
  T acc[std::max(4, Simd<T>::W)]; // ≥ W so that storeOut may read whole vectors
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    dotRows<T, 4>(K, u, R + i * ldr, ldr, acc);
    storeOut(y + i * incy, incy, acc, 4, alpha, beta);
  }
  const int rest = static_cast<int>(n - i);
  if (rest == 3) dotRows<T, 3>(K, u, R + i * ldr, ldr, acc);
  if (rest == 2) dotRows<T, 2>(K, u, R + i * ldr, ldr, acc);
  if (rest == 1) dotRows<T, 1>(K, u, R + i * ldr, ldr, acc);
  if (rest > 0) storeOut(y + i * incy, incy, acc, rest, alpha, beta);
}

/// The product as a matrix-vector product when M == 1 or N == 1 (false otherwise).
template <class T>
bool gemv(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T *A, int64_t lda,
          const T *B, int64_t ldb, T beta, T *C, int64_t ldc) {
  if (N == 1) { // C[i][0] = Σ_k op(A)[i][k]·op(B)[k][0]; op(B)[k][0] = B[k·(transB ? 1 : ldb)].
    const int64_t incb = transB ? 1 : ldb;
    if (transA) gemvRows(M, K, alpha, B, incb, A, lda, beta, C, ldc);
    else gemvDots(M, K, alpha, A, lda, B, incb, beta, C, ldc);
    return true;
  }
  if (M == 1) { // C[0][j] = Σ_k op(A)[0][k]·op(B)[k][j]; op(A)[0][k] = A[k·(transA ? lda : 1)].
    const int64_t inca = transA ? lda : 1;
    if (transB) gemvDots(N, K, alpha, B, ldb, A, inca, beta, C, int64_t(1));
    else gemvRows(N, K, alpha, A, inca, B, ldb, beta, C, int64_t(1));
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// Thread pool: workers are created on first use. Between jobs a worker spins for a short
// while (gemm calls of a training step come in quick succession), then sleeps on a
// condition variable. One parallel call at a time; a caller that finds the pool busy runs
// all parts itself (same results, since parts are disjoint blocks of C).

/// A short pause inside spin loops.
GRADC_INLINE void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/// Spins (with pauses) until done() or about `budget` has passed; returns done().
template <class Pred> bool spinFor(Pred done, std::chrono::microseconds budget) {
  const auto until = std::chrono::steady_clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      if (done()) return true;
      cpuRelax();
    }
    if (std::chrono::steady_clock::now() >= until) return done();
  }
}

/// A fixed set of worker threads that run the parts of one parallel gemm.
class Pool {
public:
  using Fn = void (*)(void *ctx, int part);

  /// Runs fn(ctx, p) for p = 0..parts-1, part 0 on the calling thread.
  void run(int parts, Fn fn, void *ctx) {
    std::unique_lock<std::mutex> call(callMu_, std::try_to_lock);
    if (!call.owns_lock() || inWorker_) {
      for (int p = 0; p < parts; ++p) fn(ctx, p);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      while (static_cast<int>(workers_.size()) < parts - 1) {
        const int index = static_cast<int>(workers_.size()) + 1;
        workers_.emplace_back([this, index] { workerLoop(index); });
      }
      fn_ = fn;
      ctx_ = ctx;
      parts_ = parts;
      remaining_.store(parts - 1, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    fn(ctx, 0);
    if (!spinFor([this] { return remaining_.load(std::memory_order_acquire) == 0; }, kSpin)) {
      std::unique_lock<std::mutex> lk(mu_);
      done_.wait(lk, [this] { return remaining_.load(std::memory_order_acquire) == 0; });
    }
  }

private:
  /// How long a thread spins before it sleeps on the condition variable.
  static constexpr std::chrono::microseconds kSpin{50};

  void workerLoop(int index) {
    inWorker_ = true;
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lk(mu_);
      seen = generation_.load(std::memory_order_relaxed);
      // A worker created for the current call must still take part in it.
      if (index < parts_ && remaining_.load(std::memory_order_relaxed) > 0) --seen;
    }
    for (;;) {
      spinFor([&] { return generation_.load(std::memory_order_acquire) != seen; }, kSpin);
      Fn fn;
      void *ctx;
      {
        std::unique_lock<std::mutex> lk(mu_);
        wake_.wait(lk, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
        seen = generation_.load(std::memory_order_relaxed);
        if (index >= parts_) continue;
        fn = fn_;
        ctx = ctx_;
      }
      fn(ctx, index);
      // Decrement under the lock so the caller cannot miss the notification.
      std::lock_guard<std::mutex> lk(mu_);
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.notify_one();
    }
  }

  std::mutex callMu_, mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  Fn fn_ = nullptr;
  void *ctx_ = nullptr;
  int parts_ = 0;
  std::atomic<int> remaining_{0};
  std::atomic<uint64_t> generation_{0};
  static thread_local bool inWorker_;
};
thread_local bool Pool::inWorker_ = false;

/// The process-wide pool; never destroyed (its workers sleep until the process exits).
Pool &pool() {
  static Pool *p = new Pool;
  return *p;
}

// ---------------------------------------------------------------------------------------
// Entry point: argument handling, thread partitioning.

/// One parallel gemm: the arguments and how C is split into parts.
template <class T> struct Job {
  bool transA, transB;
  int64_t M, N, K;
  T alpha;
  const T *A;
  int64_t lda;
  const T *B;
  int64_t ldb;
  T beta;
  T *C;
  int64_t ldc;
  bool splitN;
  int parts;
  int64_t units, unit; // the split dimension has `units` blocks of `unit` rows/columns
  const PackedView<T> *packed; // op(B) pre-packed (column 0 of the whole matrix), or null

  void runPart(int p) const {
    const int64_t u0 = units * p / parts, u1 = units * (p + 1) / parts;
    const int64_t total = splitN ? N : M;
    const int64_t b0 = std::min(total, u0 * unit), b1 = std::min(total, u1 * unit);
    if (b0 >= b1) return;
    if (splitN) { // b0 is a multiple of NR: a panel boundary of the packed copy
      PackedView<T> view;
      if (packed) view = {packed->data, packed->ld, packed->col0 + b0};
      gemmBlocked(transA, transB, M, b1 - b0, K, alpha, A, lda, transB ? B + b0 * ldb : B + b0, ldb, beta,
                  C + b0, ldc, packed ? &view : nullptr);
    } else {
      gemmBlocked(transA, transB, b1 - b0, N, K, alpha, transA ? A + b0 : A + b0 * lda, lda, B, ldb, beta,
                  C + b0 * ldc, ldc, packed);
    }
  }
  static void call(void *ctx, int p) { static_cast<const Job *>(ctx)->runPart(p); }
};

/// The number of hardware threads (at least 1): more workers than that would only
/// oversubscribe the cores (worker threads spin briefly between jobs).
int64_t hardwareThreads() {
  static const int64_t n = std::max(1u, std::thread::hardware_concurrency());
  return n;
}

/// Products below this many multiply-adds run on the calling thread (waking a worker
/// costs more than it saves).
constexpr double kMinParallelFma = 1 << 20;

/// Runs fn(ctx, p) for p < parts on the pool (gemmBf16's way to the workers).
void runParallel(int parts, void (*fn)(void *, int), void *ctx) { pool().run(parts, fn, ctx); }

/// The thread count a bf16 gemm may use: `threads`, at most the hardware threads.
int bf16Threads(int threads) { return static_cast<int>(std::min<int64_t>(std::max(threads, 1), hardwareThreads())); }

/// Throws std::logic_error if C shares memory with A or B (the caller's bug: the kernels
/// read A and B after writing parts of C, and threads write C while others pack A).
template <class T>
void checkNoOverlap(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const T *A, int64_t lda, const T *B,
                    int64_t ldb, const T *C, int64_t ldc) {
  if (K <= 0) return;
  auto overlaps = [](const T *x, int64_t nx, const T *y, int64_t ny) {
    const auto a = reinterpret_cast<std::uintptr_t>(x), b = reinterpret_cast<std::uintptr_t>(y);
    return a < b + static_cast<std::uintptr_t>(ny) * sizeof(T) && b < a + static_cast<std::uintptr_t>(nx) * sizeof(T);
  };
  const int64_t nc = (M - 1) * ldc + N;
  const int64_t na = transA ? (K - 1) * lda + M : (M - 1) * lda + K;
  const int64_t nb = transB ? (N - 1) * ldb + K : (K - 1) * ldb + N;
  if (overlaps(C, nc, A, na) || overlaps(C, nc, B, nb))
    throw std::logic_error("gemm: the output C overlaps an input (" + std::string(overlaps(C, nc, A, na) ? "A" : "B") +
                           "), M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
}

/// gemm for element type T: special cases, then matrix-vector, blocked or parallel blocked.
/// With `packed` (only when neither M nor N is 1), the blocked kernels read op(B) from that
/// pre-packed copy of B.
template <class T>
void gemmImpl(bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha, const T *A, int64_t lda,
              const T *B, int64_t ldb, T beta, T *C, int64_t ldc, int threads,
              const PackedView<T> *packed = nullptr) {
  if (M <= 0 || N <= 0) return;
  checkNoOverlap(transA, transB, M, N, K, A, lda, B, ldb, C, ldc);
  if (K <= 0 || alpha == T(0)) {
    scaleC(M, N, beta, C, ldc);
    return;
  }
  if (gemv(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  if constexpr (std::is_same_v<T, float>)
    if (matmulBf16()) {
      gemmBf16(-1, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bf16Threads(threads), &runParallel);
      return;
    }
  constexpr int MR = Cfg<T>::MR, NR = Cfg<T>::NV * Simd<T>::W;
  const int64_t tilesN = (N + NR - 1) / NR, tilesM = (M + MR - 1) / MR;
  const double fma = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  int parts = 1;
  if (threads > 1 && fma >= kMinParallelFma)
    parts = static_cast<int>(std::min<int64_t>({threads, hardwareThreads(), std::max(tilesN, tilesM), 64}));
  if (parts <= 1) {
    gemmBlocked(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, packed);
    return;
  }
  Job<T> job{transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, false, parts, 0, 0, packed};
  // Split N when it has enough column tiles for every part, else M.
  job.splitN = tilesN >= 2 * parts || tilesN >= tilesM;
  job.units = job.splitN ? tilesN : tilesM;
  job.unit = job.splitN ? NR : MR;
  pool().run(parts, &Job<T>::call, &job);
}

// ---------------------------------------------------------------------------------------
// Loop-invariant B: per-thread slots holding a packed copy of op(B).

/// One slot: a packed op(B) and what it was packed from; the buffer only grows.
template <class T> struct InvariantSlot {
  AlignedBuffer<T> buffer;
  PackedFrom from;
};

/// This thread's slots for element type T.
template <class T> SlotTable<InvariantSlot<T>> &invariantSlots() {
  thread_local SlotTable<InvariantSlot<T>> slots;
  return slots;
}

/// gemmInvariantB for element type T: packs op(B) into the slot unless it already holds a
/// valid copy of the same B (pointer, ldb, N, K, transB), then runs the blocked gemm on it.
template <class T>
void gemmInvariantImpl(int64_t slot, bool transA, bool transB, int64_t M, int64_t N, int64_t K, T alpha,
                       const T *A, int64_t lda, const T *B, int64_t ldb, T beta, T *C, int64_t ldc, int threads) {
  // Shapes that never pack B (empty, scaling only, matrix-vector) take the plain path.
  if (slot < 0 || M <= 1 || N <= 1 || K <= 0 || alpha == T(0)) {
    gemmImpl(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
    return;
  }
  checkNoOverlap(transA, transB, M, N, K, A, lda, B, ldb, C, ldc);
  if constexpr (std::is_same_v<T, float>)
    if (matmulBf16()) { // the bf16 gemm keeps its own packed copy of B in the slot
      gemmBf16(slot, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bf16Threads(threads), &runParallel);
      return;
    }
  InvariantSlot<T> &s = invariantSlots<T>().at(slot);
  if (!s.from.holds(B, ldb, N, K, transB)) {
    T *dst = s.buffer.get(static_cast<std::size_t>(K * packedWidth<T>(N)));
    packWhole(transB, B, ldb, N, K, dst);
    s.from.set(B, ldb, N, K, transB);
  }
  const PackedView<T> view{s.buffer.data.get(), packedWidth<T>(N), 0};
  gemmImpl(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads, &view);
}

} // namespace

void gemmInvariantReset(int64_t first, int64_t count) {
  invariantSlots<float>().reset(first, count);
  invariantSlots<double>().reset(first, count);
  gemmBf16ResetSlots(first, count);
}

void gemmInvariantB(int64_t slot, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                    int threads) {
  gemmInvariantImpl<float>(slot, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void gemmInvariantB(int64_t slot, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha,
                    const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc,
                    int threads) {
  gemmInvariantImpl<double>(slot, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
          const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int threads) {
  gemmImpl<float>(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const double *A, int64_t lda,
          const double *B, int64_t ldb, double beta, double *C, int64_t ldc, int threads) {
  gemmImpl<double>(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

const char *gemmIsa() { return kIsa; }

} // namespace gradc::rt
