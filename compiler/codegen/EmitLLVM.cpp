// EmitLLVM.cpp: lowers the loop-level plan (single nodes and fused runs of elementwise work,
// buffers placed in one arena) to LLVM IR with IRBuilder, the same kernels as EmitCpp.cpp in
// the same order of operations, so both backends compute the same bits.
#include "codegen/EmitLLVM.h"

#include <algorithm>
#include <functional>
#include <map>
#include <unordered_map>
#include <unordered_set>

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
#include "ir/ScalarMath.h"
#include "lower/LoopLevel.h"
#include "lower/RunSpec.h"

namespace gradc {

namespace {

using Strides = std::vector<int64_t>;

bool allZero(const Strides &s) {
  return std::all_of(s.begin(), s.end(), [](int64_t x) { return x == 0; });
}

/// The LLVM name of a model value: its name ("lstm.gates"), or v<id> for unnamed ones.
std::string irName(const Value *v) {
  if (!v)
    return "";
  return v->name.empty() ? fmt::format("v{}", v->id) : v->name;
}

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
  FunctionEmitter(const Module &m, const LoopLevel &layout, llvm::Module &mod, bool isF32, const LLVMEmitOptions &opts)
      : m_(m), layout_(layout), mod_(mod), ctx_(mod.getContext()), b_(ctx_), isF32_(isF32), opts_(opts) {
    T_ = isF32 ? llvm::Type::getFloatTy(ctx_) : llvm::Type::getDoubleTy(ctx_);
    i64_ = llvm::Type::getInt64Ty(ctx_);
    i32_ = llvm::Type::getInt32Ty(ctx_);
    ptr_ = llvm::PointerType::getUnqual(ctx_);
    dbl_ = llvm::Type::getDoubleTy(ctx_);
    rt::ModelSpec spec = makeModelSpec(m);
    for (size_t i = 0; i < spec.state.size(); ++i)
      stateIndex_[spec.state[i].name] = i;
    for (size_t i = 0; i < spec.inputs.size(); ++i)
      inputIndex_[spec.inputs[i].name] = i;
    for (size_t i = 0; i < spec.outputs.size(); ++i)
      outputIndex_[spec.outputs[i].name] = i;
    for (size_t i = 0; i < spec.state.size(); ++i)
      if (spec.state[i].kind == rt::StateSpec::Param)
        paramOrder_[spec.state[i].name] = paramOrder_.size();
    declareRuntime();
    if (opts_.contract) {
      llvm::FastMathFlags fmf;
      fmf.setAllowContract(true);
      b_.setFastMathFlags(fmf);
    }
  }

