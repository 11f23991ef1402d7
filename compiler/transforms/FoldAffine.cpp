// FoldAffine.cpp: the fold-affine pass: in the inference graphs, a per-feature affine map
// whose scale and shift come from the model's state only (an inference-mode BatchNorm, a
// Dense bias) is folded into the weights and bias of the matrix multiply it feeds or
// follows, so the map's pass over the data disappears.
#include "transforms/Passes.h"

#include <unordered_map>

#include "ir/Builder.h"
#include "ir/Rewrite.h"

namespace gradc {

namespace {

/// Whether values depend on the model's state and constants only (not on fed data).
class StateOnly {
public:
  bool operator()(const Value *v) {
    auto it = memo_.find(v);
    if (it != memo_.end())
      return it->second;
    bool r = false;
    if (const Node *d = v->def) {
      if (d->op == Op::Param || d->op == Op::Buffer || d->op == Op::Const)
        r = true;
      else if (!hasTrait(d->op, TR_SOURCE) && !d->body) {
        r = true;
        for (const Value *o : d->operands)
          r = r && (*this)(o);
      }
    }
    return memo_[v] = r;
  }

private:
  std::unordered_map<const Value *, bool> memo_;
};

/// One step of an affine chain: the chain value `v` becomes `op(v, k)` (or `op(k, v)`).
struct Step {
  Op op;
  Value *k;
  bool kFirst; ///< k is the left operand.
};

class Folder {
public:
  Folder(Module &m, Graph &g) : m_(m), g_(g) {
    for (auto &n : g.nodes)
      for (const Value *o : n->operands)
        ++uses_[o];
    for (const Value *y : g.yields)
      ++uses_[y];
  }

  /// Folds every chain it finds; returns whether it changed the graph.
  bool run() {
    const size_t firstNew = g_.nodes.size();
    std::vector<Node *> matmuls;
    for (auto &n : g_.nodes)
      if (n->op == Op::MatMul && n->operands[1]->type.rank() == 2 && n->results[0]->type.dtype == DType::F32 && stateOnly_(n->operands[1]) &&
          !stateOnly_(n->operands[0]))
        matmuls.push_back(n.get());
    bool changed = false;
    for (Node *mm : matmuls)
      changed = foldBefore(*mm) || foldAfter(*mm) || changed;
    if (changed)
      restoreDefinitionOrder(g_, firstNew);
    return changed;
  }

private:
  /// A chain step at `v` (a value of the chain, of width `width` on its last axis): v's
  /// definition combines one operand with a state-only per-feature vector.
  bool stepAt(const Value *v, int64_t width, Step &s, Value *&other) {
    const Node *d = v->def;
    if (!d || v->type.dtype != DType::F32 || (d->op != Op::Add && d->op != Op::Sub && d->op != Op::Mul && d->op != Op::Div))
      return false;
    for (int k = 0; k < 2; ++k) {
      Value *c = d->operands[k], *x = d->operands[1 - k];
      if (!stateOnly_(c) || stateOnly_(x) || x->type.shape != v->type.shape || !perFeature(c, width))
        continue;
      if (d->op == Op::Div && k == 0)
        return false; // k / v is not affine
      s = {d->op, c, k == 0};
      other = x;
      return true;
    }
    return false;
  }

  /// True when c has size 1 on every axis but the last, which is 1 or `width`.
  static bool perFeature(const Value *c, int64_t width) {
    const auto &s = c->type.shape;
    for (size_t a = 0; a + 1 < s.size(); ++a)
      if (s[a] != 1)
        return false;
    return s.empty() || s.back() == 1 || s.back() == width;
  }

  /// scale and shift ([width]) of the chain `steps` applied in order to the chain's start.
  std::pair<Value *, Value *> affine(NodeBuilder &e, const std::vector<Step> &steps, int64_t width) {
    Value *a = nullptr, *c = nullptr;
    auto vec = [&](Value *k) { return e.reshape(k, {k->type.shape.empty() ? 1 : k->type.shape.back()}); };
    for (const Step &s : steps) {
      Value *k = vec(s.k);
      switch (s.op) {
      case Op::Add: c = c ? e.add(c, k) : k; break;
      case Op::Sub:
        if (s.kFirst) { // k - v
          a = a ? e.neg(a) : e.op(Op::Neg, {e.fill(1.0, TensorType{DType::F32, {1}})});
          c = c ? e.sub(k, c) : k;
        } else {
          c = c ? e.sub(c, k) : e.neg(k);
        }
        break;
      case Op::Mul:
        a = a ? e.mul(a, k) : k;
        c = c ? e.mul(c, k) : nullptr;
        break;
      case Op::Div:
        a = a ? e.div(a, k) : e.div(e.scalar(1.0), k);
        c = c ? e.div(c, k) : nullptr;
        break;
      default: break;
      }
    }
    auto full = [&](Value *v) { return v ? e.broadcastTo(v, {width}) : v; };
    return {full(a), full(c)};
  }

