// MemoryPlan.h: the loop-level plan's memory: places the values of a graph in one arena so
// that values never alive at the same time share memory.
#pragma once

#include <functional>
#include <ostream>
#include <unordered_map>
#include <vector>

#include "ir/IR.h"

namespace gradc {

/// How the lowering stores a value.
enum class Storage {
  Slot,     ///< A buffer of its own in the arena.
  None,     ///< No memory: kept in registers (fused), folded away, or state outside the arena.
  AliasOf0, ///< A view of its node's operand 0 (a reshape, or a transpose a matmul reads through): extends that operand's lifetime.
};

/// One placed buffer, for --emit=memory-plan.
struct PlacedBuffer {
  const Value *value;
  int64_t offset, size; ///< In elements of the arena.
  int start, end;       ///< Live from node `start` to node `end` of its graph (inclusive).
  int depth;            ///< 0 for the top-level graph, 1 inside a scan body, ...
};

/// Offsets of every value with a slot, and the arena size the graph needs.
struct MemoryPlan {
  std::unordered_map<const Value *, int64_t> offset;
  int64_t size = 0;          ///< Elements, with memory shared by liveness.
  int64_t unsharedSize = 0;  ///< Elements if every slot had its own memory.
  std::vector<PlacedBuffer> buffers;
};

/// Places the values of `g` (and of nested scan bodies, each body as one block live while its
/// scan runs) over the time of its loop plan. `storage` says how each value is stored. `share` = false gives every value
/// its own memory (the plan without liveness). A value consumed by an `update` sink stays
/// alive to the end of the graph (updates are applied after the step).
/// `timeOf(n)` is the index of the loop nest that computes n in its graph's loop plan, the
/// order the lowering runs them in: the nodes of one fused loop run interleaved, element by
/// element, so they count as one point in time and none of their operands shares memory
/// with any of their results.
MemoryPlan planMemory(const Graph &g, const std::function<Storage(const Value *)> &storage,
                      const std::function<int(const Node *)> &timeOf, bool share);

/// Prints a plan: one line per buffer (value, node range, offset, size) and the totals.
void printMemoryPlan(const std::string &graphName, const MemoryPlan &p, std::ostream &os);

} // namespace gradc
