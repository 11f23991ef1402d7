// Pipeline.h: the compiler's stages from model file to output, as one straight list.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "support/Diagnostics.h"
#include "ir/IR.h"

namespace gradc {

/// Parses the prelude and model `fileId`, elaborates, and derives the training step
/// (autodiff, optimizer, clean-ups), verifying after each stage. Reports errors through
/// `diag` (which throws CompileError).
/// `skip` names optional passes not to run (a test compares the results with and without them).
std::unique_ptr<Module> compileModule(SourceManager &sm, Diagnostics &diag, uint32_t fileId, const std::vector<std::string> &skip = {});

/// What the user asked the pipeline to do (from the command line).
struct PipelineOptions {
  std::string input;                    ///< The model file.
  std::string emit;                     ///< ast, graph, grad-graph, opt-graph, dot, memory-plan, cpp, llvm, obj; "" = executable.
  std::string backend = "llvm";         ///< --backend for -o EXE: llvm (in process, default) or cpp (generated C++, $CXX).
  std::string output;                   ///< -o FILE ("" or "-" = stdout for --emit).
  std::vector<std::string> printAfter;  ///< --print-after=PASS.
  bool printAfterAll = false;           ///< --print-after-all.
  std::vector<std::string> disabled;    ///< --disable-pass=PASS.
  int optLevel = 2;                     ///< -O0 disables every optional pass.
  bool verifyEachPass = true;           ///< Run the verifier between passes.
  std::string targetCpu = "native";     ///< --target-cpu: -march for the generated code.
  bool fpContract = false;              ///< --fp-contract=on: the LLVM backend may contract a*b+c into FMAs.
  bool verbose = false;                 ///< -v: print the C++ compiler's / linker's command line, the JIT's time.
};

/// Runs the pipeline; diagnostics go to `err`. Returns the process exit code.
int runPipeline(const PipelineOptions &opts, std::ostream &err);

} // namespace gradc
