// Rewrite.h: what the graph rewrites share: building nodes at the end of a graph, replacing
// a value's uses, and restoring definition order afterwards.
#pragma once

#include <string>
#include <vector>

#include "ir/IR.h"

namespace gradc {

/// Builds nodes at the end of a graph for a rewrite; a type error is a compiler bug,
/// thrown as std::logic_error naming the pass.
struct NodeEmitter {
  Builder b;
  SrcLoc loc;
  const char *pass;
  /// A node of op `o`; returns its (single) result.
  Value *op(Op o, std::vector<Value *> xs, std::map<std::string, AttrValue> attrs = {});
  /// An f32 scalar constant.
  Value *scalar(double v);
  /// v reshaped to `shape` (v itself when it already has it).
  Value *reshape(Value *v, const std::vector<int64_t> &shape);
  /// The transpose of a matrix.
  Value *transpose(Value *v);
};

/// Whether v is the transpose of a matrix (a 2-D transpose, perm [1, 0]).
bool isMatrixTranspose(const Value *v);

/// Replaces every use of `from` in g (its nodes' operands and its yields) by `to`.
void replaceUses(Graph &g, const Value *from, Value *to);

/// Rebuilds g's node order after a rewrite appended nodes from index `firstNew` on: the
/// other nodes keep their order, and each new node goes right after the last definition of
/// its operands (as early as it can).
void restoreDefinitionOrder(Graph &g, size_t firstNew);

} // namespace gradc