  /// The weight scaled along axis `axis` (0: rows of M, 1: columns) by `a` ([len]), written
  /// through the transpose when M is a transposed parameter so the GEMM keeps reading it
  /// transposed.
  Value *scaleWeight(NodeBuilder &e, Value *M, Value *a, int axis) {
    const int64_t len = a->type.shape[0];
    const Node *d = M->def;
    if (isMatrixTranspose(M)) {
      Value *W = d->operands[0]; // M = W^T: M's rows are W's columns
      Value *ar = e.reshape(a, axis == 0 ? std::vector<int64_t>{1, len} : std::vector<int64_t>{len, 1});
      return e.transposeLast(e.mul(W, ar));
    }
    Value *ar = e.reshape(a, axis == 0 ? std::vector<int64_t>{len, 1} : std::vector<int64_t>{1, len});
    return e.mul(M, ar);
  }

  /// (x * a + c) @ M  ->  x @ (a[:, None] * M) + c @ M.
  bool foldBefore(Node &mm) {
    const int64_t K = mm.operands[1]->type.shape[0];
    std::vector<Step> steps;
    Value *v = mm.operands[0], *x = nullptr;
    for (Step s; uses_[v] == 1 && stepAt(v, K, s, x); v = x)
      steps.insert(steps.begin(), s);
    if (steps.empty())
      return false;
    NodeBuilder e(m_, &g_, mm.loc, "fold-affine");
    auto [a, c] = affine(e, steps, K);
    Value *M = mm.operands[1];
    Value *M2 = a ? scaleWeight(e, M, a, 0) : M;
    Value *y = e.op(Op::MatMul, {v, M2});
    if (c) {
      Value *shift = e.reshape(e.op(Op::MatMul, {e.reshape(c, {1, K}), M}), {M->type.shape[1]});
      y = e.add(y, shift);
    }
    replaceUses(g_, mm.results[0], y);
    return true;
  }

  /// (x @ M) * a + c  ->  x @ (M * a[None, :]) + c, where the chain after the matmul (a bias,
  /// an inference BatchNorm) scales the columns at least once.
  bool foldAfter(Node &mm) {
    const int64_t N = mm.operands[1]->type.shape[1];
    std::vector<Step> steps;
    Value *v = mm.results[0], *end = nullptr;
    for (;;) {
      if (uses_[v] != 1)
        break;
      Node *user = soleUser(v);
      Step s;
      Value *x = nullptr;
      if (!user || user->results.size() != 1 || !stepAt(user->results[0], N, s, x) || x != v)
        break;
      steps.push_back(s);
      v = end = user->results[0];
    }
    bool scales = false;
    for (const Step &s : steps)
      scales = scales || s.op == Op::Mul || s.op == Op::Div || (s.op == Op::Sub && s.kFirst);
    if (!end || !scales)
      return false;
    NodeBuilder e(m_, &g_, mm.loc, "fold-affine");
    auto [a, c] = affine(e, steps, N);
    Value *y = e.op(Op::MatMul, {mm.operands[0], scaleWeight(e, mm.operands[1], a, 1)});
    if (c)
      y = e.add(y, c);
    replaceUses(g_, end, y);
    return true;
  }

  Node *soleUser(const Value *v) {
    for (auto &n : g_.nodes)
      for (const Value *o : n->operands)
        if (o == v)
          return n.get();
    return nullptr;
  }

  Module &m_;
  Graph &g_;
  StateOnly stateOnly_;
  std::unordered_map<const Value *, int> uses_;
};

} // namespace

void foldAffineIntoMatmul(Module &m) {
  for (Graph *g : {m.evalGraph.get(), m.inferGraph.get()})
    if (g)
      Folder(m, *g).run();
}

} // namespace gradc
