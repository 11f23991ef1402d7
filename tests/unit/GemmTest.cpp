// GemmTest.cpp: GoogleTest unit tests of the runtime's gemm (float and double) against a naive double-accumulated reference: every transpose combination, odd sizes, alpha/beta cases, padded leading dimensions, determinism across thread counts, and gemmInvariantB (pre-packed B) being bitwise equal to gemm.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "Gemm.h"

using gradc::rt::gemm;
using gradc::rt::gemmInvariantB;
using gradc::rt::gemmInvariantReset;

namespace {

/// One gemm problem with its operands stored as the flags say, C padded to ldc.
template <class T> struct Problem {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0, lda = 0, ldb = 0, ldc = 0;
  std::vector<T> A, B, C0;

  /// Random operands in [-1, 1); leading dimensions = row length + pad.
  Problem(bool ta_, bool tb_, int64_t M_, int64_t N_, int64_t K_, int64_t pad, std::mt19937_64 &rng)
      : ta(ta_), tb(tb_), M(M_), N(N_), K(K_) {
    lda = (ta ? M : K) + pad;
    ldb = (tb ? K : N) + pad;
    ldc = N + pad;
    std::uniform_real_distribution<double> d(-1.0, 1.0);
    A.resize(static_cast<size_t>((ta ? K : M) * lda + 1));
    B.resize(static_cast<size_t>((tb ? N : K) * ldb + 1));
    C0.resize(static_cast<size_t>(M * ldc + 1));
    for (T &x : A) x = static_cast<T>(d(rng));
    for (T &x : B) x = static_cast<T>(d(rng));
    for (T &x : C0) x = static_cast<T>(d(rng));
  }
  T a(int64_t i, int64_t k) const { return ta ? A[k * lda + i] : A[i * lda + k]; }
  T b(int64_t k, int64_t j) const { return tb ? B[j * ldb + k] : B[k * ldb + j]; }

  /// Runs gemm on a copy of C0 (or of `c` if given).
  std::vector<T> run(T alpha, T beta, int threads = 1, const std::vector<T> *c = nullptr) const {
    std::vector<T> C = c ? *c : C0;
    gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc, threads);
    return C;
  }

  /// Checks C against alpha·op(A)·op(B) + beta·Cin in double: |C - ref| ≤ tol·scale, where
  /// scale = |alpha|·Σ_k |a·b| + |beta·Cin| (the size of the terms summed), and that the
  /// padding of C is untouched. Cin NaN with beta == 0 counts as 0 (BLAS semantics).
  void check(const std::vector<T> &C, const std::vector<T> &Cin, T alpha, T beta, double tol,
             const std::string &what) const {
    int failures = 0;
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < ldc; ++j) {
        const size_t at = static_cast<size_t>(i * ldc + j);
        if (j >= N) { // padding: bitwise unchanged
          if (std::memcmp(&C[at], &Cin[at], sizeof(T)) != 0 && ++failures <= 5)
            ADD_FAILURE() << what << ": padding C[" << i << "][" << j << "] was written";
          continue;
        }
        double ref = 0, scale = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double p = static_cast<double>(a(i, k)) * static_cast<double>(b(k, j));
          ref += p;
          scale += std::fabs(p);
        }
        ref *= alpha;
        scale *= std::fabs(static_cast<double>(alpha));
        if (beta != T(0)) {
          ref += static_cast<double>(beta) * Cin[at];
          scale += std::fabs(static_cast<double>(beta) * Cin[at]);
        }
        const double err = std::fabs(static_cast<double>(C[at]) - ref);
        if (!(err <= tol * scale + std::numeric_limits<double>::min()) && ++failures <= 5)
          ADD_FAILURE() << what << ": C[" << i << "][" << j << "] = " << C[at] << ", expected " << ref
                        << " (error " << err << ", scale " << scale << ")";
      }
    }
    if (C.back() != Cin.back()) ADD_FAILURE() << what << ": wrote past the end of C";
    if (failures > 5) ADD_FAILURE() << what << ": " << failures << " wrong elements in total";
  }
};

template <class T> double tolerance() { return std::is_same<T, float>::value ? 1e-5 : 1e-12; }

template <class T> std::string describe(const Problem<T> &p, T alpha, T beta, const char *extra = "") {
  return std::string(p.ta ? "T" : "N") + (p.tb ? "T" : "N") + " M=" + std::to_string(p.M) +
         " N=" + std::to_string(p.N) + " K=" + std::to_string(p.K) + " lda=" + std::to_string(p.lda) +
         " ldb=" + std::to_string(p.ldb) + " ldc=" + std::to_string(p.ldc) + " alpha=" + std::to_string(alpha) +
         " beta=" + std::to_string(beta) + extra;
}

