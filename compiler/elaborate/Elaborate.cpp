// Elaborate.cpp: model declarations, layer instantiation and calls, statements, scans
// (with buffers carried through them) and the train block, into the graph IR.
#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "elaborate/ElaborateImpl.h"

namespace gradc {

namespace {
constexpr uint64_t kMaxWork = 2'000'000; ///< Bound on elaborated expressions (unrolled loops).
constexpr int kMaxDepth = 64;            ///< Bound on nested layer instantiations and calls.

/// "tiny.model:12": the file name and line of a location ("" if unknown).
std::string whereText(const SourceManager &sm, SrcLoc loc) {
  if (!loc.valid())
    return "";
  return fmt::format("{}:{}", std::filesystem::path(sm.get(loc.file).path).filename().string(), loc.line);
}
} // namespace

void Elaborator::countWork(SrcLoc loc) {
  if (++work_ > kMaxWork)
    diag_.error(loc, "the model is too large to elaborate (compile-time loops unroll to over {} operations)",
                kMaxWork);
}

// --- Graph contexts: values crossing into scan bodies, parameters and buffers.

Value *Elaborator::capture(GraphCtx &ctx, Value *v, SrcLoc loc) {
  if (v->owner == ctx.g)
    return v;
  if (!ctx.parent)
    diag_.error(loc, "a value computed inside a scan is used outside it; carry or yield it instead");
  if (auto it = ctx.captured.find(v); it != ctx.captured.end())
    return it->second;
  Value *outer = capture(*ctx.parent, v, loc);
  Value *arg = m_->newValue(v->type, ctx.g, v->name);
  ctx.captureArgs.push_back(arg);
  ctx.captureOuter.push_back(outer);
  ctx.captured[v] = arg;
  if (outer != v)
    ctx.captured[outer] = arg;
  return arg;
}

Value *Elaborator::bufferValue(GraphCtx &ctx, const std::string &name) {
  if (auto it = ctx.bufferState.find(name); it != ctx.bufferState.end())
    return it->second;
  auto decl = std::find_if(m_->buffers.begin(), m_->buffers.end(), [&](auto &b) { return b.name == name; });
  Value *v;
  if (!ctx.parent) {
    Builder b(*m_, ctx.g);
    v = b.source(Op::Buffer, decl->type, {{"name", name}}, decl->loc, name);
  } else {
    // Inside a scan a buffer is carried: each step sees the previous step's value.
    Value *outer = bufferValue(*ctx.parent, name);
    v = m_->newValue(outer->type, ctx.g, name);
    ctx.carryArgs.push_back(v);
    ctx.carryInit.push_back(outer);
    ctx.carryBuffer.push_back(name);
  }
  ctx.bufferState[name] = v;
  return v;
}

Value *Elaborator::stateValue(const Val &ref, SrcLoc loc) {
  if (ref.isBuffer)
    return bufferValue(*ctx_, ref.s);
  GraphCtx *top = ctx_;
  while (top->parent)
    top = top->parent;
  Value *&p = top->paramCache[ref.s];
  if (!p) {
    auto decl = std::find_if(m_->params.begin(), m_->params.end(), [&](auto &d) { return d.name == ref.s; });
    Builder b(*m_, top->g);
    p = b.source(Op::Param, decl->type, {{"name", ref.s}}, decl->loc, ref.s);
  }
  return capture(*ctx_, p, loc);
}

// --- Layers.

namespace {

/// The call that starts at `loc` as written on its line, up to its closing parenthesis.
std::string callText(const SourceManager &sm, SrcLoc loc, const std::string &fallback) {
  std::string_view line = sm.lineText(loc);
  if (loc.col == 0 || loc.col > line.size())
    return fallback;
  std::string_view rest = line.substr(loc.col - 1);
  int depth = 0;
  for (size_t i = 0; i < rest.size(); ++i) {
    depth += rest[i] == '(' ? 1 : rest[i] == ')' ? -1 : 0;
    if (rest[i] == ')' && depth == 0)
      return std::string(rest.substr(0, i + 1));
  }
  return fallback; // the call goes on over more lines
}

} // namespace

LayerInstance *Elaborator::preludeInstance(const std::string &defName, std::map<std::string, Val> args, SrcLoc loc) {
  auto it = layerDefs_.find(defName);
  if (it == layerDefs_.end())
    diag_.error(loc, "the prelude has no layer '{}'", defName);
  auto inst = std::make_unique<LayerInstance>();
  inst->path = path_;
  inst->defName = inst->ctorText = defName;
  inst->def = it->second;
  inst->loc = loc;
  inst->scope.parent = &global_;
  for (const auto &p : it->second->params) {
    if (!args.count(p.name) && !p.defaultValue)
      diag_.error(loc, "layer '{}' needs argument '{}'", defName, p.name);
    inst->scope.names[p.name] = args.count(p.name) ? args.at(p.name) : eval(*p.defaultValue, inst->scope);
  }
  layerItems(*inst, it->second->body);
  instances_.push_back(std::move(inst));
  return instances_.back().get();
}

LayerInstance *Elaborator::instantiate(const std::string &path, const Expr &ctor, Scope &scope, SrcLoc declLoc) {
  if (ctor.kind != ExprKind::Call || ctor.operands[0]->kind != ExprKind::NameRef)
    diag_.error(ctor.loc, "a layer is declared as 'layer NAME = Constructor(arguments)'");
  const Expr &callee = *ctor.operands[0];
  std::string defName = resolveName(callee.name, scope);
  auto it = layerDefs_.find(defName);
  if (it == layerDefs_.end())
    diag_.error(callee.loc, "unknown layer '{}'", defName);
  if (++depth_ > kMaxDepth)
    diag_.error(callee.loc, "layers nest too deeply (does '{}' contain itself?)", defName);
  const Decl &def = *it->second;
  auto inst = std::make_unique<LayerInstance>();
  inst->path = path;
  inst->defName = defName;
  inst->ctorText = callText(sm_, callee.loc, defName);
  inst->def = &def;
  inst->loc = declLoc;
  inst->scope.parent = &global_;
  // Bind constructor arguments: positional, then keywords, then defaults.
  std::vector<bool> bound(def.params.size(), false);
  size_t npos = 0;
  for (const Arg &arg : ctor.args) {
    Val v = eval(*arg.value, scope);
    if (v.kind == Val::Tensor || v.kind == Val::State)
      diag_.error(arg.loc, "layer arguments are constants, got {}", describe(v));
    size_t idx;
    if (arg.keyword.empty()) {
      if (npos >= def.params.size())
        diag_.error(arg.loc, "{}() takes {} argument{}, got more", defName, def.params.size(),
                    def.params.size() == 1 ? "" : "s");
      idx = npos++;
    } else {
      auto p = std::find_if(def.params.begin(), def.params.end(), [&](auto &lp) { return lp.name == arg.keyword; });
      if (p == def.params.end())
        diag_.error(arg.loc, "layer '{}' has no parameter '{}'", defName, arg.keyword);
      idx = p - def.params.begin();
      if (bound[idx])
        diag_.error(arg.loc, "argument '{}' given twice", arg.keyword);
    }
    bound[idx] = true;
    inst->scope.names[def.params[idx].name] = v;
  }
  DiagContext dc(diag_, declLoc, fmt::format("in layer '{}' ({}) declared here", path, inst->ctorText),
                 fmt::format("layer '{}' ({})", path, inst->ctorText));
  for (size_t i = 0; i < def.params.size(); ++i) {
    if (bound[i])
      continue;
    if (!def.params[i].defaultValue)
      diag_.error(ctor.loc, "layer '{}' needs argument '{}'", defName, def.params[i].name);
    inst->scope.names[def.params[i].name] = eval(*def.params[i].defaultValue, inst->scope);
  }
  layerItems(*inst, def.body);
  --depth_;
  instances_.push_back(std::move(inst));
  return instances_.back().get();
}

static std::optional<Init> initFrom(Elaborator &el, const Expr &e, Scope &scope, Diagnostics &diag) {
  if (e.kind != ExprKind::Call || e.operands[0]->kind != ExprKind::NameRef || !e.operands[0]->name.isPlain())
    return std::nullopt;
  const std::string &n = e.operands[0]->name.plain();
  Init init;
  size_t want;
  if (n == "zeros") init.kind = Init::Zeros, want = 0;
  else if (n == "ones") init.kind = Init::Ones, want = 0;
  else if (n == "full") init.kind = Init::Full, want = 1;
  else if (n == "uniform") init.kind = Init::Uniform, want = 2;
  else if (n == "normal") init.kind = Init::Normal, want = 2;
  else return std::nullopt;
  // zero_row = N (last, by keyword): row N along axis 0 is zero after the draw (nn.Embedding's padding row).
  size_t given = e.args.size();
  if (given > 0 && e.args.back().keyword == "zero_row") {
    --given;
    init.zeroRow = el.constInt(el.eval(*e.args.back().value, scope), e.args.back().loc, "zero_row");
    if (init.zeroRow < -1)
      diag.error(e.args.back().loc, "initializer zero_row must be a row index or -1 for none, got {}", init.zeroRow);
  }
  if (given != want)
    diag.error(e.loc, "initializer {}() takes {} argument{}, got {}", n, want, want == 1 ? "" : "s", given);
  double v[2] = {0, 0};
  for (size_t i = 0; i < want; ++i) {
    if (!e.args[i].keyword.empty())
      diag.error(e.args[i].loc, "initializer arguments are positional (but the last may be zero_row = N)");
    v[i] = el.constNum(el.eval(*e.args[i].value, scope), e.args[i].loc, "an initializer argument");
    if (!std::isfinite(v[i]))
      diag.error(e.args[i].loc, "initializer argument is not finite");
  }
  init.a = v[0];
  init.b = v[1];
  if (init.kind == Init::Uniform && !(init.a <= init.b))
    diag.error(e.operands[0]->loc, "uniform({}, {}): the low bound exceeds the high bound", init.a, init.b);
  if (init.kind == Init::Normal && init.b < 0)
    diag.error(e.operands[0]->loc, "normal(): the standard deviation is negative");
  return init;
}

void Elaborator::layerItems(LayerInstance &inst, const std::vector<DeclPtr> &items) {
  for (const DeclPtr &dp : items) {
    const Decl &d = *dp;
    countWork(d.loc);
    switch (d.kind) {
    case DeclKind::Let:
      inst.scope.names[d.ident] = eval(*d.value, inst.scope);
      break;
    case DeclKind::Param:
    case DeclKind::Buffer: {
      bool isBuf = d.kind == DeclKind::Buffer;
      std::string local = resolveName(d.name, inst.scope);
      std::string full = inst.path + "." + local;
      if (inst.scope.names.count(local) || stateNames_.count(full))
        diag_.error(d.name.loc, "'{}' is already defined in layer '{}'", local, inst.defName);
      TensorType t = evalType(d.type, inst.scope);
      if (!isBuf && t.dtype != DType::F32)
        diag_.error(d.type.loc, "parameters are f32, got {}", t.str());
      auto init = initFrom(*this, *d.value, inst.scope, diag_);
      if (!init)
        diag_.error(d.value->loc, "expected an initializer: zeros(), ones(), full(v), uniform(lo, hi) or normal(mean, std)");
      if (isBuf && t.dtype != DType::F32 && (init->kind == Init::Uniform || init->kind == Init::Normal))
        diag_.error(d.value->loc, "integer buffers take zeros(), ones() or full(v)");
      StateDecl sd{full, t, *init, d.loc};
      (isBuf ? m_->buffers : m_->params).push_back(sd);
      stateNames_[full] = d.loc;
      Val ref;
      ref.kind = Val::State;
      ref.s = full;
      ref.isBuffer = isBuf;
      inst.scope.names[local] = ref;
      break;
    }
    case DeclKind::LayerInst: {
      std::string local = resolveName(d.name, inst.scope);
      if (inst.scope.names.count(local))
        diag_.error(d.name.loc, "'{}' is already defined in layer '{}'", local, inst.defName);
      Val v;
      v.kind = Val::Layer;
      v.layer = instantiate(inst.path + "." + local, *d.value, inst.scope, d.loc);
      inst.scope.names[local] = v;
      break;
    }
    case DeclKind::For: {
      int64_t lo = constInt(eval(*d.value, inst.scope), d.value->loc, "a loop bound");
      int64_t hi = constInt(eval(*d.hi, inst.scope), d.hi->loc, "a loop bound");
      for (int64_t i = lo; i < hi; ++i) {
        inst.scope.names[d.ident] = Val::ofInt(i);
        layerItems(inst, d.body);
      }
      break;
    }
    case DeclKind::Forward:
      if (inst.forward)
        diag_.error(d.loc, "layer '{}' defines forward twice", inst.defName);
      inst.forward = &d;
      break;
    default:
      diag_.error(d.loc, "this declaration is not allowed inside a layer definition");
    }
  }
}

Val Elaborator::callLayer(LayerInstance &inst, const Expr &call, Scope &scope) {
  if (!inst.forward)
    diag_.error(call.loc, "layer '{}' ({}) has no forward", inst.path, inst.defName);
  const Decl &fwd = *inst.forward;
  if (call.args.size() != fwd.forwardArgs.size())
    diag_.error(call.loc, "layer '{}' ({}) takes {} input{}, got {}", inst.path, inst.defName, fwd.forwardArgs.size(),
                fwd.forwardArgs.size() == 1 ? "" : "s", call.args.size());
  std::vector<Val> args;
  for (size_t i = 0; i < call.args.size(); ++i) {
    if (!call.args[i].keyword.empty())
      diag_.error(call.args[i].loc, "layer inputs are positional");
    Val v = eval(*call.args[i].value, scope);
    if (v.kind != Val::Tensor && v.kind != Val::State && !v.isNumber())
      diag_.error(call.args[i].loc, "layer input must be a tensor, got {}", describe(v));
    args.push_back(std::move(v));
  }
  return callForward(inst, args, call.loc);
}

Val Elaborator::callForward(LayerInstance &inst, const std::vector<Val> &args, SrcLoc loc) {
  const Decl &fwd = *inst.forward;
  if (++depth_ > kMaxDepth)
    diag_.error(loc, "layer calls nest too deeply");
  Scope local;
  local.parent = &inst.scope;
  local.functionRoot = true;
  for (size_t i = 0; i < args.size(); ++i)
    local.names[fwd.forwardArgs[i]] = args[i];
  DiagContext dc(diag_, loc, fmt::format("in layer '{}' ({}) called here", inst.path, inst.ctorText),
                 fmt::format("layer '{}' ({})", inst.path, inst.ctorText));
  std::string savedPath = path_;
  Where savedWhere = where_;
  auto savedScans = std::move(scans_);
  scans_.clear();
  path_ = inst.path;
  where_ = Where::Forward;
  Val ret;
  if (!stmts(fwd.stmts, local, &ret))
    diag_.error(fwd.loc, "forward of layer '{}' ends without 'return'", inst.defName);
  path_ = savedPath;
  where_ = savedWhere;
  scans_ = std::move(savedScans);
  --depth_;
  return ret;
}

// --- Statements.

void Elaborator::assign(const std::string &name, Val v, Scope &scope, SrcLoc loc) {
  if (v.kind == Val::None)
    diag_.error(loc, "'{}' is given nothing: the right-hand side has no value", name);
  if (v.kind == Val::Tensor && v.t->name.empty())
    v.t->name = path_.empty() ? name : path_ + "." + name;
  // Assignments bind in the enclosing function (a forward, the graph): names of the layer
  // or the model around it are shadowed, not changed.
  for (Scope *s = &scope; s; s = s->parent) {
    auto it = s->names.find(name);
    if (it != s->names.end()) {
      if (it->second.kind == Val::State || it->second.kind == Val::Layer)
        diag_.error(loc, "cannot assign to '{}', which is {}", name, describe(it->second));
      it->second = std::move(v);
      return;
    }
    if (s->scanBoundary || s->functionRoot)
      break;
  }
  // Not bound inside the current scan body: an outer binding would leak a per-step value.
  for (Scope *s = &scope; s && !s->functionRoot; s = s->parent)
    if (s->scanBoundary) {
      for (Scope *o = s->parent; o; o = o->parent) {
        if (o->names.count(name) && !o->names.at(name).isNumber())
          diag_.error(loc, "cannot assign to '{}' inside a scan: it is defined outside; carry it instead", name);
        if (o->functionRoot)
          break;
      }
      break;
    }
  scope.names[name] = std::move(v);
}

bool Elaborator::stmts(const std::vector<StmtPtr> &ss, Scope &scope, Val *ret) {
  for (const StmtPtr &sp : ss) {
    const Stmt &s = *sp;
    countWork(s.loc);
    switch (s.kind) {
    case StmtKind::Assign: {
      Val v = eval(*s.value, scope);
      if (s.targets.size() == 1) {
        assign(s.targets[0], std::move(v), scope, s.targetLocs[0]);
      } else {
        if (v.kind != Val::Tuple || v.tuple.size() != s.targets.size())
          diag_.error(s.loc, "{} names on the left, but the right side is {}", s.targets.size(), describe(v));
        for (size_t i = 0; i < s.targets.size(); ++i)
          assign(s.targets[i], v.tuple[i], scope, s.targetLocs[i]);
      }
      break;
    }
    case StmtKind::Update: {
      if (where_ != Where::Forward)
        diag_.error(s.loc, "'update' is only allowed inside a layer's forward");
      std::string n = resolveName(s.name, scope);
      Val *ref = scope.lookup(n);
      if (!ref || ref->kind != Val::State || !ref->isBuffer)
        diag_.error(s.name.loc, "'update' needs a buffer of this layer; '{}' is {}", n, ref ? describe(*ref) : "not defined");
      Value *v = tensor(eval(*s.value, scope), s.value->loc, "an updated buffer");
      Value *cur = bufferValue(*ctx_, ref->s);
      if (s.row) // update name[row] = v: the buffer with that row replaced
        v = setRow(cur, rowIndex(eval(*s.row, scope), s.row->loc), s.row->loc, v, s.value->loc, fmt::format("buffer '{}'", ref->s));
      if (v->type != cur->type)
        diag_.error(s.value->loc, "buffer '{}' is {}, but the new value is {}", ref->s, cur->type.str(), v->type.str());
      if (v->name.empty())
        v->name = ref->s + ".new";
      ctx_->bufferState[ref->s] = v;
      GraphCtx *top = ctx_;
      while (top->parent)
        top = top->parent;
      if (std::find(top->updated.begin(), top->updated.end(), ref->s) == top->updated.end())
        top->updated.push_back(ref->s);
      break;
    }
    case StmtKind::Return: {
      if (where_ != Where::Forward || !scans_.empty())
        diag_.error(s.loc, "'return' is only allowed in a layer's forward, outside scans");
      if (s.values.size() == 1) {
        *ret = eval(*s.values[0], scope);
      } else {
        ret->kind = Val::Tuple;
        for (const ExprPtr &e : s.values)
          ret->tuple.push_back(eval(*e, scope));
      }
      if (ret->kind == Val::State)
        *ret = Val::ofTensor(stateValue(*ret, s.loc));
      return true;
    }
    case StmtKind::Output: {
      if (where_ != Where::Model)
        diag_.error(s.loc, "'output' is only allowed in the model's graph");
      Val v = eval(*s.value, scope);
      Value *t = tensor(v, s.value->loc, "an output");
      std::string name = s.value->kind == ExprKind::NameRef ? resolveName(s.value->name, scope) : t->name;
      if (name.empty())
        name = fmt::format("output{}", ctx_->g->nodes.size());
      for (const auto &n : ctx_->g->nodes)
        if (n->op == Op::Output && n->getStr("name") == name)
          diag_.error(s.loc, "'{}' is output twice", name);
      Builder(*m_, ctx_->g).sink(Op::Output, t, {{"name", name}}, s.loc);
      break;
    }
    case StmtKind::Yield: {
      if (scans_.empty())
        diag_.error(s.loc, "'yield' is only allowed inside a scan body");
      ScanFrame &f = *scans_.back();
      if (f.yielded)
        diag_.error(s.loc, "a scan body yields once per step; this is a second 'yield'");
      f.yielded = true;
      for (const ExprPtr &e : s.values)
        f.yields.push_back(Val::ofTensor(tensor(eval(*e, scope), e->loc, "a yielded value")));
      break;
    }
    case StmtKind::If: {
      bool c = constBool(eval(*s.value, scope), s.value->loc, "the condition of 'if'");
      if (stmts(c ? s.body : s.elseBody, scope, ret))
        return true;
      break;
    }
    case StmtKind::For: {
      int64_t lo = constInt(eval(*s.value, scope), s.value->loc, "a loop bound");
      int64_t hi = constInt(eval(*s.hi, scope), s.hi->loc, "a loop bound");
      for (int64_t i = lo; i < hi; ++i) {
        countWork(s.loc);
        assign(s.var, Val::ofInt(i), scope, s.varLoc);
        if (stmts(s.body, scope, ret))
          return true;
      }
      break;
    }
    }
  }
  return false;
}

// --- Scans.

Val Elaborator::evalScan(const Expr &e, Scope &scope) {
  if (!ctx_)
    diag_.error(e.loc, "a scan only exists inside a graph or a forward");
  std::vector<Value *> seqs;
  for (const ScanSeq &sq : e.seqs)
    seqs.push_back(tensor(eval(*sq.seq, scope), sq.loc, "a scanned sequence"));
  int64_t axis = 0;
  if (e.axis)
    axis = constInt(eval(*e.axis, scope), e.axis->loc, "the scan axis");
  SrcLoc axisLoc = e.axis ? e.axis->loc : e.loc;
  int r0 = seqs[0]->type.rank();
  if (axis < -r0 || axis >= r0)
    diag_.error(axisLoc, "scan axis {} is out of range for {}", axis, seqs[0]->type.str());
  if (axis < 0)
    axis += r0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const TensorType &t = seqs[i]->type;
    if (t.rank() != r0 || t.shape[axis] != seqs[0]->type.shape[axis])
      diag_.error(e.seqs[i].loc, "scanned sequences differ in length along axis {}: {} and {}", axis,
                  seqs[0]->type.str(), t.str());
  }
  std::vector<Value *> inits;
  for (const ScanCarry &c : e.carries)
    inits.push_back(tensor(eval(*c.init, scope), c.loc, "a carried value"));

