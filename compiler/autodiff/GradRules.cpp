// GradRules.cpp: the gradient table: one vector-Jacobian product per op, written in terms
// of the graph's own primitives. An op missing here cannot be differentiated.
#include "autodiff/AutodiffImpl.h"

namespace gradc {

namespace {

// Each rule: n's operands x0, x1..., results y; dy[0] is the result's cotangent.

// z = a + b
void vjpAdd(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.unbroadcast(dy[0], n.operands[0]->type.shape);
  dx[1] = c.unbroadcast(dy[0], n.operands[1]->type.shape);
}

// z = a - b
void vjpSub(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.unbroadcast(dy[0], n.operands[0]->type.shape);
  dx[1] = c.unbroadcast(c.neg(dy[0]), n.operands[1]->type.shape);
}

// z = a * b
void vjpMul(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.unbroadcast(c.mul(dy[0], c.x(n, 1)), n.operands[0]->type.shape);
  dx[1] = c.unbroadcast(c.mul(dy[0], c.x(n, 0)), n.operands[1]->type.shape);
}

// z = a / b: da = dz / b, db = -dz * z / b
void vjpDiv(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *q = c.div(dy[0], c.x(n, 1));
  dx[0] = c.unbroadcast(q, n.operands[0]->type.shape);
  dx[1] = c.unbroadcast(c.neg(c.mul(q, c.y(n))), n.operands[1]->type.shape);
}

// z = maximum(a, b) / minimum(a, b): the chosen side gets dz; ties split it evenly.
void vjpMinMax(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *a = c.x(n, 0), *b = c.x(n, 1);
  Value *wins = n.op == Op::Maximum ? c.op(Op::CmpGT, {a, b}) : c.op(Op::CmpGT, {b, a});
  Value *ma = c.add(wins, c.mul(c.scalar(0.5), c.op(Op::CmpEQ, {a, b})));
  Value *shape = c.mul(dy[0], ma);
  dx[0] = c.unbroadcast(shape, n.operands[0]->type.shape);
  dx[1] = c.unbroadcast(c.sub(dy[0], shape), n.operands[1]->type.shape);
}

// Piecewise constant: no gradient.
void vjpZero(GradCtx &, Node &, const std::vector<Value *> &, std::vector<Value *> &) {}

void vjpNeg(GradCtx &c, Node &, const std::vector<Value *> &dy, std::vector<Value *> &dx) { dx[0] = c.neg(dy[0]); }

// y = allreduce_sum(x): every rank's y depends on every rank's x, so dx is the sum of all
// ranks' dy (the gradient of the sum of the ranks' losses).
void vjpAllReduceSum(GradCtx &c, Node &, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.op(Op::AllReduceSum, {dy[0]});
}

// y = exp(x): dx = dy * y
void vjpExp(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.mul(dy[0], c.y(n));
}

// y = log(x): dx = dy / x
void vjpLog(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.div(dy[0], c.x(n, 0));
}

// y = sqrt(x): dx = dy * 0.5 / y
void vjpSqrt(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.div(c.mul(dy[0], c.scalar(0.5)), c.y(n));
}

// y = x^-1/2: dx = -0.5 * dy * y^3
void vjpRsqrt(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *y = c.y(n);
  dx[0] = c.mul(c.mul(dy[0], c.scalar(-0.5)), c.mul(y, c.mul(y, y)));
}

// y = sigmoid(x): dx = dy * y * (1 - y)
void vjpSigmoid(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *y = c.y(n);
  dx[0] = c.mul(dy[0], c.mul(y, c.sub(c.scalar(1), y)));
}

// y = tanh(x): dx = dy * (1 - y^2)
void vjpTanh(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *y = c.y(n);
  dx[0] = c.mul(dy[0], c.sub(c.scalar(1), c.mul(y, y)));
}

// y = softplus(x): dx = dy * sigmoid(x)
void vjpSoftplus(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.mul(dy[0], c.op(Op::Sigmoid, {n.operands[0]}));
}

// y = relu(x): dx = dy * [x > 0]
void vjpRelu(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *x = c.x(n, 0);
  dx[0] = c.mul(dy[0], c.op(Op::CmpGT, {x, c.scalar(0, x->type.dtype)}));
}

// y = |x|: dx = dy * sign(x)
void vjpAbs(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.mul(dy[0], c.op(Op::Sign, {c.x(n, 0)}));
}

// Cast: float to float passes the gradient; integers have none.
void vjpCast(GradCtx &, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  if (n.operands[0]->type.dtype == DType::F32 && n.results[0]->type.dtype == DType::F32)
    dx[0] = dy[0];
}

// C[..., M, N] = A[..., M, K] @ B[..., K, N]: dA = dC @ B^T, dB = A^T @ dC (batch axes summed).
void vjpMatMul(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *a = c.x(n, 0), *b = c.x(n, 1), *g = dy[0];
  const auto &as = a->type.shape, &bs = b->type.shape;
  dx[0] = c.unbroadcast(c.op(Op::MatMul, {g, c.transposeLast(b)}), as);
  if (bs.size() == 2 && as.size() > 2) {
    // A shared weight: fold the batch axes into M, one [K, R] @ [R, N] product.
    int64_t rows = a->type.numel() / as.back();
    Value *a2 = c.reshape(a, {rows, as.back()});
    Value *g2 = c.reshape(g, {rows, g->type.shape.back()});
    dx[1] = c.op(Op::MatMul, {c.transposeLast(a2), g2});
  } else {
    dx[1] = c.unbroadcast(c.op(Op::MatMul, {c.transposeLast(a), g}), bs);
  }
}

// y = row(x, i) = x[i]: dx = zeros with dy in row i (the index has no gradient)
void vjpRow(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.op(Op::SetRow, {c.fill(0.0, n.operands[0]->type), c.x(n, 1), dy[0]});
}

// y = set_row(x, i, v): dx = dy with row i zeroed, dv = dy[i]
void vjpSetRow(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *i = c.x(n, 1);
  dx[0] = c.op(Op::SetRow, {dy[0], i, c.fill(0.0, n.operands[2]->type)});
  dx[2] = c.op(Op::Row, {dy[0], i});
}

// y = transpose(x, perm): dx = transpose(dy, inverse(perm))
void vjpTranspose(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  const auto &perm = n.getInts("perm");
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i)
    inv[perm[i]] = static_cast<int64_t>(i);
  dx[0] = c.op(Op::Transpose, {dy[0]}, {{"perm", inv}});
}

void vjpReshape(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.reshape(dy[0], n.operands[0]->type.shape);
}

void vjpBroadcastTo(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.unbroadcast(dy[0], n.operands[0]->type.shape);
}

// y = x[begin:end]: dx = zeros with dy placed at begin
void vjpSlice(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = c.op(Op::Pad, {dy[0]}, {{"begin", n.getInts("begin")}, {"shape", n.operands[0]->type.shape}});
}

// y = pad(x, begin): dx = dy[begin : begin + x.shape]
void vjpPad(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  std::vector<int64_t> begin = n.getInts("begin"), end = begin;
  for (size_t i = 0; i < end.size(); ++i)
    end[i] += n.operands[0]->type.shape[i];
  dx[0] = c.op(Op::Slice, {dy[0]}, {{"begin", begin}, {"end", end}});
}

// y = concat(x0, x1, ..., axis): each dx_i is its slice of dy
void vjpConcat(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  int64_t axis = n.getInt("axis"), off = 0;
  for (size_t i = 0; i < n.operands.size(); ++i) {
    const auto &s = n.operands[i]->type.shape;
    std::vector<int64_t> begin(s.size(), 0), end = dy[0]->type.shape;
    begin[axis] = off;
    end[axis] = off + s[axis];
    off += s[axis];
    dx[i] = c.op(Op::Slice, {dy[0]}, {{"begin", begin}, {"end", end}});
  }
}

/// dy of a reduction, reshaped to keep the reduced axes, then broadcast to x's shape.
Value *expandReduced(GradCtx &c, Node &n, Value *g) {
  std::vector<int64_t> kept = n.operands[0]->type.shape;
  for (int64_t a : n.getInts("axes"))
    kept[a] = 1;
  return c.broadcastTo(c.reshape(g, kept), n.operands[0]->type.shape);
}

void vjpSum(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  dx[0] = expandReduced(c, n, dy[0]);
}

// mean: dx = dy / count, broadcast back
void vjpMean(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  int64_t count = 1;
  for (int64_t a : n.getInts("axes"))
    count *= n.operands[0]->type.shape[a];
  dx[0] = expandReduced(c, n, c.mul(dy[0], c.scalar(1.0 / static_cast<double>(count))));
}

// max: dy goes to the maxima, shared evenly among ties
void vjpMax(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *x = c.x(n, 0);
  Value *mask = c.op(Op::CmpEQ, {x, expandReduced(c, n, c.y(n))});
  Value *count = c.op(Op::Sum, {mask}, {{"axes", n.getInts("axes")}, {"keepdims", int64_t{1}}});
  dx[0] = c.mul(mask, c.div(expandReduced(c, n, dy[0]), c.broadcastTo(count, x->type.shape)));
}

// mse = mean((a - b)^2): da = dy * 2 (a - b) / N, db = -da
void vjpMse(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  double scale = 2.0 / static_cast<double>(n.operands[0]->type.numel());
  Value *d = c.mul(c.sub(c.x(n, 0), c.x(n, 1)), c.mul(dy[0], c.scalar(scale)));
  dx[0] = d;
  dx[1] = c.neg(d);
}

// cross_entropy(logits [B,C], labels [B]): dlogits = dy * (softmax(logits) - onehot(labels)) / B
void vjpCrossEntropy(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *x = c.x(n, 0);
  const auto &s = x->type.shape;
  Value *m = c.op(Op::Max, {x}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{1}}});
  Value *e = c.op(Op::Exp, {c.sub(x, m)});
  Value *z = c.op(Op::Sum, {e}, {{"axes", std::vector<int64_t>{1}}, {"keepdims", int64_t{1}}});
  Value *p = c.div(e, z);
  Value *oh = c.op(Op::OneHot, {c.x(n, 1)}, {{"classes", s[1]}});
  dx[0] = c.mul(c.sub(p, oh), c.mul(dy[0], c.scalar(1.0 / static_cast<double>(s[0]))));
}