/// Every transpose combination × sizes {1,3,17,33,65,129}³; (alpha, beta) and the padding
/// of the leading dimensions vary from case to case. beta == 0 cases start from NaN in C.
template <class T> void allShapes() {
  const int64_t sizes[] = {1, 3, 17, 33, 65, 129};
  const T alphas[] = {T(1), T(-0.75), T(1.5), T(1)};
  const T betas[] = {T(0), T(1), T(-0.5), T(0)};
  const int64_t pads[] = {0, 3, 16, 1};
  std::mt19937_64 rng(1234);
  int c = 0;
  for (int t = 0; t < 4; ++t)
    for (int64_t M : sizes)
      for (int64_t N : sizes)
        for (int64_t K : sizes) {
          const int v = c++ % 4;
          Problem<T> p(t & 1, t & 2, M, N, K, pads[(c / 4) % 4], rng);
          const T alpha = alphas[v], beta = betas[v];
          std::vector<T> Cin = p.C0;
          if (beta == T(0))
            for (int64_t i = 0; i < M; ++i)
              for (int64_t j = 0; j < N; ++j) Cin[static_cast<size_t>(i * p.ldc + j)] = std::numeric_limits<T>::quiet_NaN();
          std::vector<T> C = p.run(alpha, beta, 1, &Cin);
          p.check(C, Cin, alpha, beta, tolerance<T>(), describe(p, alpha, beta));
          if (::testing::Test::HasFailure()) return;
        }
}

TEST(Gemm, FloatAllTransposesOddSizes) { allShapes<float>(); }
TEST(Gemm, DoubleAllTransposesOddSizes) { allShapes<double>(); }

/// beta == 0 must not read C: NaN and infinities in C disappear, for every path (blocked,
/// matrix-vector with M == 1 or N == 1, K == 0, alpha == 0).
template <class T> void betaZeroIgnoresC() {
  std::mt19937_64 rng(7);
  const int64_t shapes[][3] = {{40, 70, 300}, {1, 70, 30}, {40, 1, 30}, {1, 1, 5}, {20, 33, 0}};
  for (int t = 0; t < 4; ++t)
    for (auto &s : shapes) {
      Problem<T> p(t & 1, t & 2, s[0], s[1], s[2], 2, rng);
      for (T alpha : {T(1), T(0)}) {
        std::vector<T> Cin = p.C0;
        for (int64_t i = 0; i < p.M; ++i)
          for (int64_t j = 0; j < p.N; ++j)
            Cin[static_cast<size_t>(i * p.ldc + j)] =
                (i + j) % 2 ? std::numeric_limits<T>::quiet_NaN() : -std::numeric_limits<T>::infinity();
        std::vector<T> C = p.run(alpha, T(0), 1, &Cin);
        p.check(C, Cin, alpha, T(0), tolerance<T>(), describe(p, alpha, T(0), " (NaN/inf in C)"));
      }
    }
}

TEST(Gemm, FloatBetaZeroDoesNotReadC) { betaZeroIgnoresC<float>(); }
TEST(Gemm, DoubleBetaZeroDoesNotReadC) { betaZeroIgnoresC<double>(); }

