// Optimizer.cpp: gradient clipping and the SGD / Adam / AdamW updates as graph nodes, following
// PyTorch's update rules (torch.optim.SGD, Adam, AdamW, clip_grad_value_/norm_).
#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "autodiff/Autodiff.h"
#include "ir/Builder.h"

namespace gradc {

namespace {

/// Elements of one all-reduce bucket at most (4 MiB of f32).
constexpr int64_t kBucketElements = int64_t(1) << 20;

/// Replaces each parameter gradient by its mean over the `ranks` ranks of an MPI run (the
/// gradient of the global batch's mean loss): the gradients are flattened into buckets (at
/// most kBucketElements each, fixed here at compile time), each bucket is summed over the
/// ranks by one allreduce_sum, and the sums are sliced back and scaled by 1 / ranks, before
/// clipping and the optimizer see them. The buckets follow the order in which the backward
/// pass of `g` computes the gradients, and a bucket ends where a recurrence (a scan) runs
/// between two gradients: the gradients computed before it form a bucket that can be summed
/// while it runs (the early-allreduce pass moves the sum there, the lowering waits for it at
/// its first reader).
void averageOverRanks(NodeBuilder &c, const Graph &g, int64_t ranks, std::vector<Value *> &gs) {
  const double inv = 1.0 / static_cast<double>(ranks);
  // Where each gradient is ready: its defining node's place, and how many scans run up to it.
  std::unordered_map<const Node *, size_t> place, scansUpTo;
  size_t scans = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    scans += g.nodes[i]->op == Op::Scan;
    place[g.nodes[i].get()] = i;
    scansUpTo[g.nodes[i].get()] = scans;
  }
  auto ready = [&](const Value *v) { return v->def && place.count(v->def) ? place.at(v->def) : 0; };
  auto phase = [&](const Value *v) { return v->def && scansUpTo.count(v->def) ? scansUpTo.at(v->def) : 0; };
  std::vector<size_t> order(gs.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ready(gs[a]) < ready(gs[b]); });
  size_t first = 0;
  while (first < order.size()) {
    size_t last = first;
    int64_t total = 0;
    std::vector<Value *> flat;
    while (last < order.size() && (last == first || (total + gs[order[last]]->type.numel() <= kBucketElements &&
                                                      phase(gs[order[last]]) == phase(gs[order[first]])))) {
      Value *gr = gs[order[last]];
      flat.push_back(gr->type.rank() == 1 ? gr : c.reshape(gr, {gr->type.numel()}));
      total += gr->type.numel();
      ++last;
    }
    Value *bucket = flat.size() == 1 ? flat[0] : c.op(Op::Concat, flat, {{"axis", int64_t(0)}});
    Value *summed = c.op(Op::AllReduceSum, {bucket});
    summed->name = "grad_bucket";
    int64_t at = 0;
    for (size_t k = first; k < last; ++k) {
      Value *&gr = gs[order[k]];
      const int64_t n = gr->type.numel();
      Value *part = flat.size() == 1 ? summed : c.op(Op::Slice, {summed}, {{"begin", std::vector<int64_t>{at}}, {"end", std::vector<int64_t>{at + n}}});
      if (gr->type.rank() != 1)
        part = c.reshape(part, gr->type.shape);
      gr = c.mul(part, c.scalar(inv));
      at += n;
    }
    first = last;
  }
}

} // namespace

