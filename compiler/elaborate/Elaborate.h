// Elaborate.h: turns parsed model files into a shape-checked Module (the graph IR).
#pragma once

#include <memory>
#include <vector>

#include "frontend/AST.h"
#include "ir/IR.h"

namespace gradc {

/// Elaborates the model: runs layer constructors, checks every shape, and builds the
/// training-step forward graph (`@train`) and the inference graph (`@infer`). `files`
/// holds the prelude first, then the user's model file (whose decls define the model).
/// Reports the first error through `diag` (which throws CompileError). With `ranks` > 1 the
/// module is compiled for that many MPI ranks: each input's and target's dim 0 (the global
/// batch) is divided by `ranks`, and allreduce_sum builds collective nodes (else identity).
std::unique_ptr<Module> elaborate(const std::vector<const ModuleAST *> &files, const SourceManager &sm,
                                  Diagnostics &diag, int64_t ranks = 1);

} // namespace gradc
