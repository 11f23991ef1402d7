// Fusion.h: the loop-level plan's fusion of a graph's elementwise work into loop nests.
#pragma once

#include <vector>

#include "IR.h"

namespace gradc {

/// One loop nest of the loop-level plan: `nodes` (in graph order) computed together for
/// each element of `shape`. A single node that is not fusable is a group of its own.
struct FusedLoop {
  std::vector<const Node *> nodes;
  /// stored[k]: nodes[k]'s result is written to memory (used outside the loop or yielded);
  /// otherwise it lives in a register for one element.
  std::vector<bool> stored;
  std::vector<int64_t> shape; ///< The iteration space (every member's result shape).
  bool fused() const { return nodes.size() > 1; }
};

/// True if `n` can be computed element by element in a loop over its result: elementwise
/// ops, and ops that read one operand element at an affine index (slices, broadcasts,
/// transposes), asked of the op's traits.
bool isLoopFusable(const Node &n);

/// Partitions g's nodes (not the nodes of nested scan bodies) into loop nests: maximal runs
/// of consecutive fusable nodes with the same result shape, where an indexed op reads a
/// value from memory (not one computed in the same loop). Every other node is its own group.
std::vector<FusedLoop> planLoops(const Graph &g, bool fuse);

} // namespace gradc
