// FuzzFrontend.cpp: libFuzzer target over the front end: any bytes as a model file go
// through the lexer, parser, elaborator and the whole graph pipeline (driver/Pipeline.h,
// the verifier between passes) without crashing.
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#include "driver/Pipeline.h"
#include "support/Diagnostics.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace gradc;
  SourceManager sm;
  std::ostringstream sink;
  Diagnostics diag(sm, sink);
  try {
    uint32_t file = sm.add("fuzz.model", std::string(reinterpret_cast<const char *>(data), size));
    compileModule(sm, diag, file);
  } catch (const CompileError &) {
  } catch (const std::logic_error &) {
    __builtin_trap(); // The compiler built invalid IR: a compiler bug.
  }
  return 0;
}
