// GemmBf16Test.cpp: the float gemm in bf16 mode (runtime/GemmBf16.cpp) against an independent
// reference: op(A) and op(B) rounded to bf16 here (round to nearest even, on the bits), their
// products summed in double; for every transpose combination, odd sizes (K odd: a half pair,
// N not a multiple of 16, M not of 6), alpha and beta; bitwise the same at 1 and 2 threads and
// through gemmInvariantB; and different from the fp32 gemm (the rounding is really applied).
// Skipped on a build without AVX512-BF16.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "Gemm.h"
#include "GemmBf16.h"

namespace gradc::rt {
namespace {

/// f rounded to bf16 (nearest even; a denormal reads as a zero of its sign, as VCVTNE2PS2BF16
/// does) and back to float, written independently of the runtime's.
float roundBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
  const uint32_t lsb = (u >> 16) & 1u;
  u = (u + 0x7fffu + lsb) & 0xffff0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

struct Bf16Mode { // on for one test, off after it
  Bf16Mode() { setMatmulBf16(true); }
  ~Bf16Mode() { setMatmulBf16(false); }
};

/// Worst |gemm - reference| / (Σ|products| + 1e-30) over C, and whether 1 and 2 threads and the
/// invariant path agreed bitwise.
void check(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
  std::vector<float> A((ta ? K : M) * lda), B((tb ? N : K) * ldb), C0(M * ldc);
  for (float &x : A) x = u(rng);
  for (float &x : B) x = u(rng);
  for (float &x : C0) x = u(rng);
  auto a = [&](int64_t i, int64_t k) { return ta ? A[k * lda + i] : A[i * lda + k]; };
  auto b = [&](int64_t k, int64_t j) { return tb ? B[j * ldb + k] : B[k * ldb + j]; };
  std::vector<float> c1 = C0, c2 = C0, c3 = C0, cf = C0;
  {
    Bf16Mode on;
    gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c1.data(), ldc, 1);
    gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c2.data(), ldc, 2);
    gemmInvariantReset(0, 1);
    gemmInvariantB(0, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c3.data(), ldc, 1);
  }
  gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, cf.data(), ldc, 1);
  double worst = 0, fp32Diff = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = double(roundBf16(a(i, k))) * double(roundBf16(b(k, j)));
        ref += p;
        mag += std::fabs(p);
      }
      ref = alpha * ref + (beta != 0 ? beta * C0[i * ldc + j] : 0.0);
      mag = std::fabs(alpha) * mag + std::fabs(beta * C0[i * ldc + j]);
      worst = std::max(worst, std::fabs(c1[i * ldc + j] - ref) / (mag + 1e-30));
      fp32Diff = std::max(fp32Diff, std::fabs(double(cf[i * ldc + j]) - double(c1[i * ldc + j])) / (mag + 1e-30));
    }
  EXPECT_LT(worst, 2e-6) << "ta " << ta << " tb " << tb << " M " << M << " N " << N << " K " << K;
  EXPECT_EQ(std::memcmp(c1.data(), c2.data(), c1.size() * 4), 0) << "1 vs 2 threads, M " << M << " N " << N << " K " << K;
  EXPECT_EQ(std::memcmp(c1.data(), c3.data(), c1.size() * 4), 0) << "gemm vs gemmInvariantB";
  EXPECT_GT(fp32Diff, 1e-4) << "bf16 mode gave fp32's results: no rounding applied";
}

TEST(GemmBf16, MatchesRoundedReference) {
  if (!bf16Supported()) GTEST_SKIP() << "this build has no AVX512-BF16 kernels";
  unsigned seed = 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{7, 33, 5}, {13, 100, 31}, {64, 257, 128}, {6, 64, 2},
                             {2, 17, 1}, {64, 512, 300}})
        {
          check(ta, tb, M, N, K, 0.75f, seed % 2 ? 0.0f : 1.5f, seed);
          ++seed;
        }
}

TEST(GemmBf16, OffByDefaultAndOnlyWhereSupported) {
  EXPECT_FALSE(matmulBf16());
  setMatmulBf16(true);
  EXPECT_EQ(matmulBf16(), bf16Supported());
  setMatmulBf16(false);
  EXPECT_FALSE(matmulBf16());
}

} // namespace
} // namespace gradc::rt
