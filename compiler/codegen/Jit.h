// Jit.h: `gradc run` with the LLVM backend: the model compiled in process with ORC's LLJIT
// and trained by the runtime linked into gradc, writing no files.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "codegen/EmitCpp.h"
#include "ir/IR.h"
#include "codegen/CodegenOptions.h"

namespace gradc {

/// JIT-compiles the float build of `m` for the host at -O`opts.optLevel` (LLVM's pipeline
/// unless `opts.llvmOpt` is off) and runs the
/// training driver with `args` (args[0] names the program); the double build (--gradcheck)
/// is compiled only when first used. Returns the exit code.
int runJit(const Module &m, const SourceManager &sm, const CodegenOptions &opts, const LowerOptions &lower, std::vector<std::string> args,
           std::ostream &err);

} // namespace gradc
