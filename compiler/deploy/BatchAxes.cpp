// BatchAxes.cpp: the batch-axis trace of the inference graph, one forward rule per kind of op, repeated until the constants' batch axes settle.
#include "deploy/BatchAxes.h"

#include <algorithm>

namespace gradc {

namespace {

bool bit(uint64_t m, int64_t i) { return i >= 0 && i < 64 && ((m >> i) & 1u); }
uint64_t set(int64_t i) { return i >= 0 && i < 64 ? uint64_t{1} << i : 0; }

/// Axis `i` of a rank-`outRank` result aligned (NumPy broadcasting) to an operand of rank `r`.
int64_t aligned(int64_t i, int64_t outRank, int64_t r) { return i - (outRank - r); }

int64_t prod(const std::vector<int64_t> &s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i)
    p *= s[i];
  return p;
}

} // namespace

BatchAxes::BatchAxes(const Graph &g, Diagnostics &diag) : diag_(diag) {
  for (int round = 0; round < 8; ++round) {
    changed_ = false;
    run(g);
    if (!changed_)
      break;
  }
}

void BatchAxes::fail(const Node &n, const char *why) {
  diag_.error(n.loc, "--onnx-dynamic-batch: op '{}' {}; its result depends on the batch size, so the model can only be exported with its static batch", opInfo(n.op).name, why);
}

void BatchAxes::constrain(const Value *v, uint64_t m) {
  if (!v->def || v->def->op != Op::Const)
    return;
  uint64_t keep = 0;
  for (int64_t i = 0; i < v->type.rank(); ++i)
    if (bit(m, i) && v->type.shape[i] != 1)
      keep |= set(i);
  uint64_t &cur = mask_[v];
  if ((cur | keep) != cur) {
    cur |= keep;
    changed_ = true;
  }
}

void BatchAxes::run(const Graph &g) {
  for (const std::unique_ptr<Node> &n : g.nodes) {
    if (n->op == Op::Scan) {
      scan(*n);
      continue;
    }
    if (n->results.size() == 1 && n->op != Op::Const)
      mask_[n->result()] = node(*n);
  }
}