  // The body: its own graph and scope.
  auto body = std::make_unique<Graph>();
  GraphCtx bc;
  bc.g = body.get();
  bc.parent = ctx_;
  Scope bs;
  bs.parent = &scope;
  bs.scanBoundary = true;
  std::string prefix = path_.empty() ? "" : path_ + ".";
  for (size_t i = 0; i < seqs.size(); ++i) {
    TensorType t = seqs[i]->type;
    t.shape.erase(t.shape.begin() + axis);
    Value *a = m_->newValue(t, body.get(), prefix + e.seqs[i].var);
    bc.seqArgs.push_back(a);
    bc.seqOuter.push_back(seqs[i]);
    if (bs.names.count(e.seqs[i].var))
      diag_.error(e.seqs[i].loc, "'{}' is bound twice in this scan", e.seqs[i].var);
    bs.names[e.seqs[i].var] = Val::ofTensor(a);
  }
  for (size_t i = 0; i < inits.size(); ++i) {
    Value *a = m_->newValue(inits[i]->type, body.get(), prefix + e.carries[i].var);
    bc.carryArgs.push_back(a);
    bc.carryInit.push_back(inits[i]);
    bc.carryBuffer.push_back("");
    if (bs.names.count(e.carries[i].var))
      diag_.error(e.carries[i].loc, "'{}' is bound twice in this scan", e.carries[i].var);
    bs.names[e.carries[i].var] = Val::ofTensor(a);
  }
  // `index t`: the step's index, an i64[] carry from 0 up (from length - 1 down in reverse).
  Value *indexArg = nullptr;
  if (!e.indexVar.empty()) {
    if (bs.names.count(e.indexVar))
      diag_.error(e.indexLoc, "'{}' is bound twice in this scan", e.indexVar);
    const int64_t len = seqs[0]->type.shape[axis];
    const TensorType it{DType::I64, {}};
    indexArg = m_->newValue(it, body.get(), prefix + e.indexVar);
    bc.carryArgs.push_back(indexArg);
    bc.carryInit.push_back(constant(e.reverse ? static_cast<double>(len - 1) : 0.0, it, e.indexLoc));
    bc.carryBuffer.push_back("");
    bs.names[e.indexVar] = Val::ofTensor(indexArg);
  }
  ScanFrame frame;
  GraphCtx *saved = ctx_;
  ctx_ = &bc;
  scans_.push_back(&frame);
  Val dummy;
  stmts(e.body, bs, &dummy);
  scans_.pop_back();

