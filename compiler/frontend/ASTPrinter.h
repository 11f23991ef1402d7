// ASTPrinter.h: prints the syntax tree as indented text (--emit=ast).
#pragma once

#include <ostream>

#include "frontend/AST.h"

namespace gradc {

/// One node per line, with its kind, its key fields and <line:col>.
void printAST(const ModuleAST &m, const SourceManager &sm, std::ostream &os);

} // namespace gradc