  /// Emits gradc_<type>_<name> for graph g; `outputs`: write output sinks (infer only).
  llvm::Function *graphFunction(const Graph &g, const std::string &name, bool outputs) {
    auto *fty = llvm::FunctionType::get(dbl_, {ptr_, ptr_, ptr_, ptr_, dbl_, ptr_}, false);
    auto *f = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, fmt::format("gradc_{}_{}", isF32_ ? "f32" : "f64", name), mod_);
    static const char *argNames[] = {"arena", "state", "batch", "outputs", "lr", "sinks"};
    for (unsigned i = 0; i < 6; ++i)
      f->getArg(i)->setName(argNames[i]);
    f->addParamAttr(0, llvm::Attribute::NoAlias);
    f->addParamAttr(0, llvm::Attribute::getWithAlignment(ctx_, llvm::Align(64)));
    for (unsigned i : {1u, 2u, 3u})
      f->addParamAttr(i, llvm::Attribute::NoAlias);
    setTargetAttrs(*f);
    arena_ = f->getArg(0);
    state_ = f->getArg(1);
    batch_ = f->getArg(2);
    outs_ = f->getArg(3);
    lr_ = f->getArg(4);
    sinks_ = f->getArg(5);
    emitOutputs_ = outputs;
    alias_.clear();
    // The graphs never run at the same time and every scan resets its slots at its entry,
    // so each graph numbers its gemmInvariantB slots from 0 (fewer packed copies).
    nextSlot_ = 0;
    buffers_.clear();
    // The entry block holds the loss, the thread count and every arena buffer's address.
    entry_ = llvm::BasicBlock::Create(ctx_, "entry", f);
    b_.SetInsertPoint(entry_);
    loss_ = b_.CreateAlloca(dbl_, nullptr, "loss");
    b_.CreateStore(llvm::ConstantFP::get(dbl_, 0.0), loss_);
    threads_ = b_.CreateCall(threadsFn_, {}, "threads");
    llvm::BasicBlock *start = llvm::BasicBlock::Create(ctx_, "start", f);
    b_.CreateBr(start);
    b_.SetInsertPoint(start);
    body(g);
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
  llvm::Value *gep(llvm::Value *base, int64_t off, const llvm::Twine &name = "") {
    return off == 0 ? base : b_.CreateConstInBoundsGEP1_64(T_, base, static_cast<uint64_t>(off), name);
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

  /// The arena buffer of v.
  llvm::Value *ptr(const Value *v) {
    llvm::Value *&p = buffers_[v];
    if (!p) {
      if (!layout_.offset.count(v))
        throw std::logic_error(fmt::format("emit-llvm: value %{} ({}) has no buffer", irName(v), v->def ? opInfo(v->def->op).name : "argument"));
      llvm::IRBuilderBase::InsertPointGuard guard(b_);
      b_.SetInsertPoint(entry_->getTerminator());
      p = b_.CreateConstInBoundsGEP1_64(T_, arena_, static_cast<uint64_t>(layout_.offset.at(v)), irName(v) + ".buf");
    }
    return p;
  }
  /// v's storage: its arena buffer, or what it aliases (state, a reshaped operand, a capture).
  llvm::Value *ref(const Value *v) {
    auto it = alias_.find(v);
    return it != alias_.end() ? it->second : ptr(v);
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

  /// Loop nests over `shape` (one flat loop when every operand is contiguous or a scalar);
  /// `inner` receives, per stride vector, the linear element offset. `independent`: every
  /// iteration writes its own element and reads none another writes, so the innermost loop
  /// is parallel (the C++ emitter's GRADC_IVDEP).
  void loops(const std::vector<int64_t> &shape, const std::vector<Strides> &strides,
             const std::function<void(const std::vector<llvm::Value *> &)> &inner, bool independent, const std::string &name) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    bool flat = true;
    Strides full = stridesOf(shape);
    for (const Strides &st : strides)
      flat = flat && (st == full || allZero(st));
    if (flat) {
      forLoop(n, name, [&](llvm::Value *i) {
        std::vector<llvm::Value *> offs;
        for (const Strides &st : strides)
          offs.push_back(allZero(st) ? ci(0) : i);
        inner(offs);
      }, independent);
      return;
    }
    std::function<void(size_t, std::vector<llvm::Value *>)> level = [&](size_t a, std::vector<llvm::Value *> base) {
      if (a == shape.size()) {
        inner(base);
        return;
      }
      forLoop(shape[a], fmt::format("{}.{}", name, a), [&](llvm::Value *i) {
        std::vector<llvm::Value *> offs = base;
        for (size_t k = 0; k < strides.size(); ++k)
          if (strides[k][a]) {
            llvm::Value *term = strides[k][a] == 1 ? i : b_.CreateMul(i, ci(strides[k][a]), "", true, true);
            auto *zero = llvm::dyn_cast<llvm::ConstantInt>(offs[k]);
            offs[k] = zero && zero->isZero() ? term : b_.CreateAdd(offs[k], term, "", true, true);
          }
        level(a + 1, offs);
      }, independent && a + 1 == shape.size());
    };
    level(0, std::vector<llvm::Value *>(strides.size(), ci(0)));
  }

  // --- Scalar math: Ops.def's, over this builder.
  llvm::Value *maxOf(llvm::Value *a, llvm::Value *bb) { return b_.CreateSelect(b_.CreateFCmpOLT(a, bb), bb, a); } // std::max
  llvm::Value *minOf(llvm::Value *a, llvm::Value *bb) { return b_.CreateSelect(b_.CreateFCmpOLT(bb, a), bb, a); } // std::min

  /// The scalar builder (ScalarMath.h) over IR values of the float type T.
  struct Scalar {
    using V = llvm::Value *;
    FunctionEmitter &e;
    llvm::IRBuilder<> &b;
    V c(double v) { return e.c(v); }
    V add(V x, V y) { return b.CreateFAdd(x, y); }
    V sub(V x, V y) { return b.CreateFSub(x, y); }
    V mul(V x, V y) { return b.CreateFMul(x, y); }
    V div(V x, V y) { return b.CreateFDiv(x, y); }
    V max(V x, V y) { return e.maxOf(x, y); }
    V min(V x, V y) { return e.minOf(x, y); }
    V neg(V x) { return b.CreateFNeg(x); }
    V exp(V x) { return b.CreateCall(e.fexp_, {x}); }
    V log(V x) { return b.CreateUnaryIntrinsic(llvm::Intrinsic::log, x); }
    V sqrt(V x) { return b.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, x); }
    V tanh(V x) { return b.CreateCall(e.ftanh_, {x}); }
    V abs(V x) { return b.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, x); }
    V trunc(V x) { return b.CreateUnaryIntrinsic(llvm::Intrinsic::trunc, x); }
    V gt(V x, V y) { return b.CreateFCmpOGT(x, y); }
    V lt(V x, V y) { return b.CreateFCmpOLT(x, y); }
    V eq(V x, V y) { return b.CreateFCmpOEQ(x, y); }
    V number(V cond) { return b.CreateUIToFP(cond, e.T_); }
    V select(V cond, V x, V y) { return b.CreateSelect(cond, x, y); }
  };