  // Yields: user carries' new values, buffers' new values, then the per-step outputs.
  std::vector<Value *> carryYield;
  for (size_t i = 0; i < bc.carryArgs.size(); ++i) {
    Value *next;
    if (bc.carryArgs[i] == indexArg) {
      next = make1(Op::Add, {indexArg, constant(e.reverse ? -1.0 : 1.0, indexArg->type, e.indexLoc)}, {}, e.indexLoc);
    } else if (bc.carryBuffer[i].empty()) {
      const ScanCarry &c = e.carries[i];
      next = tensor(bs.names.at(c.var), c.loc, "a carried value");
      if (next->type != bc.carryArgs[i]->type)
        diag_.error(c.loc, "carried value '{}' changes from {} to {} in the scan body", c.var,
                    bc.carryArgs[i]->type.str(), next->type.str());
    } else {
      next = bc.bufferState.at(bc.carryBuffer[i]);
    }
    carryYield.push_back(next);
  }
  ctx_ = saved;
  // A buffer the body reads but never updates is loop-invariant: make it a capture.
  std::vector<Value *> carryArgs, carryInit, finalYield;
  std::vector<std::string> carryBuffer;
  for (size_t i = 0; i < bc.carryArgs.size(); ++i) {
    if (!bc.carryBuffer[i].empty() && carryYield[i] == bc.carryArgs[i]) {
      bc.captureArgs.push_back(bc.carryArgs[i]);
      bc.captureOuter.push_back(bc.carryInit[i]);
      continue;
    }
    carryArgs.push_back(bc.carryArgs[i]);
    carryInit.push_back(bc.carryInit[i]);
    carryBuffer.push_back(bc.carryBuffer[i]);
    finalYield.push_back(carryYield[i]);
  }
  for (const Val &y : frame.yields)
    finalYield.push_back(y.t);
  std::vector<Value *> operands = bc.seqOuter;
  for (auto *list : {&bc.seqArgs, &carryArgs, &bc.captureArgs})
    for (Value *a : *list) {
      a->index = static_cast<unsigned>(body->args.size());
      body->args.push_back(a);
    }
  operands.insert(operands.end(), carryInit.begin(), carryInit.end());
  operands.insert(operands.end(), bc.captureOuter.begin(), bc.captureOuter.end());
  body->yields = finalYield;
  std::map<std::string, AttrValue> attrs = {{"axis", axis},
                                            {"nseq", static_cast<int64_t>(seqs.size())},
                                            {"ncarry", static_cast<int64_t>(carryArgs.size())},
                                            {"reverse", static_cast<int64_t>(e.reverse)}};
  Builder b(*m_, ctx_->g);
  std::string err;
  Node *n = b.create(Op::Scan, operands, attrs, e.loc, err, std::move(body));
  if (!n)
    diag_.error(e.loc, err);
  // Final carries: user carries are rebound after the scan; buffers get their new state.
  for (size_t i = 0; i < carryArgs.size(); ++i) {
    Value *r = n->results[i];
    r->name = carryArgs[i]->name;
    if (carryArgs[i] == indexArg)
      continue; // the index is the body's alone
    if (carryBuffer[i].empty())
      assign(carryArgs[i]->name.substr(prefix.size()), Val::ofTensor(r), scope, e.loc);
    else
      ctx_->bufferState[carryBuffer[i]] = r;
  }
  std::vector<Val> outs;
  for (size_t i = carryArgs.size(); i < n->results.size(); ++i)
    outs.push_back(Val::ofTensor(n->results[i]));
  if (outs.empty())
    return Val{};
  if (outs.size() == 1)
    return outs[0];
  Val t;
  t.kind = Val::Tuple;
  t.tuple = std::move(outs);
  return t;
}

