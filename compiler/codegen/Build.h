// Build.h: turns emitted C++ (or an emitted object) into a training executable with the system's C++ compiler.
#pragma once

#include <ostream>
#include <string>

#include "codegen/CodegenOptions.h"

namespace gradc {

/// Writes `cpp` to a fresh temporary directory, compiles it with $CXX (default c++) at
/// -O<opts.optLevel> for opts.targetCpu, links the runtime library, and writes the result to
/// `output` atomically. Returns the exit code; a compiler failure keeps the temporary
/// directory for inspection.
int buildExecutable(const std::string &cpp, const std::string &output, const CodegenOptions &opts, std::ostream &err);

/// Links `object` (an object file emitted by the LLVM backend, defining main) with the
/// runtime library using $CXX (default c++) as the linker driver, into `output`.
int linkExecutable(const std::string &object, const std::string &output, const CodegenOptions &opts, std::ostream &err);

} // namespace gradc
