// HoistScan.cpp: moves matrix work that does not depend on the recurrence out of scans: the
// hoist-projections pass (a step's input times a weight becomes one matmul over the whole
// sequence) and the hoist-accumulations pass (a carried sum of per-step matmuls or sums,
// such as a weight gradient in backpropagation through time, becomes one matmul or sum over
// the stacked steps).
#include "transforms/Passes.h"

#include <algorithm>

#include "ir/Builder.h"
#include "ir/Rewrite.h"

namespace gradc {

namespace {

/// The number of uses of v in g (operands and yields).
int usesIn(const Graph &g, const Value *v) {
  int n = 0;
  for (const auto &node : g.nodes)
    n += static_cast<int>(std::count(node->operands.begin(), node->operands.end(), v));
  return n + static_cast<int>(std::count(g.yields.begin(), g.yields.end(), v));
}

/// Removes node n (whose results nothing uses) from g.
void eraseNode(Graph &g, const Node *n) {
  g.nodes.erase(std::find_if(g.nodes.begin(), g.nodes.end(), [&](const std::unique_ptr<Node> &p) { return p.get() == n; }));
}

int indexOf(const std::vector<Value *> &vs, const Value *v) {
  auto it = std::find(vs.begin(), vs.end(), v);
  return it == vs.end() ? -1 : static_cast<int>(it - vs.begin());
}

void renumberArgs(Graph &b) {
  for (size_t i = 0; i < b.args.size(); ++i)
    b.args[i]->index = static_cast<unsigned>(i);
}

void renumberResults(Node &n) {
  for (size_t i = 0; i < n.results.size(); ++i)
    n.results[i]->index = static_cast<unsigned>(i);
}

/// Hoists `xt @ W` (xt a step of a sequence, W a capture) out of one scan; returns whether
/// it changed anything.
bool hoistProjectionsOf(Module &m, Graph &g, Node &sc) {
  Graph &b = *sc.body;
  const int64_t axis = sc.getInt("axis");
  bool changed = false;
  std::vector<Node *> nodes;
  for (auto &n : b.nodes)
    nodes.push_back(n.get());
  for (Node *mm : nodes) {
    int64_t nseq = sc.getInt("nseq"), ncarry = sc.getInt("ncarry");
    if (mm->op != Op::MatMul)
      continue;
    int k = indexOf(b.args, mm->operands[0]), j = indexOf(b.args, mm->operands[1]);
    if (k < 0 || k >= nseq || j < nseq + ncarry || mm->operands[1]->type.rank() != 2 || mm->operands[0]->type.rank() < 2)
      continue;
    Value *S = sc.operands[k];
    if (axis >= S->type.rank() - 1)
      continue; // the step axis is the contracted one
    NodeBuilder e(m, &g, mm->loc, "hoist-projections");
    Value *P = e.op(Op::MatMul, {S, sc.operands[j]});
    Value *step = m.newValue(mm->results[0]->type, &b, mm->results[0]->name);
    sc.operands.insert(sc.operands.begin() + nseq, P);
    b.args.insert(b.args.begin() + nseq, step);
    sc.attrs["nseq"] = nseq + 1;
    replaceUses(b, mm->results[0], step);
    Value *xt = mm->operands[0];
    eraseNode(b, mm);
    // A sequence nothing reads any more stops being stepped through (one must remain).
    if (usesIn(b, xt) == 0 && sc.getInt("nseq") > 1) {
      int kk = indexOf(b.args, xt);
      b.args.erase(b.args.begin() + kk);
      sc.operands.erase(sc.operands.begin() + kk);
      sc.attrs["nseq"] = sc.getInt("nseq") - 1;
    }
    renumberArgs(b);
    changed = true;
  }
  return changed;
}

/// A carried accumulator `c + R` of scan `sc`, R a per-step matmul `U^T @ V` or a sum of V:
/// replaces the carry by one matmul or sum over the stacked steps, outside. Returns whether
/// carry i was hoisted (and left for removal).
bool hoistAccumulation(Module &m, Graph &g, Node &sc, int64_t i, std::vector<Value *> &replacedResults) {
  Graph &b = *sc.body;
  const int64_t nseq = sc.getInt("nseq"), ncarry = sc.getInt("ncarry"), axis = sc.getInt("axis");
  Value *c = b.args[nseq + i], *y = b.yields[i];
  const Node *add = y->def;
  if (add && add->parent != &b)
    return false;
  if (!add || add->op != Op::Add || usesIn(b, c) != 1 || usesIn(b, y) != 1 || y->type.dtype != DType::F32)
    return false;
  Value *R = add->operands[0] == c ? add->operands[1] : add->operands[1] == c ? add->operands[0] : nullptr;
  if (!R || !R->def || R->type != c->type)
    return false;
  const Node &r = *R->def;
  // The per-step operands, each a step of a sequence or a value computed in the body.
  std::vector<Value *> perStep;
  bool isMatmul = false;
  if (r.op == Op::MatMul && isMatrixTranspose(r.operands[0]) && r.operands[1]->type.rank() == 2) {
    perStep = {r.operands[0]->def->operands[0], r.operands[1]};
    isMatmul = true;
  } else if (r.op == Op::Sum && r.getInt("keepdims") == 0) {
    perStep = {r.operands[0]};
  } else {
    return false;
  }
  for (Value *v : perStep) {
    int a = indexOf(b.args, v);
    if (a >= nseq) // a carry or a capture: not a per-step value
      return false;
  }
  // The stacked form of each per-step value: its sequence, or a new stacked output.
  std::vector<Value *> stacked;
  for (Value *v : perStep) {
    int a = indexOf(b.args, v);
    if (a >= 0) {
      stacked.push_back(sc.operands[a]);
      continue;
    }
    int yi = indexOf(b.yields, v);
    if (yi >= static_cast<int>(ncarry)) {
      stacked.push_back(sc.results[yi]);
      continue;
    }
    b.yields.push_back(v);
    TensorType t = v->type;
    t.shape.insert(t.shape.begin() + axis, sc.operands[0]->type.shape[axis]);
    Value *res = m.newValue(t, &g, v->name.empty() ? "" : v->name + ".steps");
    res->def = &sc;
    sc.results.push_back(res);
    renumberResults(sc);
    stacked.push_back(res);
  }
  NodeBuilder e(m, &g, add->loc, "hoist-accumulations");
  Value *total;
  if (isMatmul) {
    auto rows = [](Value *s) {
      int64_t last = s->type.shape.back();
      return std::vector<int64_t>{s->type.numel() / last, last};
    };
    total = e.op(Op::MatMul, {e.transposeLast(e.reshape(stacked[0], rows(stacked[0]))), e.reshape(stacked[1], rows(stacked[1]))});
  } else {
    std::vector<int64_t> axes = {axis};
    for (int64_t a : r.getInts("axes"))
      axes.push_back(a + (a >= axis ? 1 : 0));
    std::sort(axes.begin(), axes.end());
    total = e.op(Op::Sum, {stacked[0]}, {{"axes", axes}, {"keepdims", int64_t(0)}});
  }
  Value *init = sc.operands[nseq + i];
  const bool zeroInit = init->def && init->def->op == Op::Const && init->def->getFloat("value") == 0.0;
  if (!zeroInit)
    total = e.add(init, total);
  replaceUses(g, sc.results[i], total);
  replacedResults.push_back(sc.results[i]);
  return true;
}

bool hoistAccumulationsOf(Module &m, Graph &g, Node &sc) {
  std::vector<Value *> replaced;
  std::vector<int64_t> hoisted;
  for (int64_t i = 0; i < sc.getInt("ncarry"); ++i)
    if (hoistAccumulation(m, g, sc, i, replaced))
      hoisted.push_back(i);
  if (hoisted.empty())
    return false;
  Graph &b = *sc.body;
  const int64_t nseq = sc.getInt("nseq");
  for (auto it = hoisted.rbegin(); it != hoisted.rend(); ++it) {
    const int64_t i = *it;
    // The accumulating add goes with its carry (nothing else reads either).
    eraseNode(b, b.yields[i]->def);
    sc.operands.erase(sc.operands.begin() + nseq + i);
    b.args.erase(b.args.begin() + nseq + i);
    b.yields.erase(b.yields.begin() + i);
    sc.results.erase(sc.results.begin() + i);
  }
  sc.attrs["ncarry"] = sc.getInt("ncarry") - static_cast<int64_t>(hoisted.size());
  renumberArgs(b);
  renumberResults(sc);
  return true;
}

/// Applies `fn` to every scan of g (and of nested bodies), then restores g's order.
void forEachScan(Module &m, Graph &g, bool (*fn)(Module &, Graph &, Node &)) {
  std::vector<Node *> scans;
  for (auto &n : g.nodes)
    if (n->op == Op::Scan) {
      forEachScan(m, *n->body, fn);
      scans.push_back(n.get());
    }
  const size_t firstNew = g.nodes.size();
  bool changed = false;
  for (Node *sc : scans)
    changed = fn(m, g, *sc) || changed;
  if (changed)
    restoreDefinitionOrder(g, firstNew);
}

} // namespace

void hoistProjections(Module &m) {
  for (Graph *g : m.graphs())
    forEachScan(m, *g, hoistProjectionsOf);
}

void hoistAccumulations(Module &m) {
  for (Graph *g : m.graphs())
    forEachScan(m, *g, hoistAccumulationsOf);
}

} // namespace gradc