// --- The model.

void Elaborator::buildGraph(Mode mode) {
  bool training = mode == Mode::Train;
  training_ = training;
  randomStreams_ = 0;
  auto g = std::make_unique<Graph>();
  g->name = mode == Mode::Train ? "train" : mode == Mode::Eval ? "eval" : mode == Mode::Infer ? "infer" : "step";
  GraphCtx ctx;
  ctx.g = g.get();
  ctx_ = &ctx;
  where_ = Where::Model;
  path_.clear();
  Scope scope;
  scope.parent = &global_;
  scope.functionRoot = true;
  Builder b(*m_, g.get());
  for (const TensorDecl *d : [&] {
         std::vector<const TensorDecl *> v;
         for (auto &x : m_->inputs) v.push_back(&x);
         for (auto &x : m_->targets) v.push_back(&x);
         return v;
       }()) {
    TensorType t = d->type;
    for (size_t a = 0; mode == Mode::Step && a < std::min<size_t>(2, t.shape.size()); ++a)
      t.shape[a] = 1; // one sample, one time step
    scope.names[d->name] = Val::ofTensor(b.source(Op::Input, t, {{"name", d->name}}, d->loc, d->name));
  }
  Val dummy;
  stmts(graphDecl_->stmts, scope, &dummy);
  if (mode == Mode::Train || mode == Mode::Eval) {
    Val *loss = scope.lookup("loss");
    if (!loss || scope.names.count("loss") == 0)
      diag_.error(graphDecl_->loc, "the graph must define 'loss', the scalar that training minimises");
    Value *l = tensor(*loss, graphDecl_->loc, "'loss'");
    if (l->type.rank() != 0 || l->type.dtype != DType::F32)
      diag_.error(graphDecl_->loc, "'loss' must be a scalar f32[], got {}", l->type.str());
    b.sink(Op::Loss, l, {}, graphDecl_->loc);
    if (m_->lossWhere.empty())
      m_->lossWhere = whereText(sm_, l->def ? l->def->loc : graphDecl_->loc);
  }
  if (training) {
    for (const std::string &n : ctx.updated)
      b.sink(Op::Update, ctx.bufferState.at(n), {{"name", n}}, graphDecl_->loc);
  }
  bool hasOutput = std::any_of(g->nodes.begin(), g->nodes.end(), [](auto &n) { return n->op == Op::Output; });
  if (!hasOutput)
    diag_.error(graphDecl_->loc, "the graph has no 'output'; mark what inference returns with 'output NAME'");
  ctx_ = nullptr;
  (mode == Mode::Train  ? m_->trainGraph
   : mode == Mode::Eval ? m_->evalGraph
   : mode == Mode::Infer ? m_->inferGraph
                         : m_->stepGraph) = std::move(g);
}

