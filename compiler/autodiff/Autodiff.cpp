// Autodiff.cpp: reverse-mode differentiation of the training graph: which values depend
// on parameters, the reverse sweep over a graph, and scans differentiated as reverse scans
// over what the forward scan saves per step (backpropagation through time).
#include <algorithm>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "autodiff/AutodiffImpl.h"

namespace gradc {

namespace {

bool differentiableType(const Value *v) { return v->type.dtype == DType::F32; }

/// Marks the values of g that depend on an active value (parameters at top level, the
/// active arguments of a body). Carried values are iterated to a fixed point.
void markActive(const Graph &g, ValueSet &active) {
  for (const auto &np : g.nodes) {
    const Node &n = *np;
    if (n.op == Op::Param) {
      active.insert(n.results[0]);
      continue;
    }
    if (n.op == Op::Scan) {
      const Graph &b = *n.body;
      int64_t nseq = n.getInt("nseq"), ncarry = n.getInt("ncarry");
      for (size_t i = 0; i < n.operands.size(); ++i)
        if (active.count(n.operands[i]))
          active.insert(b.args[i]);
      for (bool changed = true; changed;) {
        markActive(b, active);
        changed = false;
        for (int64_t c = 0; c < ncarry; ++c) {
          const Value *arg = b.args[nseq + c];
          if (!active.count(arg) && active.count(b.yields[c]) && differentiableType(arg)) {
            active.insert(arg);
            changed = true;
          }
        }
      }
      for (size_t r = 0; r < n.results.size(); ++r)
        if (active.count(r < static_cast<size_t>(ncarry) ? b.args[nseq + r] : b.yields[r]))
          active.insert(n.results[r]);
      continue;
    }
    if (hasTrait(n.op, TR_SOURCE) || hasTrait(n.op, TR_SINK))
      continue;
    bool any = std::any_of(n.operands.begin(), n.operands.end(), [&](const Value *o) { return active.count(o); });
    if (any)
      for (const Value *r : n.results)
        if (differentiableType(r))
          active.insert(r);
  }
}

/// Differentiates g's nodes in reverse, propagating the cotangents in `c.ct` to operands.
void reverseSweep(GradCtx &c, const Graph &g) {
  const ValueSet &active = c.active;
  CotangentMap &ct = c.ct;
  for (size_t i = g.nodes.size(); i-- > 0;) {
    Node &n = *g.nodes[i];
    if (hasTrait(n.op, TR_SOURCE) || hasTrait(n.op, TR_SINK))
      continue;
    std::vector<Value *> dy(n.results.size(), nullptr);
    bool any = false;
    for (size_t r = 0; r < n.results.size(); ++r)
      if (auto it = ct.find(n.results[r]); it != ct.end()) {
        dy[r] = it->second;
        any = true;
      }
    bool needed = std::any_of(n.operands.begin(), n.operands.end(), [&](const Value *o) { return active.count(o); });
    if (!any || !needed)
      continue;
    VjpRule rule = c.rules[static_cast<size_t>(n.op)];
    if (!rule)
      c.diag.error(n.loc, "cannot differentiate the loss: no gradient rule for op '{}'", opInfo(n.op).name);
    std::vector<Value *> dx(n.operands.size(), nullptr);
    c.loc = n.loc;
    rule(c, n, dy, dx);
    for (size_t o = 0; o < n.operands.size(); ++o)
      if (dx[o] && active.count(n.operands[o]))
        c.accumulate(n.operands[o], dx[o]);
  }
}

} // namespace

void GradCtx::accumulate(const Value *v, Value *g) {
  auto it = ct.find(v);
  if (it == ct.end())
    ct[v] = g;
  else
    it->second = add(it->second, g);
}

// --- Scans: the reverse scan and the residuals the forward scan saves for it.
//
// Forward S: operands [seqs, inits, caps]; body args [xs, cs, ks]; yields [cs', ys];
// results [c_final, Y]. Backward S': a scan in the other direction whose body differentiates
// S's body step by step. Its sequences are S's sequences (where the body reads xs), the
// per-step values the body's gradient needs (S yields them as extra stacked outputs: the
// residuals) and the output cotangents dY; its carries are the carry cotangents and one
// gradient accumulator per active capture. Its results are d(inits), d(caps) and d(seqs).
/// The carries of scan `s` whose cotangent can be non-zero: a carry is live when its final
/// value has a cotangent (`dy`), or when its value inside the body reaches, through any
/// chain of operands, a yield whose cotangent is live (a stacked output with a cotangent, or
/// the next value of a live carry). Iterated to a fixed point. A carry that only feeds
/// itself and values the loss never reads (a recurrent BatchNorm's running statistics) has
/// an identically zero cotangent, so the reverse scan does not carry it.
static std::vector<bool> liveCarries(const Node &s, const std::vector<Value *> &dy) {
  const Graph &body = *s.body;
  int64_t nseq = s.getInt("nseq"), ncarry = s.getInt("ncarry");
  std::vector<bool> live(ncarry, false);
  std::unordered_set<const Value *> reaches; // body values a live yield depends on
  for (size_t r = ncarry; r < s.results.size(); ++r)
    if (dy[r])
      reaches.insert(body.yields[r]);
  for (int64_t i = 0; i < ncarry; ++i)
    if (dy[i]) {
      live[i] = true;
      reaches.insert(body.yields[i]);
    }
  for (bool changed = true; changed;) {
    for (size_t k = body.nodes.size(); k-- > 0;) {
      const Node &n = *body.nodes[k];
      if (std::any_of(n.results.begin(), n.results.end(), [&](const Value *v) { return reaches.count(v); }))
        reaches.insert(n.operands.begin(), n.operands.end());
    }
    changed = false;
    for (int64_t i = 0; i < ncarry; ++i)
      if (!live[i] && reaches.count(body.args[nseq + i])) {
        live[i] = true;
        reaches.insert(body.yields[i]);
        changed = true;
      }
  }
  return live;
}

/// How a scan saves one step of a residual of type `t`: as it is, or with leading unit axes
/// up to `axis` axes when it has fewer (stacking inserts the steps' axis at `axis`).
static TensorType savedType(TensorType t, int64_t axis) {
  while (t.rank() < axis)
    t.shape.insert(t.shape.begin(), 1);
  return t;
}

void vjpScan(GradCtx &c, Node &s, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Graph &body = *s.body;
  const ValueSet &active = c.active;
  int64_t nseq = s.getInt("nseq"), ncarry = s.getInt("ncarry"), axis = s.getInt("axis");
  size_t nops = s.operands.size();
  Module &m = c.module();
  auto bb = std::make_unique<Graph>();
  Graph *bg = bb.get();

  std::vector<Value *> seqArgs, seqOuter, carryArgs, carryInit, capArgs, capOuter;
  std::vector<const Value *> residuals; // body values S must save; parallel to residualArg
  std::vector<Value *> residualArg;
  std::unordered_map<const Value *, Value *> mapped;

  GradCtx inner(c, bg);
  inner.use = [&](Value *v) -> Value * {
    if (v->owner == bg)
      return v;
    if (auto it = mapped.find(v); it != mapped.end())
      return it->second;
    if (v->owner != &body)
      throw std::logic_error("autodiff: a scan body reads a value from outside it");
    Value *r;
    if (!v->def && v->index < static_cast<unsigned>(nseq)) {
      r = m.newValue(v->type, bg, v->name);
      seqArgs.push_back(r);
      seqOuter.push_back(c.use(s.operands[v->index]));
    } else if (!v->def && v->index >= static_cast<unsigned>(nseq + ncarry)) {
      r = m.newValue(v->type, bg, v->name);
      capArgs.push_back(r);
      capOuter.push_back(c.use(s.operands[v->index]));
    } else if (v->def && v->def->op == Op::Const) {
      r = inner.fill(v->def->getFloat("value"), v->type);
    } else {
      // A residual of fewer axes than the scan axis (a scalar such as a step index) is saved
      // with leading unit axes, so that its steps can stack along `axis`.
      const TensorType saved = savedType(v->type, axis);
      r = m.newValue(saved, bg, v->name);
      residuals.push_back(v);
      residualArg.push_back(r);
      seqArgs.push_back(r);
      seqOuter.push_back(nullptr); // filled in once S yields it
      if (saved != v->type)
        r = inner.reshape(r, v->type.shape);
    }
    return mapped[v] = r;
  };

  // Carries of the reverse scan: the cotangent of each active carry, then accumulators.
  CotangentMap &ct = inner.ct;
  std::vector<int64_t> activeCarries, activeCaps, activeSeqs;
  const std::vector<bool> live = liveCarries(s, dy);
  for (int64_t i = 0; i < ncarry; ++i)
    if (active.count(body.args[nseq + i]) && live[i]) {
      activeCarries.push_back(i);
      Value *dc = m.newValue(body.args[nseq + i]->type, bg, "d." + body.args[nseq + i]->name);
      carryArgs.push_back(dc);
      c.loc = s.loc;
      carryInit.push_back(dy[i] ? dy[i] : c.fill(0, s.results[i]->type));
      if (active.count(body.yields[i]))
        inner.accumulate(body.yields[i], dc);
    }
  for (size_t k = nseq + ncarry; k < nops; ++k)
    if (active.count(body.args[k])) {
      activeCaps.push_back(static_cast<int64_t>(k));
      Value *acc = m.newValue(body.args[k]->type, bg, "d." + body.args[k]->name);
      carryArgs.push_back(acc);
      c.loc = s.loc;
      carryInit.push_back(c.fill(0, s.operands[k]->type));
    }
  for (int64_t i = 0; i < nseq; ++i)
    if (active.count(body.args[i]))
      activeSeqs.push_back(i);
  // Output cotangents enter the body one step at a time.
  for (size_t r = ncarry; r < s.results.size(); ++r)
    if (dy[r] && active.count(body.yields[r])) {
      Value *a = m.newValue(body.yields[r]->type, bg, "d." + body.yields[r]->name);
      seqArgs.push_back(a);
      seqOuter.push_back(dy[r]);
      inner.accumulate(body.yields[r], a);
    }

  reverseSweep(inner, body);

  // Yields: the previous step's carry cotangents, the updated accumulators, then dxs.
  std::vector<Value *> yields;
  inner.loc = s.loc;
  auto cotangent = [&](const Value *v) -> Value * {
    auto it = ct.find(v);
    return it != ct.end() ? inner.use(it->second) : inner.fill(0, v->type);
  };
  for (int64_t i : activeCarries)
    yields.push_back(cotangent(body.args[nseq + i]));
  for (size_t j = 0; j < activeCaps.size(); ++j) {
    Value *acc = carryArgs[activeCarries.size() + j];
    auto it = ct.find(body.args[activeCaps[j]]);
    yields.push_back(it == ct.end() ? acc : inner.add(acc, it->second));
  }
  for (int64_t i : activeSeqs)
    yields.push_back(cotangent(body.args[i]));

  // The forward scan saves each residual per step (reusing an output it already stacks).
  for (size_t r = 0; r < residuals.size(); ++r) {
    Value *stacked = nullptr;
    for (size_t y = ncarry; y < body.yields.size(); ++y)
      if (body.yields[y] == residuals[r])
        stacked = s.results[y];
    if (!stacked) {
      Value *step = const_cast<Value *>(residuals[r]);
      TensorType t = savedType(step->type, axis);
      if (t != step->type) // the leading unit axes, added in the forward body
        step = NodeBuilder(m, &body, s.loc, "autodiff").reshape(step, t.shape);
      t.shape.insert(t.shape.begin() + axis, s.operands[0]->type.shape[axis]);
      stacked = m.newValue(t, s.parent, residuals[r]->name + ".saved");
      stacked->def = &s;
      stacked->index = static_cast<unsigned>(s.results.size());
      s.results.push_back(stacked);
      body.yields.push_back(step);
    }
    auto pos = std::find(seqArgs.begin(), seqArgs.end(), residualArg[r]) - seqArgs.begin();
    seqOuter[pos] = c.use(stacked);
  }

  // Assemble the reverse scan.
  std::vector<Value *> operands = seqOuter;
  operands.insert(operands.end(), carryInit.begin(), carryInit.end());
  operands.insert(operands.end(), capOuter.begin(), capOuter.end());
  for (auto *list : {&seqArgs, &carryArgs, &capArgs})
    for (Value *a : *list) {
      a->index = static_cast<unsigned>(bg->args.size());
      bg->args.push_back(a);
    }
  bg->yields = yields;
  if (seqArgs.empty()) {
    // Nothing is read per step (a body that ignores its sequence): scan the sequence anyway.
    throw std::logic_error("autodiff: reverse scan without sequences");
  }
  std::map<std::string, AttrValue> attrs = {{"axis", axis},
                                            {"nseq", static_cast<int64_t>(seqArgs.size())},
                                            {"ncarry", static_cast<int64_t>(carryArgs.size())},
                                            {"reverse", static_cast<int64_t>(!s.getInt("reverse"))}};
  c.loc = s.loc;
  Node *back = c.node(Op::Scan, operands, attrs, std::move(bb));
  size_t r = 0;
  for (int64_t i : activeCarries)
    dx[nseq + i] = back->results[r++];
  for (int64_t k : activeCaps)
    dx[k] = back->results[r++];
  for (int64_t i : activeSeqs)
    dx[i] = back->results[r++];
}

void differentiate(Module &m, Diagnostics &diag) { differentiate(m, diag, gradRules()); }

void differentiate(Module &m, Diagnostics &diag, const GradRuleTable &rules) {
  Graph &g = *m.trainGraph;
  ValueSet active;
  markActive(g, active);
  const Node *lossNode = nullptr;
  for (const auto &n : g.nodes)
    if (n->op == Op::Loss)
      lossNode = n.get();
  if (!lossNode)
    throw std::logic_error("autodiff: the training graph has no loss");
  std::vector<Node *> fwdNodes;
  for (auto &n : g.nodes)
    fwdNodes.push_back(n.get());
  GradCtx c(m, &g, diag, active, rules);
  c.loc = lossNode->loc;
  CotangentMap &ct = c.ct;
  Value *loss = lossNode->operands[0];
  if (active.count(loss))
    ct[loss] = c.scalar(1.0);
  // The backward nodes are appended behind the forward ones, which the sweep visits.
  reverseSweep(c, g);
  // One grad sink per parameter, in declaration order.
  std::unordered_map<std::string, Value *> paramValue;
  for (Node *n : fwdNodes)
    if (n->op == Op::Param)
      paramValue[n->getStr("name")] = n->results[0];
  c.loc = lossNode->loc;
  for (const StateDecl &p : m.params) {
    Value *grad = nullptr;
    if (auto it = paramValue.find(p.name); it != paramValue.end())
      if (auto jt = ct.find(it->second); jt != ct.end())
        grad = jt->second;
    if (!grad)
      grad = c.fill(0, p.type);
    if (grad->name.empty())
      grad->name = "d." + p.name;
    c.sink(Op::Grad, grad, {{"name", p.name}}, p.loc);
  }
}

} // namespace gradc
