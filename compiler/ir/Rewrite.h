// Rewrite.h: what the graph rewrites share besides building nodes (ir/Builder.h): replacing
// a value's uses, and restoring definition order afterwards.
#pragma once

#include <string>
#include <vector>

#include "ir/IR.h"

namespace gradc {

/// Whether v is the transpose of a matrix (a 2-D transpose, perm [1, 0]).
bool isMatrixTranspose(const Value *v);

/// Replaces every use of `from` in g (its nodes' operands and its yields) by `to`.
void replaceUses(Graph &g, const Value *from, Value *to);

/// Rebuilds g's node order after a rewrite appended nodes from index `firstNew` on: the
/// other nodes keep their order, and each new node goes right after the last definition of
/// its operands (as early as it can).
void restoreDefinitionOrder(Graph &g, size_t firstNew);

} // namespace gradc
