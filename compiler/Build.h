// Build.h: turns emitted C++ into a training executable with the system's C++ compiler.
#pragma once

#include <ostream>
#include <string>

#include "Pipeline.h"

namespace gradc {

/// Writes `cpp` to a temporary directory, compiles it with $CXX (default c++) at -O<opt>
/// for --target-cpu, links the runtime library, and renames the result to opts.output.
/// Returns the exit code; a compiler failure keeps the temporary directory for inspection.
int buildExecutable(const std::string &cpp, const PipelineOptions &opts, std::ostream &err);

} // namespace gradc
