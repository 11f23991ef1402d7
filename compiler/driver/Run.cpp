// Run.cpp: `gradc run`: the training driver over the JIT-compiled model (LLVM backend), or
// over the interpreter backend with --interpret.
#include "driver/Run.h"

#include "Model.h"
#include "interp/InterpBackend.h"
#include "codegen/Jit.h"
#include "driver/Pipeline.h"
#include "lower/RunSpec.h"

namespace gradc {

int runModel(const PipelineOptions &opts, const std::vector<std::string> &exeArgs, bool interpret, std::ostream &err) {
  if (!checkPassNames(opts, err))
    return 1;
  const std::string &model = opts.input;
  SourceManager sm;
  Diagnostics diag(sm, err);
  std::unique_ptr<Module> m;
  try {
    uint32_t id;
    std::string loadError;
    if (!sm.load(model, id, loadError)) {
      err << "gradc: error: " << loadError << "\n";
      return 1;
    }
    m = compileModule(sm, diag, id, passSelection(opts), "", err);
  } catch (const CompileError &) {
    return 1;
  }
  std::vector<std::string> args = {model};
  args.insert(args.end(), exeArgs.begin(), exeArgs.end());
  if (!interpret)
    return runJit(*m, sm, codegenOptions(opts), lowerOptions(opts), args, err);
  rt::ModelSpec spec = makeModelSpec(*m);
  InterpBackend backend(*m, spec);
  std::vector<char *> argv;
  for (std::string &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  return rt::runMain(spec, backend, static_cast<int>(args.size()), argv.data(), &backend);
}

} // namespace gradc
