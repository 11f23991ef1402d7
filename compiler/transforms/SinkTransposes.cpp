// SinkTransposes.cpp: the `sink-transposes` pass (declared in Passes.h): transposed matrices that a
// scan captures only for its matmuls are transposed inside the body instead, where the
// transpose folds into the matmul and no transposed copy is materialised.
#include <algorithm>
#include <vector>

#include "transforms/Passes.h"
#include "ir/Builder.h"
#include "ir/Rewrite.h"

namespace gradc {
namespace {

/// Whether v is a matrix transpose defined in g.
bool isMatrixTransposeIn(const Value *v, const Graph &g) { return isMatrixTranspose(v) && v->def->parent == &g; }

/// Whether the body reads `arg` at least once and only as a matmul operand or through a
/// transpose back (which then cancels).
bool onlyMatmulOperand(const Graph &b, const Value *arg) {
  if (std::find(b.yields.begin(), b.yields.end(), arg) != b.yields.end())
    return false;
  bool used = false;
  for (const auto &n : b.nodes)
    for (const Value *o : n->operands)
      if (o == arg) {
        if (n->op != Op::MatMul && !isMatrixTransposeIn(n->results[0], b))
          return false;
        used = true;
      }
  return used;
}

void sinkGraph(Module &m, Graph &g) {
  for (auto &np : g.nodes) {
    Node &s = *np;
    if (!s.body)
      continue;
    Graph &b = *s.body;
    sinkGraph(m, b);
    const size_t firstCapture = static_cast<size_t>(s.getInt("nseq") + s.getInt("ncarry"));
    std::vector<size_t> dropped;
    const size_t nCaptures = b.args.size();
    for (size_t a = firstCapture; a < nCaptures; ++a) {
      Value *arg = b.args[a];
      if (!isMatrixTransposeIn(s.operands[a], g) || !onlyMatmulOperand(b, arg))
        continue;
      const Node &t = *s.operands[a]->def;
      Value *x = t.operands[0];
      // The matrix's capture: an existing one, or a new one.
      Value *xArg = nullptr;
      for (size_t k = firstCapture; k < b.args.size() && !xArg; ++k)
        if (s.operands[k] == x)
          xArg = b.args[k];
      if (!xArg) {
        xArg = m.newValue(x->type, &b, x->name);
        xArg->index = static_cast<unsigned>(b.args.size());
        b.args.push_back(xArg);
        s.operands.push_back(x);
      }
      // A transpose of the capture in the body is the matrix itself (left for dce).
      for (size_t i = 0; i < b.nodes.size(); ++i) {
        Node &n = *b.nodes[i];
        if (n.op == Op::Transpose && n.operands[0] == arg)
          replaceUses(b, n.results[0], xArg);
      }
      const size_t firstNew = b.nodes.size();
      NodeBuilder e(m, &b, t.loc, "sink-transposes");
      Value *inside = e.transposeLast(xArg);
      replaceUses(b, arg, inside);
      restoreDefinitionOrder(b, firstNew);
      dropped.push_back(a);
    }
    // Drop the captures no longer read, last first, and renumber the arguments.
    for (auto it = dropped.rbegin(); it != dropped.rend(); ++it) {
      b.args.erase(b.args.begin() + static_cast<std::ptrdiff_t>(*it));
      s.operands.erase(s.operands.begin() + static_cast<std::ptrdiff_t>(*it));
    }
    for (size_t k = 0; k < b.args.size(); ++k)
      b.args[k]->index = static_cast<unsigned>(k);
  }
}

} // namespace

void sinkTransposes(Module &m) {
  for (Graph *g : m.graphs())
    sinkGraph(m, *g);
}

} // namespace gradc
