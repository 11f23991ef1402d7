// InvariantSlots.h: the per-thread table of packed loop-invariant B operands (gemmInvariantB) that the fp32 gemm (Gemm.cpp) and the bf16 gemm (GemmBf16.cpp) each keep: slots by number, made stale by gemmInvariantReset, repacked when a call's B is not the one packed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

namespace gradc::rt {

/// Which B a slot's packed copy was made from; a reset clears `valid`.
struct PackedFrom {
  bool valid = false;
  const void *B = nullptr;
  int64_t ldb = 0, N = 0, K = 0;
  bool transB = false;

  /// Whether the slot holds a valid copy of this B (pointer, ldb, N, K, transB).
  bool holds(const void *b, int64_t ld, int64_t n, int64_t k, bool t) const {
    return valid && B == b && ldb == ld && N == n && K == k && transB == t;
  }
  /// Records that the slot now holds this B, packed.
  void set(const void *b, int64_t ld, int64_t n, int64_t k, bool t) { *this = {true, b, ld, n, k, t}; }
};

/// Slots of type Slot (a struct with a PackedFrom `from` and its packed buffer), indexed by
/// slot number and created on first use; one table per thread and gemm kind.
template <class Slot> class SlotTable {
public:
  /// Slot i (i >= 0), created empty if new.
  Slot &at(int64_t i) {
    if (static_cast<int64_t>(slots_.size()) <= i) slots_.resize(static_cast<std::size_t>(i) + 1);
    if (!slots_[i]) slots_[i] = std::make_unique<Slot>();
    return *slots_[i];
  }
  /// Marks slots [first, first+count) stale; their buffers stay for the next pack.
  void reset(int64_t first, int64_t count) {
    const int64_t end = std::min<int64_t>(first + count, static_cast<int64_t>(slots_.size()));
    for (int64_t i = std::max<int64_t>(first, 0); i < end; ++i)
      if (slots_[i]) slots_[i]->from.valid = false;
  }

private:
  std::vector<std::unique_ptr<Slot>> slots_;
};

} // namespace gradc::rt
