// PhiloxTest.cpp: dropout's counter-based generator (runtime/Philox.h): Random123's known-answer
// vectors for Philox-4x32-10, and the keep rate of the threshold over many draws.
#include <cmath>
#include <cstdint>

#include <gtest/gtest.h>

#include "Philox.h"

namespace {

using namespace gradc::rt;

/// Philox-4x32-10 on counter c0..c3 and key k0, k1 must give want0..want3.
void expectKat(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, uint32_t w0, uint32_t w1, uint32_t w2,
               uint32_t w3) {
  uint32_t c[4] = {c0, c1, c2, c3};
  philox4x32_10(c, k0, k1);
  EXPECT_EQ(c[0], w0);
  EXPECT_EQ(c[1], w1);
  EXPECT_EQ(c[2], w2);
  EXPECT_EQ(c[3], w3);
}

// Random123 1.09, examples/kat_vectors: the three philox4x32 10-round lines.
TEST(Philox, KnownAnswers) {
  expectKat(0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8);
  expectKat(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
            0x6d5451fd);
  expectKat(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
            0x24126ea1);
}

// philox24 maps (seed, step, stream, index) to Philox's first word at counter (index, step),
// key (seed, stream), top 24 bits.
TEST(Philox, Bits24Layout) {
  const uint64_t key[2] = {0xa4093822u | (uint64_t{0x299f31d0u ^ 7u} << 32), 0x13198a2eu | (uint64_t{0x03707344u} << 32)};
  EXPECT_EQ(philox24(key, 7, int64_t{0x243f6a88} | (int64_t{0x85a308d3} << 32)), 0xd16cfe09u >> 8);
}

// Over 10^6 elements the kept fraction is 1 - p within 5 standard deviations, and a different
// step, stream or seed gives a different mask (agreement near p^2 + (1-p)^2, not 1).
TEST(Philox, KeepRateAndIndependence) {
  const double p = 0.3;
  const uint32_t t = dropoutThreshold(p);
  const int64_t n = 1000000;
  const uint64_t k[2] = {5, 11}, kStep[2] = {5, 12}, kSeed[2] = {6, 11};
  int64_t kept = 0, sameStep = 0, sameStream = 0, sameSeed = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool a = philox24(k, 0, i) >= t;
    kept += a;
    sameStep += a == (philox24(kStep, 0, i) >= t);
    sameStream += a == (philox24(k, 1, i) >= t);
    sameSeed += a == (philox24(kSeed, 0, i) >= t);
  }
  const double sd = std::sqrt(p * (1 - p) / n), agree = p * p + (1 - p) * (1 - p);
  EXPECT_NEAR(double(kept) / n, 1 - p, 5 * sd);
  for (int64_t same : {sameStep, sameStream, sameSeed})
    EXPECT_NEAR(double(same) / n, agree, 0.005);
}

} // namespace
