// ScalarMath.h: evaluates an elementwise op's scalar math, written once in Ops.def, over any
// scalar builder: doubles (the constant folds and the interpreter), C++ expression text and
// LLVM IR values (the code generators) each provide the same few primitives.
#pragma once

#include <cmath>
#include <optional>

#include "ir/IR.h"

namespace gradc {

/// Whether values of `dt` are floats (integers divide and cast with truncation).
inline bool isFloat(DType dt) { return dt == DType::F32; }

/// A builder `S` provides, over its value type `S::V`:
///   c(double)                         a constant of the computation's float type
///   add sub mul div max min (a, b)    arithmetic; max/min as std::max/std::min
///   neg exp log sqrt tanh abs trunc (x)
///   gt lt eq (a, b)                   comparisons, as a condition value
///   number(cond)                      1 or 0 in the float type
///   select(cond, a, b)                a where cond, else b
/// `scalarMath` returns the value of elementwise op `op` with result dtype `dt` on operand
/// values `x` (one per operand), or nothing for an op with no scalar math (not elementwise).
template <class S>
std::optional<typename S::V> scalarMath(S &s, Op op, DType dt, const typename S::V *x) {
  (void)s, (void)dt, (void)x;
  switch (op) {
#define NO_MATH std::nullopt
#define OP(ID, NAME, NOPS, NRES, TRAITS, MATH)                                                                  \
  case Op::ID:                                                                                                 \
    return MATH;
#include "ir/Ops.def"
#undef OP
#undef NO_MATH
  }
  return std::nullopt;
}

/// The scalar builder over doubles: exact libm functions, as the reference interpreter and
/// the constant folds compute.
struct DoubleScalar {
  using V = double;
  V c(double v) { return v; }
  V add(V a, V b) { return a + b; }
  V sub(V a, V b) { return a - b; }
  V mul(V a, V b) { return a * b; }
  V div(V a, V b) { return a / b; }
  V max(V a, V b) { return a < b ? b : a; } // std::max
  V min(V a, V b) { return b < a ? b : a; } // std::min
  V neg(V x) { return -x; }
  V exp(V x) { return std::exp(x); }
  V log(V x) { return std::log(x); }
  V sqrt(V x) { return std::sqrt(x); }
  V tanh(V x) { return std::tanh(x); }
  V abs(V x) { return std::fabs(x); }
  V trunc(V x) { return std::trunc(x); }
  V gt(V a, V b) { return a > b; }
  V lt(V a, V b) { return a < b; }
  V eq(V a, V b) { return a == b; }
  V number(V cond) { return cond != 0 ? 1 : 0; }
  V select(V cond, V a, V b) { return cond != 0 ? a : b; }
};

/// The value of elementwise op `op` on double operands (interpreter, folds); nothing when
/// `op` has no scalar math.
inline std::optional<double> evalScalarMath(Op op, DType dt, double a, double b = 0) {
  DoubleScalar s;
  const double x[2] = {a, b};
  return scalarMath(s, op, dt, x);
}

} // namespace gradc
