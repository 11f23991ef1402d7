// Jit.cpp: compiles the LLVM backend's IR with ORC's LLJIT, resolves its runtime calls to
// the runtime linked into gradc, and trains through CompiledBackend (gradc run).
#include "codegen/Jit.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include <fmt/format.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/Error.h>
#include <llvm/Target/TargetMachine.h>

#include "CompiledBackend.h"
#include "Mpi.h"
#include "codegen/LLVMCodegen.h"
#include "lower/RunSpec.h"

namespace gradc {

namespace {

std::string message(llvm::Error e) { return llvm::toString(std::move(e)); }

/// One LLJIT instance holding the model's functions.
class ModelJit {
public:
  /// `optimize`: run LLVM's optimisation pipeline on each build (off for --disable-pass=llvm-opt).
  ModelJit(const Module &m, const SourceManager &sm, const LLVMTarget &target, const LowerOptions &lower, bool optimize)
      : m_(m), sm_(sm), target_(target), lower_(lower), optimize_(optimize), ctx_(std::make_unique<llvm::LLVMContext>()) {}

  /// Creates the JIT; returns "" or an error message.
  std::string init() {
    llvm::orc::JITTargetMachineBuilder jtmb{llvm::Triple(target_.triple)};
    jtmb.setCPU(target_.cpu);
    jtmb.addFeatures(std::vector<std::string>{target_.features});
    jtmb.setCodeGenOptLevel(target_.tm->getOptLevel());
    jtmb.setRelocationModel(llvm::Reloc::PIC_);
    auto jit = llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(std::move(jtmb)).create();
    if (!jit)
      return message(jit.takeError());
    jit_ = std::move(*jit);
    llvm::orc::JITDylib &jd = jit_->getMainJITDylib();
    // The emitted code's runtime calls go to the runtime linked into gradc...
    llvm::orc::SymbolMap syms;
    auto add = [&](const char *name, auto *fn) {
      syms[jit_->mangleAndIntern(name)] = {llvm::orc::ExecutorAddr::fromPtr(reinterpret_cast<void *>(fn)),
                                           llvm::JITSymbolFlags::Exported | llvm::JITSymbolFlags::Callable};
    };
    add("gradc_rt_sgemm", &gradc_rt_sgemm);
    add("gradc_rt_dgemm", &gradc_rt_dgemm);
    add("gradc_rt_sgemm_invariant", &gradc_rt_sgemm_invariant);
    add("gradc_rt_dgemm_invariant", &gradc_rt_dgemm_invariant);
    add("gradc_rt_gemm_invariant_reset", &gradc_rt_gemm_invariant_reset);
    add("gradc_rt_threads", &gradc_rt_threads);
    add("gradc_rt_update", &gradc_rt_update);
    add("gradc_rt_grad", &gradc_rt_grad);
    add("gradc_rt_allreduce_f32", &gradc_rt_allreduce_f32);
    add("gradc_rt_allreduce_f64", &gradc_rt_allreduce_f64);
    add("gradc_rt_allreduce_start_f32", &gradc_rt_allreduce_start_f32);
    add("gradc_rt_allreduce_start_f64", &gradc_rt_allreduce_start_f64);
    add("gradc_rt_allreduce_wait", &gradc_rt_allreduce_wait);
    add("gradc_rt_allreduce_progress", &gradc_rt_allreduce_progress);
    if (llvm::Error e = jd.define(llvm::orc::absoluteSymbols(std::move(syms))))
      return message(std::move(e));
    // ... and libm / libc (expf, logf, memmove, ...) to this process's.
    auto gen = llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(jit_->getDataLayout().getGlobalPrefix());
    if (!gen)
      return message(gen.takeError());
    jd.addGenerator(std::move(*gen));
    return "";
  }

  /// Emits, optimises and adds one float build, then looks up its three functions.
  GradcGraphs compile(bool f32, int64_t &arenaElements) {
    LLVMEmitOptions eo = llvmEmitOptions(target_, lower_);
    eo.f32 = f32;
    eo.f64 = !f32;
    eo.executable = false;
    LLVMEmitResult res = emitLLVM(m_, sm_, *ctx_.getContext(), eo);
    arenaElements = res.arenaElements;
    if (optimize_)
      optimizeLLVMModule(*res.module, target_);
    else {
      res.module->setTargetTriple(target_.triple);
      res.module->setDataLayout(target_.tm->createDataLayout());
    }
    if (llvm::Error e = jit_->addIRModule(llvm::orc::ThreadSafeModule(std::move(res.module), ctx_)))
      throw std::runtime_error("JIT: " + message(std::move(e)));
    GradcGraphs g{};
    GradcGraphFn *slots[] = {&g.train, &g.eval, &g.infer, &g.step};
    const char *names[] = {"train", "eval", "infer", "step"};
    for (int k = 0; k < (m_.stepGraph ? 4 : 3); ++k) {
      auto sym = jit_->lookup(fmt::format("gradc_{}_{}", f32 ? "f32" : "f64", names[k]));
      if (!sym)
        throw std::runtime_error("JIT: " + message(sym.takeError()));
      *slots[k] = sym->toPtr<GradcGraphFn>();
    }
    return g;
  }

private:
  const Module &m_;
  const SourceManager &sm_;
  const LLVMTarget &target_;
  LowerOptions lower_;
  bool optimize_;
  llvm::orc::ThreadSafeContext ctx_;
  std::unique_ptr<llvm::orc::LLJIT> jit_;
};

} // namespace

int runJit(const Module &m, const SourceManager &sm, const CodegenOptions &opts, const LowerOptions &lower, std::vector<std::string> args,
           std::ostream &err) {
  LLVMTarget target;
  if (!targetFor(opts, target, err))
    return 1;
  std::string error;
  ModelJit jit(m, sm, target, lower, opts.llvmOpt);
  error = jit.init();
  if (!error.empty()) {
    err << "gradc: error: cannot start the JIT: " << error << "\n";
    return 2;
  }
  rt::ModelSpec spec = makeModelSpec(m);
  int64_t arena = 0;
  GradcGraphs f32;
  auto t0 = std::chrono::steady_clock::now();
  try {
    f32 = jit.compile(true, arena);
  } catch (const std::exception &e) {
    err << "gradc: internal error: " << e.what() << "\n";
    return 2;
  }
  if (opts.verbose)
    err << fmt::format("gradc: JIT: emitted, {} and compiled for {} in {:.3f} s\n",
                       opts.llvmOpt ? fmt::format("optimised (-O{})", target.optLevel) : std::string("not optimised (llvm-opt disabled)"),
                       target.cpu, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  rt::CompiledBackend<float> net(spec, arena, [f32] { return f32; });
  rt::CompiledBackend<double> precise(spec, arena, [&jit] {
    int64_t unused;
    return jit.compile(false, unused);
  });
  std::vector<char *> argv;
  for (std::string &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  return rt::runMain(spec, net, static_cast<int>(args.size()), argv.data(), &precise);
}

} // namespace gradc
