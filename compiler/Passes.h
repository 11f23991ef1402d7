// Passes.h: the graph passes and the registry that --print-after / --disable-pass name.
#pragma once

#include <string>
#include <vector>

#include "Diagnostics.h"
#include "IR.h"

namespace gradc {

/// A module-to-module rewrite.
struct PassInfo {
  const char *name;
  const char *description;
  void (*run)(Module &m, Diagnostics &diag);
  bool required; ///< Cannot be disabled (the training step needs it).
};

/// Every pass the pipeline knows.
const std::vector<PassInfo> &allPasses();
const PassInfo *findPass(const std::string &name);

/// Folds elementwise operations whose operands are all constants into one constant.
void foldConstants(Module &m);
/// Merges identical nodes (same op, operands and attributes).
void eliminateCommonSubexpressions(Module &m);
/// Removes nodes whose results are never used (sinks and their inputs stay), and scan
/// captures and outputs that nothing uses.
void eliminateDeadCode(Module &m);
/// `transpose-products`: `transpose(A @ B)` of 2-D matrices, when nothing else reads the
/// product, becomes `transpose(B) @ transpose(A)` (a transpose of a transpose cancels), so
/// the transposes fold into the matmul's operand flags instead of a strided pass over the
/// result (a weight gradient in the layout of its weight). Every element is the same sum of
/// the same products in the same order, so results are bitwise unchanged.
void transposeProducts(Module &m);

} // namespace gradc
