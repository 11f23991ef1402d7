// FoldWeights.cpp: the export-time evaluator of weight-only nodes: elementwise ops through Ops.def's scalar math, matmul, transpose, reshape and slice, on f32 tensors.
#include "deploy/FoldWeights.h"

#include "ir/ScalarMath.h"

namespace gradc {

namespace {

int64_t numel(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::vector<int64_t> stridesOf(const std::vector<int64_t> &shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;)
    s[i - 1] = s[i] * shape[i];
  return s;
}

/// Calls f(index, linear) for every index of `shape`, row-major.
template <class F> void forEachIndex(const std::vector<int64_t> &shape, F f) {
  std::vector<int64_t> idx(shape.size(), 0);
  const int64_t n = numel(shape);
  for (int64_t lin = 0; lin < n; ++lin) {
    f(idx, lin);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d])
        break;
      idx[d] = 0;
    }
  }
}

/// The linear offset in `t` (NumPy-broadcast to the output's rank) of output index `idx`.
int64_t broadcastAt(const FoldedTensor &t, const std::vector<int64_t> &idx) {
  const size_t lead = idx.size() - t.shape.size();
  int64_t off = 0;
  for (size_t d = 0; d < t.shape.size(); ++d)
    off = off * t.shape[d] + (t.shape[d] == 1 ? 0 : idx[lead + d]);
  return off;
}

FoldedTensor elementwise(const Node &n, const std::vector<const FoldedTensor *> &x) {
  FoldedTensor out{n.result()->type.shape, {}};
  out.data.resize(numel(out.shape));
  forEachIndex(out.shape, [&](const std::vector<int64_t> &idx, int64_t lin) {
    const double a = x[0]->data[broadcastAt(*x[0], idx)];
    const double b = x.size() > 1 ? x[1]->data[broadcastAt(*x[1], idx)] : 0.0;
    out.data[lin] = static_cast<float>(*evalScalarMath(n.op, DType::F32, a, b));
  });
  return out;
}

FoldedTensor matmul(const FoldedTensor &a, const FoldedTensor &b) {
  const int64_t M = a.shape[0], K = a.shape[1], N = b.shape[1];
  FoldedTensor out{{M, N}, std::vector<float>(M * N)};
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += static_cast<double>(a.data[i * K + k]) * b.data[k * N + j];
      out.data[i * N + j] = static_cast<float>(acc);
    }
  return out;
}

FoldedTensor transpose(const FoldedTensor &x, const std::vector<int64_t> &perm, const std::vector<int64_t> &shape) {
  FoldedTensor out{shape, std::vector<float>(x.data.size())};
  const std::vector<int64_t> sx = stridesOf(x.shape);
  forEachIndex(shape, [&](const std::vector<int64_t> &idx, int64_t lin) {
    int64_t off = 0;
    for (size_t d = 0; d < perm.size(); ++d)
      off += idx[d] * sx[perm[d]];
    out.data[lin] = x.data[off];
  });
  return out;
}

FoldedTensor slice(const FoldedTensor &x, const std::vector<int64_t> &begin, const std::vector<int64_t> &shape) {
  FoldedTensor out{shape, std::vector<float>(numel(shape))};
  const std::vector<int64_t> sx = stridesOf(x.shape);
  forEachIndex(shape, [&](const std::vector<int64_t> &idx, int64_t lin) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d)
      off += (begin[d] + idx[d]) * sx[d];
    out.data[lin] = x.data[off];
  });
  return out;
}

} // namespace

WeightFolder::WeightFolder(const Graph &g, const Weights &w, std::function<bool(const Value *)> keep)
    : w_(w), keep_(std::move(keep)) {
  run(g);
}

const FoldedTensor *WeightFolder::computed(const Value *v) const {
  auto it = computed_.find(v);
  return it != computed_.end() && it->second ? values_.at(v).get() : nullptr;
}

int WeightFolder::liveReaders(const Value *v) const {
  auto it = readers_.find(v);
  return it == readers_.end() ? 0 : it->second;
}

void WeightFolder::run(const Graph &g) {
  for (const std::unique_ptr<Node> &n : g.nodes) {
    if (tryFold(*n))
      continue;
    for (const Value *v : n->operands)
      ++readers_[v];
    if (n->op != Op::Scan || !n->body)
      continue;
    // A captured argument of the body is its outer value.
    const Graph &b = *n->body;
    const size_t first = static_cast<size_t>(n->getInt("nseq") + n->getInt("ncarry"));
    for (size_t k = first; k < b.args.size(); ++k) {
      auto it = values_.find(n->operands[k]);
      if (it == values_.end())
        continue;
      values_[b.args[k]] = it->second;
      leafSize_[b.args[k]] = leafSize_[n->operands[k]];
      computed_[b.args[k]] = computed_[n->operands[k]];
    }
    run(b);
  }
  for (const Value *v : g.yields)
    ++readers_[v];
}

bool WeightFolder::tryFold(const Node &n) {
  if (n.results.size() != 1 || n.result()->type.dtype != DType::F32 || hasTrait(n.op, TR_RANDOM))
    return false;
  const Value *r = n.result();
  if (n.op == Op::Param || n.op == Op::Buffer) {
    auto it = w_.find(n.getStr("name"));
    if (it != w_.end() && it->second.dtype == DType::F32) {
      values_[r] = std::make_shared<FoldedTensor>(FoldedTensor{it->second.shape, it->second.f32});
      leafSize_[r] = numel(it->second.shape);
    }
    return false; // the exporter writes it as an initializer when something still reads it
  }
  if (n.op == Op::Const) {
    if (numel(r->type.shape) <= (1 << 16))
      values_[r] = std::make_shared<FoldedTensor>(
          FoldedTensor{r->type.shape, std::vector<float>(numel(r->type.shape), static_cast<float>(n.getFloat("value")))});
    leafSize_[r] = 0;
    return false;
  }
  std::vector<const FoldedTensor *> x;
  int64_t size = 0;
  for (const Value *v : n.operands) {
    auto it = values_.find(v);
    if (it == values_.end() || v->type.dtype != DType::F32)
      return false;
    x.push_back(it->second.get());
    size = std::max(size, leafSize_[v]);
  }
  if (size == 0 || numel(r->type.shape) > size || (keep_ && keep_(r)))
    return false;
  FoldedTensor out;
  if (hasTrait(n.op, TR_ELEMENTWISE) && x.size() <= 2 && evalScalarMath(n.op, DType::F32, 1.0, 1.0))
    out = elementwise(n, x);
  else if (hasTrait(n.op, TR_MATMUL) && x[0]->shape.size() == 2 && x[1]->shape.size() == 2)
    out = matmul(*x[0], *x[1]);
  else if (n.op == Op::Transpose)
    out = transpose(*x[0], n.getInts("perm"), r->type.shape);
  else if (n.op == Op::Reshape)
    out = FoldedTensor{r->type.shape, x[0]->data};
  else if (n.op == Op::Slice)
    out = slice(*x[0], n.getInts("begin"), r->type.shape);
  else
    return false;
  values_[r] = std::make_shared<FoldedTensor>(std::move(out));
  leafSize_[r] = size;
  computed_[r] = true;
  folded_.insert(&n);
  return true;
}

} // namespace gradc
