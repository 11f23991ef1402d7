// GradCheckTest.cpp: autodiff's gradients, run by the double-precision interpreter, against
// central finite differences of the loss, for every primitive family and every standard
// layer (Dense, LSTM with 1 and 2 layers, BatchNorm in training mode, a BatchNorm inside a
// recurrence, LayerNorm, the three losses). Prints the worst relative error per parameter:
// max |ad - fd| / max(max |fd|, 1e-6) over the checked elements.
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "interp/Interpreter.h"
#include "driver/Pipeline.h"

namespace gradc {
namespace {

struct Compiled {
  SourceManager sm;
  std::ostringstream err;
  Diagnostics diag{sm, err};
  std::unique_ptr<Module> m;
};

std::unique_ptr<Compiled> compile(const std::string &text) {
  auto c = std::make_unique<Compiled>();
  uint32_t id = c->sm.add("test.model", text);
  try {
    c->m = compileModule(c->sm, c->diag, id);
  } catch (const CompileError &) {
    ADD_FAILURE() << c->err.str();
    return nullptr;
  }
  return c;
}

/// Random state and feeds (labels in [0, classes) for integer targets).
void randomize(const Module &m, TensorMap &state, TensorMap &feeds, unsigned seed, int classes) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  auto fill = [&](const TensorType &t, bool positive) {
    DTensor d(t.shape);
    for (double &v : d.data)
      v = t.dtype == DType::F32 ? (positive ? 0.5 + std::fabs(u(rng)) : u(rng)) : static_cast<double>(rng() % classes);
    return d;
  };
  for (const auto *list : {&m.params, &m.buffers, &m.optState})
    for (const StateDecl &s : *list)
      state[s.name] = fill(s.type, s.name.find("running_var") != std::string::npos);
  for (const auto *list : {&m.inputs, &m.targets})
    for (const TensorDecl &t : *list)
      feeds[t.name] = fill(t.type, false);
}

/// Checks every parameter's gradient against central differences; returns the worst error.
double gradcheck(const std::string &name, const std::string &text, int classes = 3) {
  auto c = compile(text);
  if (!c)
    return INFINITY;
  const Module &m = *c->m;
  TensorMap state, feeds;
  randomize(m, state, feeds, 1234, classes);
  std::map<std::string, double> hypers = {{"lr", 0.01}};
  RunResult base = interpret(*m.trainGraph, feeds, state, hypers);
  double worst = 0;
  for (const StateDecl &p : m.params) {
    const DTensor &g = base.grads.at(p.name);
    DTensor &w = state.at(p.name);
    double maxDiff = 0, maxRef = 0;
    int64_t n = w.numel(), stride = std::max<int64_t>(1, n / 48);
    for (int64_t i = 0; i < n; i += stride) {
      double orig = w.data[i], h = 1e-4 * std::max(1.0, std::fabs(orig));
      w.data[i] = orig + h;
      double lp = interpret(*m.trainGraph, feeds, state, hypers).loss;
      w.data[i] = orig - h;
      double lm = interpret(*m.trainGraph, feeds, state, hypers).loss;
      w.data[i] = orig;
      double fd = (lp - lm) / (2 * h);
      maxDiff = std::max(maxDiff, std::fabs(fd - g.data[i]));
      maxRef = std::max(maxRef, std::fabs(fd));
    }
    // Relative to the gradient's scale; a gradient that is truly zero (a bias feeding a
    // BatchNorm) is compared absolutely, below 1e-6.
    double rel = maxDiff / std::max(maxRef, 1e-6);
    std::printf("  %-14s %-28s max_rel_err %.3e\n", name.c_str(), p.name.c_str(), rel);
    worst = std::max(worst, rel);
  }
  return worst;
}

const char *kHead = "model t\nlet B = 4\n";
constexpr double kTol = 1e-6;

std::string model(const std::string &decls, const std::string &graph, const std::string &train = "") {
  return std::string(kHead) + decls + "\ngraph {\n" + graph + "\n}\ntrain {\n  optimizer = sgd(lr = 0.1)\n" + train + "}\n";
}

TEST(GradCheck, ElementwisePrimitives) {
  std::string m = model(
      "input x: f32[B, 3]\ntarget y: f32[B, 3]\n"
      "layer P() {\n  param a: f32[3] = uniform(-1, 1)\n  param b: f32[B, 3] = uniform(-1, 1)\n"
      "  forward(x) {\n"
      "    u = x * a + b - x / (2 + a * a)\n"
      "    v = sigmoid(u) * tanh(u) + exp(-u * u) + relu(u - 0.1) + abs(u + 0.2)\n"
      "    w = sqrt(v * v + 1) + rsqrt(v * v + 2) + log(v * v + 3) + maximum(u, v) + minimum(u, -v)\n"
      "    return -w\n  }\n}\nlayer p = P()\n",
      "  yhat = p(x)\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(gradcheck("elementwise", m), kTol);
}

TEST(GradCheck, ShapesAndReductions) {
  std::string m = model(
      "input x: f32[B, 3, 2]\ntarget y: f32[B, 1]\n"
      "layer P() {\n  param a: f32[2, 3] = uniform(-1, 1)\n  param c: f32[3, 2] = uniform(-1, 1)\n"
      "  forward(x) {\n"
      "    t = transpose(x) * a\n"                                   // [B,2,3]
      "    r = reshape(t, dim(x, 0), 6)\n"
      "    s = concat(r[:, 1:4], r[:, 0:2], axis = 1)\n"              // [B,5]
      "    m = sum(s * s, axis = 1, keepdims = true) + mean(x * c, axis = [1, 2], keepdims = true)[:, :, 0]\n"
      "    q = max(x + c, axis = 2)\n"                                 // [B,3]
      "    return m + mean(q, axis = 1, keepdims = true) + transpose(x, [0, 2, 1])[:, -1, 1:2]\n  }\n}\nlayer p = P()\n",
      "  yhat = p(x)\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(gradcheck("shapes", m), kTol);
}

TEST(GradCheck, MatmulBatched) {
  std::string m = model(
      "input x: f32[B, 3, 2]\ntarget y: f32[B, 3, 4]\n"
      "layer P() {\n  param w: f32[2, 4] = uniform(-1, 1)\n  param v: f32[B, 4, 4] = uniform(-1, 1)\n"
      "  forward(x) {\n    return (x @ w) @ v\n  }\n}\nlayer p = P()\n",
      "  yhat = p(x)\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(gradcheck("matmul", m), kTol);
}

TEST(GradCheck, DenseMse) {
  std::string m = model("input x: f32[B, 5]\ntarget y: f32[B, 2]\nlayer d = Dense(5, 2)\n",
                        "  yhat = d(x)\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(gradcheck("dense", m), kTol);
}

TEST(GradCheck, CrossEntropy) {
  std::string m = model("input x: f32[B, 5]\ntarget y: i32[B]\nlayer d = Dense(5, 3)\n",
                        "  logits = d(x)\n  loss = cross_entropy(logits, y)\n  output logits");
  EXPECT_LE(gradcheck("cross_entropy", m), kTol);
}

TEST(GradCheck, BceWithLogits) {
  std::string m = model("input x: f32[B, 5]\ntarget y: f32[B, 2]\nlayer d = Dense(5, 2)\n",
                        "  z = d(x)\n  loss = bce_with_logits(z, sigmoid(y))\n  output z");
  EXPECT_LE(gradcheck("bce", m), kTol);
}

TEST(GradCheck, Lstm1) {
  std::string m = model("input x: f32[B, 5, 2]\ntarget y: f32[B, 1]\nlayer lstm = LSTM(2, 3)\nlayer head = Dense(3, 1)\n",
                        "  hs = lstm(x)\n  yhat = head(hs[:, -1, :])\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(gradcheck("lstm1", m), kTol);
}

TEST(GradCheck, Lstm2UsesEveryStep) {
  std::string m = model("input x: f32[B, 4, 2]\ntarget y: f32[B, 4, 3]\nlayer lstm = LSTM(2, 3, layers = 2)\n",
                        "  hs = lstm(x)\n  loss = mse(hs, y)\n  output hs");
  EXPECT_LE(gradcheck("lstm2", m), kTol);
}

TEST(GradCheck, BatchNormTraining) {
  std::string m = model("input x: f32[B, 3, 5]\ntarget y: f32[B, 3, 2]\nlayer bn = BatchNorm(5)\nlayer d = Dense(5, 2)\n",
                        "  yhat = d(relu(bn(x)))\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(gradcheck("batchnorm", m), kTol);
}

TEST(GradCheck, LayerNorm) {
  std::string m = model("input x: f32[B, 5]\ntarget y: f32[B, 2]\nlayer ln = LayerNorm(5)\nlayer d = Dense(5, 2)\n",
                        "  yhat = d(ln(x))\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(gradcheck("layernorm", m), kTol);
}

TEST(GradCheck, GateBatchNormInsideRecurrence) {
  std::string m = model(
      "input x: f32[B, 4, 1]\ntarget y: f32[B, 1]\n"
      "layer Cell(in, hidden) {\n  let k = 1 / sqrt(hidden)\n"
      "  param weight_ih: f32[4 * hidden, in] = uniform(-k, k)\n  param weight_hh: f32[4 * hidden, hidden] = uniform(-k, k)\n"
      "  param bias: f32[4 * hidden] = uniform(-k, k)\n"
      "  for g in 0 .. 4 {\n    layer bn{g} = BatchNorm(hidden)\n  }\n"
      "  forward(x) {\n    let H = hidden\n"
      "    return scan xt in x along 1 carry (h = zeros(dim(x, 0), H), c = zeros(dim(x, 0), H)) {\n"
      "      gates = xt @ transpose(weight_ih) + h @ transpose(weight_hh) + bias\n"
      "      i = sigmoid(bn0(gates[:, 0:H]))\n      f = sigmoid(bn1(gates[:, H:2*H]))\n"
      "      g = tanh(bn2(gates[:, 2*H:3*H]))\n      o = sigmoid(bn3(gates[:, 3*H:4*H]))\n"
      "      c = f * c + i * g\n      h = o * tanh(c)\n      yield h\n    }\n  }\n}\n"
      "layer cell = Cell(1, 3)\nlayer head = Dense(3, 1)\n",
      "  hs = cell(x)\n  yhat = head(hs[:, -1, :])\n  loss = mse(yhat, y)\n  output yhat");
  EXPECT_LE(gradcheck("gate_bn", m), kTol);
}

TEST(GradCheck, ReverseScanAndClipping) {
  std::string m = model("input x: f32[B, 4, 2]\ntarget y: f32[B, 2]\n"
                        "layer R(n) {\n  param w: f32[n, n] = uniform(-1, 1)\n"
                        "  forward(x) {\n    s = scan reverse xt in x along 1 carry (h = zeros(dim(x, 0), n)) {\n"
                        "      h = tanh(xt + h @ w)\n      yield h\n    }\n    return s[:, 0, :]\n  }\n}\nlayer r = R(2)\n",
                        "  yhat = r(x)\n  loss = mse(yhat, y)\n  output yhat", "  clip_grad_norm = 0.5\n");
  EXPECT_LE(gradcheck("reverse_scan", m), kTol);
}

} // namespace
} // namespace gradc
