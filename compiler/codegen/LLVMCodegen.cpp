// LLVMCodegen.cpp: target machines, the optimisation pipeline, object emission and linking
// for the LLVM backend (gradc --backend=llvm, --emit=llvm, --emit=obj); the driver writes or
// links what it produces.
#include "codegen/LLVMCodegen.h"

#include <algorithm>
#include <mutex>

#include <fmt/format.h>
#include <llvm/Analysis/CGSCCPassManager.h>
#include <llvm/Analysis/LoopAnalysisManager.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/CommandLine.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>
#include <llvm/TargetParser/Host.h>
#include <llvm/TargetParser/SubtargetFeature.h>


namespace gradc {

bool makeLLVMTarget(const std::string &cpuName, int optLevel, LLVMTarget &out, std::string &error) {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
    // The post-RA scheduler (on for Zen) took ~40% of code generation on lstm2_layernorm and
    // changed no step time measurably (bench/startup.py): off, as `llc -post-RA-scheduler=false`.
    const char *args[] = {"gradc", "-post-RA-scheduler=false"};
    llvm::cl::ParseCommandLineOptions(2, args, "", &llvm::nulls());
  });
  out.triple = llvm::sys::getProcessTriple();
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(out.triple, error);
  if (!target)
    return false;
  out.optLevel = std::clamp(optLevel, 0, 3);
  if (cpuName.empty() || cpuName == "native") {
    out.cpu = llvm::sys::getHostCPUName().str();
    llvm::SubtargetFeatures features;
    for (const auto &f : llvm::sys::getHostCPUFeatures())
      features.AddFeature(f.first(), f.second);
    out.features = features.getString();
  } else {
    // Checked on a generic subtarget first: LLVM itself only warns about an unknown CPU.
    std::unique_ptr<llvm::MCSubtargetInfo> generic(target->createMCSubtargetInfo(out.triple, "", ""));
    if (!generic || !generic->isCPUStringValid(cpuName)) {
      error = fmt::format("unknown --target-cpu '{}' for {}", cpuName, out.triple);
      return false;
    }
    out.cpu = cpuName;
    out.features.clear();
  }
  static const llvm::CodeGenOptLevel levels[] = {llvm::CodeGenOptLevel::None, llvm::CodeGenOptLevel::Less,
                                                 llvm::CodeGenOptLevel::Default, llvm::CodeGenOptLevel::Aggressive};
  llvm::TargetOptions options; // FP contraction only where the IR says `contract`
  out.tm.reset(target->createTargetMachine(out.triple, out.cpu, out.features, options, llvm::Reloc::PIC_, std::nullopt,
                                           levels[out.optLevel]));
  if (!out.tm) {
    error = fmt::format("cannot create a target machine for {}", out.triple);
    return false;
  }
  out.fma = out.tm->getMCSubtargetInfo()->checkFeatures("+fma");
  return true;
}

LLVMEmitOptions llvmEmitOptions(const LLVMTarget &target, const LowerOptions &lower) {
  LLVMEmitOptions o;
  o.lower = lower;
  o.fma = target.fma;
  o.contract = target.contract;
  o.targetCpu = target.cpu;
  o.targetFeatures = target.features;
  return o;
}

void optimizeLLVMModule(llvm::Module &mod, const LLVMTarget &target) {
  mod.setTargetTriple(target.triple);
  mod.setDataLayout(target.tm->createDataLayout());
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PipelineTuningOptions pto;
  llvm::PassBuilder pb(target.tm.get(), pto);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  static const llvm::OptimizationLevel levels[] = {llvm::OptimizationLevel::O0, llvm::OptimizationLevel::O1,
                                                   llvm::OptimizationLevel::O2, llvm::OptimizationLevel::O3};
  llvm::ModulePassManager mpm = target.optLevel == 0 ? pb.buildO0DefaultPipeline(llvm::OptimizationLevel::O0)
                                                     : pb.buildPerModuleDefaultPipeline(levels[target.optLevel]);
  mpm.run(mod, mam);
}

bool emitObjectFile(llvm::Module &mod, const LLVMTarget &target, std::string &bytes, std::string &error) {
  mod.setTargetTriple(target.triple);
  mod.setDataLayout(target.tm->createDataLayout());
  llvm::SmallVector<char, 0> buf;
  llvm::raw_svector_ostream os(buf);
  llvm::legacy::PassManager pm;
  if (target.tm->addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::ObjectFile)) {
    error = "the target cannot emit object files";
    return false;
  }
  pm.run(mod);
  bytes.assign(buf.begin(), buf.end());
  return true;
}

bool targetFor(const CodegenOptions &opts, LLVMTarget &target, std::ostream &err) {
  std::string error;
  if (!makeLLVMTarget(opts.targetCpu, opts.optLevel, target, error)) {
    err << "gradc: error: " << error << "\n";
    return false;
  }
  target.contract = opts.fpContract;
  return true;
}

int compileWithLLVM(const Module &m, const SourceManager &sm, const CodegenOptions &opts, const LowerOptions &lower, LLVMOutput kind,
                    std::string &out, std::ostream &err) {
  LLVMTarget target;
  if (!targetFor(opts, target, err))
    return 1;
  llvm::LLVMContext ctx;
  LLVMEmitResult res = emitLLVM(m, sm, ctx, llvmEmitOptions(target, lower));
  if (opts.llvmOpt)
    optimizeLLVMModule(*res.module, target);
  else {
    res.module->setTargetTriple(target.triple);
    res.module->setDataLayout(target.tm->createDataLayout());
  }
  if (kind == LLVMOutput::IR) {
    out.clear();
    llvm::raw_string_ostream os(out);
    res.module->print(os, nullptr);
    os.flush();
    return 0;
  }
  if (std::string error; !emitObjectFile(*res.module, target, out, error)) {
    err << "gradc: internal error: " << error << "\n";
    return 2;
  }
  return 0;
}

} // namespace gradc