// bce_with_logits(x, t) = mean(max(x,0) - x t + log(1 + exp(-|x|))):
// dx = dy (sigmoid(x) - t) / N, dt = -dy x / N
void vjpBce(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *x = c.x(n, 0), *t = c.x(n, 1);
  Value *g = c.mul(dy[0], c.scalar(1.0 / static_cast<double>(x->type.numel())));
  dx[0] = c.mul(c.sub(c.op(Op::Sigmoid, {x}), t), g);
  dx[1] = c.neg(c.mul(x, g));
}

// y = gather(table [N, D], indices): dtable = scatter_add(dy, indices) (row `padding` stays zero);
// the integer indices get none.
void vjpGather(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  const int64_t rows = n.operands[0]->type.shape[0];
  dx[0] = c.op(Op::ScatterAdd, {dy[0], c.x(n, 1)}, {{"rows", rows}, {"padding", n.getInt("padding")}});
}

// y = scatter_add(x, indices): dx = gather(dy with row `padding` zeroed, indices) (an index
// outside the table gathers zeros, as scatter_add skipped it).
void vjpScatterAdd(GradCtx &c, Node &n, const std::vector<Value *> &dy, std::vector<Value *> &dx) {
  Value *g = dy[0];
  const int64_t pad = n.getInt("padding");
  if (pad >= 0) {
    const std::vector<int64_t> s = g->type.shape;
    Value *row = c.op(Op::Slice, {g}, {{"begin", std::vector<int64_t>{pad, 0}}, {"end", std::vector<int64_t>{pad + 1, s[1]}}});
    g = c.sub(g, c.op(Op::Pad, {row}, {{"begin", std::vector<int64_t>{pad, 0}}, {"shape", s}}));
  }
  dx[0] = c.op(Op::Gather, {g, c.x(n, 1)}, {{"padding", int64_t{-1}}});
}

} // namespace

