// Rewrite.cpp: the helpers the graph rewrites share (Rewrite.h).
#include "ir/Rewrite.h"

#include <functional>
#include <unordered_map>

namespace gradc {

bool isMatrixTranspose(const Value *v) {
  const Node *d = v->def;
  return d && d->op == Op::Transpose && v->type.rank() == 2 && d->getInts("perm") == std::vector<int64_t>{1, 0};
}

void replaceUses(Graph &g, const Value *from, Value *to) {
  for (auto &n : g.nodes)
    for (Value *&o : n->operands)
      if (o == from)
        o = to;
  for (Value *&y : g.yields)
    if (y == from)
      y = to;
}

void restoreDefinitionOrder(Graph &g, size_t firstNew) {
  // Nodes from firstNew on are new: each goes as early as its operands allow, so that a new
  // reduction can join the first loop over its data.
  std::unordered_map<const Node *, size_t> index;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    index[g.nodes[i].get()] = i;
  std::vector<bool> isNew(g.nodes.size(), false);
  for (size_t i = firstNew; i < g.nodes.size(); ++i)
    isNew[i] = true;
  std::vector<bool> done(g.nodes.size(), false);
  std::vector<size_t> order;
  std::function<void(size_t)> place = [&](size_t i) {
    if (done[i])
      return;
    done[i] = true;
    for (const Value *o : g.nodes[i]->operands)
      if (o->def && o->def->parent == &g)
        place(index.at(o->def));
    order.push_back(i);
  };
  auto ready = [&](size_t i) {
    for (const Value *o : g.nodes[i]->operands)
      if (o->def && o->def->parent == &g && !done[index.at(o->def)])
        return false;
    return true;
  };
  auto placeReadyNew = [&]() {
    for (bool more = true; more;) {
      more = false;
      for (size_t i = 0; i < g.nodes.size(); ++i)
        if (isNew[i] && !done[i] && ready(i)) {
          place(i);
          more = true;
        }
    }
  };
  placeReadyNew();
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!isNew[i]) {
      place(i);
      placeReadyNew();
    }
  for (size_t i = 0; i < g.nodes.size(); ++i)
    place(i);
  std::vector<std::unique_ptr<Node>> nodes;
  for (size_t i : order)
    nodes.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(nodes);
}

} // namespace gradc
