// EmitLLVM.cpp: builds the kernel IR (Kernel.h) of a module as LLVM IR with IRBuilder, the
// same kernels as EmitCpp.cpp prints in the same order of operations, so both backends
// compute the same bits.
#include "codegen/EmitLLVM.h"

#include <algorithm>
#include <functional>
#include <map>

#include <fmt/format.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/DerivedTypes.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Metadata.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include "CompiledBackend.h"
#include "Philox.h"
#include "ir/ScalarMath.h"
#include "lower/Kernel.h"
#include "lower/RunSpec.h"

namespace gradc {

namespace {

using namespace kernel;

/// Whether a member of a fused loop is one this emitter computes element by element (or, for
/// sum, mean and max, accumulates element by element).
bool emitterFusable(const Node &n) {
  if (n.results.size() != 1 || n.body)
    return false;
  return hasTrait(n.op, TR_ELEMENTWISE) || hasTrait(n.op, TR_INDEXED) || n.op == Op::Sum || n.op == Op::Mean || n.op == Op::Max;
}

/// Emits the functions of one float type into an llvm::Module.
class FunctionEmitter {
public:
  FunctionEmitter(llvm::Module &mod, bool isF32, const LLVMEmitOptions &opts)
      : mod_(mod), ctx_(mod.getContext()), b_(ctx_), isF32_(isF32), opts_(opts) {
    T_ = isF32 ? llvm::Type::getFloatTy(ctx_) : llvm::Type::getDoubleTy(ctx_);
    i64_ = llvm::Type::getInt64Ty(ctx_);
    i32_ = llvm::Type::getInt32Ty(ctx_);
    ptr_ = llvm::PointerType::getUnqual(ctx_);
    dbl_ = llvm::Type::getDoubleTy(ctx_);
    declareRuntime();
    if (opts_.contract) {
      llvm::FastMathFlags fmf;
      fmf.setAllowContract(true);
      b_.setFastMathFlags(fmf);
    }
  }

  /// Emits gradc_<type>_<name> for the kernel `k`.
  llvm::Function *graphFunction(const Function &k) {
    auto *fty = llvm::FunctionType::get(dbl_, {ptr_, ptr_, ptr_, ptr_, dbl_, ptr_}, false);
    auto *f = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, fmt::format("gradc_{}_{}", isF32_ ? "f32" : "f64", k.name), mod_);
    static const char *argNames[] = {"arena", "state", "batch", "outputs", "lr", "sinks"};
    for (unsigned i = 0; i < 6; ++i)
      f->getArg(i)->setName(argNames[i]);
    f->addParamAttr(0, llvm::Attribute::NoAlias);
    f->addParamAttr(0, llvm::Attribute::getWithAlignment(ctx_, llvm::Align(64)));
    for (unsigned i : {1u, 2u, 3u})
      f->addParamAttr(i, llvm::Attribute::NoAlias);
    setTargetAttrs(*f);
    k_ = &k;
    arena_ = f->getArg(0);
    state_ = f->getArg(1);
    batch_ = f->getArg(2);
    outs_ = f->getArg(3);
    lr_ = f->getArg(4);
    sinks_ = f->getArg(5);
    // The entry block holds the loss, the thread count and every buffer's address.
    llvm::BasicBlock *entry = llvm::BasicBlock::Create(ctx_, "entry", f);
    b_.SetInsertPoint(entry);
    loss_ = b_.CreateAlloca(dbl_, nullptr, "loss");
    b_.CreateStore(llvm::ConstantFP::get(dbl_, 0.0), loss_);
    threads_ = b_.CreateCall(threadsFn_, {}, "threads");
    buffers_.clear();
    for (const Buffer &buf : k.buffers)
      buffers_.push_back(buf.kind == Buffer::Arena
                             ? b_.CreateConstInBoundsGEP1_64(T_, arena_, static_cast<uint64_t>(buf.offset), buf.name)
                             : b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, state_, buf.offset), buf.name));
    vars_.assign(k.vars.size(), nullptr);
    regs_.assign(k.regs.size(), nullptr);
    llvm::BasicBlock *start = llvm::BasicBlock::Create(ctx_, "start", f);
    b_.CreateBr(start);
    b_.SetInsertPoint(start);
    block(k.body);
    b_.CreateRet(b_.CreateLoad(dbl_, loss_));
    return f;
  }

