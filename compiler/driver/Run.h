// Run.h: `gradc run`: compile a model in process and train it now, writing no files.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "driver/Pipeline.h"

namespace gradc {

/// Compiles the model `opts.input` and hands `exeArgs` (the executable's flags, section 4 of
/// the contract) to the training driver. The steps run as code compiled in process by the
/// LLVM backend's JIT (-O, --target-cpu and --disable-pass=fuse|memory-plan|llvm-opt apply);
/// with `interpret`, the reference interpreter runs them in double precision. Returns the exit code.
int runModel(const PipelineOptions &opts, const std::vector<std::string> &exeArgs, bool interpret, std::ostream &err);

} // namespace gradc