  /// The value of an elementwise or indexed node from its operands' values.
  llvm::Value *elementwise(const Node &n, const std::vector<llvm::Value *> &x) {
    if (hasTrait(n.op, TR_INDEXED))
      return x[0]; // the read itself
    Scalar s{*this, b_};
    if (std::optional<llvm::Value *> v = scalarMath(s, n.op, n.results[0]->type.dtype, x.data()))
      return *v;
    throw std::logic_error(fmt::format("emit-llvm: no elementwise lowering for '{}'", opInfo(n.op).name));
  }

  // --- Graphs and nodes.
  void body(const Graph &g) {
    // Views first (state, reshapes): a fused loop may read one before its node's turn.
    for (const auto &n : g.nodes)
      if (n->op == Op::Reshape)
        alias_[n->results[0]] = ref(n->operands[0]);
      else if ((n->op == Op::Param || n->op == Op::Buffer) && n->results[0]->type.dtype == DType::F32)
        alias_[n->results[0]] = b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, state_, stateIndex_.at(n->getStr("name"))),
                                              n->getStr("name"));
    for (const FusedLoop &l : layout_.loops.at(&g)) {
      if (l.fused())
        fusedLoop(l);
      else if (!l.nodes[0]->results.empty() && layout_.folded.count(l.nodes[0]->results[0]))
        continue; // a transpose folded into the matmuls that read it
      else
        node(*l.nodes[0]);
    }
  }

  /// One loop nest computing a run of elementwise and indexed nodes element by element;
  /// values used only inside the run stay in registers.
  void fusedLoop(const FusedLoop &l) {
    struct Access {
      bool reg;
      size_t index; // register: member index; memory: stride index
      int64_t offset;
      llvm::Value *base;
    };
    std::vector<Strides> strides{stridesOf(l.shape)};
    std::unordered_map<const Value *, size_t> local;
    std::vector<std::vector<Access>> acc(l.nodes.size());
    std::vector<llvm::Value *> outs(l.nodes.size(), nullptr);
    for (size_t k = 0; k < l.nodes.size(); ++k) {
      const Node &n = *l.nodes[k];
      if (!emitterFusable(n))
        throw std::logic_error(fmt::format("emit-llvm: a fused loop holds '{}', which this emitter only lowers on its own",
                                           opInfo(n.op).name));
      for (size_t j = 0; j < n.operands.size(); ++j) {
        auto it = local.find(n.operands[j]);
        if (it != local.end()) {
          acc[k].push_back({true, it->second, 0, nullptr});
          continue;
        }
        auto [st, off] = readAccess(n, j, l.shape.size(), layout_.memStrides(n.operands[j]));
        size_t si = std::find(strides.begin(), strides.end(), st) - strides.begin();
        if (si == strides.size())
          strides.push_back(st);
        acc[k].push_back({false, si, off, gep(ref(n.operands[j]), off)});
      }
      local[n.results[0]] = k;
      if (l.stored[k] || hasTrait(n.op, TR_REDUCTION))
        outs[k] = layout_.seqViews.count(n.results[0]) ? ref(n.results[0]) : ptr(n.results[0]);
    }
    // A stored member that is a stacked output's step writes it in place, at its strides.
    std::vector<size_t> outIndex(l.nodes.size(), 0);
    for (size_t k = 0; k < l.nodes.size(); ++k) {
      const Value *r = l.nodes[k]->results[0];
      if (!layout_.seqViews.count(r) || hasTrait(l.nodes[k]->op, TR_REDUCTION))
        continue;
      Strides st = layout_.memStrides(r);
      outIndex[k] = std::find(strides.begin(), strides.end(), st) - strides.begin();
      if (outIndex[k] == strides.size())
        strides.push_back(st);
    }
    // A reduction member accumulates into its result, zeroed (or -inf for max) first, at the
    // element's index with the reduced axes dropped.
    const size_t rank = l.shape.size();
    std::vector<size_t> outStride(l.nodes.size(), 0);
    bool independent = true; // unless a reduction accumulates along the innermost axis
    for (size_t k = 0; k < l.nodes.size(); ++k) {
      const Node &n = *l.nodes[k];
      if (!hasTrait(n.op, TR_REDUCTION))
        continue;
      Strides st = reductionStrides(n, l.shape, independent);
      outStride[k] = std::find(strides.begin(), strides.end(), st) - strides.begin();
      if (outStride[k] == strides.size())
        strides.push_back(st);
      fill(outs[k], n.results[0]->type.numel(), n.op == Op::Max ? -INFINITY : 0.0);
    }
    loops(l.shape, strides, [&](const std::vector<llvm::Value *> &off) {
      std::vector<llvm::Value *> v(l.nodes.size());
      for (size_t k = 0; k < l.nodes.size(); ++k) {
        const Node &n = *l.nodes[k];
        std::vector<llvm::Value *> x;
        for (const Access &a : acc[k])
          x.push_back(a.reg ? v[a.index] : load(a.base, off[a.index]));
        if (hasTrait(n.op, TR_REDUCTION)) {
          llvm::Value *d = load(outs[k], off[outStride[k]]);
          store(n.op == Op::Max ? maxOf(d, x[0]) : b_.CreateFAdd(d, x[0]), outs[k], off[outStride[k]]);
          continue;
        }
        v[k] = elementwise(n, x);
        v[k]->setName(irName(n.results[0]));
        if (outs[k])
          store(v[k], outs[k], off[outIndex[k]]);
      }
    }, independent, "fused");
    for (const Node *n : l.nodes)
      if (n->op == Op::Mean)
        meanDivide(*n);
  }

  /// Divides a mean's accumulated sums by the number of elements each one reduced.
  void meanDivide(const Node &n) {
    int64_t count = 1;
    for (int64_t a : n.getInts("axes"))
      count *= n.operands[0]->type.shape[a];
    llvm::Value *out = ptr(n.results[0]);
    forLoop(n.results[0]->type.numel(), "mean", [&](llvm::Value *k) { store(b_.CreateFDiv(load(out, k), c(double(count))), out, k); }, true);
  }

  void node(const Node &n) {
    const Value *r = n.results.empty() ? nullptr : n.results[0];
    auto in = [&](size_t i) { return ref(n.operands[i]); };
    auto numel = [&](size_t i) { return n.operands[i]->type.numel(); };
    switch (n.op) {
    case Op::Input: {
      size_t i = inputIndex_.at(n.getStr("name"));
      bool integer = r->type.dtype != DType::F32;
      llvm::Value *src = b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, batch_, i), "batch." + n.getStr("name"));
      llvm::Value *dst = ptr(r);
      llvm::Type *st = integer ? static_cast<llvm::Type *>(i32_) : llvm::Type::getFloatTy(ctx_);
      forLoop(r->type.numel(), "input", [&](llvm::Value *k) {
        llvm::Value *x = b_.CreateAlignedLoad(st, b_.CreateInBoundsGEP(st, src, k), llvm::MaybeAlign(4));
        x = integer ? b_.CreateSIToFP(x, T_) : (isF32_ ? x : b_.CreateFPExt(x, T_));
        store(x, dst, k);
      }, true);
      return;
    }
    case Op::Param:
    case Op::Buffer: {
      if (r->type.dtype == DType::F32)
        return; // a view of the state, made by body()
      size_t i = stateIndex_.at(n.getStr("name"));
      llvm::Value *p = b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, state_, i), n.getStr("name"));
      llvm::Value *dst = ptr(r);
      forLoop(r->type.numel(), "state", [&](llvm::Value *k) {
        llvm::Value *x = b_.CreateAlignedLoad(i64_, b_.CreateInBoundsGEP(i64_, p, k), llvm::MaybeAlign(8));
        store(b_.CreateSIToFP(x, T_), dst, k);
      }, true);
      return;
    }
    case Op::Const: fill(ptr(r), r->type.numel(), n.getFloat("value")); return;
    case Op::Hyper: store(isF32_ ? b_.CreateFPTrunc(lr_, T_) : lr_, ptr(r), ci(0)); return;
    case Op::Loss: {
      llvm::Value *x = load(in(0), ci(0));
      b_.CreateStore(isF32_ ? b_.CreateFPExt(x, dbl_) : x, loss_);
      return;
    }
    case Op::Output: {
      auto it = outputIndex_.find(n.getStr("name"));
      if (!emitOutputs_ || it == outputIndex_.end())
        return;
      llvm::Value *dst = b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, outs_, it->second), "out." + n.getStr("name"));
      copy(dst, in(0), numel(0));
      return;
    }
    case Op::Update: b_.CreateCall(update_, {sinks_, ci(stateIndex_.at(n.getStr("name"))), in(0)}); return;
    case Op::Grad: b_.CreateCall(grad_, {sinks_, ci(paramOrder_.at(n.getStr("name"))), in(0), ci(numel(0))}); return;
    case Op::Reshape: return; // a view of its operand, made by body()
    case Op::MatMul: matmul(n); return;
    case Op::Scan: scan(n); return;
    default: break;
    }
    llvm::Value *out = layout_.seqViews.count(r) ? ref(r) : ptr(r); // a concat may write a stacked step
    const auto &os = r->type.shape;
    if (hasTrait(n.op, TR_ELEMENTWISE) || n.op == Op::BroadcastTo) {
      std::vector<Strides> strides{stridesOf(os)};
      std::vector<llvm::Value *> bases;
      for (size_t j = 0; j < n.operands.size(); ++j) {
        strides.push_back(broadcastStrides(n.operands[j]->type.shape, os.size()));
        bases.push_back(in(j));
      }
      loops(os, strides, [&](const std::vector<llvm::Value *> &off) {
        std::vector<llvm::Value *> x;
        for (size_t j = 0; j < bases.size(); ++j)
          x.push_back(load(bases[j], off[j + 1]));
        llvm::Value *v = elementwise(n, x);
        v->setName(irName(r));
        store(v, out, off[0]);
      }, true, opInfo(n.op).name);
      return;
    }
    switch (n.op) {
    case Op::Transpose: {
      Strides st = readAccess(n, 0, os.size()).first;
      llvm::Value *a = in(0);
      loops(os, {stridesOf(os), st}, [&](const std::vector<llvm::Value *> &off) { store(load(a, off[1]), out, off[0]); }, true,
            "transpose");
      return;
    }
    case Op::Slice:
    case Op::Pad: {
      // slice: out[i] = x[i + begin]; pad: out = 0, out[i + begin] = x[i].
      bool isPad = n.op == Op::Pad;
      const auto &begin = n.getInts("begin");
      const auto &shifted = isPad ? os : n.operands[0]->type.shape;
      const auto &iter = isPad ? n.operands[0]->type.shape : os;
      Strides ss = stridesOf(shifted);
      int64_t base = 0;
      for (size_t a = 0; a < begin.size(); ++a)
        base += begin[a] * ss[a];
      if (isPad)
        fill(out, r->type.numel(), 0.0);
      llvm::Value *a = in(0);
      llvm::Value *src = isPad ? a : gep(a, base), *dst = isPad ? gep(out, base) : out;
      loops(iter, {stridesOf(iter), ss}, [&](const std::vector<llvm::Value *> &off) {
        if (isPad)
          store(load(src, off[0]), dst, off[1]);
        else
          store(load(src, off[1]), dst, off[0]);
      }, true, isPad ? "pad" : "slice");
      return;
    }
    case Op::Concat: {
      int64_t axis = n.getInt("axis"), base = 0;
      Strides st = layout_.memStrides(r); // row-major, or a stacked output's step in place
      for (size_t i = 0; i < n.operands.size(); ++i) {
        const auto &s = n.operands[i]->type.shape;
        llvm::Value *a = in(i), *dst = gep(out, base * st[axis]);
        loops(s, {stridesOf(s), st}, [&](const std::vector<llvm::Value *> &off) { store(load(a, off[0]), dst, off[1]); }, true,
              "concat");
        base += s[axis];
      }
      return;
    }
    case Op::Sum:
    case Op::Mean:
    case Op::Max: {
      const auto &xs = n.operands[0]->type.shape;
      std::vector<int64_t> keep = xs;
      for (int64_t a : n.getInts("axes"))
        keep[a] = 1;
      bool mx = n.op == Op::Max;
      fill(out, r->type.numel(), mx ? -INFINITY : 0.0);
      llvm::Value *a = in(0);
      // Each element accumulates in the C++ backend's order. When the innermost axis is kept
      // (a sum over the batch, say), its iterations update distinct elements: parallel.
      Strides keepStrides = broadcastStrides(keep, xs.size());
      const auto &axes = n.getInts("axes");
      bool innerKept = !xs.empty() && std::find(axes.begin(), axes.end(), int64_t(xs.size() - 1)) == axes.end() && !allZero(keepStrides);
      loops(xs, {stridesOf(xs), keepStrides}, [&](const std::vector<llvm::Value *> &off) {
        llvm::Value *d = load(out, off[1]), *s = load(a, off[0]);
        store(mx ? maxOf(d, s) : b_.CreateFAdd(d, s), out, off[1]);
      }, innerKept, opInfo(n.op).name);
      if (n.op == Op::Mean)
        meanDivide(n);
      return;
    }
    case Op::OneHot: {
      int64_t classes = n.getInt("classes");
      fill(out, r->type.numel(), 0.0);
      llvm::Value *labels = in(0);
      forLoop(numel(0), "one_hot", [&](llvm::Value *k) {
        llvm::Value *cls = b_.CreateFPToSI(load(labels, k), i64_);
        store(c(1.0), out, b_.CreateAdd(b_.CreateMul(k, ci(classes)), cls));
      });
      return;
    }
    case Op::Mse:
    case Op::BceWithLogits: {
      llvm::Value *a = in(0), *t = in(1);
      llvm::Value *sum = sumLoop(numel(0), n.op == Op::Mse ? "mse" : "bce", [&](llvm::Value *k) -> llvm::Value * {
        llvm::Value *x = load(a, k), *y = load(t, k);
        if (n.op == Op::Mse) {
          llvm::Value *d = b_.CreateFSub(x, y);
          return b_.CreateFMul(d, d);
        }
        llvm::Value *e = unaryIntrinsic(llvm::Intrinsic::exp, b_.CreateFNeg(unaryIntrinsic(llvm::Intrinsic::fabs, x)));
        return b_.CreateFAdd(b_.CreateFSub(maxOf(x, c(0.0)), b_.CreateFMul(x, y)), libm("log1p", e));
      });
      store(b_.CreateFDiv(sum, c(double(numel(0)))), out, ci(0));
      return;
    }
    case Op::CrossEntropy: {
      int64_t B = n.operands[0]->type.shape[0], C = n.operands[0]->type.shape[1];
      llvm::Value *logits = in(0), *labels = in(1);
      llvm::Value *sum = sumLoop(B, "cross_entropy", [&](llvm::Value *bi) -> llvm::Value * {
        llvm::Value *x = gep(logits, b_.CreateMul(bi, ci(C)), "row");
        llvm::Value *m = load(x, ci(0));
        if (C > 1)
          m = reduceLoop(C - 1, "row_max", m, [&](llvm::Value *acc, llvm::Value *k) { return maxOf(acc, load(x, b_.CreateAdd(k, ci(1)))); });
        llvm::Value *z = reduceLoop(C, "row_sum", c(0.0), [&](llvm::Value *acc, llvm::Value *k) {
          return b_.CreateFAdd(acc, unaryIntrinsic(llvm::Intrinsic::exp, b_.CreateFSub(load(x, k), m)));
        });
        llvm::Value *label = b_.CreateFPToSI(load(labels, bi), i64_);
        return b_.CreateFSub(b_.CreateFAdd(m, unaryIntrinsic(llvm::Intrinsic::log, z)), load(x, label));
      });
      store(b_.CreateFDiv(sum, c(double(B))), out, ci(0));
      return;
    }
    default:
      throw std::logic_error(fmt::format("emit-llvm: no lowering for '{}'", opInfo(n.op).name));
    }
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

  /// C = op(A)·op(B); with a slot (>= 0), through gemmInvariantB (B packed once per scan).
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, llvm::Value *a, int64_t lda, llvm::Value *bb, int64_t ldb, llvm::Value *cc,
            int64_t ldc, int64_t slot = -1) {
    if (slot >= 0)
      b_.CreateCall(gemmInvariant_, {ci(slot), b_.getInt32(ta), b_.getInt32(tb), ci(M), ci(N), ci(K), c(1.0), a, ci(lda), bb, ci(ldb),
                                     c(0.0), cc, ci(ldc), threads_});
    else
      b_.CreateCall(gemm_, {b_.getInt32(ta), b_.getInt32(tb), ci(M), ci(N), ci(K), c(1.0), a, ci(lda), bb, ci(ldb), c(0.0), cc, ci(ldc), threads_});
  }

  void matmul(const Node &n) {
    const Value *r = n.results[0];
    auto [a, ta] = LoopLevel::matOperand(n.operands[0]);
    auto [bv, tb] = LoopLevel::matOperand(n.operands[1]);
    const auto &as = n.operands[0]->type.shape, &bs = n.operands[1]->type.shape, &cs = r->type.shape;
    int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (bs.size() == 2) {
      // [..., M, K] @ [K, N]: the leading axes fold into M (A is contiguous, or a step read
      // in place, rows apart by its memory stride).
      if (as.size() > 2 && ta)
        throw std::logic_error("emit-llvm: transposed batched operand");
      if (layout_.seqViews.count(a))
        lda = layout_.memStrides(a)[0];
      if (layout_.seqViews.count(bv))
        ldb = layout_.memStrides(bv)[0];
      auto slot = invariantSlot_.find(&n);
      gemm(ta, tb, r->type.numel() / N, N, K, ref(a), lda, ref(bv), ldb, ptr(r), N,
           slot == invariantSlot_.end() ? -1 : slot->second);
      return;
    }
    // Batched: one GEMM per batch index, operands broadcast over the leading axes.
    std::vector<int64_t> batch(cs.begin(), cs.end() - 2);
    Strides sa = broadcastStrides(std::vector<int64_t>(as.begin(), as.end() - 2), batch.size());
    Strides sb = broadcastStrides(std::vector<int64_t>(bs.begin(), bs.end() - 2), batch.size());
    llvm::Value *pa = ref(a), *pb = ref(bv), *pc = ptr(r);
    loops(batch, {stridesOf(batch), sa, sb}, [&](const std::vector<llvm::Value *> &off) {
      gemm(ta, tb, M, N, K, gep(pa, b_.CreateMul(off[1], ci(M * K))), lda, gep(pb, b_.CreateMul(off[2], ci(K * N))), ldb,
           gep(pc, b_.CreateMul(off[0], ci(M * N))), N);
    }, false, "batched_matmul");
  }

  /// Copies step `t` of axis `axis` between a stacked tensor and a step tensor.
  void stepCopy(const std::vector<int64_t> &stacked, int64_t axis, llvm::Value *stackedPtr, llvm::Value *stepPtr, llvm::Value *t,
                bool toStep) {
    int64_t outer = 1, inner = 1;
    for (int64_t a = 0; a < axis; ++a)
      outer *= stacked[a];
    for (size_t a = axis + 1; a < stacked.size(); ++a)
      inner *= stacked[a];
    int64_t len = stacked[axis];
    auto one = [&](llvm::Value *o) {
      llvm::Value *s = gep(stackedPtr, b_.CreateMul(b_.CreateAdd(b_.CreateMul(o, ci(len)), t), ci(inner)));
      llvm::Value *p = gep(stepPtr, b_.CreateMul(o, ci(inner)));
      if (toStep)
        copy(p, s, inner);
      else
        copy(s, p, inner);
    };
    if (outer == 1)
      one(ci(0));
    else
      forLoop(outer, "step_copy", one);
  }

  void scan(const Node &n) {
    const Graph &b = *n.body;
    int64_t axis = n.getInt("axis"), nseq = n.getInt("nseq"), ncarry = n.getInt("ncarry");
    bool rev = n.getInt("reverse") != 0;
    int64_t len = n.operands[0]->type.shape[axis];
    // Captures alias their operands; carries start as copies of the initial values.
    for (size_t k = nseq + ncarry; k < n.operands.size(); ++k)
      alias_[b.args[k]] = ref(n.operands[k]);
    for (int64_t c = 0; c < ncarry; ++c)
      copy(ptr(b.args[nseq + c]), ref(n.operands[nseq + c]), b.args[nseq + c]->type.numel());
    bool swap = false;
    for (int64_t c = 0; c < ncarry; ++c)
      for (int64_t c2 = 0; c2 < ncarry; ++c2)
        swap = swap || (c != c2 && b.yields[c] == b.args[nseq + c2]);
    // The body's matmuls by a loop-invariant B get slots, stale until their first call here.
    std::vector<const Node *> invariant = LoopLevel::invariantMatmuls(n);
    if (!invariant.empty()) {
      b_.CreateCall(invariantReset_, {ci(nextSlot_), ci(static_cast<int64_t>(invariant.size()))});
      for (const Node *mm : invariant)
        invariantSlot_[mm] = nextSlot_++;
    }
    forLoop(len, "scan", [&](llvm::Value *step) {
      llvm::Value *t = rev ? b_.CreateSub(ci(len - 1), step, "t") : step;
      for (int64_t s = 0; s < nseq; ++s) {
        auto view = layout_.seqViews.find(b.args[s]);
        if (view != layout_.seqViews.end()) // read in place
          alias_[b.args[s]] = gep(ref(n.operands[s]), b_.CreateMul(t, ci(view->second.step)));
        else
          stepCopy(n.operands[s]->type.shape, axis, ref(n.operands[s]), ptr(b.args[s]), t, true);
      }
      for (size_t y = ncarry; y < b.yields.size(); ++y) {
        auto view = layout_.seqViews.find(b.yields[y]);
        if (view != layout_.seqViews.end()) // written in place
          alias_[b.yields[y]] = gep(ptr(n.results[y]), b_.CreateMul(t, ci(view->second.step)));
      }
      body(b);
      // Stacked outputs, then the next carries (read every yield before writing any carry).
      for (size_t y = ncarry; y < b.yields.size(); ++y)
        if (!layout_.seqViews.count(b.yields[y]))
          stepCopy(n.results[y]->type.shape, axis, ptr(n.results[y]), ref(b.yields[y]), t, false);
      for (int64_t c = 0; c < ncarry; ++c)
        if (b.yields[c] != b.args[nseq + c])
          copy(swap ? ptr(n.results[c]) : ptr(b.args[nseq + c]), ref(b.yields[c]), b.args[nseq + c]->type.numel());
      if (swap)
        for (int64_t c = 0; c < ncarry; ++c)
          if (b.yields[c] != b.args[nseq + c])
            copy(ptr(b.args[nseq + c]), ptr(n.results[c]), b.args[nseq + c]->type.numel());
    });
    for (int64_t c = 0; c < ncarry; ++c)
      if (!swap || b.yields[c] == b.args[nseq + c])
        copy(ptr(n.results[c]), ptr(b.args[nseq + c]), b.args[nseq + c]->type.numel());
  }

  const Module &m_;
  const LoopLevel &layout_;
  llvm::Module &mod_;
  llvm::LLVMContext &ctx_;
  llvm::IRBuilder<> b_;
  bool isF32_;
  LLVMEmitOptions opts_;
  llvm::Type *T_, *i64_, *i32_, *dbl_;
  llvm::PointerType *ptr_;
  llvm::FunctionCallee gemm_, gemmInvariant_, invariantReset_, threadsFn_, update_, grad_;
  std::unordered_map<const Node *, int64_t> invariantSlot_; ///< gemmInvariantB slot of each matmul by a scan-invariant B.
  int64_t nextSlot_ = 0;                                     ///< The next unused slot of the graph being emitted.
  llvm::Function *fexp_ = nullptr, *fexpm1_ = nullptr, *ftanh_ = nullptr;
  llvm::Value *arena_ = nullptr, *state_ = nullptr, *batch_ = nullptr, *outs_ = nullptr, *lr_ = nullptr, *sinks_ = nullptr;
  llvm::Value *threads_ = nullptr, *loss_ = nullptr;
  llvm::MDNode *group_ = nullptr; ///< The access group of the innermost parallel loop being emitted.
  bool emitOutputs_ = false;
  std::unordered_map<const Value *, llvm::Value *> alias_, buffers_;
  llvm::BasicBlock *entry_ = nullptr;
  std::map<std::string, size_t> stateIndex_, inputIndex_, outputIndex_, paramOrder_;
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
    for (const char *g : {"train", "eval", "infer"}) {
      fields.push_back(ptr);
      values.push_back(mod.getFunction(fmt::format("gradc_{}_{}", t, g)));
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

LLVMEmitResult emitLLVM(const Module &m, const SourceManager & /*sm: for source locations, not emitted yet*/, llvm::LLVMContext &ctx,
                        const LLVMEmitOptions &opts) {
  LoopLevel layout(m, opts.lower, emitterFusable);
  LLVMEmitResult res;
  res.arenaElements = layout.arenaSize;
  res.module = std::make_unique<llvm::Module>(m.name, ctx);
  for (bool f32 : {true, false}) {
    if (f32 ? !opts.f32 : !opts.f64)
      continue;
    FunctionEmitter fe(m, layout, *res.module, f32, opts);
    fe.graphFunction(*m.trainGraph, "train", false);
    fe.graphFunction(*m.evalGraph, "eval", false);
    fe.graphFunction(*m.inferGraph, "infer", true);
  }
  if (opts.executable)
    emitExecutableEntry(m, *res.module, layout.arenaSize);
  std::string problems;
  llvm::raw_string_ostream os(problems);
  if (llvm::verifyModule(*res.module, &os))
    throw std::logic_error("emit-llvm: the emitted IR is invalid:\n" + os.str());
  return res;
}

} // namespace gradc