private:
  // --- Runtime functions and the FastMath functions as IR.
  void declareRuntime() {
    auto gemmTy = llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_),
                                          {i32_, i32_, i64_, i64_, i64_, T_, ptr_, i64_, ptr_, i64_, T_, ptr_, i64_, i32_}, false);
    gemm_ = mod_.getOrInsertFunction(isF32_ ? "gradc_rt_sgemm" : "gradc_rt_dgemm", gemmTy);
    auto invTy = llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_),
                                         {i64_, i32_, i32_, i64_, i64_, i64_, T_, ptr_, i64_, ptr_, i64_, T_, ptr_, i64_, i32_}, false);
    gemmInvariant_ = mod_.getOrInsertFunction(isF32_ ? "gradc_rt_sgemm_invariant" : "gradc_rt_dgemm_invariant", invTy);
    invariantReset_ = mod_.getOrInsertFunction("gradc_rt_gemm_invariant_reset",
                                               llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), {i64_, i64_}, false));
    threadsFn_ = mod_.getOrInsertFunction("gradc_rt_threads", llvm::FunctionType::get(i32_, {}, false));
    update_ = mod_.getOrInsertFunction("gradc_rt_update", llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), {ptr_, i64_, ptr_}, false));
    grad_ = mod_.getOrInsertFunction("gradc_rt_grad",
                                     llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), {ptr_, i64_, ptr_, i64_}, false));
    fexp_ = mathFunction("fexp", [&](llvm::Value *x) { return isF32_ ? fexp32(x, false) : unaryIntrinsic(llvm::Intrinsic::exp, x); });
    fexpm1_ = mathFunction("fexpm1", [&](llvm::Value *x) { return isF32_ ? fexp32(x, true) : libm("expm1", x); });
    ftanh_ = mathFunction("ftanh", [&](llvm::Value *x) {
      if (!isF32_)
        return libm("tanh", x);
      llvm::Value *a = unaryIntrinsic(llvm::Intrinsic::fabs, x);
      llvm::Value *nine = c(9.0f);
      llvm::Value *e = b_.CreateCall(fexpm1_, {b_.CreateFMul(c(2.0f), b_.CreateSelect(b_.CreateFCmpOGT(a, nine), nine, a))});
      llvm::Value *t = b_.CreateFDiv(e, b_.CreateFAdd(e, c(2.0f)));
      return b_.CreateSelect(b_.CreateFCmpOLT(x, c(0.0f)), b_.CreateFNeg(t), t);
    });
  }

  void setTargetAttrs(llvm::Function &f) {
    if (!opts_.targetCpu.empty())
      f.addFnAttr("target-cpu", opts_.targetCpu);
    if (!opts_.targetFeatures.empty())
      f.addFnAttr("target-features", opts_.targetFeatures);
  }

  /// An internal always-inline T -> T function whose body `gen` builds.
  llvm::Function *mathFunction(const char *name, const std::function<llvm::Value *(llvm::Value *)> &gen) {
    auto *f = llvm::Function::Create(llvm::FunctionType::get(T_, {T_}, false), llvm::Function::InternalLinkage,
                                     fmt::format("gradc_{}_{}", name, isF32_ ? "f32" : "f64"), mod_);
    f->addFnAttr(llvm::Attribute::AlwaysInline);
    f->addFnAttr(llvm::Attribute::NoUnwind);
    setTargetAttrs(*f);
    llvm::IRBuilderBase::InsertPointGuard guard(b_);
    b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", f));
    b_.CreateRet(gen(f->getArg(0)));
    return f;
  }

  llvm::Value *c(double v) { return llvm::ConstantFP::get(T_, v); }
  llvm::Value *cf(float v) { return llvm::ConstantFP::get(T_, static_cast<double>(v)); }
  llvm::Value *ci(int64_t v) { return llvm::ConstantInt::get(i64_, v); }
  llvm::Value *unaryIntrinsic(llvm::Intrinsic::ID id, llvm::Value *x) { return b_.CreateUnaryIntrinsic(id, x); }
  llvm::Value *libm(const std::string &name, llvm::Value *x) {
    llvm::FunctionCallee f = mod_.getOrInsertFunction(isF32_ ? name + "f" : name, llvm::FunctionType::get(T_, {T_}, false));
    if (auto *fn = llvm::dyn_cast<llvm::Function>(f.getCallee())) {
      fn->setDoesNotThrow();
      fn->setWillReturn();
    }
    return b_.CreateCall(f, {x});
  }
  /// FastMath's madd: one rounding (llvm.fma) where the target has FMA.
  llvm::Value *madd(llvm::Value *a, llvm::Value *bb, llvm::Value *cc) {
    if (opts_.fma)
      return b_.CreateIntrinsic(llvm::Intrinsic::fma, {T_}, {a, bb, cc});
    return b_.CreateFAdd(b_.CreateFMul(a, bb), cc);
  }
  /// FastMath.h's fexp (or fexpm1): clamp, Cody-Waite reduction, Taylor series of expm1.
  llvm::Value *fexp32(llvm::Value *x, bool minusOne) {
    llvm::Value *y = b_.CreateSelect(b_.CreateFCmpOLT(x, cf(-87.0f)), cf(-87.0f), x);
    y = b_.CreateSelect(b_.CreateFCmpOGT(y, cf(88.0f)), cf(88.0f), y);
    const float shifter = 12582912.0f;
    llvm::Value *t = madd(y, cf(1.44269504088896341f), cf(shifter));
    llvm::Value *n = b_.CreateFSub(t, cf(shifter));
    llvm::Value *ni = b_.CreateSub(b_.CreateBitCast(t, i32_), b_.CreateBitCast(cf(shifter), i32_));
    llvm::Value *scale = b_.CreateBitCast(b_.CreateMul(b_.CreateAdd(ni, llvm::ConstantInt::get(i32_, 127)),
                                                       llvm::ConstantInt::get(i32_, 1 << 23)),
                                          T_);
    llvm::Value *negN = b_.CreateFNeg(n);
    llvm::Value *r = madd(negN, cf(1.428606765330187045e-06f), madd(negN, cf(0.693145751953125f), y));
    llvm::Value *p = cf(1.0f / 40320);
    for (float k : {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f})
      p = madd(p, r, cf(k));
    llvm::Value *em1 = madd(b_.CreateFMul(p, r), r, r);
    return madd(scale, em1, minusOne ? b_.CreateFSub(scale, cf(1.0f)) : scale);
  }

  // --- Memory.
  llvm::Value *gep(llvm::Value *base, llvm::Value *off, const llvm::Twine &name = "") {
    if (auto *k = llvm::dyn_cast<llvm::ConstantInt>(off); k && k->isZero())
      return base;
    return b_.CreateInBoundsGEP(T_, base, off, name);
  }
  llvm::Value *load(llvm::Value *base, llvm::Value *off, const llvm::Twine &name = "") {
    llvm::LoadInst *l = b_.CreateAlignedLoad(T_, gep(base, off), llvm::MaybeAlign(T_->getPrimitiveSizeInBits() / 8), name);
    if (group_)
      l->setMetadata(llvm::LLVMContext::MD_access_group, group_);
    return l;
  }
  void store(llvm::Value *v, llvm::Value *base, llvm::Value *off) {
    llvm::StoreInst *s = b_.CreateAlignedStore(v, gep(base, off), llvm::MaybeAlign(T_->getPrimitiveSizeInBits() / 8));
    if (group_)
      s->setMetadata(llvm::LLVMContext::MD_access_group, group_);
  }
  int64_t elemBytes() const { return isF32_ ? 4 : 8; }
  void copy(llvm::Value *dst, llvm::Value *src, int64_t n) {
    b_.CreateMemMove(dst, llvm::MaybeAlign(elemBytes()), src, llvm::MaybeAlign(elemBytes()), ci(n * elemBytes()));
  }
  void fill(llvm::Value *dst, int64_t n, double v) {
    if (v == 0 && !std::signbit(v)) {
      b_.CreateMemSet(dst, b_.getInt8(0), ci(n * elemBytes()), llvm::MaybeAlign(elemBytes()));
      return;
    }
    llvm::Value *k = c(v);
    forLoop(n, "fill", [&](llvm::Value *i) { store(k, dst, i); }, true);
  }

  // --- Loops.
  /// A bottom-tested loop `for (i = 0; i < n; ++i) body(i)`; n >= 1. `parallel` marks it
  /// llvm.loop.parallel_accesses over the loads and stores emitted in its body.
  void forLoop(int64_t n, const std::string &name, const std::function<void(llvm::Value *)> &bodyFn, bool parallel = false) {
    if (n <= 0)
      return;
    llvm::Function *f = b_.GetInsertBlock()->getParent();
    llvm::BasicBlock *pre = b_.GetInsertBlock();
    llvm::BasicBlock *loop = llvm::BasicBlock::Create(ctx_, name, f);
    b_.CreateBr(loop);
    b_.SetInsertPoint(loop);
    llvm::PHINode *i = b_.CreatePHI(i64_, 2, name + ".i");
    i->addIncoming(ci(0), pre);
    llvm::MDNode *outer = group_;
    group_ = parallel ? llvm::MDNode::getDistinct(ctx_, {}) : nullptr;
    bodyFn(i);
    llvm::MDNode *inner = group_;
    llvm::Value *next = b_.CreateAdd(i, ci(1), name + ".next", true, true);
    llvm::BasicBlock *exit = llvm::BasicBlock::Create(ctx_, name + ".end", f);
    llvm::BranchInst *br = b_.CreateCondBr(b_.CreateICmpEQ(next, ci(n)), exit, loop);
    i->addIncoming(next, b_.GetInsertBlock());
    llvm::SmallVector<llvm::Metadata *, 3> md{nullptr, llvm::MDNode::get(ctx_, llvm::MDString::get(ctx_, "llvm.loop.mustprogress"))};
    if (parallel)
      md.push_back(llvm::MDNode::get(ctx_, {llvm::MDString::get(ctx_, "llvm.loop.parallel_accesses"), inner}));
    llvm::MDNode *loopId = llvm::MDNode::getDistinct(ctx_, md);
    loopId->replaceOperandWith(0, loopId);
    br->setMetadata(llvm::LLVMContext::MD_loop, loopId);
    group_ = outer;
    b_.SetInsertPoint(exit);
  }

  // --- Scalar kernels.
  llvm::Value *maxOf(llvm::Value *a, llvm::Value *bb) { return b_.CreateSelect(b_.CreateFCmpOLT(a, bb), bb, a); } // std::max
  llvm::Value *minOf(llvm::Value *a, llvm::Value *bb) { return b_.CreateSelect(b_.CreateFCmpOLT(bb, a), bb, a); } // std::min

  /// The scalar builder (ScalarMath.h) over IR values of the float type T.
  struct Scalar {
    using V = llvm::Value *;
    FunctionEmitter &e;
    V c(double v) { return e.c(v); }
    V add(V x, V y) { return e.b_.CreateFAdd(x, y); }
    V sub(V x, V y) { return e.b_.CreateFSub(x, y); }
    V mul(V x, V y) { return e.b_.CreateFMul(x, y); }
    V div(V x, V y) { return e.b_.CreateFDiv(x, y); }
    V max(V x, V y) { return e.maxOf(x, y); }
    V min(V x, V y) { return e.minOf(x, y); }
    V neg(V x) { return e.b_.CreateFNeg(x); }
    V exp(V x) { return e.b_.CreateCall(e.fexp_, {x}); }
    V log(V x) { return e.unaryIntrinsic(llvm::Intrinsic::log, x); }
    V sqrt(V x) { return e.unaryIntrinsic(llvm::Intrinsic::sqrt, x); }
    V tanh(V x) { return e.b_.CreateCall(e.ftanh_, {x}); }
    V abs(V x) { return e.unaryIntrinsic(llvm::Intrinsic::fabs, x); }
    V trunc(V x) { return e.unaryIntrinsic(llvm::Intrinsic::trunc, x); }
    V gt(V x, V y) { return e.b_.CreateFCmpOGT(x, y); }
    V lt(V x, V y) { return e.b_.CreateFCmpOLT(x, y); }
    V eq(V x, V y) { return e.b_.CreateFCmpOEQ(x, y); }
    V number(V cond) { return e.b_.CreateUIToFP(cond, e.T_); }
    V select(V cond, V x, V y) { return e.b_.CreateSelect(cond, x, y); }
  };

  /// The IR of one scalar operation of result type `dt` on its operands' values: Ops.def's
  /// math, or (indexed) the read itself.
  llvm::Value *scalar(Op op, DType dt, const std::vector<llvm::Value *> &x) {
    if (hasTrait(op, TR_INDEXED))
      return x[0];
    Scalar s{*this};
    if (std::optional<llvm::Value *> v = scalarMath(s, op, dt, x.data()))
      return *v;
    throw std::logic_error(fmt::format("emit-llvm: no scalar lowering for '{}'", opInfo(op).name));
  }

  // --- Kernel statements.
  llvm::Value *index(const Affine &a) {
    std::vector<int64_t> key{a.constant};
    for (const auto &[v, st] : a.terms)
      key.insert(key.end(), {v, st});
    llvm::Value *&e = indices_[key]; // computed once per block
    if (e)
      return e;
    for (const auto &[v, s] : a.terms) {
      llvm::Value *term = s == 1 ? vars_[v] : b_.CreateMul(vars_[v], ci(s), "", true, true);
      e = e ? b_.CreateAdd(e, term, "", true, true) : term;
    }
    if (a.constant)
      e = e ? b_.CreateAdd(e, ci(a.constant), "", true, true) : ci(a.constant);
    return e ? e : ci(0);
  }
  /// rt::philox24(key, stream, i) written out as IR (the rounds of runtime/Philox.h, from its
  /// constants), so that a fused loop drawing a dropout mask vectorizes instead of calling the
  /// runtime once per element. key: the batch's {seed, step}.
  llvm::Value *philox24(llvm::Value *key, int64_t stream, llvm::Value *i) {
    auto u32 = [&](uint32_t v) { return llvm::ConstantInt::get(i32_, v); };
    auto lo = [&](llvm::Value *v) { return b_.CreateTrunc(v, i32_); };
    auto hi = [&](llvm::Value *v) { return b_.CreateTrunc(b_.CreateLShr(v, 32), i32_); };
    llvm::Value *seed = b_.CreateLoad(i64_, key, "seed");
    llvm::Value *step = b_.CreateLoad(i64_, b_.CreateConstInBoundsGEP1_64(i64_, key, 1), "step");
    llvm::Value *c[4] = {lo(i), hi(i), lo(step), hi(step)};
    llvm::Value *k0 = lo(seed), *k1 = b_.CreateXor(hi(seed), u32(static_cast<uint32_t>(stream)));
    for (int r = 0; r < rt::kPhiloxRounds; ++r) {
      if (r > 0) {
        k0 = b_.CreateAdd(k0, u32(rt::kPhiloxW0));
        k1 = b_.CreateAdd(k1, u32(rt::kPhiloxW1));
      }
      llvm::Value *p0 = b_.CreateMul(b_.CreateZExt(c[0], i64_), ci(rt::kPhiloxM0));
      llvm::Value *p1 = b_.CreateMul(b_.CreateZExt(c[2], i64_), ci(rt::kPhiloxM1));
      llvm::Value *n0 = b_.CreateXor(b_.CreateXor(hi(p1), c[1]), k0), *n2 = b_.CreateXor(b_.CreateXor(hi(p0), c[3]), k1);
      c[0] = n0, c[1] = lo(p1), c[2] = n2, c[3] = lo(p0);
    }
    return b_.CreateLShr(c[0], 8, "bits");
  }
  llvm::Value *address(const Ref &r) { return gep(buffers_[r.buffer], index(r.index)); }
  llvm::Value *operand(const Operand &x) {
    switch (x.kind) {
    case Operand::Reg: return regs_[x.reg];
    case Operand::Load: return load(address(x.ref), ci(0));
    case Operand::Random: {
      // 0 where the element's 24 random bits fall below the threshold, else 1/(1-p).
      llvm::Value *key = b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, batch_, static_cast<uint64_t>(k_->randomKeySlot)), "rng");
      llvm::Value *bits = philox24(key, x.reg, index(x.ref.index));
      llvm::Value *drop = b_.CreateICmpULT(bits, llvm::ConstantInt::get(i32_, rt::dropoutThreshold(x.value)));
      return b_.CreateSelect(drop, c(0.0), c(1 / (1 - x.value)));
    }
    default: return c(x.value);
    }
  }

  void block(const std::vector<Stmt> &body) {
    for (const Stmt &s : body) {
      const bool scalar = s.kind == Stmt::Let || s.kind == Stmt::Store || s.kind == Stmt::Accum;
      if (!scalar)
        indices_.clear(); // it may start and end blocks
      stmt(s);
      if (!scalar)
        indices_.clear();
    }
  }

  void stmt(const Stmt &s) {
    switch (s.kind) {
    case Stmt::Comment: return;
    case Stmt::Loop:
      forLoop(s.extent, "for." + k_->vars[s.var], [&](llvm::Value *i) {
        i->setName(k_->vars[s.var]);
        vars_[s.var] = i;
        block(s.body);
      }, s.independent);
      return;
    case Stmt::Scan:
      forLoop(s.extent, "scan", [&](llvm::Value *step) {
        step->setName(s.reverse ? "step" : k_->vars[s.var]);
        vars_[s.var] = s.reverse ? b_.CreateSub(ci(s.extent - 1), step, k_->vars[s.var]) : step;
        block(s.body);
      });
      return;
    case Stmt::Let: {
      std::vector<llvm::Value *> x;
      for (const Operand &a : s.args)
        x.push_back(operand(a));
      regs_[s.reg] = scalar(s.op, s.dtype, x);
      regs_[s.reg]->setName(k_->regs[s.reg]);
      return;
    }
    case Stmt::Store: {
      llvm::Value *v = operand(s.value);
      store(v, address(s.dst), ci(0));
      return;
    }
    case Stmt::Accum: {
      llvm::Value *p = address(s.dst);
      llvm::Value *d = load(p, ci(0)), *x = operand(s.value);
      store(s.op == Op::Maximum ? maxOf(d, x) : s.op == Op::Div ? b_.CreateFDiv(d, x) : b_.CreateFAdd(d, x), p, ci(0));
      return;
    }
    case Stmt::Fill: fill(address(s.dst), s.count, s.value.value); return;
    case Stmt::Copy: copy(address(s.dst), address(s.src), s.count); return;
    case Stmt::Gemm: {
      const GemmCall &g = s.gemm;
      std::vector<llvm::Value *> args{b_.getInt32(g.ta), b_.getInt32(g.tb), ci(g.M), ci(g.N), ci(g.K), c(1.0), address(g.a), ci(g.lda),
                                      address(g.b), ci(g.ldb), c(0.0), address(g.c), ci(g.ldc), threads_};
      if (g.slot >= 0)
        args.insert(args.begin(), ci(g.slot));
      b_.CreateCall(g.slot >= 0 ? gemmInvariant_ : gemm_, args);
      return;
    }
    case Stmt::GemmReset: b_.CreateCall(invariantReset_, {ci(s.index), ci(s.count)}); return;
    case Stmt::Input: {
      llvm::Value *src = b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, batch_, s.index), "batch"), *dst = address(s.dst);
      llvm::Type *st = s.integer ? static_cast<llvm::Type *>(i32_) : llvm::Type::getFloatTy(ctx_);
      forLoop(s.count, "input", [&](llvm::Value *k) {
        llvm::Value *x = b_.CreateAlignedLoad(st, b_.CreateInBoundsGEP(st, src, k), llvm::MaybeAlign(4));
        store(s.integer ? b_.CreateSIToFP(x, T_) : (isF32_ ? x : b_.CreateFPExt(x, T_)), dst, k);
      }, true);
      return;
    }
    case Stmt::StateInt: {
      llvm::Value *p = b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, state_, s.index)), *dst = address(s.dst);
      forLoop(s.count, "state", [&](llvm::Value *k) {
        store(b_.CreateSIToFP(b_.CreateAlignedLoad(i64_, b_.CreateInBoundsGEP(i64_, p, k), llvm::MaybeAlign(8)), T_), dst, k);
      }, true);
      return;
    }
    case Stmt::Hyper: store(isF32_ ? b_.CreateFPTrunc(lr_, T_) : lr_, address(s.dst), ci(0)); return;
    case Stmt::Loss: {
      llvm::Value *x = load(address(s.src), ci(0));
      b_.CreateStore(isF32_ ? b_.CreateFPExt(x, dbl_) : x, loss_);
      return;
    }
    case Stmt::Output:
      copy(b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, outs_, s.index), "out"), address(s.src), s.count);
      return;
    case Stmt::Update: b_.CreateCall(update_, {sinks_, ci(s.index), address(s.src)}); return;
    case Stmt::Grad: b_.CreateCall(grad_, {sinks_, ci(s.index), address(s.src), ci(s.count)}); return;
    case Stmt::OneHot: {
      llvm::Value *labels = address(s.src), *out = address(s.dst);
      forLoop(s.count, "one_hot", [&](llvm::Value *k) {
        store(c(1.0), out, b_.CreateAdd(b_.CreateMul(k, ci(s.classes)), b_.CreateFPToSI(load(labels, k), i64_)));
      });
      return;
    }
    case Stmt::RowLoad:
    case Stmt::RowStore: {
      // The row index, clamped into [0, rows), times the row's length.
      llvm::Value *i = b_.CreateFPToSI(operand(s.value), i64_, "row");
      i = b_.CreateSelect(b_.CreateICmpSLT(i, ci(0)), ci(0), i);
      i = b_.CreateSelect(b_.CreateICmpSGT(i, ci(s.extent - 1)), ci(s.extent - 1), i);
      llvm::Value *off = b_.CreateMul(i, ci(s.count));
      if (s.kind == Stmt::RowLoad)
        copy(address(s.dst), gep(address(s.src), off, "row.src"), s.count);
      else
        copy(gep(address(s.dst), off, "row.dst"), address(s.src), s.count);
      return;
    }
    case Stmt::Gather:
    case Stmt::ScatterAdd: gatherScatter(s); return;
    case Stmt::LossKernel: lossKernel(s); return;
    case Stmt::AllReduce: {
      // Declared at first use: a module compiled for one process has no all-reduce.
      if (!allreduce_)
        allreduce_ = mod_.getOrInsertFunction(isF32_ ? "gradc_rt_allreduce_f32" : "gradc_rt_allreduce_f64",
                                              llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), {ptr_, i64_}, false));
      b_.CreateCall(allreduce_, {address(s.dst), ci(s.count)});
      return;
    }
    case Stmt::AllReduceStart: {
      if (!allreduceStart_)
        allreduceStart_ = mod_.getOrInsertFunction(isF32_ ? "gradc_rt_allreduce_start_f32" : "gradc_rt_allreduce_start_f64",
                                                   llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), {ptr_, i64_, i64_}, false));
      b_.CreateCall(allreduceStart_, {address(s.dst), ci(s.count), ci(s.index)});
      return;
    }
    case Stmt::AllReduceProgress: {
      if (!allreduceProgress_)
        allreduceProgress_ = mod_.getOrInsertFunction("gradc_rt_allreduce_progress", llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), {}, false));
      b_.CreateCall(allreduceProgress_, {});
      return;
    }
    case Stmt::AllReduceWait: {
      if (!allreduceWait_)
        allreduceWait_ = mod_.getOrInsertFunction("gradc_rt_allreduce_wait", llvm::FunctionType::get(llvm::Type::getVoidTy(ctx_), {i64_}, false));
      b_.CreateCall(allreduceWait_, {ci(s.index)});
      return;
    }
    }
  }

  /// gather: row i = indices[k] of the table copied to position k (zeros when outside the table);
  /// scatter_add: position k's row added to row i, in position order.
  void gatherScatter(const Stmt &s) {
    const bool gather = s.kind == Stmt::Gather;
    const int64_t D = s.classes;
    llvm::Value *dst = address(s.dst), *src = address(s.src), *idx = address(s.src2);
    if (!gather)
      fill(dst, s.rows * D, 0.0);
    forLoop(s.count, gather ? "gather" : "scatter_add", [&](llvm::Value *k) {
      llvm::Value *i = b_.CreateFPToSI(load(idx, k), i64_, "row");
      llvm::Value *inside = b_.CreateAnd(b_.CreateICmpSGE(i, ci(0)), b_.CreateICmpSLT(i, ci(s.rows)));
      if (!gather && s.padding >= 0)
        inside = b_.CreateAnd(inside, b_.CreateICmpNE(i, ci(s.padding)));
      llvm::Function *f = b_.GetInsertBlock()->getParent();
      llvm::BasicBlock *yes = llvm::BasicBlock::Create(ctx_, "inside", f), *no = llvm::BasicBlock::Create(ctx_, "outside", f),
                       *done = llvm::BasicBlock::Create(ctx_, "next", f);
      b_.CreateCondBr(inside, yes, no);
      b_.SetInsertPoint(yes);
      llvm::Value *row = b_.CreateMul(i, ci(D)), *pos = b_.CreateMul(k, ci(D));
      if (gather)
        copy(gep(dst, pos), gep(src, row), D);
      else
        forLoop(D, "scatter_row", [&](llvm::Value *j) {
          llvm::Value *at = b_.CreateAdd(row, j);
          store(b_.CreateFAdd(load(dst, at), load(src, b_.CreateAdd(pos, j))), dst, at);
        });
      b_.CreateBr(done);
      b_.SetInsertPoint(no);
      if (gather)
        fill(gep(dst, b_.CreateMul(k, ci(D))), D, 0.0);
      b_.CreateBr(done);
      b_.SetInsertPoint(done);
    });
  }

  void lossKernel(const Stmt &s) {
    llvm::Value *a = address(s.src), *t = address(s.src2), *sum = nullptr;
    if (s.op == Op::CrossEntropy) {
      const int64_t C = s.classes;
      sum = sumLoop(s.count, "cross_entropy", [&](llvm::Value *bi) -> llvm::Value * {
        llvm::Value *x = gep(a, b_.CreateMul(bi, ci(C)), "row");
        llvm::Value *m = load(x, ci(0));
        if (C > 1)
          m = reduceLoop(C - 1, "row_max", m, [&](llvm::Value *acc, llvm::Value *k) { return maxOf(acc, load(x, b_.CreateAdd(k, ci(1)))); });
        llvm::Value *z = reduceLoop(C, "row_sum", c(0.0), [&](llvm::Value *acc, llvm::Value *k) {
          return b_.CreateFAdd(acc, unaryIntrinsic(llvm::Intrinsic::exp, b_.CreateFSub(load(x, k), m)));
        });
        llvm::Value *label = b_.CreateFPToSI(load(t, bi), i64_);
        return b_.CreateFSub(b_.CreateFAdd(m, unaryIntrinsic(llvm::Intrinsic::log, z)), load(x, label));
      });
    } else {
      sum = sumLoop(s.count, s.op == Op::Mse ? "mse" : "bce", [&](llvm::Value *k) -> llvm::Value * {
        llvm::Value *x = load(a, k), *y = load(t, k);
        if (s.op == Op::Mse) {
          llvm::Value *d = b_.CreateFSub(x, y);
          return b_.CreateFMul(d, d);
        }
        llvm::Value *e = unaryIntrinsic(llvm::Intrinsic::exp, b_.CreateFNeg(unaryIntrinsic(llvm::Intrinsic::fabs, x)));
        return b_.CreateFAdd(b_.CreateFSub(maxOf(x, c(0.0)), b_.CreateFMul(x, y)), libm("log1p", e));
      });
    }
    store(b_.CreateFDiv(sum, c(double(s.count))), address(s.dst), ci(0));
  }

  /// acc = init; for k < n: acc = step(acc, k); returns acc (a sequential reduction).
  llvm::Value *reduceLoop(int64_t n, const std::string &name, llvm::Value *init,
                          const std::function<llvm::Value *(llvm::Value *, llvm::Value *)> &step) {
    llvm::BasicBlock *pre = b_.GetInsertBlock();
    llvm::PHINode *acc = nullptr;
    llvm::Value *last = nullptr;
    forLoop(n, name, [&](llvm::Value *k) {
      acc = b_.CreatePHI(T_, 2, name + ".acc");
      acc->addIncoming(init, pre);
      last = step(acc, k);
    });
    if (!acc)
      return init;
    // The loop's latch is the block before the exit block we are now in.
    llvm::BasicBlock *latch = b_.GetInsertBlock()->getSinglePredecessor();
    acc->addIncoming(last, latch);
    return last;
  }
  llvm::Value *sumLoop(int64_t n, const std::string &name, const std::function<llvm::Value *(llvm::Value *)> &term) {
    return reduceLoop(n, name, c(0.0), [&](llvm::Value *acc, llvm::Value *k) { return b_.CreateFAdd(acc, term(k)); });
  }

  llvm::Module &mod_;
  llvm::LLVMContext &ctx_;
  llvm::IRBuilder<> b_;
  bool isF32_;
  LLVMEmitOptions opts_;
  llvm::Type *T_, *i64_, *i32_, *dbl_;
  llvm::PointerType *ptr_;
  llvm::FunctionCallee gemm_, gemmInvariant_, invariantReset_, threadsFn_, update_, grad_;
  llvm::FunctionCallee allreduce_; ///< gradc_rt_allreduce_f32/f64, declared at first use.
  llvm::FunctionCallee allreduceStart_, allreduceWait_, allreduceProgress_; ///< gradc_rt_allreduce_start_f32/f64, _wait, _progress.
  llvm::Function *fexp_ = nullptr, *fexpm1_ = nullptr, *ftanh_ = nullptr;
  llvm::Value *arena_ = nullptr, *state_ = nullptr, *batch_ = nullptr, *outs_ = nullptr, *lr_ = nullptr, *sinks_ = nullptr;
  llvm::Value *threads_ = nullptr, *loss_ = nullptr;
  llvm::MDNode *group_ = nullptr; ///< The access group of the innermost parallel loop being emitted.
  const Function *k_ = nullptr;   ///< The kernel being built.
  std::vector<llvm::Value *> buffers_, vars_, regs_; ///< Its buffers' addresses, loop variables and registers, by id.
  std::map<std::vector<int64_t>, llvm::Value *> indices_; ///< Index values of the current block.
};

