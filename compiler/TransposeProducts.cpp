// TransposeProducts.cpp: the `transpose-products` rewrite (Passes.h): the transpose of a
// matrix product becomes the product of the transposed operands, whose transposes fold
// into the matmul.
#include <unordered_map>
#include <vector>

#include "Passes.h"
#include "Rewrite.h"

namespace gradc {
namespace {

/// Whether n is a 2-D transpose (perm [1, 0]).
bool isMatrixTranspose(const Node &n) {
  return n.op == Op::Transpose && n.results[0]->type.rank() == 2 && n.getInts("perm") == std::vector<int64_t>{1, 0};
}

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

void rewriteGraph(Module &m, Graph &g, const std::unordered_map<const Value *, int> &uses) {
  for (auto &np : g.nodes)
    if (np->body)
      rewriteGraph(m, *np->body, uses);
  const size_t firstNew = g.nodes.size();
  for (size_t i = 0; i < firstNew; ++i) {
    Node &t = *g.nodes[i];
    if (!isMatrixTranspose(t))
      continue;
    const Value *p = t.operands[0];
    const Node *mm = p->def;
    const auto u = uses.find(p);
    if (!mm || mm->parent != &g || mm->op != Op::MatMul || p->type.rank() != 2 || u == uses.end() || u->second != 1 ||
        mm->operands[0]->type.rank() != 2 || mm->operands[1]->type.rank() != 2)
      continue;
    NodeEmitter e{Builder(m, &g), t.loc, "transpose-products"};
    // transpose(X), or X itself when X is a transpose.
    auto transposed = [&](Value *x) {
      return x->def && x->def->parent == &g && isMatrixTranspose(*x->def) ? x->def->operands[0] : e.transpose(x);
    };
    Value *b = transposed(mm->operands[1]), *a = transposed(mm->operands[0]);
    Value *product = e.op(Op::MatMul, {b, a});
    replaceUses(g, t.results[0], product);
  }
  if (g.nodes.size() > firstNew)
    restoreDefinitionOrder(g, firstNew);
}

} // namespace

void transposeProducts(Module &m) {
  for (Graph *g : m.graphs()) {
    std::unordered_map<const Value *, int> uses;
    countUses(*g, uses);
    rewriteGraph(m, *g, uses);
  }
}

} // namespace gradc
