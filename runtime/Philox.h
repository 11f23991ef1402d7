// Philox.h: the counter-based random numbers of dropout: Philox-4x32-10 (Salmon et al.,
// "Parallel random numbers: as easy as 1, 2, 3", SC 2011) keyed by the seed, the step, a
// stream per dropout site and the element's index, so every element's draw is a pure function
// of those four numbers (the same at any thread count, after --resume, and in the backward pass).
#pragma once

#include <cmath>
#include <cstdint>

// Inlined into every fused loop that draws a dropout mask, so that the loop vectorizes (a
// call per element costs about ten times the vectorized rounds).
#if defined(__GNUC__)
#define GRADC_PHILOX_INLINE __attribute__((always_inline)) inline
#else
#define GRADC_PHILOX_INLINE inline
#endif

namespace gradc::rt {

/// Philox-4x32-10's constants (Random123): the round multipliers, the key increments (Weyl
/// sequence) and the number of rounds. The LLVM backend emits the same rounds inline from these.
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

/// Philox-4x32 with 10 rounds on counter `c` and key `k` (Random123's philox4x32_10); the
/// four output words replace `c`.
GRADC_PHILOX_INLINE void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < kPhiloxRounds; ++r) {
    if (r > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    const uint64_t p0 = uint64_t{kPhiloxM0} * c[0], p1 = uint64_t{kPhiloxM1} * c[2];
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k0, n1 = static_cast<uint32_t>(p1);
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k1, n3 = static_cast<uint32_t>(p0);
    c[0] = n0, c[1] = n1, c[2] = n2, c[3] = n3;
  }
}

/// 24 random bits (an integer in [0, 2^24)) for element `index` of dropout stream `stream`
/// under `key` = {seed, step}: the top 24 bits of Philox's first word at counter
/// (index, step) and key (seed, stream).
GRADC_PHILOX_INLINE uint32_t philox24(const uint64_t key[2], int64_t stream, int64_t index) {
  const uint64_t i = static_cast<uint64_t>(index), seed = key[0], step = key[1];
  uint32_t c[4] = {static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), static_cast<uint32_t>(step),
                   static_cast<uint32_t>(step >> 32)};
  philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32) ^ static_cast<uint32_t>(stream));
  return c[0] >> 8;
}

/// The dropout threshold of drop probability p in [0, 1): an element is dropped when its
/// philox24 bits are below it (so it is kept with probability 1 - threshold / 2^24, within
/// 2^-25 of 1 - p).
inline uint32_t dropoutThreshold(double p) { return static_cast<uint32_t>(std::llround(p * 16777216.0)); }

} // namespace gradc::rt
