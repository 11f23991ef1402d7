// Fusion.cpp: groups runs of elementwise and indexed nodes into single loop nests and
// decides which of their results must be written to memory.
#include "Fusion.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

namespace gradc {

bool isLoopFusable(const Node &n) {
  if (n.results.size() != 1 || n.body)
    return false;
  return hasTrait(n.op, TR_ELEMENTWISE) || hasTrait(n.op, TR_INDEXED);
}

std::vector<FusedLoop> planLoops(const Graph &g, bool fuse) {
  // Uses of each value by nodes of this graph, and the graph's yields.
  std::unordered_map<const Value *, std::vector<const Node *>> users;
  for (const auto &n : g.nodes)
    for (const Value *v : n->operands)
      users[v].push_back(n.get());
  std::unordered_set<const Value *> yielded(g.yields.begin(), g.yields.end());

  std::vector<FusedLoop> loops;
  std::unordered_set<const Node *> open; // members of the group being built
  auto close = [&]() {
    if (loops.empty() || open.empty())
      return;
    FusedLoop &l = loops.back();
    for (const Node *m : l.nodes) {
      const Value *r = m->results[0];
      bool outside = yielded.count(r) != 0;
      for (const Node *u : users[r])
        outside = outside || !open.count(u);
      l.stored.push_back(outside || !l.fused());
    }
    open.clear();
  };
  for (const auto &np : g.nodes) {
    const Node &n = *np;
    bool joins = false;
    if (fuse && !open.empty() && isLoopFusable(n) && n.results[0]->type.shape == loops.back().shape) {
      joins = true;
      // An indexed read of a value computed in this loop would need another element of it.
      if (hasTrait(n.op, TR_INDEXED))
        joins = !open.count(n.operands[0]->def);
    }
    if (!joins) {
      close();
      loops.push_back({});
      loops.back().shape = n.results.empty() ? std::vector<int64_t>{} : n.results[0]->type.shape;
      loops.back().nodes.push_back(&n);
      if (isLoopFusable(n))
        open.insert(&n);
      else
        close(), loops.back().stored.push_back(true);
      continue;
    }
    loops.back().nodes.push_back(&n);
    open.insert(&n);
  }
  close();
  return loops;
}

} // namespace gradc