const GradRuleTable &gradRules() {
  static const GradRuleTable t = [] {
    GradRuleTable r{};
    auto set = [&](Op o, VjpRule f) { r[static_cast<size_t>(o)] = f; };
    set(Op::Add, vjpAdd);
    set(Op::Sub, vjpSub);
    set(Op::Mul, vjpMul);
    set(Op::Div, vjpDiv);
    set(Op::Maximum, vjpMinMax);
    set(Op::Minimum, vjpMinMax);
    set(Op::CmpGT, vjpZero);
    set(Op::CmpEQ, vjpZero);
    set(Op::Sign, vjpZero);
    set(Op::OneHot, vjpZero);
    set(Op::Gather, vjpGather);
    set(Op::ScatterAdd, vjpScatterAdd);
    set(Op::Neg, vjpNeg);
    set(Op::Exp, vjpExp);
    set(Op::Log, vjpLog);
    set(Op::Sqrt, vjpSqrt);
    set(Op::Rsqrt, vjpRsqrt);
    set(Op::Sigmoid, vjpSigmoid);
    set(Op::Tanh, vjpTanh);
    set(Op::Relu, vjpRelu);
    set(Op::Softplus, vjpSoftplus);
    set(Op::Abs, vjpAbs);
    set(Op::Cast, vjpCast);
    set(Op::MatMul, vjpMatMul);
    set(Op::Row, vjpRow);
    set(Op::SetRow, vjpSetRow);
    set(Op::Transpose, vjpTranspose);
    set(Op::Reshape, vjpReshape);
    set(Op::BroadcastTo, vjpBroadcastTo);
    set(Op::Slice, vjpSlice);
    set(Op::Pad, vjpPad);
    set(Op::Concat, vjpConcat);
    set(Op::Sum, vjpSum);
    set(Op::Mean, vjpMean);
    set(Op::Max, vjpMax);
    set(Op::Mse, vjpMse);
    set(Op::CrossEntropy, vjpCrossEntropy);
    set(Op::BceWithLogits, vjpBce);
    set(Op::Scan, vjpScan);
    set(Op::AllReduceSum, vjpAllReduceSum);
    return r;
  }();
  return t;
}

} // namespace gradc
