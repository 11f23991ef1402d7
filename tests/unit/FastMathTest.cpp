// FastMathTest.cpp: the generated code's single-precision exp, expm1, tanh and sigmoid
// (runtime/FastMath.h) against <cmath> in double precision, in units of float epsilon.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "FastMath.h"

namespace {

using namespace gradc::rt;

constexpr double kEps = std::numeric_limits<float>::epsilon();

/// Largest relative error of f against ref over x = lo, lo + step, ... hi (as floats).
template <typename F, typename R> double worstUlps(F f, R ref, double lo, double hi, double step) {
  double worst = 0;
  for (double d = lo; d <= hi; d += step) {
    const float x = static_cast<float>(d);
    const double want = ref(static_cast<double>(x));
    if (want == 0)
      continue;
    worst = std::max(worst, std::fabs(static_cast<double>(f(x)) - want) / std::fabs(want) / kEps);
  }
  return worst;
}

TEST(FastMath, ExpWithinTwoUlps) {
  EXPECT_LT(worstUlps([](float x) { return fexp(x); }, [](double x) { return std::exp(x); }, -87, 88, 1e-3), 2.0);
}

TEST(FastMath, Expm1WithinTwoUlpsIncludingNearZero) {
  auto f = [](float x) { return fexpm1(x); };
  auto r = [](double x) { return std::expm1(x); };
  EXPECT_LT(worstUlps(f, r, -87, 88, 1e-3), 2.0);
  EXPECT_LT(worstUlps(f, r, -1e-3, 1e-3, 1e-7), 2.0);
}

TEST(FastMath, TanhWithinTwoUlps) {
  auto f = [](float x) { return ftanh(x); };
  auto r = [](double x) { return std::tanh(x); };
  EXPECT_LT(worstUlps(f, r, -20, 20, 1e-4), 2.0);
  EXPECT_LT(worstUlps(f, r, -1e-3, 1e-3, 1e-8), 2.0);
  EXPECT_EQ(ftanh(INFINITY), 1.0f);
  EXPECT_EQ(ftanh(-INFINITY), -1.0f);
}

TEST(FastMath, SigmoidWithinTwoUlps) {
  EXPECT_LT(worstUlps([](float x) { return fsigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); }, -80, 30, 1e-4),
            2.0);
}

TEST(FastMath, NanPropagates) {
  EXPECT_TRUE(std::isnan(fexp(NAN)));
  EXPECT_TRUE(std::isnan(fexp(-NAN)));
  EXPECT_TRUE(std::isnan(fexpm1(NAN)));
  EXPECT_TRUE(std::isnan(ftanh(NAN)));
  EXPECT_TRUE(std::isnan(fsigmoid(NAN)));
}

} // namespace
