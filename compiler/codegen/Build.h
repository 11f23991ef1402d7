// Build.h: turns emitted C++ (or an emitted object) into a training executable with the system's C++ compiler.
#pragma once

#include <ostream>
#include <string>

#include "driver/Pipeline.h"

namespace gradc {

/// Writes `cpp` to a temporary directory, compiles it with $CXX (default c++) at -O<opt>
/// for --target-cpu, links the runtime library, and renames the result to opts.output.
/// Returns the exit code; a compiler failure keeps the temporary directory for inspection.
int buildExecutable(const std::string &cpp, const PipelineOptions &opts, std::ostream &err);

/// Links `object` (an object file emitted by the LLVM backend, defining main) with the
/// runtime library using $CXX (default c++) as the linker driver, into opts.output.
int linkExecutable(const std::string &object, const PipelineOptions &opts, std::ostream &err);

/// Writes `text` to `path` atomically (a temporary file, then rename), or to stdout for "" or "-".
bool writeOutputFile(const std::string &path, const std::string &text, std::ostream &err);

} // namespace gradc
