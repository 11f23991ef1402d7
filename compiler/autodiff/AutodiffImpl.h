// AutodiffImpl.h: the context gradient rules build in, and the rule table's interface.
#pragma once

#include <array>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "autodiff/Autodiff.h"
#include "ir/Builder.h"
#include "ir/IR.h"

namespace gradc {

class GradCtx;

/// A vector-Jacobian product: given the forward node and its results' cotangents (null
/// where none), sets the cotangent of each operand (null where none).
using VjpRule = void (*)(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx);

/// The gradient rules, indexed by op (null where an op has no rule).
using GradRuleTable = std::array<VjpRule, kNumOps>;

/// The table of every op's rule (GradRules.cpp).
const GradRuleTable &gradRules();

/// The values that depend on a parameter (and so need a cotangent).
using ValueSet = std::unordered_set<const Value *>;
/// Each value's cotangent so far.
using CotangentMap = std::unordered_map<const Value *, Value *>;

/// Where a gradient rule builds: a NodeBuilder on the target graph (its `loc` is the
/// forward node being differentiated), plus what is autodiff's own: how forward values
/// reach the target graph (identity at top level; inside a reverse scan, through saved
/// per-step residuals), which values are active, the rule table, and the cotangents
/// accumulated so far in this graph.
class GradCtx : public NodeBuilder {
public:
  /// A context building into `target`, the top-level graph.
  GradCtx(Module &m, Graph *target, Diagnostics &diag, const ValueSet &active, const GradRuleTable &rules)
      : NodeBuilder(m, target, SrcLoc{}, "autodiff"), diag(diag), active(active), rules(rules) {}
  /// A context building into `target`, nested in `outer` (a reverse scan's body): the same
  /// diagnostics, activity and rules, its own cotangents.
  GradCtx(const GradCtx &outer, Graph *target) : GradCtx(outer.module(), target, outer.diag, outer.active, outer.rules) {}

  Diagnostics &diag;
  const ValueSet &active;      ///< Activity of every value of the module's training graph.
  const GradRuleTable &rules;  ///< The rule of each op.
  CotangentMap ct;             ///< The cotangents of the graph being differentiated.
  std::function<Value *(Value *)> use = [](Value *v) { return v; };

  Value *x(const Node &n, size_t i) { return use(n.operands.at(i)); }
  Value *y(const Node &n, size_t i = 0) { return use(n.results.at(i)); }

  /// Adds g to v's cotangent.
  void accumulate(const Value *v, Value *g);
};

/// Appends m.trainGraph's backward pass as `differentiate` does, with the rules of `rules`
/// (an op whose entry is null is a diagnostic at its node's location).
void differentiate(Module &m, Diagnostics &diag, const GradRuleTable &rules);

/// The scan's rule (in Autodiff.cpp: it needs the reverse sweep).
void vjpScan(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx);

} // namespace gradc
