// Passes.cpp: constant folding, common-subexpression elimination and dead-code
// elimination on the graph IR (scan bodies included), and the pass registry (Passes.h).
#include <cmath>
#include <functional>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "autodiff/Autodiff.h"
#include "ir/ScalarMath.h"
#include "transforms/Passes.h"

namespace gradc {

namespace {

std::optional<double> constValue(const Value *v) {
  if (v->def && v->def->op == Op::Const && v->type.rank() == 0)
    return v->def->getFloat("value");
  return std::nullopt;
}

/// The folded value of elementwise op `op` on constants (its math in Ops.def), kept in
/// double (code generators round f32 constants when they emit them); nothing when the result
/// is not finite, or not a whole number for an integer type.
std::optional<double> foldScalar(Op op, double a, double b, DType dt) {
  std::optional<double> r = evalScalarMath(op, dt, a, b);
  if (!r || !std::isfinite(*r))
    return std::nullopt;
  if (!isFloat(dt) && std::trunc(*r) != *r)
    return std::nullopt;
  return r;
}

void foldGraph(Module &m, Graph &g) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node &n = *g.nodes[i];
    if (n.body)
      foldGraph(m, *n.body);
    if (!hasTrait(n.op, TR_ELEMENTWISE) || n.op == Op::Cast || n.op == Op::CmpGT || n.op == Op::CmpEQ)
      continue;
    std::optional<double> a = constValue(n.operands[0]);
    std::optional<double> b = n.operands.size() > 1 ? constValue(n.operands[1]) : 0.0;
    if (!a || !b)
      continue;
    auto r = foldScalar(n.op, *a, *b, n.results[0]->type.dtype);
    if (!r)
      continue;
    // Rewrite in place into a constant of the same (scalar) type.
    n.op = Op::Const;
    n.operands.clear();
    n.attrs = {{"value", *r}};
  }
}

std::string nodeKey(const Node &n) {
  std::string k = std::to_string(static_cast<int>(n.op)) + "(";
  for (const Value *o : n.operands)
    k += std::to_string(o->id) + ",";
  k += ")";
  for (const auto &[name, v] : n.attrs) {
    k += name + "=";
    std::visit([&](const auto &x) {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
        for (int64_t i : x)
          k += std::to_string(i) + ",";
      } else if constexpr (std::is_same_v<T, std::string>) {
        k += "\"" + x + "\"";
      } else {
        k += fmt::format("{}", x);
      }
    }, v);
    k += ";";
  }
  if (n.op == Op::Const || hasTrait(n.op, TR_RANDOM))
    k += n.results[0]->type.str();
  return k;
}

void cseGraph(Graph &g) {
  std::unordered_map<std::string, Node *> seen;
  std::unordered_map<Value *, Value *> repl; // duplicate result -> the kept one
  std::vector<std::unique_ptr<Node>> kept;
  for (auto &np : g.nodes) {
    Node &n = *np;
    for (Value *&o : n.operands)
      if (auto it = repl.find(o); it != repl.end())
        o = it->second;
    if (n.body)
      cseGraph(*n.body);
    bool pure = !hasTrait(n.op, TR_SINK) && !n.body && n.op != Op::Input && n.op != Op::Param && n.op != Op::Buffer;
    if (pure) {
      auto [it, fresh] = seen.emplace(nodeKey(n), &n);
      if (!fresh) {
        for (size_t i = 0; i < n.results.size(); ++i)
          repl[n.results[i]] = it->second->results[i];
        continue;
      }
    }
    kept.push_back(std::move(np));
  }
  for (Value *&y : g.yields)
    if (auto it = repl.find(y); it != repl.end())
      y = it->second;
  g.nodes = std::move(kept);
}

