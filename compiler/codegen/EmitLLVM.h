// EmitLLVM.h: the LLVM code generator: the loop-level plan (Fusion.h, MemoryPlan.h) lowered
// with LLVM's IRBuilder to functions that implement runtime/CompiledBackend.h's interface.
#pragma once

#include <memory>
#include <string>

#include "support/Diagnostics.h"
#include "codegen/EmitCpp.h"
#include "ir/IR.h"

namespace llvm {
class LLVMContext;
class Module;
} // namespace llvm

namespace gradc {

/// Choices of the LLVM lowering.
struct LLVMEmitOptions {
  LowerOptions lower;         ///< Fusion and memory planning, as for the C++ emitter.
  bool f32 = true, f64 = true; ///< Which float builds to emit (gradc_f32_* / gradc_f64_*).
  /// Also define `gradc_model` (GradcCompiledModel) and main() calling gradc_rt_llvm_main:
  /// the object of a linked executable. Needs both float builds.
  bool executable = true;
  bool step = true;           ///< Also emit --generate's step graph (gradc_<f32|f64>_step), when the module has one.
  bool fma = true;            ///< The target has FMA: FastMath's madd is llvm.fma (as the C++ build's std::fma).
  bool contract = false;      ///< Mark float arithmetic `contract` (lets LLVM form more FMAs).
  std::string targetCpu, targetFeatures; ///< Function attributes "target-cpu" / "target-features".
};

/// The emitted module and the arena it needs.
struct LLVMEmitResult {
  std::unique_ptr<llvm::Module> module;
  int64_t arenaElements = 0; ///< Elements of the float type (the same for both builds).
};

/// Lowers the module's train, eval and infer graphs (after autodiff and the optimizer), and its
/// step graph if any, to LLVM IR:
/// `double gradc_<f32|f64>_<train|eval|infer|step>(arena, state, batch, outputs, lr, sinks)`
/// (GradcGraphFn). Loops whose iterations are independent carry llvm.loop.parallel_accesses;
/// GEMMs call gradc_rt_sgemm / gradc_rt_dgemm; the vectorisable exp, tanh and sigmoid of
/// runtime/FastMath.h are emitted as inlined IR with the same operations.
LLVMEmitResult emitLLVM(const Module &m, const SourceManager &sm, llvm::LLVMContext &ctx, const LLVMEmitOptions &opts);

} // namespace gradc