/// alpha == 0 (and K == 0) must not read A or B: NaN there leaves C = beta·C.
TEST(Gemm, AlphaZeroDoesNotReadAOrB) {
  std::mt19937_64 rng(8);
  Problem<float> p(false, true, 17, 33, 65, 0, rng);
  std::fill(p.A.begin(), p.A.end(), std::numeric_limits<float>::quiet_NaN());
  std::fill(p.B.begin(), p.B.end(), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> C = p.run(0.f, 0.5f);
  for (int64_t i = 0; i < p.M * p.N; ++i) ASSERT_EQ(C[static_cast<size_t>(i)], 0.5f * p.C0[static_cast<size_t>(i)]);
  p.K = 0;
  C = p.run(1.f, 2.f);
  for (int64_t i = 0; i < p.M * p.N; ++i) ASSERT_EQ(C[static_cast<size_t>(i)], 2.f * p.C0[static_cast<size_t>(i)]);
}

/// M == 0 or N == 0 touches nothing.
TEST(Gemm, EmptyIsNoOp) {
  std::vector<float> A(4, 1.f), B(4, 1.f), C(4, 7.f);
  gemm(false, false, 0, 2, 2, 1.f, A.data(), 2, B.data(), 2, 0.f, C.data(), 2);
  gemm(false, false, 2, 0, 2, 1.f, A.data(), 2, B.data(), 2, 0.f, C.data(), 2);
  for (float x : C) EXPECT_EQ(x, 7.f);
}

/// beta == 1 accumulates over repeated calls (as dW += hᵀ·dG over the time steps).
template <class T> void betaOneAccumulates() {
  std::mt19937_64 rng(9);
  for (int t = 0; t < 4; ++t) {
    Problem<T> p0(t & 1, t & 2, 64, 256, 32, 5, rng), p1(t & 1, t & 2, 64, 256, 32, 5, rng);
    std::vector<T> C = p0.C0;
    std::vector<T> Cin = C;
    C = p0.run(T(1), T(1), 1, &C);
    p0.check(C, Cin, T(1), T(1), tolerance<T>(), describe(p0, T(1), T(1), " (step 1)"));
    Cin = C;
    C = p1.run(T(1), T(1), 2, &C);
    p1.check(C, Cin, T(1), T(1), tolerance<T>(), describe(p1, T(1), T(1), " (step 2)"));
  }
}

TEST(Gemm, FloatBetaOneAccumulates) { betaOneAccumulates<float>(); }
TEST(Gemm, DoubleBetaOneAccumulates) { betaOneAccumulates<double>(); }

/// Shapes that cross every cache block boundary (several K blocks, several row blocks
/// with a shared B panel, more than one column block) and the LSTM benchmark shapes.
template <class T> void largeShapes() {
  std::mt19937_64 rng(10);
  struct S {
    bool ta, tb;
    int64_t M, N, K;
  };
  const S shapes[] = {{false, false, 100, 4130, 260}, {true, true, 101, 300, 777},  {false, true, 64, 128, 1100},
                      {true, false, 200, 700, 64},     {true, false, 28, 300, 900},  {false, false, 900, 300, 28},
                      {false, false, 64, 1, 512},      {true, false, 512, 1, 64},    {true, false, 1, 256, 960},
                      {false, true, 1, 300, 1000}};
  for (const S &s : shapes) {
    Problem<T> p(s.ta, s.tb, s.M, s.N, s.K, 7, rng);
    const T alpha = T(0.5), beta = T(-1);
    std::vector<T> C = p.run(alpha, beta, 2);
    p.check(C, p.C0, alpha, beta, tolerance<T>(), describe(p, alpha, beta));
  }
}

TEST(Gemm, FloatLargeShapes) { largeShapes<float>(); }
TEST(Gemm, DoubleLargeShapes) { largeShapes<double>(); }

/// The result is bitwise the same for 1, 2 and 3 threads.
template <class T> void deterministicAcrossThreads() {
  std::mt19937_64 rng(11);
  const int64_t shapes[][3] = {{64, 1024, 300}, {300, 1000, 64}, {64, 200, 700}, {300, 70, 500}, {1000, 300, 28}};
  for (int t = 0; t < 4; ++t)
    for (auto &s : shapes) {
      Problem<T> p(t & 1, t & 2, s[0], s[1], s[2], 1, rng);
      const std::vector<T> one = p.run(T(1), T(1), 1);
      for (int threads : {2, 3}) {
        const std::vector<T> many = p.run(T(1), T(1), threads);
        ASSERT_EQ(std::memcmp(one.data(), many.data(), one.size() * sizeof(T)), 0)
            << describe(p, T(1), T(1)) << ": differs with " << threads << " threads";
      }
    }
}

TEST(Gemm, FloatDeterministicAcrossThreads) { deterministicAcrossThreads<float>(); }
TEST(Gemm, DoubleDeterministicAcrossThreads) { deterministicAcrossThreads<double>(); }

/// Runs gemmInvariantB on slot `slot` for p on a copy of `c`.
template <class T>
std::vector<T> runInvariant(const Problem<T> &p, int64_t slot, T alpha, T beta, int threads, const std::vector<T> &c) {
  std::vector<T> C = c;
  gemmInvariantB(slot, p.ta, p.tb, p.M, p.N, p.K, alpha, p.A.data(), p.lda, p.B.data(), p.ldb, beta, C.data(), p.ldc,
                 threads);
  return C;
}

/// gemmInvariantB equals gemm bitwise, on the call that packs B and on the calls that reuse
/// the packed copy: M from a matrix-vector row to several A blocks (MC is 192 floats, 64
/// doubles), N not a multiple of the 32-float / 16-double panel width, K within one KC = 256
/// block and across two or three, every transpose combination, 1 and 2 threads.
template <class T> void invariantEqualsGemm() {
  std::mt19937_64 rng(21);
  const int64_t Ms[] = {1, 7, 64, 250}, Ns[] = {33, 70, 515}, Ks[] = {64, 300, 520};
  int64_t slot = 0;
  for (int t = 0; t < 4; ++t)
    for (int64_t M : Ms)
      for (int64_t N : Ns)
        for (int64_t K : Ks) {
          Problem<T> p(t & 1, t & 2, M, N, K, (M + N) % 3, rng);
          gemmInvariantReset(slot, 1);
          for (int threads : {1, 2}) {
            for (T beta : {T(0), T(0.5)}) { // the first call packs, the others reuse
              const std::vector<T> want = p.run(T(1.25), beta, threads);
              const std::vector<T> got = runInvariant(p, slot, T(1.25), beta, threads, p.C0);
              ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(T)), 0)
                  << describe(p, T(1.25), beta) << " threads=" << threads;
            }
          }
          slot = (slot + 1) % 5;
        }
}

