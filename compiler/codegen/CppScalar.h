// CppScalar.h: the scalar builder that prints an elementwise op's math (Ops.def, evaluated
// by ScalarMath.h) as a C++ expression over the generated code's float type T.
#pragma once

#include <string>

#include <fmt/format.h>

#include "ir/ScalarMath.h"

namespace gradc {

/// Builds C++ expression text; every compound result is parenthesised, so results nest.
struct CppScalar {
  using V = std::string;
  V c(double v) { return fmt::format("T({})", v); }
  V add(const V &a, const V &b) { return infix(a, "+", b); }
  V sub(const V &a, const V &b) { return infix(a, "-", b); }
  V mul(const V &a, const V &b) { return infix(a, "*", b); }
  V div(const V &a, const V &b) { return infix(a, "/", b); }
  V max(const V &a, const V &b) { return call("std::max", a, b); }
  V min(const V &a, const V &b) { return call("std::min", a, b); }
  V neg(const V &x) { return "(-" + x + ")"; }
  V exp(const V &x) { return call("fexp", x); } // FastMath.h
  V log(const V &x) { return call("std::log", x); }
  V sqrt(const V &x) { return call("std::sqrt", x); }
  V tanh(const V &x) { return call("ftanh", x); } // FastMath.h
  V abs(const V &x) { return call("std::fabs", x); }
  V trunc(const V &x) { return call("std::trunc", x); }
  V gt(const V &a, const V &b) { return infix(a, ">", b); }
  V lt(const V &a, const V &b) { return infix(a, "<", b); }
  V eq(const V &a, const V &b) { return infix(a, "==", b); }
  V number(const V &cond) { return "T" + cond; }
  V select(const V &cond, const V &a, const V &b) { return "(" + cond + " ? " + a + " : " + b + ")"; }

  static V infix(const V &a, const char *op, const V &b) { return "(" + a + " " + op + " " + b + ")"; }
  static V call(const char *f, const V &x) { return std::string(f) + "(" + bare(x) + ")"; }
  static V call(const char *f, const V &a, const V &b) { return std::string(f) + "(" + bare(a) + ", " + bare(b) + ")"; }
  /// `e` without one pair of parentheses around the whole of it.
  static V bare(const V &e) {
    if (e.size() < 2 || e.front() != '(' || e.back() != ')')
      return e;
    int depth = 0;
    for (size_t i = 0; i + 1 < e.size(); ++i) {
      depth += e[i] == '(' ? 1 : e[i] == ')' ? -1 : 0;
      if (depth == 0)
        return e; // the first parenthesis closes before the end
    }
    return e.substr(1, e.size() - 2);
  }
};

/// The C++ expression of elementwise op `op` (result dtype `dt`) on operand expressions `x`,
/// without redundant outer parentheses; throws for an op with no scalar math.
inline std::string cppScalarExpr(Op op, DType dt, const std::string *x) {
  CppScalar s;
  std::optional<std::string> e = scalarMath(s, op, dt, x);
  if (!e)
    throw std::logic_error(fmt::format("emit-cpp: '{}' has no scalar math", opInfo(op).name));
  return CppScalar::bare(*e);
}

} // namespace gradc
