// Builder.h: NodeBuilder, the node-building helper that autodiff's gradient rules, the
// optimizer and the graph rewrites share: it appends typed nodes at one source location,
// with the small simplifications (a reshape to the same shape is the value itself, ...).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/IR.h"

namespace gradc {

/// Builds nodes at an insertion point (the end of a graph), each one carrying `loc`.
/// A type error is a compiler bug: it throws std::logic_error naming `who` (the pass).
class NodeBuilder {
public:
  /// Builds at the end of `g`, at location `loc`, on behalf of `who`.
  NodeBuilder(Module &m, Graph *g, SrcLoc loc, const char *who) : b_(m, g), loc(loc), who_(who) {}

  SrcLoc loc; ///< The location every node built from now on carries.

  Module &module() const { return b_.module(); }
  /// The graph nodes are appended to (the insertion point).
  Graph *graph() const { return b_.graph(); }

  /// A node of op `o` with its result types inferred (and `body` for a region op).
  Node *node(Op o, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs = {},
             std::unique_ptr<Graph> body = nullptr);
  /// A node of op `o`; returns its first result.
  Value *op(Op o, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs = {});
  Value *add(Value *a, Value *b) { return op(Op::Add, {a, b}); }
  Value *sub(Value *a, Value *b) { return op(Op::Sub, {a, b}); }
  Value *mul(Value *a, Value *b) { return op(Op::Mul, {a, b}); }
  Value *div(Value *a, Value *b) { return op(Op::Div, {a, b}); }
  Value *neg(Value *a) { return op(Op::Neg, {a}); }

  /// A source node (input, param, buffer, hyper, const) of type `t`, at `loc`.
  Value *source(Op o, TensorType t, std::map<std::string, AttrValue> attrs, std::string nameHint = {});
  /// A source node at `at` rather than `loc`.
  Value *source(Op o, TensorType t, std::map<std::string, AttrValue> attrs, SrcLoc at, std::string nameHint = {});
  /// A sink node (grad, update, ...) reading v, at `loc`.
  void sink(Op o, Value *v, std::map<std::string, AttrValue> attrs) { sink(o, v, std::move(attrs), loc); }
  /// A sink node at `at` rather than `loc`.
  void sink(Op o, Value *v, std::map<std::string, AttrValue> attrs, SrcLoc at);

  /// A scalar constant (f32 unless `dt` says otherwise).
  Value *scalar(double v, DType dt = DType::F32);
  /// A constant tensor of type t filled with v.
  Value *fill(double v, const TensorType &t);
  /// v reshaped to `shape` (v itself when it already has it).
  Value *reshape(Value *v, const std::vector<int64_t> &shape);
  /// v broadcast to `shape` (v itself when it already has it).
  Value *broadcastTo(Value *v, const std::vector<int64_t> &shape);
  /// v with its last two axes swapped (for a matrix: its transpose, perm [1, 0]).
  Value *transposeLast(Value *v);
  /// The sum of v over `axes` (v itself when `axes` is empty).
  Value *sum(Value *v, const std::vector<int64_t> &axes, bool keepdims = false);
  /// v summed down to `shape`, undoing NumPy broadcasting (v itself when it has it).
  Value *unbroadcast(Value *v, const std::vector<int64_t> &shape);

private:
  Builder b_;
  const char *who_;
};

} // namespace gradc
