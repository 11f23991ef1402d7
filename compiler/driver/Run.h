// Run.h: `gradc run`: compile a model in process and train it now, writing no files.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "driver/Options.h"

namespace gradc {

/// Compiles the model `opts.input` through the same graph pipeline as `gradc MODEL` (-O0,
/// --disable-pass, --print-after and --print-after-all apply) and hands `exeArgs` (the
/// training executable's flags, docs/robustness.md and README.md) to the training driver.
/// The steps run as code compiled in process by the LLVM backend's JIT (-O, --target-cpu and
/// --disable-pass=fuse|memory-plan|llvm-opt apply); with `interpret`, the reference
/// interpreter runs them in double precision. Returns the exit code.
int runModel(const PipelineOptions &opts, const std::vector<std::string> &exeArgs, bool interpret, std::ostream &err);

} // namespace gradc
