// Library.cpp: --emit=lib: the inference graph through the LLVM backend, the weights as constant globals, a MODEL_predict entry point over gradc_deploy_predict, archived with the runtime's gradcdeploy into libMODEL.a, and MODEL.h.
#include "deploy/Library.h"

#include <filesystem>

#include <fmt/format.h>
#include <llvm/IR/Constants.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Object/Archive.h>
#include <llvm/Object/ArchiveWriter.h>
#include <llvm/Support/MemoryBuffer.h>

#include "codegen/EmitLLVM.h"
#include "codegen/LLVMCodegen.h"
#include "lower/RunSpec.h"
#include "support/Output.h"

#ifndef GRADC_DEPLOY_LIB
#define GRADC_DEPLOY_LIB ""
#endif

namespace gradc {

namespace {

/// What MODEL.h declares and the descriptor records.
struct LibShape {
  int64_t batch = 0, inputElements = 0, outputElements = 0;
  bool i32Input = false;
};

/// The model's input and output as the C function sees them; false (with `error`) when --emit=lib cannot express them.
bool libShape(const Module &m, const rt::ModelSpec &spec, LibShape &s, std::string &error) {
  if (spec.numInputs != 1 || spec.outputs.size() != 1) {
    error = fmt::format("--emit=lib needs one input and one output; model '{}' has {} and {}", m.name, spec.numInputs,
                        spec.outputs.size());
    return false;
  }
  const rt::TensorSpec &in = spec.inputs[0], &out = spec.outputs[0];
  if (in.shape.empty() || out.shape.empty() || in.shape[0] != spec.batch || out.shape[0] != spec.batch) {
    error = fmt::format("--emit=lib needs the batch axis B = {} first in input '{}' and output '{}'", spec.batch, in.name, out.name);
    return false;
  }
  if (out.dtype != rt::DType::F32 || (in.dtype != rt::DType::F32 && in.dtype != rt::DType::I32)) {
    error = fmt::format("--emit=lib needs an f32 output and an f32 or i32 input");
    return false;
  }
  s.batch = spec.batch;
  s.inputElements = 1;
  for (size_t i = 1; i < in.shape.size(); ++i)
    s.inputElements *= in.shape[i];
  s.outputElements = 1;
  for (size_t i = 1; i < out.shape.size(); ++i)
    s.outputElements *= out.shape[i];
  s.i32Input = in.dtype == rt::DType::I32;
  return true;
}

std::string dims(const std::vector<int64_t> &shape, size_t from) {
  std::vector<int64_t> rest(shape.begin() + static_cast<long>(from), shape.end());
  return fmt::format("[{}]", fmt::join(rest, ", "));
}

std::string header(const Module &m, const rt::ModelSpec &spec, const LibShape &s) {
  const std::string guard = m.name + "_H";
  std::string up = guard;
  for (char &c : up)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const rt::TensorSpec &in = spec.inputs[0], &out = spec.outputs[0];
  return fmt::format(
      "/* {name}.h: inference of model {name} ({path}), weights embedded; written by gradc --emit=lib. */\n"
      "#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
      "/** Elements of one sample of the input '{in}' ({indims} {intype}) and of the output '{out}' ({outdims} f32). */\n"
      "#define {UP}_INPUT_SIZE {ie}\n#define {UP}_OUTPUT_SIZE {oe}\n"
      "/** The batch B the compiled code runs; n samples take ceil(n / B) runs, the last one padded. */\n"
      "#define {UP}_BATCH {b}\n\n"
      "/** Runs inference on n samples of x (n * {UP}_INPUT_SIZE values, row-major) and writes the n outputs to out\n"
      "    (n * {UP}_OUTPUT_SIZE floats). Returns 0; non-zero, writing nothing, when n < 1. Several threads may call it at\n"
      "    once; each thread's buffers are allocated at its first call and reused. */\n"
      "int {name}_predict(const {ctype} *x, float *out, int64_t n);\n\n"
      "#ifdef __cplusplus\n}}\n#endif\n\n#endif\n",
      fmt::arg("name", m.name), fmt::arg("path", m.path), fmt::arg("guard", up), fmt::arg("UP", up.substr(0, up.size() - 2)),
      fmt::arg("in", in.name), fmt::arg("indims", dims(in.shape, 1)), fmt::arg("intype", s.i32Input ? "i32" : "f32"),
      fmt::arg("out", out.name), fmt::arg("outdims", dims(out.shape, 1)), fmt::arg("ie", s.inputElements),
      fmt::arg("oe", s.outputElements), fmt::arg("b", s.batch), fmt::arg("ctype", s.i32Input ? "int32_t" : "float"));
}

/// Adds the weights, the descriptor and `NAME_predict` to the emitted module `mod`, whose
/// inference function becomes internal (so two model libraries link into one program).
void addEntryPoint(const Module &m, const rt::ModelSpec &spec, const Weights &w, const LibShape &s, int64_t arenaElements,
                   llvm::Module &mod) {
  llvm::LLVMContext &ctx = mod.getContext();
  llvm::Type *i64 = llvm::Type::getInt64Ty(ctx), *i32 = llvm::Type::getInt32Ty(ctx);
  llvm::PointerType *ptr = llvm::PointerType::getUnqual(ctx);
  for (const char *g : {"gradc_f32_train", "gradc_f32_eval"})
    if (llvm::Function *f = mod.getFunction(g))
      f->eraseFromParent();
  llvm::Function *infer = mod.getFunction("gradc_f32_infer");
  infer->setLinkage(llvm::GlobalValue::InternalLinkage);
  std::vector<llvm::Constant *> statePtrs;
  for (const rt::StateSpec &st : spec.state) {
    auto it = w.find(st.name);
    if (st.kind == rt::StateSpec::OptState || it == w.end() || (it->second.f32.empty() && it->second.i64.empty())) {
      statePtrs.push_back(llvm::ConstantPointerNull::get(ptr));
      continue;
    }
    llvm::Constant *data = it->second.dtype == DType::F32 ? llvm::ConstantDataArray::get(ctx, llvm::ArrayRef<float>(it->second.f32))
                                                         : llvm::ConstantDataArray::get(ctx, llvm::ArrayRef<int64_t>(it->second.i64));
    auto *g = new llvm::GlobalVariable(mod, data->getType(), true, llvm::GlobalValue::InternalLinkage, data, "w." + st.name);
    g->setAlignment(llvm::Align(64));
    statePtrs.push_back(g);
  }
  auto *arrTy = llvm::ArrayType::get(ptr, statePtrs.size());
  auto *state = new llvm::GlobalVariable(mod, arrTy, true, llvm::GlobalValue::InternalLinkage,
                                         llvm::ConstantArray::get(arrTy, statePtrs), "gradc_deploy_state");
  auto *descTy = llvm::StructType::create(ctx, {ptr, ptr, i64, i64, i64, i64, i64}, "GradcDeployModel");
  auto c64 = [&](int64_t v) { return llvm::ConstantInt::get(i64, v); };
  auto *desc = new llvm::GlobalVariable(
      mod, descTy, true, llvm::GlobalValue::InternalLinkage,
      llvm::ConstantStruct::get(descTy, {infer, state, c64(arenaElements), c64(s.batch), c64(s.inputElements), c64(4),
                                         c64(s.outputElements)}),
      "gradc_deploy_model");
  llvm::FunctionCallee run = mod.getOrInsertFunction("gradc_deploy_predict", llvm::FunctionType::get(i32, {ptr, ptr, ptr, i64}, false));
  auto *fn = llvm::Function::Create(llvm::FunctionType::get(i32, {ptr, ptr, i64}, false), llvm::Function::ExternalLinkage,
                                    m.name + "_predict", mod);
  llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", fn));
  b.CreateRet(b.CreateCall(run, {desc, fn->getArg(0), fn->getArg(1), fn->getArg(2)}));
}

/// libMODEL.a's bytes: `object` as MODEL.o plus every member of the gradcdeploy archive.
bool archive(const Module &m, const std::string &object, std::string &bytes, std::ostream &err) {
  auto fail = [&](const std::string &what) {
    err << "gradc: error: --emit=lib: " << what << "\n";
    return false;
  };
  auto rtBuf = llvm::MemoryBuffer::getFile(GRADC_DEPLOY_LIB);
  if (!rtBuf)
    return fail(fmt::format("cannot read the deploy runtime '{}': {}", GRADC_DEPLOY_LIB, rtBuf.getError().message()));
  auto rtArchive = llvm::object::Archive::create((*rtBuf)->getMemBufferRef());
  if (!rtArchive)
    return fail("the deploy runtime is not an archive: " + llvm::toString(rtArchive.takeError()));
  std::vector<llvm::NewArchiveMember> members;
  members.emplace_back(llvm::MemoryBufferRef(object, m.name + ".o"));
  llvm::Error childErr = llvm::Error::success();
  for (const llvm::object::Archive::Child &c : (*rtArchive)->children(childErr)) {
    auto member = llvm::NewArchiveMember::getOldMember(c, true);
    if (!member)
      return fail(llvm::toString(member.takeError()));
    members.push_back(std::move(*member));
  }
  if (childErr)
    return fail(llvm::toString(std::move(childErr)));
  auto out = llvm::writeArchiveToBuffer(members, llvm::SymtabWritingMode::NormalSymtab, llvm::object::Archive::K_GNU, true, false);
  if (!out)
    return fail(llvm::toString(out.takeError()));
  bytes.assign((*out)->getBufferStart(), (*out)->getBufferSize());
  return true;
}

} // namespace

int emitLibrary(const Module &m, const SourceManager &sm, const Weights &w, const CodegenOptions &cg, const LowerOptions &lower,
                const std::string &output, std::ostream &err) {
  const rt::ModelSpec spec = makeModelSpec(m);
  LibShape s;
  std::string error;
  if (!libShape(m, spec, s, error)) {
    err << "gradc: error: " << error << "\n";
    return 1;
  }
  LLVMTarget target;
  if (!targetFor(cg, target, err))
    return 1;
  llvm::LLVMContext ctx;
  LLVMEmitOptions eo = llvmEmitOptions(target, lower);
  eo.f64 = false;
  eo.executable = false;
  eo.step = false; // the library predicts; --generate's step function stays in executables
  LLVMEmitResult res = emitLLVM(m, sm, ctx, eo);
  addEntryPoint(m, spec, w, s, res.arenaElements, *res.module);
  if (cg.llvmOpt)
    optimizeLLVMModule(*res.module, target);
  std::string object, bytes;
  if (!emitObjectFile(*res.module, target, object, error)) {
    err << "gradc: error: --emit=lib: " << error << "\n";
    return 2;
  }
  if (!archive(m, object, bytes, err))
    return 2;
  std::filesystem::path headerPath = std::filesystem::path(output).parent_path() / (m.name + ".h");
  if (!writeFileAtomically(headerPath.string(), header(m, spec, s), err))
    return 1;
  if (!writeFileAtomically(output, bytes, err)) {
    std::error_code ec;
    std::filesystem::remove(headerPath, ec);
    return 1;
  }
  return 0;
}

} // namespace gradc