uint64_t BatchAxes::node(const Node &n) {
  const TensorType &rt = n.result()->type;
  const int64_t R = rt.rank();
  auto in = [&](size_t k) { return of(n.operands.at(k)); };
  if (n.op == Op::Input)
    return R > 0 ? set(0) : 0;
  if (hasTrait(n.op, TR_ELEMENTWISE)) {
    uint64_t m = 0;
    for (const Value *o : n.operands)
      for (int64_t i = 0; i < R; ++i)
        if (bit(of(o), aligned(i, R, o->type.rank())))
          m |= set(i);
    for (const Value *o : n.operands) { // a constant combined with batch rows has them too
      uint64_t c = 0;
      for (int64_t j = 0; j < o->type.rank(); ++j)
        if (bit(m, j + (R - o->type.rank())))
          c |= set(j);
      constrain(o, c);
    }
    return m;
  }
  switch (n.op) {
  case Op::MatMul: {
    const TensorType &a = n.operands[0]->type, &b = n.operands[1]->type;
    if (bit(in(0), a.rank() - 1) || bit(in(1), b.rank() - 2))
      fail(n, "contracts the batch axis");
    uint64_t m = 0;
    for (int64_t i = 0; i < R - 2; ++i)
      if (bit(in(0), aligned(i, R, a.rank())) || bit(in(1), aligned(i, R, b.rank())))
        m |= set(i);
    if (bit(in(0), a.rank() - 2))
      m |= set(R - 2);
    if (bit(in(1), b.rank() - 1))
      m |= set(R - 1);
    return m;
  }
  case Op::Transpose: {
    const std::vector<int64_t> &perm = n.getInts("perm");
    uint64_t m = 0;
    for (int64_t i = 0; i < R; ++i)
      if (bit(in(0), perm[i]))
        m |= set(i);
    return m;
  }
  case Op::Reshape: {
    const std::vector<int64_t> &is = n.operands[0]->type.shape, &os = rt.shape;
    uint64_t m = 0;
    for (size_t p = 0; p < is.size(); ++p) {
      if (!bit(in(0), static_cast<int64_t>(p)))
        continue;
      size_t q = 0;
      while (q < os.size() && !(prod(os, 0, q) == prod(is, 0, p) && os[q] == is[p]))
        ++q;
      if (q == os.size())
        fail(n, "merges the batch axis into another axis");
      m |= set(static_cast<int64_t>(q));
    }
    return m;
  }
  case Op::Slice:
  case Op::Pad: {
    const std::vector<int64_t> &begin = n.getInts("begin");
    for (int64_t i = 0; i < R; ++i)
      if (bit(in(0), i) && (begin[i] != 0 || rt.shape[i] != n.operands[0]->type.shape[i]))
        fail(n, n.op == Op::Slice ? "slices the batch axis" : "pads the batch axis");
    return in(0);
  }
  case Op::Concat: {
    uint64_t m = 0;
    for (size_t k = 0; k < n.operands.size(); ++k)
      m |= in(k);
    for (const Value *o : n.operands)
      constrain(o, m);
    if (bit(m, n.getInt("axis")))
      fail(n, "concatenates along the batch axis");
    return m;
  }
  case Op::BroadcastTo: {
    uint64_t m = 0;
    const int64_t r = n.operands[0]->type.rank();
    for (int64_t i = 0; i < R; ++i)
      if (bit(in(0), aligned(i, R, r)))
        m |= set(i);
    return m;
  }
  case Op::OneHot: return in(0);
  case Op::Sum:
  case Op::Mean:
  case Op::Max: {
    const std::vector<int64_t> &axes = n.getInts("axes");
    const bool keep = n.has("keepdims") && n.getInt("keepdims");
    uint64_t m = 0;
    for (int64_t i = 0, o = 0; i < n.operands[0]->type.rank(); ++i) {
      const bool reduced = std::find(axes.begin(), axes.end(), i) != axes.end();
      if (reduced && bit(in(0), i))
        fail(n, "reduces over the batch axis");
      if (!reduced || keep) {
        if (bit(in(0), i))
          m |= set(o);
        ++o;
      }
    }
    return m;
  }
  default: return 0; // params, buffers, and ops the exporter has no form for
  }
}

void BatchAxes::scan(const Node &n) {
  const Graph &b = *n.body;
  const int64_t axis = n.getInt("axis"), nseq = n.getInt("nseq"), ncarry = n.getInt("ncarry");
  auto dropAxis = [&](uint64_t m) { return (m & (set(axis) - 1)) | ((m >> 1) & ~(set(axis) - 1)); };
  auto addAxis = [&](uint64_t m) { return (m & (set(axis) - 1)) | ((m & ~(set(axis) - 1)) << 1); };
  for (int64_t s = 0; s < nseq; ++s) {
    if (bit(of(n.operands[s]), axis))
      fail(n, "scans along the batch axis");
    mask_[b.args[s]] = dropAxis(of(n.operands[s]));
  }
  for (size_t k = nseq + ncarry; k < b.args.size(); ++k)
    mask_[b.args[k]] = of(n.operands[k]);
  // A carry has the batch axes of its initial value and of what each step yields.
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t c = 0; c < ncarry; ++c)
      mask_[b.args[nseq + c]] = of(n.operands[nseq + c]) | of(b.yields[c]);
    run(b);
  }
  for (int64_t c = 0; c < ncarry; ++c) {
    const uint64_t m = of(n.operands[nseq + c]) | of(b.yields[c]);
    constrain(n.operands[nseq + c], m);
    constrain(b.yields[c], m);
    mask_[n.results[c]] = m;
  }
  for (size_t k = ncarry; k < n.results.size(); ++k)
    mask_[n.results[k]] = addAxis(of(b.yields[k]));
}

} // namespace gradc
