// Pipeline.h: the compiler's stages from model file to output: the one list of graph
// passes (with the points where --emit stops), shared by `gradc MODEL`, `gradc run` and
// compileModule.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "codegen/CodegenOptions.h"
#include "driver/Options.h"
#include "ir/IR.h"
#include "lower/LoopLevel.h"
#include "support/Diagnostics.h"

namespace gradc {

/// One step of the graph pipeline: a pass of the registry (transforms/Passes.h), or the
/// point where an --emit kind stops.
struct PipelineStep {
  const char *pass;    ///< The registry's name; nullptr at a stop point.
  const char *stop;    ///< At a stop point: the --emit kind that ends here.
  bool always = false; ///< Runs even when the pass is optional and -O0, --disable-pass or a skip list turns it off.
};

/// The graph pipeline from the elaborated module to the loop level, in order.
const std::vector<PipelineStep> &graphPipeline();

/// Which passes of the pipeline run and which print the module after them.
struct PassSelection {
  std::vector<std::string> skip;       ///< Optional passes not to run.
  bool skipOptional = false;           ///< -O0: no optional pass runs.
  std::vector<std::string> printAfter; ///< Print the module after these passes.
  bool printAfterAll = false;          ///< Print the module after every pass.
  int64_t ranks = 1;                   ///< --ranks: the MPI ranks to compile the step for.
};

/// The selection the command line asks for (-O0, --disable-pass, --print-after(-all)).
PassSelection passSelection(const PipelineOptions &opts);
/// The backends' options the command line asks for.
CodegenOptions codegenOptions(const PipelineOptions &opts);
/// The loop level's options (-O0, --disable-pass=fuse|memory-plan).
LowerOptions lowerOptions(const PipelineOptions &opts);

/// Checks that --print-after and --disable-pass name known passes (--print-after only graph
/// passes); reports the first unknown one on `err` and returns false.
bool checkPassNames(const PipelineOptions &opts, std::ostream &err);

/// Parses the prelude and model `fileId`, elaborates, verifies, and runs the graph pipeline
/// under `sel` up to the stop point `stopAt` ("" = every pass), printing the module on
/// `dump` after the passes `sel` names. The verifier runs after every pass when the build
/// defines GRADC_VERIFY_EACH_PASS (the default; CMake option GRADC_DEBUG_VERIFY), else at the
/// end; an invalid module is a compiler bug (std::logic_error). Reports errors through `diag`
/// (which throws CompileError).
std::unique_ptr<Module> compileModule(SourceManager &sm, Diagnostics &diag, uint32_t fileId, const PassSelection &sel,
                                      const std::string &stopAt, std::ostream &dump);

/// compileModule through the whole pipeline, printing nothing; `skip` names optional passes
/// not to run (a test compares the results with and without them).
std::unique_ptr<Module> compileModule(SourceManager &sm, Diagnostics &diag, uint32_t fileId, const std::vector<std::string> &skip = {});

/// Prints the pipeline in order with its stop points, then the loop-level and backend
/// switches, each with whether it is required and what it does (gradc --list-passes).
void listPasses(std::ostream &os);

/// Runs `gradc MODEL --emit=KIND | -o EXE`; diagnostics go to `err`. Returns the process exit code.
int runPipeline(const PipelineOptions &opts, std::ostream &err);

} // namespace gradc
