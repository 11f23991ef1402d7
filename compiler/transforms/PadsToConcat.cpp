// PadsToConcat.cpp: the `pads-to-concat` rewrite (declared in Passes.h): a sum of zero-padded
// blocks that tile their shape along one axis becomes a concat of the blocks.
#include <algorithm>
#include <unordered_map>
#include <vector>

#include "transforms/Passes.h"
#include "ir/Builder.h"
#include "ir/Rewrite.h"

namespace gradc {
namespace {

/// How many times each value of g (and of bodies nested in it) is read, yields included.
void countUses(const Graph &g, std::unordered_map<const Value *, int> &uses) {
  for (const auto &n : g.nodes) {
    for (const Value *o : n->operands)
      ++uses[o];
    if (n->body)
      countUses(*n->body, uses);
  }
  for (const Value *y : g.yields)
    ++uses[y];
}

/// The leaves of the add tree rooted at `v`: inner adds of the same shape read only by
/// the tree are expanded.
void addLeaves(const Value *v, const TensorType &type, const std::unordered_map<const Value *, int> &uses, bool root,
               std::vector<const Value *> &leaves) {
  const Node *d = v->def;
  const auto it = uses.find(v);
  if (d && d->op == Op::Add && v->type == type && (root || (it != uses.end() && it->second == 1))) {
    addLeaves(d->operands[0], type, uses, false, leaves);
    addLeaves(d->operands[1], type, uses, false, leaves);
    return;
  }
  leaves.push_back(v);
}

/// The operands of a concat along some axis equal to the sum `leaves` (all pads tiling the
/// result along that axis, in order), or empty.
std::vector<Value *> tiling(const std::vector<const Value *> &leaves, const TensorType &type, int64_t &axis) {
  if (leaves.size() < 2)
    return {};
  const std::vector<int64_t> &shape = type.shape;
  axis = -1;
  std::vector<std::pair<int64_t, Value *>> blocks;
  for (const Value *l : leaves) {
    const Node *p = l->def;
    if (!p || p->op != Op::Pad || p->parent != leaves[0]->def->parent)
      return {};
    const std::vector<int64_t> &begin = p->getInts("begin");
    const std::vector<int64_t> &in = p->operands[0]->type.shape;
    for (size_t a = 0; a < shape.size(); ++a) {
      if (in[a] == shape[a] && begin[a] == 0)
        continue;
      if (axis >= 0 && axis != static_cast<int64_t>(a))
        return {}; // padded along two axes
      axis = static_cast<int64_t>(a);
    }
    if (axis < 0)
      return {}; // a pad that pads nothing
    blocks.push_back({begin[axis], p->operands[0]});
  }
  std::sort(blocks.begin(), blocks.end(), [](const auto &x, const auto &y) { return x.first < y.first; });
  int64_t next = 0;
  std::vector<Value *> parts;
  for (const auto &[begin, v] : blocks) {
    if (begin != next)
      return {}; // a gap or an overlap
    next += v->type.shape[axis];
    parts.push_back(v);
  }
  if (next != shape[axis])
    return {};
  return parts;
}

void rewriteGraph(Module &m, Graph &g, const std::unordered_map<const Value *, int> &uses) {
  for (auto &np : g.nodes)
    if (np->body)
      rewriteGraph(m, *np->body, uses);
  const size_t firstNew = g.nodes.size();
  for (size_t i = 0; i < firstNew; ++i) {
    Node &n = *g.nodes[i];
    if (n.op != Op::Add)
      continue;
    const Value *r = n.results[0];
    const auto u = uses.find(r);
    // An inner add of a larger tree is rewritten with its root.
    bool inner = false;
    if (u != uses.end() && u->second == 1)
      for (size_t j = i + 1; j < g.nodes.size() && !inner; ++j)
        inner = g.nodes[j]->op == Op::Add && g.nodes[j]->results[0]->type == r->type &&
                std::count(g.nodes[j]->operands.begin(), g.nodes[j]->operands.end(), r) > 0;
    if (inner)
      continue;
    std::vector<const Value *> leaves;
    addLeaves(r, r->type, uses, true, leaves);
    int64_t axis = 0;
    std::vector<Value *> parts = tiling(leaves, r->type, axis);
    if (parts.empty())
      continue;
    NodeBuilder e(m, &g, n.loc, "pads-to-concat");
    Value *cat = e.op(Op::Concat, parts, {{"axis", axis}});
    replaceUses(g, r, cat);
  }
  if (g.nodes.size() > firstNew)
    restoreDefinitionOrder(g, firstNew);
}

} // namespace

void padsToConcat(Module &m) {
  for (Graph *g : m.graphs()) {
    std::unordered_map<const Value *, int> uses;
    countUses(*g, uses);
    rewriteGraph(m, *g, uses);
  }
}

} // namespace gradc
