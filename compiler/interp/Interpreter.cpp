// Interpreter.cpp: executes the graph IR op by op on DTensors, in double precision.
// Simple loops over multi-indices: slow, short and easy to check.
#include "interp/Interpreter.h"
#include "ir/ScalarMath.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <unordered_map>

#include <fmt/format.h>

#include "Mpi.h"
#include "Philox.h"
#include "lower/LoopLevel.h"

namespace gradc {

DTensor::DTensor(std::vector<int64_t> s, double fill) : shape(std::move(s)) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  data.assign(static_cast<size_t>(n), fill);
}

namespace {

std::vector<int64_t> stridesOf(const std::vector<int64_t> &shape) {
  std::vector<int64_t> st(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;)
    st[i - 1] = st[i] * shape[i];
  return st;
}

/// Calls f(index, linear) for every multi-index of `shape` in row-major order.
void forEach(const std::vector<int64_t> &shape, const std::function<void(const std::vector<int64_t> &, int64_t)> &f) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t lin = 0; lin < n; ++lin) {
    f(idx, lin);
    for (size_t a = shape.size(); a-- > 0;) {
      if (++idx[a] < shape[a])
        break;
      idx[a] = 0;
    }
  }
}

/// Offset in a tensor of `shape` broadcast to an output of rank `outRank`, at output index.
int64_t broadcastOffset(const std::vector<int64_t> &shape, const std::vector<int64_t> &strides,
                        const std::vector<int64_t> &outIdx) {
  size_t lead = outIdx.size() - shape.size();
  int64_t off = 0;
  for (size_t a = 0; a < shape.size(); ++a)
    if (shape[a] != 1)
      off += outIdx[lead + a] * strides[a];
  return off;
}

/// The value of elementwise op `op` (its math in Ops.def) on double operands.
double scalarOp(Op op, DType dt, double a, double b = 0) {
  std::optional<double> r = evalScalarMath(op, dt, a, b);
  if (!r)
    throw InterpError(fmt::format("{} is not elementwise", opInfo(op).name));
  return *r;
}

// out = a (op) b, NumPy broadcasting.
DTensor elementwise2(Op op, const DTensor &a, const DTensor &b, const std::vector<int64_t> &outShape, DType dt) {
  DTensor out(outShape);
  auto sa = stridesOf(a.shape), sb = stridesOf(b.shape);
  forEach(outShape, [&](const std::vector<int64_t> &idx, int64_t lin) {
    out.data[lin] = scalarOp(op, dt, a.data[broadcastOffset(a.shape, sa, idx)], b.data[broadcastOffset(b.shape, sb, idx)]);
  });
  return out;
}

// C[..., M, N] = A[..., M, K] @ B[..., K, N], leading axes broadcast.
DTensor matmul(const DTensor &a, const DTensor &b, const std::vector<int64_t> &outShape) {
  DTensor out(outShape);
  int64_t M = a.shape[a.shape.size() - 2], K = a.shape.back(), N = b.shape.back();
  std::vector<int64_t> batch(outShape.begin(), outShape.end() - 2);
  std::vector<int64_t> ab(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  auto sa = stridesOf(ab), sb = stridesOf(bb);
  forEach(batch, [&](const std::vector<int64_t> &idx, int64_t lin) {
    const double *pa = a.data.data() + broadcastOffset(ab, sa, idx) * M * K;
    const double *pb = b.data.data() + broadcastOffset(bb, sb, idx) * K * N;
    double *pc = out.data.data() + lin * M * N;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += pa[i * K + k] * pb[k * N + j];
        pc[i * N + j] = s;
      }
  });
  return out;
}

// Reduction over `axes` (sum, mean or max).
DTensor reduce(Op op, const DTensor &x, const std::vector<int64_t> &axes, const std::vector<int64_t> &outShape) {
  std::vector<int64_t> keep = x.shape;
  int64_t count = 1;
  for (int64_t a : axes) {
    keep[a] = 1;
    count *= x.shape[a];
  }
  DTensor out(keep, op == Op::Max ? -INFINITY : 0.0);
  auto so = stridesOf(keep);
  forEach(x.shape, [&](const std::vector<int64_t> &idx, int64_t lin) {
    double &o = out.data[broadcastOffset(keep, so, idx)];
    o = op == Op::Max ? std::max(o, x.data[lin]) : o + x.data[lin];
  });
  if (op == Op::Mean)
    for (double &v : out.data)
      v /= static_cast<double>(count);
  out.shape = outShape;
  return out;
}

class Interp {
public:
  Interp(const TensorMap &feeds, const TensorMap &state, const std::map<std::string, double> &hypers)
      : feeds_(feeds), state_(state), hypers_(hypers) {}

