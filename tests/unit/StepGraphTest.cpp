// StepGraphTest.cpp: --generate's step graph (elaborate/StepGraph.cpp) against the inference
// graph: run by the double-precision interpreter, T calls of the step graph on one sample,
// each fed the previous call's final carries, must give the logits of the inference graph at
// every position of that sample's window. For Embedding -> 2-layer LSTM, -> GRU, and -> BNLSTM
// (whose step index is a carry too: per-step running statistics). Prints the worst difference.
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "driver/Pipeline.h"
#include "interp/Interpreter.h"

namespace gradc {
namespace {

constexpr int kB = 3, kT = 5, kV = 7;

std::string textModel(const std::string &rnn, int width) {
  return "model step_test\nlet B = " + std::to_string(kB) + "\nlet T = " + std::to_string(kT) +
         "\ninput x: i32[B, T]\ntarget y: i32[B, T]\nlayer emb = Embedding(" + std::to_string(kV) + ", 4)\nlayer rnn = " + rnn +
         "\nlayer head = Dense(" + std::to_string(width) + ", " + std::to_string(kV) +
         ")\ngraph {\n  logits = head(rnn(emb(x)))\n  loss = cross_entropy(logits, y)\n  output logits\n}\n"
         "train {\n  optimizer = adam(lr = 0.01)\n  data = text(\"any.txt\", length = T)\n}\n";
}

/// The worst |step - infer| over every logit of every sample and position.
double stepVsInfer(const std::string &rnn, int width) {
  SourceManager sm;
  std::ostringstream err;
  Diagnostics diag(sm, err);
  std::unique_ptr<Module> m;
  try {
    m = compileModule(sm, diag, sm.add("step_test.model", textModel(rnn, width)));
  } catch (const CompileError &) {
    ADD_FAILURE() << err.str();
    return INFINITY;
  }
  if (!m->stepGraph) {
    ADD_FAILURE() << "no step graph: " << m->stepWhy;
    return INFINITY;
  }
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  TensorMap state, feeds;
  for (const auto *list : {&m->params, &m->buffers, &m->optState})
    for (const StateDecl &s : *list) {
      DTensor d(s.type.shape);
      const bool var = s.name.find("running_var") != std::string::npos;
      for (double &v : d.data)
        v = s.type.dtype == DType::F32 ? (var ? 0.5 + std::fabs(u(rng)) : u(rng)) : 3;
      state[s.name] = d;
    }
  DTensor x({kB, kT});
  for (double &v : x.data)
    v = static_cast<double>(rng() % kV);
  feeds["x"] = x;
  feeds["y"] = x;
  const DTensor want = interpret(*m->inferGraph, feeds, state, {}).outputs.at("logits");
  double worst = 0;
  for (int b = 0; b < kB; ++b) {
    TensorMap in;
    for (size_t k = 1; k < m->stepInputs.size(); ++k)
      in[m->stepInputs[k].name] = DTensor(m->stepInputs[k].type.shape); // carries start at zero
    for (int t = 0; t < kT; ++t) {
      in["x"] = DTensor({1, 1}, x.data[b * kT + t]);
      RunResult r = interpret(*m->stepGraph, in, state, {});
      const DTensor &got = r.outputs.at("logits");
      for (int j = 0; j < kV; ++j)
        worst = std::max(worst, std::fabs(got.data[j] - want.data[(b * kT + t) * kV + j]));
      for (size_t k = 1; k < m->stepInputs.size(); ++k)
        in[m->stepInputs[k].name] = r.outputs.at(m->stepInputs[k].name);
    }
  }
  std::printf("step graph vs infer graph, %-32s worst |difference| %.3g\n", rnn.c_str(), worst);
  return worst;
}

TEST(StepGraph, LstmStepsEqualTheWindow) { EXPECT_LT(stepVsInfer("LSTM(4, 6, layers = 2, dropout = 0.3)", 6), 1e-12); }
TEST(StepGraph, GruStepsEqualTheWindow) { EXPECT_LT(stepVsInfer("GRU(4, 5)", 5), 1e-12); }
TEST(StepGraph, BnlstmStepsEqualTheWindow) { EXPECT_LT(stepVsInfer("BNLSTM(4, 6, " + std::to_string(kT) + ")", 6), 1e-12); }

TEST(StepGraph, OnlyTextModelsHaveOne) {
  SourceManager sm;
  std::ostringstream err;
  Diagnostics diag(sm, err);
  std::string text = textModel("LSTM(4, 6)", 6);
  text.replace(text.find("text(\"any.txt\", length = T)"), 27, "tensors(\"any.safetensors\")");
  auto m = compileModule(sm, diag, sm.add("m.model", text));
  EXPECT_EQ(m->stepGraph, nullptr);
  EXPECT_TRUE(m->stepInputs.empty());
}

} // namespace
} // namespace gradc
