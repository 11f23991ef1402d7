// Run.cpp: `gradc run --interpret`: the training driver over the interpreter backend.
#include "Run.h"

#include "../runtime/Model.h"
#include "InterpBackend.h"
#include "Pipeline.h"
#include "RunSpec.h"

namespace gradc {

int runModel(const std::string &model, const std::vector<std::string> &exeArgs, bool interpret, std::ostream &err) {
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
    m = compileModule(sm, diag, id);
  } catch (const CompileError &) {
    return 1;
  }
  if (!interpret) {
    err << "gradc: error: 'gradc run' needs --interpret until a JIT backend exists\n";
    return 1;
  }
  rt::ModelSpec spec = makeModelSpec(*m);
  InterpBackend backend(*m, spec);
  std::vector<std::string> args = {model};
  args.insert(args.end(), exeArgs.begin(), exeArgs.end());
  std::vector<char *> argv;
  for (std::string &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  return rt::runMain(spec, backend, static_cast<int>(args.size()), argv.data(), &backend);
}

} // namespace gradc
