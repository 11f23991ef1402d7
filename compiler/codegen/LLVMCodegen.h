// LLVMCodegen.h: the LLVM backend's driver: target machine for the host (or --target-cpu),
// the new pass manager's pipeline at -O<n>, object files and linked executables.
#pragma once

#include <memory>
#include <ostream>
#include <string>

#include "codegen/EmitLLVM.h"
#include "driver/Pipeline.h"

namespace llvm {
class Module;
class TargetMachine;
} // namespace llvm

namespace gradc {

/// A target machine and what the emitter needs to know of it.
struct LLVMTarget {
  std::unique_ptr<llvm::TargetMachine> tm;
  std::string triple, cpu, features; ///< The CPU name and feature string the machine was made for.
  bool fma = false;                  ///< The CPU has fused multiply-add.
  bool contract = false;             ///< --fp-contract=on: float arithmetic may be contracted into FMAs.
  int optLevel = 2;
};

/// Initialises LLVM's native target (once) and makes a machine for `cpu` ("native": the
/// host CPU and its features) at -O`optLevel`. Returns false with `error` set for an unknown CPU.
bool makeLLVMTarget(const std::string &cpu, int optLevel, LLVMTarget &out, std::string &error);

/// Emitter options for `target` (FMA, function target attributes) over `lower`.
LLVMEmitOptions llvmEmitOptions(const LLVMTarget &target, const LowerOptions &lower);

/// Runs the new pass manager's default pipeline for -O`target.optLevel` (the O0 pipeline,
/// which still inlines the always-inline math functions, for -O0).
void optimizeLLVMModule(llvm::Module &mod, const LLVMTarget &target);

/// The module as an object file in memory. Returns false with `error` set on failure.
bool emitObjectFile(llvm::Module &mod, const LLVMTarget &target, std::string &bytes, std::string &error);

/// --backend=llvm: --emit=llvm prints the IR (after the optimisation pipeline unless
/// --disable-pass=llvm-opt), --emit=obj writes the object, otherwise -o EXE links the
/// object with the runtime. Returns the exit code.
int runLLVMBackend(const Module &m, const SourceManager &sm, const PipelineOptions &opts, const LowerOptions &lower, std::ostream &err);

} // namespace gradc
