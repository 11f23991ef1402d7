// Library.h: writes a model's inference as a static C library with embedded weights and its C header (--emit=lib).
#pragma once

#include <ostream>
#include <string>

#include "codegen/CodegenOptions.h"
#include "deploy/Weights.h"
#include "ir/IR.h"
#include "lower/LoopLevel.h"

namespace gradc {

/// Writes `output` (libMODEL.a: the LLVM backend's inference code of `m` with `w` embedded,
/// an entry point `int MODEL_predict(const float *x, float *out, int64_t n)` and the
/// runtime's gradcdeploy archive) and MODEL.h beside it, both atomically and only when
/// everything succeeded. Returns the exit code; errors go to `err`.
int emitLibrary(const Module &m, const SourceManager &sm, const Weights &w, const CodegenOptions &cg, const LowerOptions &lower,
                const std::string &output, std::ostream &err);

} // namespace gradc
