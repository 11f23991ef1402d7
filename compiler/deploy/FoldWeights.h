// FoldWeights.h: evaluates, once at export time, the part of the inference graph that depends only on the checkpoint's weights and constants (BatchNorm's folded scale and shift, transposed weights), so that the exported graph reads the results as constants.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <unordered_map>
#include <vector>

#include "deploy/Weights.h"
#include "ir/IR.h"

namespace gradc {

/// A float tensor computed from the weights at export time (row-major).
struct FoldedTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

/// The weight-only values of an inference graph and of its scan bodies (a body's captured
/// argument is its outer value). A node is folded when it is elementwise, a matmul, a
/// transpose, a reshape or a slice of float values that are all parameters, buffers,
/// constants or folded, depends on at least one parameter or buffer, and its result is no
/// larger than the largest of those parameters and buffers (a broadcast to the batch is not
/// folded). Each folded node is computed as the executable computes it in f32: its scalar
/// math from Ops.def rounded to f32 per op, a matmul accumulated in double.
class WeightFolder {
public:
  /// Folds `g` (a top-level graph) with the checkpoint values `w`; a value for which `keep`
  /// returns true (one with a dynamic batch axis) is never folded.
  WeightFolder(const Graph &g, const Weights &w, std::function<bool(const Value *)> keep = nullptr);

  /// Whether the exporter writes no node for `n`: it was computed here.
  bool folded(const Node &n) const { return folded_.count(&n) != 0; }
  /// The value of `v` when a folded node computed it (or a body argument captures one), else null.
  const FoldedTensor *computed(const Value *v) const;
  /// How many nodes that are not folded read `v` (in any graph; a scan reads its operands).
  int liveReaders(const Value *v) const;

private:
  void run(const Graph &g);
  bool tryFold(const Node &n);

  const Weights &w_;
  std::function<bool(const Value *)> keep_;
  std::unordered_map<const Value *, std::shared_ptr<FoldedTensor>> values_; ///< Leaves and folded results.
  std::unordered_map<const Value *, int64_t> leafSize_; ///< Largest parameter/buffer each value depends on.
  std::unordered_map<const Value *, bool> computed_;    ///< Values a folded node produced.
  std::set<const Node *> folded_;
  std::unordered_map<const Value *, int> readers_;
};

} // namespace gradc
