// CodegenOptions.h: what the code generators, the JIT and the executable builder are told by
// the command line (target, optimisation level, LLVM's pipeline, verbosity).
#pragma once

#include <string>

namespace gradc {

/// The backends' share of the command line; the driver fills it from its own options.
struct CodegenOptions {
  std::string targetCpu = "native"; ///< --target-cpu: -march for the generated code.
  int optLevel = 2;                 ///< -O<n> of the C++ compiler and of LLVM's pipeline.
  bool fpContract = false;          ///< --fp-contract=on: the LLVM backend may contract a*b+c into FMAs.
  bool llvmOpt = true;              ///< LLVM's optimisation pipeline runs (--disable-pass=llvm-opt: off).
  bool verbose = false;             ///< -v: print the C++ compiler's / linker's command line, the JIT's time.
};

} // namespace gradc