void addOptimizer(Module &m) {
  Graph &g = *m.trainGraph;
  const TrainConfig &tc = m.train;
  NodeBuilder c(m, &g, tc.loc, "optimizer");

  std::unordered_map<std::string, Value *> grads, params;
  for (const auto &n : g.nodes) {
    if (n->op == Op::Grad)
      grads[n->getStr("name")] = n->operands[0];
    if (n->op == Op::Param)
      params[n->getStr("name")] = n->results[0];
  }
  std::vector<Value *> gs, ps;
  for (const StateDecl &p : m.params) {
    Value *pv = params.count(p.name) ? params[p.name] : c.source(Op::Param, p.type, {{"name", p.name}}, p.loc, p.name);
    ps.push_back(pv);
    gs.push_back(grads.at(p.name));
  }

  if (m.ranks > 1)
    averageOverRanks(c, g, m.ranks, gs);

  // Clipping, as torch.nn.utils.clip_grad_value_ / clip_grad_norm_.
  if (tc.clipGradValue) {
    for (Value *&gr : gs)
      gr = c.op(Op::Minimum, {c.op(Op::Maximum, {gr, c.scalar(-*tc.clipGradValue)}), c.scalar(*tc.clipGradValue)});
  } else if (tc.clipGradNorm) {
    Value *total = nullptr;
    for (Value *gr : gs) {
      std::vector<int64_t> axes;
      for (int i = 0; i < gr->type.rank(); ++i)
        axes.push_back(i);
      Value *sq = c.mul(gr, gr);
      Value *s = c.sum(sq, axes);
      total = total ? c.add(total, s) : s;
    }
    if (total) {
      Value *norm = c.op(Op::Sqrt, {total});
      norm->name = "grad_norm";
      Value *coef = c.div(c.scalar(*tc.clipGradNorm), c.add(norm, c.scalar(1e-6)));
      coef = c.op(Op::Minimum, {coef, c.scalar(1.0)});
      for (Value *&gr : gs)
        gr = c.mul(gr, coef);
    }
  }

  auto state = [&](const std::string &name, const TensorType &t) {
    m.optState.push_back({name, t, Init{}, tc.loc});
    return c.source(Op::Buffer, t, {{"name", name}}, name);
  };
  auto update = [&](const std::string &name, Value *v) {
    if (v->name.empty())
      v->name = name + ".new";
    c.sink(Op::Update, v, {{"name", name}});
  };
  const auto &o = tc.optimizer;
  // The learning rate is read at run time, so --lr needs no recompilation.
  Value *lr = c.source(Op::Hyper, {DType::F32, {}}, {{"name", std::string("lr")}}, "lr");
  Value *stepSize = nullptr, *bc2sqrt = nullptr, *decay = nullptr;
  const bool adam = o.kind == "adam" || o.kind == "adamw";
  // AdamW decays the parameter itself (torch: param.mul_(1 - lr * weight_decay)) instead of
  // adding weight_decay * param to the gradient.
  const bool decoupled = o.kind == "adamw";
  if (decoupled && o.weightDecay != 0)
    decay = c.sub(c.scalar(1), c.mul(lr, c.scalar(o.weightDecay)));
  if (adam) {
    Value *step = state("optimizer.step", {DType::F32, {}});
    Value *next = c.add(step, c.scalar(1));
    update("optimizer.step", next);
    // bias corrections 1 - beta^step, as exp(step * log(beta)).
    Value *bc1 = c.sub(c.scalar(1), c.op(Op::Exp, {c.mul(next, c.scalar(std::log(o.beta1)))}));
    Value *bc2 = c.sub(c.scalar(1), c.op(Op::Exp, {c.mul(next, c.scalar(std::log(o.beta2)))}));
    stepSize = c.div(lr, bc1);
    bc2sqrt = c.op(Op::Sqrt, {bc2});
  }
  for (size_t i = 0; i < m.params.size(); ++i) {
    const std::string &name = m.params[i].name;
    const TensorType &t = m.params[i].type;
    Value *p = ps[i], *gr = gs[i];
    if (o.weightDecay != 0 && !decoupled)
      gr = c.add(gr, c.mul(p, c.scalar(o.weightDecay)));
    if (decay)
      p = c.mul(p, decay);
    Value *np;
    if (o.kind == "sgd") {
      Value *d = gr;
      if (o.momentum != 0) {
        std::string bn = "optimizer." + name + ".momentum_buffer";
        Value *buf = c.add(c.mul(state(bn, t), c.scalar(o.momentum)), gr);
        update(bn, buf);
        d = o.nesterov ? c.add(gr, c.mul(buf, c.scalar(o.momentum))) : buf;
      }
      np = c.sub(p, c.mul(d, lr));
    } else {
      std::string mn = "optimizer." + name + ".exp_avg", vn = "optimizer." + name + ".exp_avg_sq";
      Value *mv = c.add(c.mul(state(mn, t), c.scalar(o.beta1)), c.mul(gr, c.scalar(1 - o.beta1)));
      Value *vv = c.add(c.mul(state(vn, t), c.scalar(o.beta2)), c.mul(c.mul(gr, gr), c.scalar(1 - o.beta2)));
      update(mn, mv);
      update(vn, vv);
      Value *denom = c.add(c.div(c.op(Op::Sqrt, {vv}), bc2sqrt), c.scalar(o.eps));
      np = c.sub(p, c.mul(stepSize, c.div(mv, denom)));
    }
    update(name, np);
  }
}

} // namespace gradc
