// BatchAxes.h: finds which axes of every value of the inference graph are the batch axis (traced from the inputs' first axis), for the ONNX export with a dynamic batch (--onnx-dynamic-batch).
#pragma once

#include <cstdint>
#include <unordered_map>

#include "ir/IR.h"
#include "support/Diagnostics.h"

namespace gradc {

/// The batch axes of each value, as a bit mask over its axes (bit i: axis i has the batch's size
/// because it is the inputs' axis 0). Traced forwards from the inputs through elementwise ops
/// (NumPy broadcasting), matmul, transpose, reshape, slice, pad, concat, reductions and scans;
/// a constant takes the batch axes of the values it is combined with or the carry it starts.
class BatchAxes {
public:
  /// Traces `g`. An op that makes the result depend on the batch size other than row by row
  /// (a reduction, slice, pad or concatenation along the batch axis, a matmul contracting it, a
  /// reshape that merges it into another axis, a scan along it) is an error at its model line.
  BatchAxes(const Graph &g, Diagnostics &diag);

  /// The batch axes of `v`.
  uint64_t of(const Value *v) const {
    auto it = mask_.find(v);
    return it == mask_.end() ? 0 : it->second;
  }

private:
  void run(const Graph &g);
  uint64_t node(const Node &n);
  void scan(const Node &n);
  /// Gives constant `v` the batch axes `m` (restricted to its non-1 axes); records a change.
  void constrain(const Value *v, uint64_t m);
  [[noreturn]] void fail(const Node &n, const char *why);

  Diagnostics &diag_;
  std::unordered_map<const Value *, uint64_t> mask_;
  bool changed_ = false;
};

} // namespace gradc
