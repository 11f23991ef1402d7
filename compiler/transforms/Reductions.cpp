// Reductions.cpp: the centered-sums and one-pass-variance rewrites of reductions (graph IR,
// scan bodies included).
#include "transforms/Passes.h"

#include "ir/Builder.h"
#include "ir/Rewrite.h"

#include <functional>
#include <unordered_map>

#include <fmt/format.h>

namespace gradc {

namespace {

/// `shape` padded on the left with 1s to rank r.
std::vector<int64_t> padded(const std::vector<int64_t> &shape, size_t r) {
  std::vector<int64_t> p(r - std::min(r, shape.size()), 1);
  p.insert(p.end(), shape.begin(), shape.end());
  return p;
}

/// The shape of `space` with the axes in `axes` set to 1.
std::vector<int64_t> keptShape(std::vector<int64_t> space, const std::vector<int64_t> &axes) {
  for (int64_t a : axes)
    space[a] = 1;
  return space;
}

/// True when v broadcasts along every axis of `axes` in a rank-r space (it has size 1 there).
bool invariantAlong(const Value *v, const std::vector<int64_t> &axes, size_t r) {
  if (static_cast<size_t>(v->type.rank()) > r)
    return false;
  std::vector<int64_t> p = padded(v->type.shape, r);
  for (int64_t a : axes)
    if (p[a] != 1)
      return false;
  return true;
}

/// v without broadcast_to steps whose operand is itself invariant along `axes`.
Value *peelBroadcast(Value *v, const std::vector<int64_t> &axes, size_t r) {
  while (v->def && v->def->op == Op::BroadcastTo && invariantAlong(v->def->operands[0], axes, r))
    v = v->def->operands[0];
  return v;
}

/// True when m is `mean(x, axes)` (possibly through reshapes and broadcasts that keep it
/// aligned with x), so that `x - m` is x centred along `axes`.
bool isMeanOf(const Value *m, const Value *x, const std::vector<int64_t> &axes) {
  const size_t r = x->type.rank();
  const std::vector<int64_t> keep = keptShape(x->type.shape, axes);
  auto aligned = [&](const Value *u) { return static_cast<size_t>(u->type.rank()) <= r && padded(u->type.shape, r) == keep; };
  if (!aligned(m) && m->type.shape != x->type.shape)
    return false;
  for (const Value *v = m; v->def;) {
    const Node &d = *v->def;
    if (d.op == Op::Mean)
      return aligned(v) && d.operands[0] == x && d.getInts("axes") == axes;
    if (d.op != Op::BroadcastTo && d.op != Op::Reshape)
      return false;
    v = d.operands[0];
    if (!aligned(v))
      return false;
  }
  return false;
}

/// One term of a linear combination: coef * product(factors) * base (base null: 1).
struct Term {
  double coef;
  std::vector<Value *> factors; ///< Each invariant along the reduced axes.
  Value *base;                  ///< Of the full space's shape, or null.
};

/// Splits a value of a reduction's space into terms. Returns false when a base would not
/// have the space's shape. `zeros` counts the centred terms dropped.
bool decompose(Value *v, double coef, std::vector<Value *> factors, const std::vector<int64_t> &space,
               const std::vector<int64_t> &axes, std::vector<Term> &out, int &zeros, int depth) {
  const size_t r = space.size();
  if (invariantAlong(peelBroadcast(v, axes, r), axes, r)) {
    factors.push_back(peelBroadcast(v, axes, r));
    out.push_back({coef, factors, nullptr});
    return true;
  }
  const Node *d = v->def;
  if (d && depth < 24 && v->type.dtype == DType::F32) {
    auto rec = [&](Value *u, double c, std::vector<Value *> f) { return decompose(u, c, std::move(f), space, axes, out, zeros, depth + 1); };
    switch (d->op) {
    case Op::Add: return rec(d->operands[0], coef, factors) && rec(d->operands[1], coef, factors);
    case Op::Sub:
      if (d->operands[0]->type.shape == space && isMeanOf(d->operands[1], d->operands[0], axes)) {
        ++zeros; // the sum of a centred value along its axes is zero
        return true;
      }
      return rec(d->operands[0], coef, factors) && rec(d->operands[1], -coef, factors);
    case Op::Neg: return rec(d->operands[0], -coef, factors);
    case Op::Mul:
      for (int k = 0; k < 2; ++k)
        if (invariantAlong(peelBroadcast(d->operands[k], axes, r), axes, r)) {
          factors.push_back(peelBroadcast(d->operands[k], axes, r));
          return rec(d->operands[1 - k], coef, factors);
        }
      break;
    default: break;
    }
  }
  if (v->type.shape != space)
    return false;
  out.push_back({coef, factors, v});
  return true;
}

/// The rewrite of one reduction node, or null when nothing cancels.
Value *splitReduction(Module &m, Graph &g, Node &red) {
  if (red.op != Op::Sum && red.op != Op::Mean)
    return nullptr;
  Value *x = red.operands[0];
  const std::vector<int64_t> &space = x->type.shape, &axes = red.getInts("axes");
  const bool keepdims = red.getInt("keepdims") != 0;
  std::vector<Term> terms;
  int zeros = 0;
  if (x->type.dtype != DType::F32 || !decompose(x, 1.0, {}, space, axes, terms, zeros, 0) || zeros == 0)
    return nullptr;
  int64_t count = 1;
  for (int64_t a : axes)
    count *= space[a];
  NodeBuilder e(m, &g, red.loc, "centered-sums");
  const Value *res = red.results[0];
  Value *total = nullptr;
  for (const Term &t : terms) {
    double coef = t.coef;
    Value *v = nullptr;
    if (t.base)
      v = e.op(red.op, {t.base}, red.attrs);
    else if (red.op == Op::Sum)
      coef *= static_cast<double>(count);
    for (Value *f : t.factors) {
      // The factor laid out like the reduction's result: the reduced axes dropped unless kept.
      std::vector<int64_t> p = padded(f->type.shape, space.size()), shape;
      for (size_t a = 0; a < p.size(); ++a)
        if (keepdims || std::find(axes.begin(), axes.end(), static_cast<int64_t>(a)) == axes.end())
          shape.push_back(p[a]);
      Value *fr = e.reshape(f, shape);
      v = v ? e.mul(v, fr) : fr;
    }
    if (coef != 1.0)
      v = e.mul(v, e.scalar(coef));
    total = total ? e.add(total, v) : v;
  }
  if (!total)
    total = e.fill(0.0, res->type);
  if (total->type != res->type)
    total = e.op(Op::BroadcastTo, {total}, {{"shape", res->type.shape}});
  return total;
}

/// The one-pass form of `mean((x - mean(x))^2)`, or null when `v` is not of that form.
Value *onePass(Module &m, Graph &g, Node &v) {
  if (v.op != Op::Mean || v.results[0]->type.dtype != DType::F32)
    return nullptr;
  const Node *sq = v.operands[0]->def;
  if (!sq || sq->op != Op::Mul || sq->operands[0] != sq->operands[1])
    return nullptr;
  const Node *d = sq->operands[0]->def;
  const std::vector<int64_t> &axes = v.getInts("axes");
  if (!d || d->op != Op::Sub || d->operands[0]->type.shape != v.operands[0]->type.shape || !isMeanOf(d->operands[1], d->operands[0], axes))
    return nullptr;
  Value *x = d->operands[0];
  std::vector<int64_t> begin(x->type.rank(), 0), end = keptShape(x->type.shape, axes);
  for (size_t a = 0; a < end.size(); ++a)
    if (end[a] != 1 || std::find(axes.begin(), axes.end(), static_cast<int64_t>(a)) == axes.end())
      end[a] = x->type.shape[a];
  NodeBuilder e(m, &g, v.loc, "one-pass-variance");
  Value *shift = e.op(Op::Slice, {x}, {{"begin", begin}, {"end", end}});
  Value *c = e.sub(x, shift);
  Value *m1 = e.op(Op::Mean, {c}, v.attrs);
  Value *m2 = e.op(Op::Mean, {e.mul(c, c)}, v.attrs);
  Value *var = e.sub(m2, e.mul(m1, m1));
  return e.op(Op::Maximum, {var, e.scalar(0.0)});
}

/// Applies `rewrite` to every node of g (bodies first), replacing its result's uses.
void rewriteGraph(Module &m, Graph &g, const std::function<Value *(Module &, Graph &, Node &)> &rewrite) {
  std::vector<Node *> nodes;
  for (auto &n : g.nodes) {
    if (n->body)
      rewriteGraph(m, *n->body, rewrite);
    nodes.push_back(n.get());
  }
  const size_t firstNew = g.nodes.size();
  bool changed = false;
  for (Node *n : nodes)
    if (Value *r = rewrite(m, g, *n)) {
      replaceUses(g, n->results[0], r);
      changed = true;
    }
  if (changed)
    restoreDefinitionOrder(g, firstNew);
}

} // namespace

void cancelCenteredSums(Module &m) {
  for (Graph *g : m.graphs())
    rewriteGraph(m, *g, splitReduction);
}

void onePassVariance(Module &m) {
  for (Graph *g : m.graphs())
    rewriteGraph(m, *g, onePass);
}

} // namespace gradc
