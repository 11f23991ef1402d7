// Options.h: what the user asked gradc to do, as parsed from the command line (driver/gradc.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gradc {

/// The command line of `gradc MODEL ...` and `gradc run MODEL ...`. The backends see only
/// their share of it (codegen/CodegenOptions.h, lower/LoopLevel.h's LowerOptions), which
/// driver/Pipeline.h derives.
struct PipelineOptions {
  std::string input;                    ///< The model file.
  std::string emit;                     ///< ast, graph, grad-graph, opt-graph, dot, memory-plan, cpp, llvm, obj, onnx, lib; "" = executable.
  std::string backend = "llvm";         ///< --backend for -o EXE: llvm (in process, default) or cpp (generated C++, $CXX).
  std::string output;                   ///< -o FILE ("" or "-" = stdout for --emit).
  std::string weights;                  ///< --weights CKPT: the trained checkpoint --emit=onnx and --emit=lib embed.
  bool onnxDynamicBatch = false;        ///< --onnx-dynamic-batch: --emit=onnx gives the batch axis the symbolic size "batch".
  std::vector<std::string> printAfter;  ///< --print-after=PASS.
  bool printAfterAll = false;           ///< --print-after-all.
  std::vector<std::string> disabled;    ///< --disable-pass=PASS.
  int optLevel = 2;                     ///< -O0 disables every optional pass.
  std::string targetCpu = "native";     ///< --target-cpu: -march for the generated code.
  bool fpContract = false;              ///< --fp-contract=on: the LLVM backend may contract a*b+c into FMAs.
  bool verbose = false;                 ///< -v: print the C++ compiler's / linker's command line, the JIT's time.
  int64_t ranks = 1;                    ///< --ranks N: compile the step for mpirun -np N (each rank B / N rows).
  std::vector<int64_t> rankVariants;    ///< --ranks N1,N2,...: one executable variant per count (driver/RankVariants.cpp).
};

} // namespace gradc
