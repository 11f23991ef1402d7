// Random.cpp: the deterministic random numbers of the driver (Driver.h): splitmix64, FNV-1a, stream seeds, detLog, Rng and the epoch order.
#include <cmath>
#include <limits>
#include <utility>

#include "Driver.h"
#include "DriverInternal.h"

// The random transforms must round identically everywhere: no a*b+c fused into one FMA.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace gradc::rt {

using namespace detail;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

uint64_t streamSeed(uint64_t seed, std::string_view stream, uint64_t index) {
  uint64_t s = splitmix64(seed);
  s = splitmix64(s ^ fnv1a64(stream));
  return splitmix64(s ^ index);
}

double detLog(double x) {
  if (std::isnan(x) || x < 0) return std::numeric_limits<double>::quiet_NaN();
  if (x == 0) return -std::numeric_limits<double>::infinity();
  if (std::isinf(x)) return x;
  int e = 0;
  double m = std::frexp(x, &e); // x = m * 2^e, m in [0.5, 1); exact
  if (m < 0.70710678118654752440) {
    m *= 2; // exact
    --e;
  }
  // m in [1/sqrt(2), sqrt(2)): log m = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 + ...), |z| < 0.1716,
  // so 16 terms leave a truncation error below 1e-25.
  const double z = (m - 1) / (m + 1);
  const double z2 = z * z;
  double p = 1.0 / 31;
  for (int k = 29; k >= 1; k -= 2) p = p * z2 + 1.0 / k;
  const double lnm = 2 * z * p;
  // fdlibm's split of log(2): ln2Hi has trailing zero bits, so e * ln2Hi is exact.
  const double ln2Hi = 6.93147180369123816490e-01, ln2Lo = 1.90821492927058770002e-10;
  const double de = static_cast<double>(e);
  return de * ln2Hi + (de * ln2Lo + lnm);
}

uint64_t Rng::below(uint64_t n) {
  const uint64_t threshold = (0 - n) % n; // 2^64 mod n: values below it would bias r % n
  for (;;) {
    uint64_t r = next();
    if (r >= threshold) return r % n;
  }
}

double Rng::normal() {
  if (haveSpare_) {
    haveSpare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2 * uniform01() - 1;
    v = 2 * uniform01() - 1;
    s = u * u + v * v;
  } while (s >= 1 || s == 0);
  const double f = std::sqrt(-2 * detLog(s) / s);
  spare_ = v * f;
  haveSpare_ = true;
  return u * f;
}

void epochOrder(std::vector<int64_t> &perm, uint64_t seed, int64_t epoch, bool shuffle) {
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
  if (!shuffle || perm.size() < 2) return;
  Rng rng(streamSeed(seed, "shuffle", static_cast<uint64_t>(epoch)));
  for (size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);
}

} // namespace gradc::rt
