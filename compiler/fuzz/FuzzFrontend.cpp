// FuzzFrontend.cpp: libFuzzer target over the front end: any bytes as a model file go
// through the lexer, parser, elaborator, verifier and autodiff without crashing.
#include <cstdint>
#include <sstream>
#include <string>

#include "autodiff/Autodiff.h"
#include "support/Diagnostics.h"
#include "elaborate/Elaborate.h"
#include "frontend/Parser.h"
#include "transforms/Passes.h"

namespace gradc {
extern const char *const kPreludeText;
extern const char *const kPreludeName;
} // namespace gradc

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace gradc;
  SourceManager sm;
  std::ostringstream sink;
  Diagnostics diag(sm, sink);
  try {
    uint32_t prelude = sm.add(kPreludeName, kPreludeText);
    uint32_t file = sm.add("fuzz.model", std::string(reinterpret_cast<const char *>(data), size));
    auto p = parseModule(prelude, sm, diag);
    auto ast = parseModule(file, sm, diag);
    auto m = elaborate({p.get(), ast.get()}, sm, diag);
    if (!verifyModule(*m).empty())
      __builtin_trap(); // The elaborator built invalid IR: a compiler bug.
    for (const char *pass : {"fold", "cse", "dce", "licm", "autodiff", "optimizer", "dce"}) {
      findPass(pass)->run(*m, diag);
      if (!verifyModule(*m).empty())
        __builtin_trap();
    }
  } catch (const CompileError &) {
  }
  return 0;
}
