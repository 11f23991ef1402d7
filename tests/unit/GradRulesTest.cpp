// GradRulesTest.cpp: the gradient rule table: every op that computes has a rule, and an op
// without one is a clean `file:line:col: error: ...` diagnostic (CompileError) at the
// forward node's location rather than a crash, while the full table differentiates the
// same graph into a well-formed one with a grad sink.
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "autodiff/AutodiffImpl.h"
#include "ir/Builder.h"

namespace gradc {
namespace {

/// A hand-built training graph, loss = sum(sigmoid(x * p)), whose sigmoid sits at
/// test.model:3:10.
struct SigmoidModel {
  SourceManager sm;
  std::ostringstream err;
  Diagnostics diag{sm, err};
  Module m;

  SigmoidModel() {
    uint32_t id = sm.add("test.model", "model m\nparam p: f32[3]\nloss = sum(sigmoid(x * p))\n");
    m.name = "m";
    m.params.push_back({"p", TensorType{DType::F32, {3}}, Init{}, SrcLoc{id, 2, 1}});
    m.trainGraph = std::make_unique<Graph>();
    m.trainGraph->name = "train";
    NodeBuilder b(m, m.trainGraph.get(), SrcLoc{id, 3, 1}, "test");
    Value *x = b.source(Op::Input, {DType::F32, {3}}, {{"name", std::string("x")}}, "x");
    Value *p = b.source(Op::Param, {DType::F32, {3}}, {{"name", std::string("p")}}, "p");
    Value *xp = b.mul(x, p);
    b.loc = SrcLoc{id, 3, 10};
    Value *s = b.op(Op::Sigmoid, {xp});
    b.loc = SrcLoc{id, 3, 8};
    b.sink(Op::Loss, b.sum(s, {0}), {});
  }
};

TEST(GradRules, EveryComputingOpHasARule) {
  std::string missing;
  for (size_t i = 0; i < kNumOps; ++i) {
    Op op = static_cast<Op>(i);
    if (!hasTrait(op, TR_SOURCE) && !hasTrait(op, TR_SINK) && !gradRules()[i])
      missing += std::string(" ") + opInfo(op).name;
  }
  EXPECT_EQ(missing, "") << "ops without a gradient rule:" << missing;
}

TEST(GradRules, FullTableDifferentiates) {
  SigmoidModel t;
  ASSERT_NO_THROW(differentiate(t.m, t.diag));
  EXPECT_EQ(t.err.str(), "");
  EXPECT_TRUE(verifyModule(t.m).empty());
  int grads = 0;
  for (const auto &n : t.m.trainGraph->nodes)
    grads += n->op == Op::Grad;
  EXPECT_EQ(grads, 1);
}

TEST(GradRules, MissingRuleIsADiagnostic) {
  SigmoidModel t;
  GradRuleTable rules = gradRules();
  rules[static_cast<size_t>(Op::Sigmoid)] = nullptr;
  EXPECT_THROW(differentiate(t.m, t.diag, rules), CompileError);
  EXPECT_EQ(t.diag.errorCount(), 1u);
  const std::string out = t.err.str();
  EXPECT_EQ(out.rfind("test.model:3:10: error: cannot differentiate the loss: no gradient rule for op 'sigmoid'", 0), 0u)
      << out;
}

} // namespace
} // namespace gradc
