// EarlyAllReduce.cpp: `early-allreduce` moves each top-level collective (all-reduce) of the training step,
// with the reshapes and concats that assemble its operand, up to just after that operand's
// last input is computed: a gradient bucket is then summed over the ranks while the rest of
// the backward pass runs (the lowering starts it there and waits for it before its first
// reader, lower/Lower.cpp). Only the order of nodes changes, never what they compute.
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "transforms/Passes.h"

namespace gradc {

namespace {

/// The place of the node defining `v` in `g`'s top level, or -1 (a graph argument).
long placeOf(const Graph &g, const Value *v) {
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].get() == v->def)
      return static_cast<long>(i);
  return -1;
}

/// Moves node `n` of g's top level to just after the last definition of its operands.
void moveUp(Graph &g, const Node *n) {
  long at = placeOf(g, n->results[0]), after = -1;
  for (const Value *o : n->operands)
    after = std::max(after, placeOf(g, o));
  if (after + 1 < at)
    std::rotate(g.nodes.begin() + after + 1, g.nodes.begin() + at, g.nodes.begin() + at + 1);
}

} // namespace

void startAllReducesEarly(Module &m) {
  if (!m.trainGraph)
    return;
  Graph &g = *m.trainGraph;
  std::unordered_map<const Value *, std::vector<const Node *>> users;
  for (const auto &n : g.nodes)
    for (const Value *o : n->operands)
      users[o].push_back(n.get());
  std::vector<const Node *> reduces;
  for (const auto &n : g.nodes)
    if (hasTrait(n->op, TR_COLLECTIVE))
      reduces.push_back(n.get());
  for (const Node *r : reduces) {
    // The assembly of its operand: data movement (reshapes, concats) read by nothing else.
    std::unordered_set<const Node *> chain = {r};
    std::vector<const Node *> work = {r}, moved;
    while (!work.empty()) {
      const Node *n = work.back();
      work.pop_back();
      for (const Value *o : n->operands) {
        const Node *d = o->def;
        if (!d || chain.count(d) || !hasTrait(d->op, TR_SHAPE) || d->parent != &g)
          continue;
        const auto &us = users[o];
        if (!std::all_of(us.begin(), us.end(), [&](const Node *u) { return chain.count(u) != 0; }))
          continue;
        chain.insert(d);
        work.push_back(d);
        moved.push_back(d);
      }
    }
    // Operands first (in their present order), the all-reduce last.
    std::sort(moved.begin(), moved.end(), [&](const Node *a, const Node *b) { return placeOf(g, a->results[0]) < placeOf(g, b->results[0]); });
    moved.push_back(r);
    for (const Node *n : moved)
      moveUp(g, n);
  }
}

} // namespace gradc
