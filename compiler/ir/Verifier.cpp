// Verifier.cpp: structural and type invariants of the graph IR, checked between passes.
#include <unordered_set>

#include <fmt/format.h>

#include "ir/IR.h"

namespace gradc {

namespace {

class Verifier {
public:
  std::vector<std::string> problems;

  void graph(const Graph &g, bool topLevel) {
    std::unordered_set<const Value *> defined;
    for (size_t i = 0; i < g.args.size(); ++i) {
      const Value *a = g.args[i];
      if (a->def || a->owner != &g || a->index != i)
        fail(g, "argument {} is not owned by its graph", i);
      defined.insert(a);
    }
    if (topLevel && !g.args.empty())
      fail(g, "a top-level graph has no arguments");
    for (const auto &np : g.nodes) {
      const Node &n = *np;
      const OpInfo &info = opInfo(n.op);
      if (n.parent != &g)
        fail(g, "{}: node's parent is not its graph", info.name);
      for (const Value *o : n.operands) {
        if (!defined.count(o))
          fail(g, "{}: operand %{} is not defined before its use in this graph", info.name, o->id);
        if (o->def && hasTrait(o->def->op, TR_RANDOM) && !(info.traits & TR_ELEMENTWISE))
          fail(g, "{}: reads the random %{}, which only elementwise nodes may read", info.name, o->id);
      }
      if (info.numResults >= 0 && static_cast<int>(n.results.size()) != info.numResults)
        fail(g, "{}: has {} results, expects {}", info.name, n.results.size(), info.numResults);
      for (size_t i = 0; i < n.results.size(); ++i) {
        const Value *r = n.results[i];
        if (r->def != &n || r->index != i || r->owner != &g)
          fail(g, "{}: result {} does not point back at its node", info.name, i);
        if (!defined.insert(r).second)
          fail(g, "{}: result %{} defined twice", info.name, r->id);
      }
      if ((info.traits & TR_SINK) && !topLevel)
        fail(g, "{}: sinks belong to top-level graphs", info.name);
      if (info.traits & TR_SOURCE) {
        if (!n.operands.empty())
          fail(g, "{}: a source has no operands", info.name);
        if (n.op == Op::Const ? !n.has("value") : (info.traits & TR_RANDOM) ? !n.has("p") || !n.has("stream") : !n.has("name"))
          fail(g, "{}: missing its attribute", info.name);
        continue;
      }
      if (n.body) {
        if (n.body->parentNode != &n)
          fail(g, "{}: body does not point back at its node", info.name);
        graph(*n.body, false);
      } else if (info.traits & TR_REGION) {
        fail(g, "{}: has no body", info.name);
      }
      std::vector<TensorType> in, out;
      for (const Value *o : n.operands)
        in.push_back(o->type);
      std::string err = inferTypes(n.op, in, n.attrs, n.body.get(), out);
      if (!err.empty()) {
        fail(g, "{}", err);
        continue;
      }
      if (out.size() != n.results.size()) {
        fail(g, "{}: {} results, types say {}", info.name, n.results.size(), out.size());
        continue;
      }
      for (size_t i = 0; i < out.size(); ++i)
        if (out[i] != n.results[i]->type)
          fail(g, "{}: result {} is {}, expected {}", info.name, i, n.results[i]->type.str(), out[i].str());
    }
    for (const Value *y : g.yields) {
      if (!defined.count(y))
        fail(g, "yield of %{} which is not defined in the body", y->id);
      if (y->def && hasTrait(y->def->op, TR_RANDOM))
        fail(g, "yield of the random %{}, which only elementwise nodes may read", y->id);
    }
    if (topLevel && !g.yields.empty())
      fail(g, "a top-level graph yields nothing");
  }

private:
  template <typename... A> void fail(const Graph &g, fmt::format_string<A...> f, A &&...args) {
    problems.push_back(fmt::format("graph @{}: ", g.name.empty() ? "body" : g.name) +
                       fmt::format(f, std::forward<A>(args)...));
  }
};

} // namespace

std::vector<std::string> verifyModule(const Module &m) {
  Verifier v;
  for (const Graph *g : m.graphs())
    v.graph(*g, true);
  return std::move(v.problems);
}

} // namespace gradc
