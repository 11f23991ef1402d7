// Pipeline.cpp: parse, elaborate, verify, then each pass with a verifier after it, and
// stop at whatever --emit asks for. Reads top to bottom.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>

#include "frontend/ASTPrinter.h"
#include "codegen/Build.h"
#include "codegen/EmitCpp.h"
#include "lower/LoopLevel.h"
#include "support/Diagnostics.h"
#include "elaborate/Elaborate.h"
#include "ir/IR.h"
#include "codegen/LLVMCodegen.h"
#include "frontend/Parser.h"
#include "transforms/Passes.h"
#include "driver/Pipeline.h"

namespace gradc {

extern const char *const kPreludeText;
extern const char *const kPreludeName;

namespace {

/// Writes `text` to `path` atomically (a temporary file, then rename), or to stdout.
bool writeOutput(const std::string &path, const std::string &text, std::ostream &err) {
  if (path.empty() || path == "-") {
    std::cout << text;
    std::cout.flush();
    return true;
  }
  std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    out.flush();
    if (!out) {
      err << fmt::format("gradc: error: cannot write '{}'\n", path);
      std::filesystem::remove(tmp);
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    err << fmt::format("gradc: error: cannot write '{}': {}\n", path, ec.message());
    std::filesystem::remove(tmp, ec);
    return false;
  }
  return true;
}

/// Verifies the module; a failure is a compiler bug, reported as such.
void verifyOrDie(const Module &m, const std::string &after) {
  std::vector<std::string> problems = verifyModule(m);
  if (problems.empty())
    return;
  std::string msg = fmt::format("the IR is invalid after {}:\n  {}", after, fmt::join(problems, "\n  "));
  throw std::logic_error(msg);
}

} // namespace

bool writeOutputFile(const std::string &path, const std::string &text, std::ostream &err) { return writeOutput(path, text, err); }

std::unique_ptr<Module> compileModule(SourceManager &sm, Diagnostics &diag, uint32_t fileId, const std::vector<std::string> &skip) {
  uint32_t preludeId = sm.add(kPreludeName, kPreludeText);
  std::unique_ptr<ModuleAST> prelude = parseModule(preludeId, sm, diag);
  std::unique_ptr<ModuleAST> ast = parseModule(fileId, sm, diag);
  std::unique_ptr<Module> m = elaborate({prelude.get(), ast.get()}, sm, diag);
  verifyOrDie(*m, "elaboration");
  for (const char *name : {"dce", "fold", "cse", "dce", "licm", "hoist-projections", "dce", "autodiff", "optimizer", "fold", "cse",
                           "dce", "hoist-accumulations", "centered-sums", "one-pass-variance", "pads-to-concat", "fold-affine", "fold", "cse", "dce",
                           "sink-transposes", "dce"}) {
    const PassInfo &pass = *findPass(name);
    if (!pass.required && std::find(skip.begin(), skip.end(), name) != skip.end())
      continue;
    pass.run(*m, diag);
    verifyOrDie(*m, name);
  }
  return m;
}

int runPipeline(const PipelineOptions &opts, std::ostream &err) {
  static const std::vector<std::string> kEmits = {"ast", "graph", "grad-graph", "opt-graph", "dot", "memory-plan", "cpp", "llvm", "obj"};
  if (!opts.emit.empty() && std::find(kEmits.begin(), kEmits.end(), opts.emit) == kEmits.end()) {
    err << fmt::format("gradc: error: unknown --emit kind '{}'; expected {}\n", opts.emit, fmt::join(kEmits, ", "));
    return 1;
  }
  // Loop-level passes: they shape the lowering (--disable-pass), not the graph.
  // llvm-opt is the LLVM backend's optimisation pipeline (--emit=llvm without it: the emitter's IR).
  static const std::vector<std::string> kLoopPasses = {"fuse", "memory-plan", "llvm-opt"};
  auto isLoopPass = [](const std::string &p) { return std::find(kLoopPasses.begin(), kLoopPasses.end(), p) != kLoopPasses.end(); };
  for (const std::vector<std::string> *list : {&opts.printAfter, &opts.disabled})
    for (const std::string &p : *list)
      if (!findPass(p) && !(isLoopPass(p) && list == &opts.disabled)) {
        std::vector<std::string> names;
        for (const PassInfo &pi : allPasses())
          names.push_back(pi.name);
        names.insert(names.end(), kLoopPasses.begin(), kLoopPasses.end());
        err << fmt::format("gradc: error: unknown pass '{}'; passes are {}\n", p, fmt::join(names, ", "));
        return 1;
      }

  SourceManager sm;
  Diagnostics diag(sm, err);
  try {
    // 1. Read and parse the prelude and the model.
    uint32_t preludeId = sm.add(kPreludeName, kPreludeText);
    uint32_t modelId;
    std::string loadError;
    if (!sm.load(opts.input, modelId, loadError)) {
      err << "gradc: error: " << loadError << "\n";
      return 1;
    }
    std::unique_ptr<ModuleAST> prelude = parseModule(preludeId, sm, diag);
    std::unique_ptr<ModuleAST> ast = parseModule(modelId, sm, diag);
    if (opts.emit == "ast") {
      std::ostringstream os;
      printAST(*ast, sm, os);
      return writeOutput(opts.output, os.str(), err) ? 0 : 1;
    }

    // 2. Elaborate into the shape-checked graph IR.
    std::unique_ptr<Module> m = elaborate({prelude.get(), ast.get()}, sm, diag);
    verifyOrDie(*m, "elaboration");
    eliminateDeadCode(*m); // e.g. the loss computation in @infer
    verifyOrDie(*m, "dce");
    if (opts.emit == "graph") {
      std::ostringstream os;
      printModule(*m, sm, os);
      return writeOutput(opts.output, os.str(), err) ? 0 : 1;
    }

    // 3. Clean-ups, autodiff and the optimizer: each pass is followed by the verifier.
    auto runPass = [&](const char *name) {
      const PassInfo &pass = *findPass(name);
      bool off = !pass.required && (opts.optLevel == 0 || std::find(opts.disabled.begin(), opts.disabled.end(),
                                                                     pass.name) != opts.disabled.end());
      if (off)
        return;
      pass.run(*m, diag);
      if (opts.verifyEachPass)
        verifyOrDie(*m, pass.name);
      if (opts.printAfterAll ||
          std::find(opts.printAfter.begin(), opts.printAfter.end(), pass.name) != opts.printAfter.end()) {
        err << fmt::format("// ----- IR after {} -----\n", pass.name);
        printModule(*m, sm, err);
      }
    };
    runPass("fold");
    runPass("cse");
    runPass("dce");
    runPass("licm");
    runPass("hoist-projections");
    runPass("dce");
    runPass("autodiff");
    runPass("optimizer");
    runPass("fold");
    runPass("cse");
    runPass("dce");
    if (opts.emit == "grad-graph") {
      std::ostringstream os;
      printModule(*m, sm, os);
      return writeOutput(opts.output, os.str(), err) ? 0 : 1;
    }

    // 4. Rewrites for fewer passes over the data; fusion and memory planning are loop-level
    // (step 5).
    runPass("hoist-accumulations");
    runPass("centered-sums");
    runPass("one-pass-variance");
    runPass("pads-to-concat");
    runPass("fold-affine");
    runPass("fold");
    runPass("cse");
    runPass("dce");
    runPass("sink-transposes");
    runPass("dce");
    if (opts.emit == "opt-graph") {
      std::ostringstream os;
      printModule(*m, sm, os);
      return writeOutput(opts.output, os.str(), err) ? 0 : 1;
    }
    if (opts.emit == "dot") {
      std::ostringstream os;
      printDot(*m, os);
      return writeOutput(opts.output, os.str(), err) ? 0 : 1;
    }

    // 5. Code generation.
    if (opts.backend != "cpp" && opts.backend != "llvm") {
      err << fmt::format("gradc: error: unknown --backend '{}'; expected cpp or llvm\n", opts.backend);
      return 1;
    }
    LowerOptions lower;
    auto enabled = [&](const char *pass) {
      return opts.optLevel > 0 && std::find(opts.disabled.begin(), opts.disabled.end(), pass) == opts.disabled.end();
    };
    lower.fuse = enabled("fuse");
    lower.planMemory = enabled("memory-plan");
    if (opts.emit == "memory-plan") {
      std::ostringstream os;
      printMemoryPlans(*m, os, lower);
      return writeOutput(opts.output, os.str(), err) ? 0 : 1;
    }
    if (opts.emit == "llvm" || opts.emit == "obj" || (opts.emit.empty() && opts.backend == "llvm"))
      return runLLVMBackend(*m, sm, opts, lower, err);
    std::ostringstream cpp;
    emitCpp(*m, sm, cpp, lower);
    if (opts.emit == "cpp")
      return writeOutput(opts.output, cpp.str(), err) ? 0 : 1;
    return buildExecutable(cpp.str(), opts, err);
  } catch (const CompileError &) {
    return 1;
  }
}

} // namespace gradc
