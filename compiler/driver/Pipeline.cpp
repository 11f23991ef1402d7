// Pipeline.cpp: parse, elaborate, verify, then the one list of graph passes (graphPipeline)
// with the verifier between them, stopping at whatever --emit asks for; then the loop level
// and a backend. Reads top to bottom.
#include "driver/Pipeline.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "codegen/Build.h"
#include "codegen/EmitCpp.h"
#include "lower/LoopLevel.h"
#include "codegen/LLVMCodegen.h"
#include "deploy/Library.h"
#include "deploy/Onnx.h"
#include "deploy/Weights.h"
#include "elaborate/Elaborate.h"
#include "frontend/ASTPrinter.h"
#include "frontend/Parser.h"
#include "support/Output.h"
#include "transforms/Passes.h"

namespace gradc {

extern const char *const kPreludeText;
extern const char *const kPreludeName;

const std::vector<PipelineStep> &graphPipeline() {
  static const std::vector<PipelineStep> steps = {
      {"dce", nullptr, true}, // e.g. the loss computation in @infer
      {nullptr, "graph"},
      // Clean-ups, autodiff and the optimizer.
      {"fold", nullptr},
      {"cse", nullptr},
      {"dce", nullptr},
      {"licm", nullptr},
      {"hoist-projections", nullptr},
      {"dce", nullptr},
      {"autodiff", nullptr},
      {"optimizer", nullptr},
      {"fold", nullptr},
      {"cse", nullptr},
      {"dce", nullptr},
      {nullptr, "grad-graph"},
      // Rewrites for fewer passes over the data (fusion and memory planning are loop-level).
      {"hoist-accumulations", nullptr},
      {"centered-sums", nullptr},
      {"one-pass-variance", nullptr},
      {"pads-to-concat", nullptr},
      {"fold-affine", nullptr},
      {"fold", nullptr},
      {"cse", nullptr},
      {"dce", nullptr},
      {"sink-transposes", nullptr},
      {"dce", nullptr},
      {"early-allreduce", nullptr},
      {nullptr, "opt-graph"},
  };
  return steps;
}

namespace {

#ifdef GRADC_VERIFY_EACH_PASS
constexpr bool kVerifyEachPass = true;
#else
constexpr bool kVerifyEachPass = false;
#endif

bool contains(const std::vector<std::string> &list, const std::string &name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

/// Verifies the module; a failure is a compiler bug, reported as such.
void verifyOrDie(const Module &m, const std::string &after) {
  std::vector<std::string> problems = verifyModule(m);
  if (problems.empty())
    return;
  std::string msg = fmt::format("the IR is invalid after {}:\n  {}", after, fmt::join(problems, "\n  "));
  throw std::logic_error(msg);
}

/// The prelude's and the model's syntax trees.
struct Sources {
  std::unique_ptr<ModuleAST> prelude, model;
};

Sources parseSources(SourceManager &sm, Diagnostics &diag, uint32_t fileId) {
  uint32_t preludeId = sm.add(kPreludeName, kPreludeText);
  Sources s;
  s.prelude = parseModule(preludeId, sm, diag);
  s.model = parseModule(fileId, sm, diag);
  return s;
}

/// Whether `stop` is "" or a stop point of the pipeline.
bool isStopPoint(const std::string &stop) {
  if (stop.empty())
    return true;
  for (const PipelineStep &s : graphPipeline())
    if (!s.pass && stop == s.stop)
      return true;
  return false;
}

} // namespace

PassSelection passSelection(const PipelineOptions &opts) {
  PassSelection sel;
  sel.skip = opts.disabled;
  sel.skipOptional = opts.optLevel == 0;
  sel.printAfter = opts.printAfter;
  sel.printAfterAll = opts.printAfterAll;
  sel.ranks = opts.ranks;
  return sel;
}

CodegenOptions codegenOptions(const PipelineOptions &opts) {
  CodegenOptions cg;
  cg.targetCpu = opts.targetCpu;
  cg.optLevel = opts.optLevel;
  cg.fpContract = opts.fpContract;
  cg.llvmOpt = !contains(opts.disabled, "llvm-opt");
  cg.verbose = opts.verbose;
  return cg;
}

LowerOptions lowerOptions(const PipelineOptions &opts) {
  auto enabled = [&](const char *pass) { return opts.optLevel > 0 && !contains(opts.disabled, pass); };
  LowerOptions lower;
  lower.fuse = enabled("fuse");
  lower.planMemory = enabled("memory-plan");
  lower.overlapCollectives = enabled("early-allreduce");
  return lower;
}

bool checkPassNames(const PipelineOptions &opts, std::ostream &err) {
  for (const std::vector<std::string> *list : {&opts.printAfter, &opts.disabled})
    for (const std::string &p : *list) {
      const PassInfo *pass = findPass(p);
      if (pass && (pass->run || list == &opts.disabled))
        continue;
      std::vector<std::string> names;
      for (const PassInfo &pi : allPasses())
        if (pi.run || list == &opts.disabled)
          names.push_back(pi.name);
      err << fmt::format("gradc: error: unknown pass '{}'; passes are {}\n", p, fmt::join(names, ", "));
      return false;
    }
  return true;
}

std::unique_ptr<Module> compileModule(SourceManager &sm, Diagnostics &diag, uint32_t fileId, const PassSelection &sel,
                                      const std::string &stopAt, std::ostream &dump) {
  if (!isStopPoint(stopAt))
    throw std::logic_error("compileModule: no stop point '" + stopAt + "'");
  Sources src = parseSources(sm, diag, fileId);
  std::unique_ptr<Module> m = elaborate({src.prelude.get(), src.model.get()}, sm, diag, sel.ranks);
  verifyOrDie(*m, "elaboration");
  std::string last = "elaboration";
  for (const PipelineStep &step : graphPipeline()) {
    if (!step.pass) {
      if (stopAt == step.stop)
        break;
      continue;
    }
    const PassInfo &pass = *findPass(step.pass);
    bool off = !pass.required && !step.always && (sel.skipOptional || contains(sel.skip, pass.name));
    if (off)
      continue;
    pass.run(*m, diag);
    last = pass.name;
    if (kVerifyEachPass)
      verifyOrDie(*m, pass.name);
    if (sel.printAfterAll || contains(sel.printAfter, pass.name)) {
      dump << fmt::format("// ----- IR after {} -----\n", pass.name);
      printModule(*m, sm, dump);
    }
  }
  if (!kVerifyEachPass)
    verifyOrDie(*m, last);
  return m;
}

std::unique_ptr<Module> compileModule(SourceManager &sm, Diagnostics &diag, uint32_t fileId, const std::vector<std::string> &skip) {
  PassSelection sel;
  sel.skip = skip;
  std::ostringstream unused;
  return compileModule(sm, diag, fileId, sel, "", unused);
}

void listPasses(std::ostream &os) {
  auto row = [&](const PassInfo &p, bool always) {
    const char *kind = p.required ? "required" : always ? "always" : "optional";
    os << fmt::format("  {:<20} {:<9} {}\n", p.name, kind, p.description);
  };
  os << "graph passes, in pipeline order (--print-after, --disable-pass; -O0 skips the optional ones):\n";
  for (const PipelineStep &s : graphPipeline()) {
    if (s.pass)
      row(*findPass(s.pass), s.always);
    else
      os << fmt::format("  (--emit={} stops here)\n", s.stop);
  }
  os << "loop-level and backend passes (--disable-pass only; -O0 skips fuse and memory-plan, and gives llvm-opt LLVM's -O0 pipeline):\n";
  for (const PassInfo &p : allPasses())
    if (!p.run)
      row(p, false);
}

int runPipeline(const PipelineOptions &opts, std::ostream &err) {
  static const std::vector<std::string> kEmits = {"ast", "graph", "grad-graph", "opt-graph", "dot", "memory-plan", "cpp", "llvm", "obj", "onnx", "lib"};
  if (!opts.emit.empty() && !contains(kEmits, opts.emit)) {
    err << fmt::format("gradc: error: unknown --emit kind '{}'; expected {}\n", opts.emit, fmt::join(kEmits, ", "));
    return 1;
  }
  if (!checkPassNames(opts, err))
    return 1;
  const bool deploy = opts.emit == "onnx" || opts.emit == "lib";
  if (deploy && opts.weights.empty()) {
    err << fmt::format("gradc: error: --emit={} needs --weights CKPT (a checkpoint written by the model's --save)\n", opts.emit);
    return 1;
  }
  if (deploy && (opts.output.empty() || opts.output == "-")) {
    err << fmt::format("gradc: error: --emit={} needs -o FILE\n", opts.emit);
    return 1;
  }
  if (opts.onnxDynamicBatch && opts.emit != "onnx") {
    err << "gradc: error: --onnx-dynamic-batch is for --emit=onnx\n";
    return 1;
  }
  if (!deploy && !opts.weights.empty()) {
    err << "gradc: error: --weights is for --emit=onnx and --emit=lib\n";
    return 1;
  }

  SourceManager sm;
  Diagnostics diag(sm, err);
  try {
    uint32_t modelId;
    std::string loadError;
    if (!sm.load(opts.input, modelId, loadError)) {
      err << "gradc: error: " << loadError << "\n";
      return 1;
    }
    // 1. --emit=ast: the model's syntax tree.
    if (opts.emit == "ast") {
      Sources src = parseSources(sm, diag, modelId);
      std::ostringstream os;
      printAST(*src.model, sm, os);
      return writeOutput(opts.output, os.str(), err) ? 0 : 1;
    }

    // 2. The graph pipeline, up to the stop point of --emit=graph, grad-graph, opt-graph.
    const bool graphEmit = isStopPoint(opts.emit) && !opts.emit.empty();
    std::unique_ptr<Module> m = compileModule(sm, diag, modelId, passSelection(opts), graphEmit ? opts.emit : "", err);
    if (graphEmit || opts.emit == "dot") {
      std::ostringstream os;
      if (graphEmit)
        printModule(*m, sm, os);
      else
        printDot(*m, os);
      return writeOutput(opts.output, os.str(), err) ? 0 : 1;
    }

    // 3. Deployment: the inference graph with the checkpoint's weights.
    if (deploy) {
      Weights w;
      std::string error;
      if (!readWeights(*m, opts.weights, w, error)) {
        err << "gradc: error: " << error << "\n";
        return 1;
      }
      if (opts.emit == "lib")
        return emitLibrary(*m, sm, w, codegenOptions(opts), lowerOptions(opts), opts.output, err);
#ifdef GRADC_HAVE_ONNX
      std::string bytes;
      OnnxOptions onnxOpts;
      onnxOpts.dynamicBatch = opts.onnxDynamicBatch;
      exportOnnx(*m, w, onnxOpts, diag, bytes);
      return writeFileAtomically(opts.output, bytes, err) ? 0 : 1;
#else
      err << "gradc: error: this gradc was built without libonnx-dev; --emit=onnx is unavailable\n";
      return 1;
#endif
    }

    // 4. The loop level and code generation.
    if (opts.backend != "cpp" && opts.backend != "llvm") {
      err << fmt::format("gradc: error: unknown --backend '{}'; expected cpp or llvm\n", opts.backend);
      return 1;
    }
    const LowerOptions lower = lowerOptions(opts);
    const CodegenOptions cg = codegenOptions(opts);
    if (opts.emit == "memory-plan") {
      std::ostringstream os;
      printMemoryPlans(*m, os, lower);
      return writeOutput(opts.output, os.str(), err) ? 0 : 1;
    }
    if (opts.emit == "llvm" || opts.emit == "obj" || (opts.emit.empty() && opts.backend == "llvm")) {
      if (opts.emit == "obj" && (opts.output.empty() || opts.output == "-")) {
        err << "gradc: error: --emit=obj needs -o FILE\n";
        return 1;
      }
      std::string out;
      LLVMOutput kind = opts.emit == "llvm" ? LLVMOutput::IR : LLVMOutput::Object;
      if (int rc = compileWithLLVM(*m, sm, cg, lower, kind, out, err); rc != 0)
        return rc;
      if (opts.emit.empty())
        return linkExecutable(out, opts.output, cg, err);
      return writeOutput(opts.output, out, err) ? 0 : 1;
    }
    std::ostringstream cpp;
    emitCpp(*m, sm, cpp, lower);
    if (opts.emit == "cpp")
      return writeOutput(opts.output, cpp.str(), err) ? 0 : 1;
    return buildExecutable(cpp.str(), opts.output, cg, err);
  } catch (const CompileError &) {
    return 1;
  }
}

} // namespace gradc
