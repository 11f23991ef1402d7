// AutodiffImpl.h: the context gradient rules build in, and the rule table's interface.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autodiff/Autodiff.h"
#include "ir/IR.h"

namespace gradc {

/// Where a gradient rule builds: the target graph, and how forward values reach it
/// (identity at top level; inside a reverse scan, through saved per-step residuals).
class GradCtx {
public:
  GradCtx(Module &m, Graph *target, Diagnostics &diag) : b(m, target), diag(diag) {}

  Builder b;
  Diagnostics &diag;
  SrcLoc loc; ///< Location of the forward node being differentiated.
  std::function<Value *(Value *)> use = [](Value *v) { return v; };

  Value *x(const Node &n, size_t i) { return use(n.operands.at(i)); }
  Value *y(const Node &n, size_t i = 0) { return use(n.results.at(i)); }

  /// Creates a node (a type error here is a compiler bug).
  Value *op(Op o, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs = {});
  Value *add(Value *a, Value *b) { return op(Op::Add, {a, b}); }
  Value *sub(Value *a, Value *b) { return op(Op::Sub, {a, b}); }
  Value *mul(Value *a, Value *b) { return op(Op::Mul, {a, b}); }
  Value *div(Value *a, Value *b) { return op(Op::Div, {a, b}); }
  Value *neg(Value *a) { return op(Op::Neg, {a}); }
  /// A scalar f32[] constant (or of dtype `dt`).
  Value *scalar(double v, DType dt = DType::F32);
  /// A constant tensor of type t filled with v.
  Value *fill(double v, const TensorType &t);
  Value *reshape(Value *a, const std::vector<int64_t> &shape);
  Value *broadcastTo(Value *a, const std::vector<int64_t> &shape);
  /// Swaps the last two axes.
  Value *transposeLast(Value *a);
  /// Sums g down to `shape` (undoing NumPy broadcasting).
  Value *unbroadcast(Value *g, const std::vector<int64_t> &shape);
};

/// A vector-Jacobian product: given the forward node and its results' cotangents (null
/// where none), sets the cotangent of each operand (null where none).
using VjpRule = void (*)(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx);

/// The op's rule, or null when it has none.
VjpRule vjpRule(Op op);

/// The scan's rule (in Autodiff.cpp: it needs the reverse sweep).
void vjpScan(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx);

} // namespace gradc
