// RewriteTest.cpp: the graph rewrites that cut passes over the data or move work out of
// scans (hoist-projections, hoist-accumulations, centered-sums, one-pass-variance,
// fold-affine) compute what the unrewritten graphs compute: in double
// precision, 100 training steps from the same state and batches give the same losses,
// parameters, buffers and optimizer state with and without them, and so do the inference
// outputs and validation losses afterwards. Prints the worst relative difference per model.
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "interp/Interpreter.h"
#include "driver/Pipeline.h"

namespace gradc {
namespace {

const std::vector<std::string> kRewrites = {"hoist-projections", "hoist-accumulations", "centered-sums", "one-pass-variance",
                                            "fold-affine"};

struct Compiled {
  SourceManager sm;
  std::ostringstream err;
  Diagnostics diag{sm, err};
  std::unique_ptr<Module> m;
};

std::unique_ptr<Compiled> compile(const std::string &text, const std::vector<std::string> &skip) {
  auto c = std::make_unique<Compiled>();
  uint32_t id = c->sm.add("test.model", text);
  try {
    c->m = compileModule(c->sm, c->diag, id, skip);
  } catch (const CompileError &) {
    ADD_FAILURE() << c->err.str();
    return nullptr;
  }
  return c;
}

/// max |a - b| / max(max |b|, 1e-6); infinite when either holds a non-finite value.
double relDiff(const DTensor &a, const DTensor &b) {
  double d = 0, ref = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    if (!std::isfinite(a.data[i]) || !std::isfinite(b.data[i]))
      return INFINITY;
    d = std::max(d, std::fabs(a.data[i] - b.data[i]));
    ref = std::max(ref, std::fabs(b.data[i]));
  }
  return d / std::max(ref, 1e-6);
}

/// The relative difference of two losses; infinite when either is not finite.
double lossDiff(double a, double b) {
  return std::isfinite(a) && std::isfinite(b) ? std::fabs(a - b) / std::max(std::fabs(b), 1e-12) : INFINITY;
}

/// Trains both versions of `text` for `steps` steps on the same random batches from the
/// same random state; returns the worst relative difference of anything they compute.
double compare(const std::string &name, const std::string &text, int steps = 100) {
  auto on = compile(text, {}), off = compile(text, kRewrites);
  if (!on || !off)
    return INFINITY;
  const Module &m = *on->m;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  TensorMap state;
  // Random parameters and running statistics; optimizer state and counters start at zero.
  for (const auto *list : {&m.params, &m.buffers, &m.optState})
    for (const StateDecl &s : *list) {
      DTensor d(s.type.shape);
      bool var = s.name.find("running_var") != std::string::npos;
      for (double &v : d.data)
        v = s.type.dtype == DType::F32 && list != &m.optState ? (var ? 0.5 + std::fabs(u(rng)) : 0.5 * u(rng)) : 0.0;
      state[s.name] = d;
    }
  TensorMap stateOff = state;
  auto batch = [&]() {
    TensorMap feeds;
    for (const auto *list : {&m.inputs, &m.targets})
      for (const TensorDecl &t : *list) {
        DTensor d(t.type.shape);
        for (double &v : d.data)
          v = 3 + 2 * u(rng); // off-centre data: the shifted variance must still be exact
        feeds[t.name] = d;
      }
    return feeds;
  };
  std::map<std::string, double> hypers = {{"lr", 0.01}};
  double worst = 0;
  for (int s = 0; s < steps; ++s) {
    TensorMap feeds = batch();
    RunResult a = interpret(*on->m->trainGraph, feeds, state, hypers);
    RunResult b = interpret(*off->m->trainGraph, feeds, stateOff, hypers);
    worst = std::max(worst, lossDiff(a.loss, b.loss));
    for (auto &[k, v] : a.updates)
      state[k] = v;
    for (auto &[k, v] : b.updates)
      stateOff[k] = v;
  }
  for (const auto &[k, v] : state) {
    double r = relDiff(v, stateOff.at(k));
    std::printf("  %-12s %-40s max_rel_diff %.3e\n", name.c_str(), k.c_str(), r);
    worst = std::max(worst, r);
  }
  TensorMap feeds = batch();
  RunResult ia = interpret(*on->m->inferGraph, feeds, state, hypers), ib = interpret(*off->m->inferGraph, feeds, stateOff, hypers);
  for (const auto &[k, v] : ia.outputs) {
    double r = relDiff(v, ib.outputs.at(k));
    std::printf("  %-12s infer output %-27s max_rel_diff %.3e\n", name.c_str(), k.c_str(), r);
    worst = std::max(worst, r);
  }
  RunResult ea = interpret(*on->m->evalGraph, feeds, state, hypers), eb = interpret(*off->m->evalGraph, feeds, stateOff, hypers);
  worst = std::max(worst, lossDiff(ea.loss, eb.loss));
  std::printf("  %-12s worst over %d steps, inference and validation: %.3e\n", name.c_str(), steps, worst);
  return worst;
}

std::string model(const std::string &decls, const std::string &graph, const std::string &optimizer = "adam(lr = 0.01)") {
  return "model t\nlet B = 8\n" + decls + "\ngraph {\n" + graph + "\n}\ntrain {\n  optimizer = " + optimizer + "\n}\n";
}

constexpr double kTol = 1e-9;

TEST(Rewrites, DenseBatchNormReluDense) {
  std::string m = model("input x: f32[B, 5]\ntarget y: f32[B, 2]\nlayer a = Dense(5, 6)\nlayer bn = BatchNorm(6)\nlayer d = Dense(6, 2)\n",
                        "  yhat = d(relu(bn(a(x))))\n  loss = mse(yhat, y)\n  output yhat", "sgd(lr = 0.05, momentum = 0.9)");
  EXPECT_LE(compare("dense_bn", m), kTol);
}

TEST(Rewrites, BatchNormOverSequence) {
  std::string m = model("input x: f32[B, 3, 5]\ntarget y: f32[B, 3, 2]\nlayer bn = BatchNorm(5)\nlayer d = Dense(5, 2)\n",
                        "  yhat = d(bn(x))\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(compare("bn_seq", m), kTol);
}

TEST(Rewrites, DenseThenBatchNorm) {
  // Dense -> BatchNorm: fold-affine folds the inference BatchNorm into the Dense before it.
  // SGD: the Dense bias's true gradient is zero (BatchNorm removes it), so what both
  // versions compute for it is rounding noise, which Adam would scale up to lr-sized steps.
  std::string m = model("input x: f32[B, 5]\ntarget y: f32[B, 3]\nlayer a = Dense(5, 3)\nlayer bn = BatchNorm(3)\n",
                        "  yhat = bn(a(x))\n  loss = mse(yhat, y)\n  output yhat", "sgd(lr = 0.05, momentum = 0.9)");
  EXPECT_LE(compare("dense_then_bn", m), kTol);
}

TEST(Rewrites, LayerNorm) {
  std::string m = model("input x: f32[B, 5]\ntarget y: f32[B, 2]\nlayer ln = LayerNorm(5)\nlayer d = Dense(5, 2)\n",
                        "  yhat = d(ln(x))\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(compare("layernorm", m), kTol);
}

TEST(Rewrites, LstmBatchNormDense) {
  std::string m = model("input x: f32[B, 4, 2]\ntarget y: f32[B, 1]\nlayer lstm = LSTM(2, 4)\nlayer bn = BatchNorm(4)\nlayer head = Dense(4, 1)\n",
                        "  h = lstm(x)\n  yhat = head(bn(h[:, -1, :]))\n  loss = mse(yhat, y)\n  output yhat", "adam(lr = 0.01)");
  EXPECT_LE(compare("lstm_bn", m, 30), kTol);
}

TEST(Rewrites, TwoLayerLstmLayerNorm) {
  std::string m = model("input x: f32[B, 5, 3]\ntarget y: f32[B, 1]\nlayer lstm = LSTM(3, 4, layers = 2)\nlayer ln = LayerNorm(4)\nlayer head = Dense(4, 1)\n",
                        "  h = lstm(x)\n  yhat = head(ln(h[:, -1, :]))\n  loss = mse(yhat, y)\n  output yhat", "adam(lr = 0.01)");
  EXPECT_LE(compare("lstm2_ln", m, 30), kTol);
}

} // namespace
} // namespace gradc
