// EmitCpp.h: the C++ code generator: a module's graphs as one C++ translation unit that
// implements the runtime's Backend and links into a training executable.
#pragma once

#include <ostream>
#include <string>

#include "support/Diagnostics.h"
#include "ir/IR.h"
#include "lower/LoopLevel.h"

namespace gradc {

/// Prints the C++ of the module (after autodiff and the optimizer): a Backend class
/// template instantiated for float (training) and double (--gradcheck), its ModelSpec,
/// and main() calling rt::runMain. Every value lives in one arena, allocated at the first step.
void emitCpp(const Module &m, const SourceManager &sm, std::ostream &os, const LowerOptions &opts = {});

} // namespace gradc
