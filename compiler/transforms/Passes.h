// Passes.h: the graph passes and the registry that --print-after / --disable-pass name.
#pragma once

#include <string>
#include <vector>

#include "support/Diagnostics.h"
#include "ir/IR.h"

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

} // namespace gradc