  RunResult top(const Graph &g) {
    RunResult r;
    run(g);
    for (const auto &np : g.nodes) {
      const Node &n = *np;
      if (!hasTrait(n.op, TR_SINK))
        continue;
      const DTensor &v = vals_.at(n.operands[0]);
      switch (n.op) {
      case Op::Loss: r.hasLoss = true; r.loss = v.data[0]; break;
      case Op::Output: r.outputs[n.getStr("name")] = v; break;
      case Op::Update: r.updates[n.getStr("name")] = v; break;
      case Op::Grad: r.grads[n.getStr("name")] = v; break;
      default: break;
      }
    }
    return r;
  }

  void run(const Graph &g) {
    for (const auto &np : g.nodes)
      node(*np);
  }

private:
  const DTensor &get(const Value *v) { return vals_.at(v); }

  const DTensor &lookup(const TensorMap &m, const std::string &name, const TensorType &t, const char *what) {
    auto it = m.find(name);
    if (it == m.end())
      throw InterpError(fmt::format("no value for {} '{}'", what, name));
    if (it->second.shape != t.shape)
      throw InterpError(fmt::format("{} '{}' has shape [{}], expected {}", what, name, fmt::join(it->second.shape, ","),
                                    t.str()));
    return it->second;
  }

  void node(const Node &n) {
    if (hasTrait(n.op, TR_SINK))
      return;
    const TensorType &rt = n.results.empty() ? TensorType{} : n.results[0]->type;
    auto in = [&](size_t i) -> const DTensor & { return get(n.operands[i]); };
    auto set = [&](DTensor t) { vals_[n.results[0]] = std::move(t); };
    switch (n.op) {
    case Op::Input: set(lookup(feeds_, n.getStr("name"), rt, "input")); return;
    case Op::Param: set(lookup(state_, n.getStr("name"), rt, "parameter")); return;
    case Op::Buffer: set(lookup(state_, n.getStr("name"), rt, "state")); return;
    case Op::Const: set(DTensor(rt.shape, n.getFloat("value"))); return;
    case Op::Hyper: {
      auto it = hypers_.find(n.getStr("name"));
      if (it == hypers_.end())
        throw InterpError(fmt::format("no value for hyper-parameter '{}'", n.getStr("name")));
      set(DTensor(rt.shape, it->second));
      return;
    }
    case Op::DropoutMask: {
      // The compiled code's draws (runtime/Philox.h) under the key the driver passes as the
      // hypers "rng.seed.lo", "rng.seed.hi", "rng.step.lo" and "rng.step.hi", 32 bits each
      // (exact in a double; 0 when absent).
      auto half = [&](const char *k) {
        auto it = hypers_.find(k);
        return it == hypers_.end() || !(it->second >= 0 && it->second < 4294967296.0) ? uint64_t{0}
                                                                                     : static_cast<uint64_t>(it->second);
      };
      const uint64_t key[2] = {half("rng.seed.lo") | half("rng.seed.hi") << 32, half("rng.step.lo") | half("rng.step.hi") << 32};
      const double p = n.getFloat("p"), scale = 1 / (1 - p);
      const uint32_t threshold = rt::dropoutThreshold(p);
      DTensor t(rt.shape);
      for (int64_t i = 0; i < t.numel(); ++i)
        t.data[i] = rt::philox24(key, n.getInt("stream"), i) < threshold ? 0 : scale;
      set(std::move(t));
      return;
    }
    case Op::OneHot: {
      int64_t c = n.getInt("classes");
      DTensor t(rt.shape);
      for (int64_t i = 0; i < in(0).numel(); ++i) {
        int64_t l = static_cast<int64_t>(in(0).data[i]);
        if (l < 0 || l >= c)
          throw InterpError(fmt::format("label {} is out of range [0, {})", l, c));
        t.data[i * c + l] = 1;
      }
      set(std::move(t));
      return;
    }
    case Op::Row:
    case Op::SetRow: {
      // The row clamp(i) of x [R, ...]: read (row), or replaced by v (set_row).
      const DTensor &x = in(0);
      const int64_t rows = x.shape[0], len = x.numel() / rows;
      const int64_t r = std::clamp<int64_t>(static_cast<int64_t>(in(1).data[0]), 0, rows - 1);
      if (n.op == Op::Row) {
        DTensor t(rt.shape);
        std::copy_n(x.data.begin() + r * len, len, t.data.begin());
        set(std::move(t));
      } else {
        DTensor t = x;
        std::copy_n(in(2).data.begin(), len, t.data.begin() + r * len);
        set(std::move(t));
      }
      return;
    }
    case Op::Gather:
    case Op::ScatterAdd: {
      // gather: out[k] = table[indices[k]]; scatter_add: out[indices[k]] += dy[k], in order.
      const bool gather = n.op == Op::Gather;
      const int64_t D = rt.shape.back(), rows = gather ? n.operands[0]->type.shape[0] : rt.shape[0];
      const int64_t pad = n.getInt("padding");
      const DTensor &x = in(0), &idx = in(1);
      DTensor t(rt.shape);
      for (int64_t k = 0; k < idx.numel(); ++k) {
        const int64_t i = static_cast<int64_t>(idx.data[k]);
        if (i < 0 || i >= rows)
          throw InterpError(fmt::format("index {} at position {} is out of range [0, {})", i, k, rows));
        for (int64_t j = 0; j < D; ++j) {
          if (gather)
            t.data[k * D + j] = x.data[i * D + j];
          else if (i != pad)
            t.data[i * D + j] += x.data[k * D + j];
        }
      }
      set(std::move(t));
      return;
    }
    case Op::MatMul: set(matmul(in(0), in(1), rt.shape)); return;
    case Op::Transpose: {
      const auto &perm = n.getInts("perm");
      const DTensor &x = in(0);
      auto sx = stridesOf(x.shape);
      DTensor t(rt.shape);
      forEach(rt.shape, [&](const std::vector<int64_t> &idx, int64_t lin) {
        int64_t off = 0;
        for (size_t a = 0; a < perm.size(); ++a)
          off += idx[a] * sx[perm[a]];
        t.data[lin] = x.data[off];
      });
      set(std::move(t));
      return;
    }
    case Op::Reshape: {
      DTensor t = in(0);
      t.shape = rt.shape;
      set(std::move(t));
      return;
    }
    case Op::BroadcastTo: {
      const DTensor &x = in(0);
      auto sx = stridesOf(x.shape);
      DTensor t(rt.shape);
      forEach(rt.shape, [&](const std::vector<int64_t> &idx, int64_t lin) { t.data[lin] = x.data[broadcastOffset(x.shape, sx, idx)]; });
      set(std::move(t));
      return;
    }
    case Op::Slice:
    case Op::Pad: {
      // slice: out[i] = x[i + begin]; pad: out[i + begin] = x[i] (the rest zeros).
      const auto &begin = n.getInts("begin");
      const DTensor &x = in(0);
      DTensor t(rt.shape);
      bool pad = n.op == Op::Pad;
      const std::vector<int64_t> &shifted = pad ? rt.shape : x.shape;
      auto ss = stridesOf(shifted);
      forEach(pad ? x.shape : rt.shape, [&](const std::vector<int64_t> &idx, int64_t lin) {
        int64_t off = 0;
        for (size_t a = 0; a < idx.size(); ++a)
          off += (idx[a] + begin[a]) * ss[a];
        if (pad)
          t.data[off] = x.data[lin];
        else
          t.data[lin] = x.data[off];
      });
      set(std::move(t));
      return;
    }
    case Op::Concat: {
      int64_t axis = n.getInt("axis"), base = 0;
      DTensor t(rt.shape);
      auto st = stridesOf(rt.shape);
      for (size_t i = 0; i < n.operands.size(); ++i) {
        const DTensor &x = in(i);
        forEach(x.shape, [&](const std::vector<int64_t> &idx, int64_t lin) {
          int64_t off = 0;
          for (size_t a = 0; a < idx.size(); ++a)
            off += (idx[a] + (static_cast<int64_t>(a) == axis ? base : 0)) * st[a];
          t.data[off] = x.data[lin];
        });
        base += x.shape[axis];
      }
      set(std::move(t));
      return;
    }
    case Op::Sum:
    case Op::Mean:
    case Op::Max: set(reduce(n.op, in(0), n.getInts("axes"), rt.shape)); return;
    case Op::Mse: {
      double s = 0;
      for (int64_t i = 0; i < in(0).numel(); ++i) {
        double d = in(0).data[i] - in(1).data[i];
        s += d * d;
      }
      set(DTensor({}, s / static_cast<double>(in(0).numel())));
      return;
    }
    case Op::CrossEntropy: {
      const DTensor &x = in(0), &l = in(1);
      int64_t B = x.shape[0], C = x.shape[1];
      double s = 0;
      for (int64_t b = 0; b < B; ++b) {
        int64_t label = static_cast<int64_t>(l.data[b]);
        if (label < 0 || label >= C)
          throw InterpError(fmt::format("label {} is out of range [0, {})", label, C));
        double m = -INFINITY;
        for (int64_t c = 0; c < C; ++c)
          m = std::max(m, x.data[b * C + c]);
        double z = 0;
        for (int64_t c = 0; c < C; ++c)
          z += std::exp(x.data[b * C + c] - m);
        s += m + std::log(z) - x.data[b * C + label];
      }
      set(DTensor({}, s / static_cast<double>(B)));
      return;
    }
    case Op::BceWithLogits: {
      double s = 0;
      for (int64_t i = 0; i < in(0).numel(); ++i) {
        double x = in(0).data[i], t = in(1).data[i];
        s += std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::fabs(x)));
      }
      set(DTensor({}, s / static_cast<double>(in(0).numel())));
      return;
    }
    case Op::Scan: scan(n); return;
    case Op::AllReduceSum: { // summed over the ranks of an MPI run, in double (runtime/Mpi.h)
      DTensor t = in(0);
      gradc::rt::mpi::allreduceSum(t.data.data(), t.numel());
      set(std::move(t));
      return;
    }
    default: break;
    }
    if (hasTrait(n.op, TR_BINARY)) {
      set(elementwise2(n.op, in(0), in(1), rt.shape, rt.dtype));
      return;
    }
    if (hasTrait(n.op, TR_UNARY)) {
      DTensor t = in(0);
      for (double &v : t.data)
        v = scalarOp(n.op, rt.dtype, v);
      set(std::move(t));
      return;
    }
    throw InterpError(fmt::format("the interpreter cannot run '{}'", opInfo(n.op).name));
  }

  // Scan: body args = one slice of each sequence along `axis`, the carries, the captures.
  void scan(const Node &n) {
    const Graph &b = *n.body;
    int64_t axis = n.getInt("axis"), nseq = n.getInt("nseq"), ncarry = n.getInt("ncarry");
    bool reverse = n.getInt("reverse") != 0;
    int64_t len = get(n.operands[0]).shape[axis];
    std::vector<DTensor> carries;
    for (int64_t c = 0; c < ncarry; ++c)
      carries.push_back(get(n.operands[nseq + c]));
    for (size_t k = nseq + ncarry; k < n.operands.size(); ++k)
      vals_[b.args[k]] = get(n.operands[k]);
    std::vector<DTensor> stacked;
    for (size_t r = ncarry; r < n.results.size(); ++r)
      stacked.emplace_back(n.results[r]->type.shape);
    for (int64_t step = 0; step < len; ++step) {
      int64_t t = reverse ? len - 1 - step : step;
      for (int64_t s = 0; s < nseq; ++s)
        vals_[b.args[s]] = takeSlice(get(n.operands[s]), axis, t);
      for (int64_t c = 0; c < ncarry; ++c)
        vals_[b.args[nseq + c]] = carries[c];
      run(b);
      for (int64_t c = 0; c < ncarry; ++c)
        carries[c] = get(b.yields[c]);
      for (size_t r = ncarry; r < b.yields.size(); ++r)
        putSlice(stacked[r - ncarry], axis, t, get(b.yields[r]));
    }
    for (int64_t c = 0; c < ncarry; ++c)
      vals_[n.results[c]] = std::move(carries[c]);
    for (size_t r = ncarry; r < n.results.size(); ++r)
      vals_[n.results[r]] = std::move(stacked[r - ncarry]);
  }

  /// Calls f(stacked offset, step offset) for every element of step t along `axis`.
  template <typename F> static void forStep(const std::vector<int64_t> &stacked, int64_t axis, int64_t t, F f) {
    const StepLayout l = stepLayout(stacked, axis);
    for (int64_t o = 0; o < l.outer; ++o)
      for (int64_t i = 0; i < l.inner; ++i)
        f((o * l.len + t) * l.inner + i, o * l.inner + i);
  }

  static DTensor takeSlice(const DTensor &x, int64_t axis, int64_t t) {
    std::vector<int64_t> shape = x.shape;
    shape.erase(shape.begin() + axis);
    DTensor out(shape);
    forStep(x.shape, axis, t, [&](int64_t s, int64_t v) { out.data[v] = x.data[s]; });
    return out;
  }

  static void putSlice(DTensor &x, int64_t axis, int64_t t, const DTensor &v) {
    forStep(x.shape, axis, t, [&](int64_t s, int64_t o) { x.data[s] = v.data[o]; });
  }

  const TensorMap &feeds_, &state_;
  const std::map<std::string, double> &hypers_;
  std::unordered_map<const Value *, DTensor> vals_;
};

} // namespace

RunResult interpret(const Graph &g, const TensorMap &feeds, const TensorMap &state,
                    const std::map<std::string, double> &hypers) {
  Interp in(feeds, state, hypers);
  return in.top(g);
}

} // namespace gradc