/// Removes dead nodes of g given which of its values are needed (yields, sinks' operands).
void dceGraph(Graph &g) {
  std::unordered_set<const Value *> live(g.yields.begin(), g.yields.end());
  std::vector<bool> keep(g.nodes.size(), false);
  for (size_t i = g.nodes.size(); i-- > 0;) {
    Node &n = *g.nodes[i];
    bool needed = hasTrait(n.op, TR_SINK);
    for (const Value *r : n.results)
      needed = needed || live.count(r);
    if (!needed)
      continue;
    keep[i] = true;
    if (n.body) {
      // Drop per-step outputs nobody reads, then captures the body no longer reads.
      Graph &b = *n.body;
      int64_t nseq = n.getInt("nseq"), ncarry = n.getInt("ncarry");
      std::vector<Value *> results, yields;
      for (size_t r = 0; r < n.results.size(); ++r) {
        bool isCarry = static_cast<int64_t>(r) < ncarry;
        if (isCarry || live.count(n.results[r])) {
          results.push_back(n.results[r]);
          yields.push_back(b.yields[r]);
        }
      }
      for (size_t r = 0; r < results.size(); ++r)
        results[r]->index = static_cast<unsigned>(r);
      n.results = results;
      b.yields = yields;
      dceGraph(b);
      std::unordered_set<const Value *> used(b.yields.begin(), b.yields.end());
      for (auto &bn : b.nodes)
        for (const Value *o : bn->operands)
          used.insert(o);
      std::vector<Value *> args, operands;
      for (size_t a = 0; a < b.args.size(); ++a) {
        bool capture = static_cast<int64_t>(a) >= nseq + ncarry;
        if (capture && !used.count(b.args[a]))
          continue;
        b.args[a]->index = static_cast<unsigned>(args.size());
        args.push_back(b.args[a]);
        operands.push_back(n.operands[a]);
      }
      b.args = args;
      n.operands = operands;
    }
    for (const Value *o : n.operands)
      live.insert(o);
  }
  std::vector<std::unique_ptr<Node>> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (keep[i])
      kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

} // namespace

void foldConstants(Module &m) {
  for (Graph *g : m.graphs())
    foldGraph(m, *g);
}

void eliminateCommonSubexpressions(Module &m) {
  for (Graph *g : m.graphs())
    cseGraph(*g);
}

void eliminateDeadCode(Module &m) {
  for (Graph *g : m.graphs())
    dceGraph(*g);
}

const std::vector<PassInfo> &allPasses() {
  static const std::vector<PassInfo> passes = {
      {"fold", "fold elementwise operations on constants", [](Module &m, Diagnostics &) { foldConstants(m); }, false},
      {"cse", "merge identical operations", [](Module &m, Diagnostics &) { eliminateCommonSubexpressions(m); }, false},
      {"dce", "remove operations whose results are unused", [](Module &m, Diagnostics &) { eliminateDeadCode(m); }, false},
      {"licm", "hoist loop-invariant operations out of scans", [](Module &m, Diagnostics &) { hoistLoopInvariants(m); }, true},
      {"hoist-projections", "compute a scan step's input times a captured matrix for every step in one matmul outside", [](Module &m, Diagnostics &) { hoistProjections(m); }, false},
      {"autodiff", "derive the backward pass (grad sinks)", differentiate, true},
      {"optimizer", "clip gradients and update parameters and optimizer state", [](Module &m, Diagnostics &) { addOptimizer(m); }, true},
      {"hoist-accumulations", "turn a scan's carried sums of per-step matmuls or sums into one over the stacked steps", [](Module &m, Diagnostics &) { hoistAccumulations(m); }, false},
      {"centered-sums", "split sums of linear combinations where a centred term sums to zero", [](Module &m, Diagnostics &) { cancelCenteredSums(m); }, false},
      {"fold-affine", "fold inference-mode per-feature affine maps (BatchNorm) into adjacent matmul weights", [](Module &m, Diagnostics &) { foldAffineIntoMatmul(m); }, false},
      {"one-pass-variance", "compute a variance from shifted first and second moments (one pass with the mean)", [](Module &m, Diagnostics &) { onePassVariance(m); }, false},
      {"sink-transposes", "transpose a scan's captured matrix inside the body when only its matmuls read it (the transpose folds into them)", [](Module &m, Diagnostics &) { sinkTransposes(m); }, false},
      {"pads-to-concat", "turn a sum of zero-padded blocks that tile one axis into a concat of the blocks", [](Module &m, Diagnostics &) { padsToConcat(m); }, false},
      {"early-allreduce", "move each gradient bucket's all-reduce up to where its last gradient is computed (overlapped with the rest of the backward pass)", [](Module &m, Diagnostics &) { startAllReducesEarly(m); }, false},
      // Loop-level and backend switches: they shape the lowering, not the graph (--disable-pass only).
      {"fuse", "loop level: fuse runs of elementwise work into single loops", nullptr, false},
      {"memory-plan", "loop level: share arena memory between values never alive together", nullptr, false},
      {"llvm-opt", "LLVM backend: LLVM's optimisation pipeline (--emit=llvm without it: the emitter's IR)", nullptr, false},
  };
  return passes;
}

const PassInfo *findPass(const std::string &name) {
  for (const PassInfo &p : allPasses())
    if (name == p.name)
      return &p;
  return nullptr;
}

} // namespace gradc