std::unique_ptr<Module> Elaborator::run(const std::vector<const ModuleAST *> &files) {
  m_ = std::make_unique<Module>();
  m_->ranks = ranks_;
  const ModuleAST &user = *files.back();
  m_->path = sm_.get(user.file).path;
  // Layer definitions from every file, so a model may use a layer defined below it.
  for (const ModuleAST *f : files)
    for (const DeclPtr &d : f->decls)
      if (d->kind == DeclKind::LayerDef) {
        auto [it, fresh] = layerDefs_.emplace(d->ident, d.get());
        if (!fresh)
          diag_.error(d->identLoc, "layer '{}' is already defined at {}", d->ident, sm_.describe(it->second->loc));
        std::vector<std::string> seen;
        for (const LayerParam &p : d->params) {
          if (std::find(seen.begin(), seen.end(), p.name) != seen.end())
            diag_.error(p.loc, "parameter '{}' appears twice", p.name);
          seen.push_back(p.name);
        }
      } else if (f != &user) {
        diag_.error(d->loc, "the prelude may only define layers");
      }
  const Decl *trainDecl = nullptr;
  for (const DeclPtr &dp : user.decls) {
    const Decl &d = *dp;
    auto defineGlobal = [&](const std::string &n, SrcLoc loc, Val v) {
      if (global_.names.count(n))
        diag_.error(loc, "'{}' is already defined", n);
      global_.names[n] = std::move(v);
    };
    switch (d.kind) {
    case DeclKind::Model:
      if (!m_->name.empty())
        diag_.error(d.loc, "the model is already named '{}'", m_->name);
      m_->name = d.ident;
      break;
    case DeclKind::Let: {
      Val v = eval(*d.value, global_);
      if (v.kind == Val::Tensor || v.kind == Val::State || v.kind == Val::Layer || v.kind == Val::None)
        diag_.error(d.value->loc, "'let' names a constant, got {}", describe(v));
      defineGlobal(d.ident, d.identLoc, v);
      break;
    }
    case DeclKind::Input:
    case DeclKind::Target: {
      TensorDecl td{d.ident, evalType(d.type, global_), d.loc};
      if (ranks_ > 1) { // each rank computes its share of the global batch
        if (td.type.shape.empty() || td.type.shape[0] % ranks_ != 0)
          diag_.error(d.loc, "the batch (dim 0 of '{}', {}) is not divisible by --ranks {}", d.ident,
                      td.type.shape.empty() ? std::string("a scalar") : std::to_string(td.type.shape[0]), ranks_);
        td.type.shape[0] /= ranks_;
      }
      defineGlobal(d.ident, d.identLoc, Val::ofStr(d.ident));
      global_.names.erase(d.ident); // Bound as a tensor inside the graph only.
      for (auto *list : {&m_->inputs, &m_->targets})
        for (auto &x : *list)
          if (x.name == d.ident)
            diag_.error(d.identLoc, "'{}' is already declared", d.ident);
      (d.kind == DeclKind::Input ? m_->inputs : m_->targets).push_back(td);
      break;
    }
    case DeclKind::LayerDef:
      break;
    case DeclKind::LayerInst: {
      std::string n = resolveName(d.name, global_);
      if (global_.names.count(n))
        diag_.error(d.name.loc, "'{}' is already defined", n);
      Val v;
      v.kind = Val::Layer;
      v.layer = instantiate(n, *d.value, global_, d.loc);
      global_.names[n] = v;
      m_->layerWhere[n] = whereText(sm_, d.loc);
      break;
    }
    case DeclKind::Graph:
      if (graphDecl_)
        diag_.error(d.loc, "the model has a second 'graph'");
      graphDecl_ = &d;
      break;
    case DeclKind::Train:
      if (trainDecl)
        diag_.error(d.loc, "the model has a second 'train' block");
      trainDecl = &d;
      break;
    default:
      diag_.error(d.loc, "this declaration is only allowed inside a layer definition");
    }
  }
  SrcLoc start = user.decls.empty() ? SrcLoc{user.file, 1, 1} : user.decls.front()->loc;
  if (m_->name.empty())
    diag_.error(start, "the file does not name its model; begin it with 'model NAME'");
  if (!graphDecl_)
    diag_.error(start, "the model has no 'graph { ... }' block");
  for (auto *list : {&m_->inputs, &m_->targets})
    for (auto &x : *list)
      global_.names.erase(x.name);
  for (const TensorDecl &x : m_->inputs)
    if (global_.names.count(x.name))
      diag_.error(x.loc, "'{}' is already defined", x.name);
  if (trainDecl)
    trainBlock(*trainDecl, global_);
  buildGraph(Mode::Train);
  buildGraph(Mode::Eval);
  buildGraph(Mode::Infer);
  buildStepGraph();
  return std::move(m_);
}

std::unique_ptr<Module> elaborate(const std::vector<const ModuleAST *> &files, const SourceManager &sm,
                                  Diagnostics &diag, int64_t ranks) {
  Elaborator el(sm, diag);
  el.ranks_ = ranks;
  return el.run(files);
}

} // namespace gradc
