// Licm.cpp: the `licm` pass: loop-invariant nodes move out of scan bodies (recursively) and
// become captures, so that autodiff saves only per-step values as residuals.
#include <algorithm>
#include <unordered_map>
#include <vector>

#include "transforms/Passes.h"

namespace gradc {

namespace {

void hoistGraph(Module &m, Graph &g) {
  for (size_t idx = 0; idx < g.nodes.size(); ++idx) {
    Node &s = *g.nodes[idx];
    if (!s.body)
      continue;
    Graph &b = *s.body;
    hoistGraph(m, b);
    int64_t nseq = s.getInt("nseq"), ncarry = s.getInt("ncarry");
    std::unordered_map<const Value *, Value *> outer; // body value -> value in g
    for (size_t a = nseq + ncarry; a < b.args.size(); ++a)
      outer[b.args[a]] = s.operands[a];
    std::vector<std::unique_ptr<Node>> kept, hoisted;
    for (auto &np : b.nodes) {
      Node &n = *np;
      bool invariant = !n.body && !hasTrait(n.op, TR_SINK) &&
                       std::all_of(n.operands.begin(), n.operands.end(), [&](const Value *o) { return outer.count(o); });
      if (!invariant) {
        kept.push_back(std::move(np));
        continue;
      }
      for (Value *&o : n.operands)
        o = outer.at(o);
      n.parent = &g;
      for (Value *r : n.results) {
        r->owner = &g;
        outer[r] = r;
      }
      hoisted.push_back(std::move(np));
    }
    b.nodes = std::move(kept);
    if (hoisted.empty())
      continue;
    // Body uses of hoisted results become new captures.
    std::unordered_map<Value *, Value *> captureOf;
    auto capture = [&](Value *&v) {
      if (v->owner != &g)
        return;
      auto it = captureOf.find(v);
      if (it == captureOf.end()) {
        Value *arg = m.newValue(v->type, &b, v->name);
        arg->index = static_cast<unsigned>(b.args.size());
        b.args.push_back(arg);
        s.operands.push_back(v);
        it = captureOf.emplace(v, arg).first;
      }
      v = it->second;
    };
    for (auto &n : b.nodes)
      for (Value *&o : n->operands)
        capture(o);
    for (Value *&y : b.yields)
      capture(y);
    size_t n = hoisted.size();
    g.nodes.insert(g.nodes.begin() + idx, std::make_move_iterator(hoisted.begin()),
                   std::make_move_iterator(hoisted.end()));
    idx += n;
  }
}

} // namespace

void hoistLoopInvariants(Module &m) {
  for (Graph *g : m.graphs())
    hoistGraph(m, *g);
}

} // namespace gradc
