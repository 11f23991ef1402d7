// Fusion.h: the loop-level plan's fusion of a graph's elementwise work and reductions into
// loop nests.
#pragma once

#include <functional>
#include <vector>

#include "ir/IR.h"

namespace gradc {

/// One loop nest of the loop-level plan: `nodes` computed together for each element of
/// `shape`. Elementwise and indexed members compute one element each; reduction members
/// (each over its own axes of `shape`) accumulate their input element into their result.
/// A single node that is not fusable is a group of its own. A group runs where its first
/// member stood in the graph; later members were moved up to it (their operands are ready
/// there).
struct FusedLoop {
  std::vector<const Node *> nodes;
  /// stored[k]: nodes[k]'s result is written to memory (used outside the loop, yielded, or
  /// a reduction's result); otherwise it lives in a register for one element.
  std::vector<bool> stored;
  std::vector<int64_t> shape; ///< The iteration space (an elementwise member's result shape,
                              ///< a reduction member's operand shape).
  bool fused() const { return nodes.size() > 1; }
  /// How many members are reductions.
  int reductions() const;
};

/// True if `n` can be computed element by element in a loop over its result: elementwise
/// ops, and ops that read one operand element at an affine index (slices, broadcasts,
/// transposes), asked of the op's traits.
bool isLoopFusable(const Node &n);

/// True if `n` is a reduction that can accumulate inside a loop over its operand.
bool isFusableReduction(const Node &n);

/// What the lowering tells the planner about nodes.
struct LoopHooks {
  /// A node that must be a group of its own (a value the lowering does not materialise,
  /// such as a transpose folded into a matrix multiply).
  std::function<bool(const Node &)> alone;
  /// A node whose result exists before any loop runs (a view of the model's state).
  std::function<bool(const Node &)> readyAtStart;
};

/// Partitions g's nodes (not the nodes of nested scan bodies) into loop nests, in the order
/// they run. First, each elementwise or indexed node moves down to just before its first
/// user, so it meets the loop that consumes it. Then a fusable node joins the latest group
/// over the same iteration space whose start its operands are computed before (or computed
/// inside it, unless it is an indexed read, which reads memory, or the operand is a
/// reduction of the group, complete only after the loop); a reduction joins a group over
/// its operand's shape, whatever axes it reduces. So a reduction is fused with the
/// elementwise work producing its input and with its sibling reductions over the same
/// data. Every other node is its own group. With `fuse` false, each node is its own group,
/// in graph order.
std::vector<FusedLoop> planLoops(const Graph &g, bool fuse, const LoopHooks &hooks = {});

} // namespace gradc