TEST(GemmInvariant, FloatEqualsGemmBitwise) { invariantEqualsGemm<float>(); }
TEST(GemmInvariant, DoubleEqualsGemmBitwise) { invariantEqualsGemm<double>(); }

/// A reset makes the slot repack B (the same memory, changed contents); a different B in a
/// slot repacks even without a reset; a stale copy is used only while the caller promises B
/// unchanged (no reset), which is what makes the reuse pay.
template <class T> void invariantRepacks() {
  std::mt19937_64 rng(22);
  Problem<T> p(false, false, 64, 100, 300, 0, rng);
  const int64_t slot = 3;
  gemmInvariantReset(slot, 1);
  const std::vector<T> before = runInvariant(p, slot, T(1), T(0), 1, p.C0);
  ASSERT_EQ(std::memcmp(before.data(), p.run(T(1), T(0)).data(), before.size() * sizeof(T)), 0);
  for (T &x : p.B) x = -x; // new weights in the same memory
  const std::vector<T> stale = runInvariant(p, slot, T(1), T(0), 1, p.C0);
  EXPECT_EQ(std::memcmp(stale.data(), before.data(), stale.size() * sizeof(T)), 0) << "reused without a reset";
  gemmInvariantReset(slot, 1);
  const std::vector<T> fresh = runInvariant(p, slot, T(1), T(0), 1, p.C0);
  const std::vector<T> want = p.run(T(1), T(0));
  EXPECT_EQ(std::memcmp(fresh.data(), want.data(), want.size() * sizeof(T)), 0) << "not repacked after a reset";
  EXPECT_NE(std::memcmp(fresh.data(), before.data(), want.size() * sizeof(T)), 0);
  // Another B (another address, and another shape) in the same slot, without a reset.
  Problem<T> q(true, true, 70, 90, 260, 1, rng);
  const std::vector<T> other = runInvariant(q, slot, T(1), T(1), 2, q.C0);
  const std::vector<T> wantQ = q.run(T(1), T(1), 2);
  EXPECT_EQ(std::memcmp(other.data(), wantQ.data(), wantQ.size() * sizeof(T)), 0) << "a different B was not repacked";
}

TEST(GemmInvariant, FloatRepacksAfterReset) { invariantRepacks<float>(); }
TEST(GemmInvariant, DoubleRepacksAfterReset) { invariantRepacks<double>(); }

/// gemmInvariantB keeps gemm's refusal of an output overlapping an input.
TEST(GemmInvariant, OutputOverlappingAnInputIsRefused) {
  std::vector<float> buf(64 * 64, 1.0f), other(64 * 64, 1.0f);
  gemmInvariantReset(0, 1);
  EXPECT_THROW(gemmInvariantB(0, false, false, 64, 64, 64, 1.0f, other.data(), 64, buf.data() + 100, 64, 0.0f,
                              buf.data(), 64),
               std::logic_error);
}

/// Several threads may call gemm (itself multi-threaded) at the same time.
TEST(Gemm, ConcurrentCallers) {
  std::mt19937_64 rng(12);
  Problem<float> p(false, true, 200, 300, 400, 0, rng);
  const std::vector<float> expected = p.run(1.f, 0.f, 1);
  std::vector<std::vector<float>> got(4);
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&, c] {
      for (int r = 0; r < 5; ++r) got[static_cast<size_t>(c)] = p.run(1.f, 0.f, 2);
    });
  for (std::thread &t : callers) t.join();
  for (const auto &g : got) EXPECT_EQ(std::memcmp(g.data(), expected.data(), g.size() * sizeof(float)), 0);
}

} // namespace

// An output that shares memory with an input is refused (it once came from a memory plan
// that let a matmul's result reuse the buffer of a transposed operand: with two threads,
// one wrote C while the other still packed A, and results changed from run to run).
TEST(Gemm, OutputOverlappingAnInputIsRefused) {
  std::vector<float> buf(64 * 64, 1.0f);
  std::vector<float> other(64 * 64, 1.0f);
  EXPECT_THROW(gemm(true, false, 64, 64, 64, 1.0f, buf.data(), 64, other.data(), 64, 0.0f, buf.data(), 64, 2),
               std::logic_error);
  EXPECT_THROW(gemm(false, false, 64, 64, 64, 1.0f, other.data(), 64, buf.data() + 100, 64, 0.0f, buf.data(), 64),
               std::logic_error);
  std::vector<float> c(64 * 64, 0.0f);
  EXPECT_NO_THROW(gemm(false, false, 64, 64, 64, 1.0f, buf.data(), 64, other.data(), 64, 0.0f, c.data(), 64, 2));
}
