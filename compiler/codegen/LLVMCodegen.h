// LLVMCodegen.h: the LLVM backend's driver: target machine for the host (or --target-cpu),
// the new pass manager's pipeline at -O<n>, LLVM IR text and object files.
#pragma once

#include <memory>
#include <ostream>
#include <string>

#include "codegen/EmitLLVM.h"
#include "codegen/CodegenOptions.h"

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

/// The target of `opts` (--target-cpu, -O, --fp-contract); prints an error to `err` and
/// returns false when LLVM has none.
bool targetFor(const CodegenOptions &opts, LLVMTarget &target, std::ostream &err);

/// Emitter options for `target` (FMA, function target attributes) over `lower`.
LLVMEmitOptions llvmEmitOptions(const LLVMTarget &target, const LowerOptions &lower);

/// Runs the new pass manager's default pipeline for -O`target.optLevel` (the O0 pipeline,
/// which still inlines the always-inline math functions, for -O0).
void optimizeLLVMModule(llvm::Module &mod, const LLVMTarget &target);

/// The module as an object file in memory. Returns false with `error` set on failure.
bool emitObjectFile(llvm::Module &mod, const LLVMTarget &target, std::string &bytes, std::string &error);

/// What compileWithLLVM produces.
enum class LLVMOutput {
  IR,     ///< The module as LLVM IR text (--emit=llvm).
  Object, ///< An object file defining main (--emit=obj, or linked into -o EXE).
};

/// The LLVM backend: emits `m` for the target of `opts` (--target-cpu, -O, --fp-contract),
/// runs LLVM's optimisation pipeline unless `opts.llvmOpt` is off, and sets `out` to the IR
/// text or the object's bytes. Returns the exit code (1 for a bad --target-cpu, 2 for an
/// internal failure, reported on `err`).
int compileWithLLVM(const Module &m, const SourceManager &sm, const CodegenOptions &opts, const LowerOptions &lower, LLVMOutput kind,
                    std::string &out, std::ostream &err);

} // namespace gradc
