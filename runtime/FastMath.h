// FastMath.h: branch-free exp, expm1, tanh and sigmoid that compilers vectorise, for the
// generated code's elementwise loops (single precision; double precision uses <cmath>).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace gradc::rt {

namespace fastmath_detail {

/// a·b + c: one rounding where the target has FMA instructions (the generated code is
/// compiled with -ffp-contract=off, so results do not depend on how loops are fused).
inline float madd(float a, float b, float c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

inline float bitsToFloat(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline int32_t floatToBits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

/// Splits y = n·ln2 + r with |r| <= ln2/2 (Cody–Waite, two-part ln2); returns r, sets
/// scale = 2^n. y must lie in [-87, 88]. No float-to-int conversion: n comes from the
/// rounding of a large constant's addition, so NaN stays NaN without undefined behaviour.
inline float reduce(float y, float &scale) {
  const float shifter = 12582912.0f; // 1.5 · 2^23: adding it rounds to an integer
  const float t = madd(y, 1.44269504088896341f, shifter);
  const float n = t - shifter;
  const int32_t ni = floatToBits(t) - floatToBits(shifter);
  // Unsigned, so that a NaN's bits (any ni) wrap instead of overflowing (UBSan found that).
  const uint32_t bits = (static_cast<uint32_t>(ni) + 127u) << 23;
  std::memcpy(&scale, &bits, sizeof scale);
  return madd(-n, 1.428606765330187045e-06f, madd(-n, 0.693145751953125f, y));
}

/// expm1(r) for |r| <= ln2/2: Taylor series to r^8 (truncation below 3e-9 relative).
inline float expm1Small(float r) {
  float p = 1.0f / 40320;
  p = madd(p, r, 1.0f / 5040);
  p = madd(p, r, 1.0f / 720);
  p = madd(p, r, 1.0f / 120);
  p = madd(p, r, 1.0f / 24);
  p = madd(p, r, 1.0f / 6);
  p = madd(p, r, 0.5f);
  return madd(p * r, r, r);
}

inline float clampExpArg(float y) {
  // Comparisons with NaN are false, so a NaN argument passes through.
  y = y < -87.0f ? -87.0f : y;
  return y > 88.0f ? 88.0f : y;
}

} // namespace fastmath_detail

/// e^x, within 2 ulp; saturates to e^88 above 88 and to e^-87 below -87 (not to inf / 0).
inline float fexp(float x) {
  float s;
  const float r = fastmath_detail::reduce(fastmath_detail::clampExpArg(x), s);
  return fastmath_detail::madd(s, fastmath_detail::expm1Small(r), s);
}

/// e^x − 1 without cancellation near 0, within 3 ulp.
inline float fexpm1(float x) {
  float s;
  const float r = fastmath_detail::reduce(fastmath_detail::clampExpArg(x), s);
  return fastmath_detail::madd(s, fastmath_detail::expm1Small(r), s - 1.0f);
}

/// tanh(x) = e / (e + 2) with e = expm1(2|x|), sign restored; |x| >= 9 gives ±1.
inline float ftanh(float x) {
  const float a = std::fabs(x);
  const float e = fexpm1(2.0f * (a > 9.0f ? 9.0f : a));
  const float t = e / (e + 2.0f);
  return x < 0.0f ? -t : t;
}

/// 1 / (1 + e^-x).
inline float fsigmoid(float x) { return 1.0f / (1.0f + fexp(-x)); }

inline double fexp(double x) { return std::exp(x); }
inline double fexpm1(double x) { return std::expm1(x); }
inline double ftanh(double x) { return std::tanh(x); }
inline double fsigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

} // namespace gradc::rt