/// `gradc_model` (GradcCompiledModel) and main() for an executable's object.
void emitExecutableEntry(const Module &m, llvm::Module &mod, int64_t arenaElements) {
  llvm::LLVMContext &ctx = mod.getContext();
  llvm::Type *i64 = llvm::Type::getInt64Ty(ctx), *i32 = llvm::Type::getInt32Ty(ctx);
  llvm::PointerType *ptr = llvm::PointerType::getUnqual(ctx);
  std::string json = rt::specToJson(makeModelSpec(m));
  llvm::Constant *text = llvm::ConstantDataArray::getString(ctx, json, true);
  auto *specVar = new llvm::GlobalVariable(mod, text->getType(), true, llvm::GlobalValue::PrivateLinkage, text, "gradc_spec_json");
  std::vector<llvm::Type *> fields{i64, ptr, i64};
  std::vector<llvm::Constant *> values{llvm::ConstantInt::get(i64, rt::kGradcAbiVersion), specVar, llvm::ConstantInt::get(i64, arenaElements)};
  for (const char *t : {"f32", "f64"})
    for (const char *g : {"train", "eval", "infer", "step"}) {
      fields.push_back(ptr);
      llvm::Function *f = mod.getFunction(fmt::format("gradc_{}_{}", t, g));
      values.push_back(f ? static_cast<llvm::Constant *>(f) : llvm::ConstantPointerNull::get(ptr)); // no step graph: null
    }
  auto *sty = llvm::StructType::create(ctx, fields, "GradcCompiledModel");
  auto *model = new llvm::GlobalVariable(mod, sty, true, llvm::GlobalValue::ExternalLinkage, llvm::ConstantStruct::get(sty, values),
                                         "gradc_model");
  llvm::FunctionCallee rtMain =
      mod.getOrInsertFunction("gradc_rt_llvm_main", llvm::FunctionType::get(i32, {ptr, i32, ptr}, false));
  auto *mainFn = llvm::Function::Create(llvm::FunctionType::get(i32, {i32, ptr}, false), llvm::Function::ExternalLinkage, "main", mod);
  llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", mainFn));
  b.CreateRet(b.CreateCall(rtMain, {model, mainFn->getArg(0), mainFn->getArg(1)}));
}

} // namespace

LLVMEmitResult emitLLVM(const Module &m, const SourceManager &sm, llvm::LLVMContext &ctx,
                        const LLVMEmitOptions &opts) {
  Program prog = lower(m, sm, opts.lower, emitterFusable);
  LLVMEmitResult res;
  res.arenaElements = prog.arenaSize;
  res.module = std::make_unique<llvm::Module>(m.name, ctx);
  for (bool f32 : {true, false}) {
    if (f32 ? !opts.f32 : !opts.f64)
      continue;
    FunctionEmitter fe(*res.module, f32, opts);
    for (const Function *k : {&prog.train, &prog.eval, &prog.infer})
      fe.graphFunction(*k);
    if (prog.hasStep && opts.step)
      fe.graphFunction(prog.step);
  }
  if (opts.executable)
    emitExecutableEntry(m, *res.module, prog.arenaSize);
  std::string problems;
  llvm::raw_string_ostream os(problems);
  if (llvm::verifyModule(*res.module, &os))
    throw std::logic_error("emit-llvm: the emitted IR is invalid:\n" + os.str());
  return res;
}

} // namespace gradc
