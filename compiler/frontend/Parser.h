// Parser.h: the recursive-descent parser of the model language into the AST.
#pragma once

#include <memory>

#include "frontend/AST.h"
#include "support/Diagnostics.h"

namespace gradc {

/// Parses one source file (a model or the prelude). The first error is reported through
/// `diag`, which throws CompileError.
std::unique_ptr<ModuleAST> parseModule(uint32_t fileId, const SourceManager &sm, Diagnostics &diag);

} // namespace gradc
