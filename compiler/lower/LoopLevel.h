// LoopLevel.h: the loop-level plan that every code generator lowers: per graph, the fused
// loops in the order they run, which values stay in registers, which transposes fold into
// the matmul reading them, and every buffer's place in the one arena.
#pragma once

#include <functional>
#include <ostream>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "lower/Fusion.h"
#include "ir/IR.h"
#include "lower/MemoryPlan.h"

namespace gradc {

/// Choices of the lowering to loops.
struct LowerOptions {
  bool fuse = true;       ///< Fuse runs of elementwise work into single loops (--disable-pass=fuse).
  bool planMemory = true; ///< Share memory between values never alive together (--disable-pass=memory-plan).
  /// Start an all-reduce whose result the next loop does not read without waiting, and wait
  /// before its first reader (--disable-pass=early-allreduce: every all-reduce blocks).
  bool overlapCollectives = true;
};

/// Row-major strides of `shape`.
std::vector<int64_t> stridesOf(const std::vector<int64_t> &shape);

/// Strides of `shape` broadcast into an iteration space of rank `rank` (0 where broadcast);
/// `mem` gives the memory strides of shape's axes (row-major when empty).
std::vector<int64_t> broadcastStrides(const std::vector<int64_t> &shape, size_t rank, const std::vector<int64_t> &mem = {});

/// Where a fusable node reads its operand `j` from memory: strides over the loop's
/// iteration space of rank `rank` and a constant offset (slices, transposes, broadcasts).
/// `mem` gives the memory strides of the operand's axes (row-major when empty).
std::pair<std::vector<int64_t>, int64_t> readAccess(const Node &n, size_t j, size_t rank, const std::vector<int64_t> &mem = {});

/// Step t of a tensor stacked along `axis`: `outer` runs of `inner` contiguous elements;
/// run o starts at (o·len + t)·inner in the stacked tensor and at o·inner in the step.
struct StepLayout {
  int64_t outer = 1, inner = 1, len = 0;
};
StepLayout stepLayout(const std::vector<int64_t> &stacked, int64_t axis);

/// A scan body's step of a stacked tensor used in place instead of being copied each step: a
/// sequence argument read from the stacked operand, or a stacked output written straight
/// into the scan's result. Element i of step t is at stacked + t·step + Σ i[a]·strides[a].
struct SeqView {
  int64_t step = 0;
  std::vector<int64_t> strides;
};

/// Where a reduction member of a loop over `space` accumulates each element: strides with the
/// reduced axes zero. Clears `independent` when it reduces the innermost axis (iterations of
/// the innermost loop then update the same element).
std::vector<int64_t> reductionStrides(const Node &red, const std::vector<int64_t> &space, bool &independent);

/// The loop plan (Fusion.h) and arena placement (MemoryPlan.h) of a module's graphs. The
/// three top-level graphs run one at a time, so each is placed from the start of the arena.
class LoopLevel {
public:
  /// Plans `m`. `canFuse` says which members a generator can compute inside a fused loop;
  /// a fused loop with another member becomes one loop per node (default: every member).
  /// With `dump`, prints each graph's memory plan and the arena's totals (--emit=memory-plan).
  LoopLevel(const Module &m, const LowerOptions &opts, std::function<bool(const Node &)> canFuse = {}, std::ostream *dump = nullptr);

  /// The operand of a matmul, with a transpose of the last two axes folded into a flag.
  static std::pair<const Value *, bool> matOperand(const Value *v);
  /// Whether matmul `n` sits in a scan body and multiplies by a 2-D right-hand operand
  /// (after matOperand) that every step of that scan reads unchanged: one of the scan's
  /// captures, or a value defined outside the body. Matrix-vector shapes (a single row of
  /// A or column of B) do not count: gemm never packs their B. Such matmuls call
  /// gemmInvariantB, which packs B once per scan instead of once per step.
  static bool invariantRhs(const Node &n);
  /// The matmuls of `scan`'s body (not of scans nested in it) for which invariantRhs
  /// holds, in the body's node order: the slots the scan resets at its entry.
  static std::vector<const Node *> invariantMatmuls(const Node &scan);
  /// How the lowering stores v (a slot of its own, a view, or no memory).
  Storage storageOf(const Value *v) const;
  /// The memory strides of v's axes: row-major, or a SeqView's.
  std::vector<int64_t> memStrides(const Value *v) const;

  std::unordered_map<const Value *, int64_t> offset;             ///< Arena offset of every slot.
  std::unordered_map<const Graph *, std::vector<FusedLoop>> loops; ///< Each graph's loops, in run order.
  std::unordered_set<const Value *> folded;                        ///< Transposes no buffer holds.
  /// Steps used in place (with fusion on only): sequence arguments whose readers are all
  /// fused loops or 2-D matmuls (which take memory strides), and stacked outputs that a fused
  /// loop computes elementwise or a concat assembles, and only such readers read.
  std::unordered_map<const Value *, SeqView> seqViews;
  /// Set_rows written into the carry they update (with fusion on only): a scan body's next
  /// carry `set_row(c, i, v)` of its own carry argument c, where every other reader of c
  /// runs before it (an ancestor of i or v that copies what it reads) and c is yielded
  /// nowhere else. The row is stored into c's buffer; the copy of c and the copy back at the
  /// step's end are gone (a per-step statistic row of [steps, F] costs F, not steps·F).
  /// Maps the set_row's result to c.
  std::unordered_map<const Value *, const Value *> inPlaceRows;
  int64_t arenaSize = 0;    ///< Elements: the largest graph's plan.
  int64_t unsharedSize = 0; ///< Elements if no two values shared memory (all graphs).

private:
  void planGraphLoops(const Graph &g);
  void planSeqViews(const Node &scan);
  void planInPlaceRows(const Node &scan);

  LowerOptions opts_;
  std::function<bool(const Node &)> canFuse_;
  std::unordered_map<const Node *, int> loopIndex_; ///< Node -> its loop's index in its graph's plan.
  std::unordered_set<const Value *> inRegisters_, captures_;
};

/// Prints the arena placement of every graph (--emit=memory-plan): each buffer's value,
/// type, live range in node positions, offset and size, and the totals with and without
/// sharing memory between values never alive together.
void printMemoryPlans(const Module &m, std::ostream &os, const LowerOptions &opts = {});

} // namespace gradc
