// LoopLevel.cpp: plans each graph's loops (Fusion.h) and places its buffers (MemoryPlan.h):
// the representation both code generators lower.
#include "lower/LoopLevel.h"

#include <algorithm>

#include <fmt/format.h>

#include "ir/Rewrite.h"

namespace gradc {

std::vector<int64_t> stridesOf(const std::vector<int64_t> &shape) {
  std::vector<int64_t> st(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;)
    st[i - 1] = st[i] * shape[i];
  return st;
}

std::vector<int64_t> broadcastStrides(const std::vector<int64_t> &shape, size_t rank, const std::vector<int64_t> &mem) {
  std::vector<int64_t> st = mem.empty() ? stridesOf(shape) : mem, out(rank, 0);
  size_t lead = rank - shape.size();
  for (size_t a = 0; a < shape.size(); ++a)
    out[lead + a] = shape[a] == 1 ? 0 : st[a];
  return out;
}

StepLayout stepLayout(const std::vector<int64_t> &stacked, int64_t axis) {
  StepLayout l;
  for (int64_t a = 0; a < axis; ++a)
    l.outer *= stacked[a];
  for (size_t a = axis + 1; a < stacked.size(); ++a)
    l.inner *= stacked[a];
  l.len = stacked[axis];
  return l;
}

std::pair<std::vector<int64_t>, int64_t> readAccess(const Node &n, size_t j, size_t rank, const std::vector<int64_t> &mem) {
  const auto &xs = n.operands[j]->type.shape;
  switch (n.op) {
  case Op::Slice: {
    const auto &begin = n.getInts("begin");
    std::vector<int64_t> ss = mem.empty() ? stridesOf(xs) : mem;
    int64_t base = 0;
    for (size_t a = 0; a < begin.size(); ++a)
      base += begin[a] * ss[a];
    return {ss, base};
  }
  case Op::Transpose: {
    std::vector<int64_t> si = mem.empty() ? stridesOf(xs) : mem, st;
    for (int64_t p : n.getInts("perm"))
      st.push_back(si[p]);
    return {st, 0};
  }
  default: return {broadcastStrides(xs, rank, mem), 0}; // elementwise and broadcast_to
  }
}

std::vector<int64_t> reductionStrides(const Node &red, const std::vector<int64_t> &space, bool &independent) {
  std::vector<int64_t> keep = space;
  for (int64_t a : red.getInts("axes")) {
    keep[a] = 1;
    independent = independent && a + 1 != static_cast<int64_t>(space.size());
  }
  return broadcastStrides(keep, space.size());
}

LoopLevel::LoopLevel(const Module &m, const LowerOptions &opts, std::function<bool(const Node &)> canFuse, std::ostream *dump)
    : opts_(opts), canFuse_(std::move(canFuse)) {
  for (const Graph *g : m.graphs()) {
    planGraphLoops(*g);
    MemoryPlan plan = planMemory(
        *g, [&](const Value *v) { return storageOf(v); }, [&](const Node *n) { return loopIndex_.at(n); }, opts_.planMemory);
    for (const auto &[v, off] : plan.offset)
      offset[v] = off;
    arenaSize = std::max(arenaSize, plan.size);
    unsharedSize += plan.unsharedSize;
    if (dump)
      printMemoryPlan(g->name, plan, *dump);
  }
  if (dump)
    *dump << fmt::format("arena: {} elements ({:.1f} KiB in f32), the largest graph's; without sharing {} ({:.1f} KiB)\n", arenaSize,
                         arenaSize * 4 / 1024.0, unsharedSize, unsharedSize * 4 / 1024.0);
}

std::pair<const Value *, bool> LoopLevel::matOperand(const Value *v) {
  const Node *d = v->def;
  if (isMatrixTranspose(v))
    return {d->operands[0], true};
  return {v, false};
}

bool LoopLevel::invariantRhs(const Node &n) {
  const Graph *g = n.parent;
  if (n.op != Op::MatMul || !g || !g->parentNode || n.operands[1]->type.rank() != 2)
    return false;
  const Node &scan = *g->parentNode;
  const int64_t N = n.operands[1]->type.shape.back();
  if (N <= 1 || n.results[0]->type.numel() / N <= 1)
    return false;
  const Value *b = matOperand(n.operands[1]).first;
  if (b->owner != g)
    return true;
  return !b->def && b->index >= static_cast<unsigned>(scan.getInt("nseq") + scan.getInt("ncarry"));
}

std::vector<const Node *> LoopLevel::invariantMatmuls(const Node &scan) {
  std::vector<const Node *> out;
  for (const auto &n : scan.body->nodes)
    if (invariantRhs(*n))
      out.push_back(n.get());
  return out;
}

void LoopLevel::planGraphLoops(const Graph &g) {
  // A transpose read only by matrix multiplies that take it as a transposed operand is never
  // materialised, so it stays out of fused loops.
  std::unordered_map<const Value *, bool> onlyFolded;
  for (const auto &n : g.nodes)
    if (n->op == Op::Transpose)
      onlyFolded[n->results[0]] = matOperand(n->results[0]).second;
  for (const auto &n : g.nodes)
    for (const Value *v : n->operands) {
      auto it = onlyFolded.find(v);
      if (it != onlyFolded.end() && n->op != Op::MatMul)
        it->second = false;
    }
  for (const Value *y : g.yields)
    if (onlyFolded.count(y))
      onlyFolded[y] = false;
  for (const auto &[v, f] : onlyFolded)
    if (f)
      folded.insert(v);
  LoopHooks hooks;
  hooks.alone = [&](const Node &n) { return n.results.size() == 1 && folded.count(n.results[0]); };
  hooks.readyAtStart = [](const Node &n) {
    return (n.op == Op::Param || n.op == Op::Buffer) && n.results[0]->type.dtype == DType::F32; // views of the state
  };
  // A fused loop with a member the generator cannot compute inside it becomes one loop per
  // node, as without fusion.
  std::vector<FusedLoop> &mine = loops[&g];
  for (FusedLoop &l : planLoops(g, opts_.fuse, hooks)) {
    if (!l.fused() || !canFuse_ || std::all_of(l.nodes.begin(), l.nodes.end(), [&](const Node *n) { return canFuse_(*n); })) {
      mine.push_back(std::move(l));
      continue;
    }
    for (const Node *n : l.nodes) {
      FusedLoop single;
      single.nodes = {n};
      single.stored = {true};
      single.shape = n->results.empty() ? std::vector<int64_t>{} : n->results[0]->type.shape;
      mine.push_back(std::move(single));
    }
  }
  for (size_t li = 0; li < mine.size(); ++li)
    for (size_t k = 0; k < mine[li].nodes.size(); ++k) {
      loopIndex_[mine[li].nodes[k]] = static_cast<int>(li);
      if (!mine[li].stored[k])
        inRegisters_.insert(mine[li].nodes[k]->results[0]);
    }
  for (const auto &n : g.nodes)
    if (n->body) {
      const int64_t firstCapture = n->getInt("nseq") + n->getInt("ncarry");
      for (size_t k = firstCapture; k < n->body->args.size(); ++k)
        captures_.insert(n->body->args[k]);
      planGraphLoops(*n->body);
      if (opts_.fuse) {
        planSeqViews(*n);
        planInPlaceRows(*n);
      }
    }
}

void LoopLevel::planInPlaceRows(const Node &scan) {
  const Graph &b = *scan.body;
  const int64_t nseq = scan.getInt("nseq"), ncarry = scan.getInt("ncarry");
  for (int64_t c = 0; c < ncarry; ++c) {
    const Value *arg = b.args[nseq + c], *next = b.yields[c];
    const Node *set = next->def;
    if (!set || set->op != Op::SetRow || set->parent != &b || set->operands[0] != arg)
      continue;
    // c and its next value are yielded once each: as carry c (not swapped, not stacked).
    bool once = true;
    for (size_t y = 0; y < b.yields.size(); ++y)
      once = once && (b.yields[y] != arg) && (static_cast<int64_t>(y) == c || b.yields[y] != next);
    // The set_row's ancestors in the body: the readers of c that certainly ran before it.
    std::unordered_set<const Node *> before;
    std::vector<const Node *> work = {set};
    while (!work.empty()) {
      const Node *n = work.back();
      work.pop_back();
      for (size_t j = (n == set ? 1 : 0); j < n->operands.size(); ++j) {
        const Node *d = n->operands[j]->def;
        if (d && d->parent == &b && before.insert(d).second)
          work.push_back(d);
      }
    }
    bool readersFirst = once;
    for (const auto &n : b.nodes)
      if (n.get() != set && std::count(n->operands.begin(), n->operands.end(), arg))
        readersFirst = readersFirst && before.count(n.get()) && n->op != Op::Reshape && n->op != Op::Transpose; // (views read later)
    if (readersFirst)
      inPlaceRows[next] = arg;
  }
}

void LoopLevel::planSeqViews(const Node &scan) {
  const Graph &b = *scan.body;
  const int64_t axis = scan.getInt("axis"), nseq = scan.getInt("nseq"), ncarry = scan.getInt("ncarry");
  std::unordered_map<const Node *, const FusedLoop *> loopOf;
  for (const FusedLoop &l : loops.at(&b))
    for (const Node *n : l.nodes)
      loopOf[n] = &l;
  auto inFusedLoop = [&](const Node *n) {
    auto it = loopOf.find(n);
    return it != loopOf.end() && it->second->fused();
  };
  // Every reader of v in the body takes memory strides; v is yielded at most once (as `yield`).
  auto readersTakeStrides = [&](const Value *v, size_t yieldedAt) {
    for (size_t y = 0; y < b.yields.size(); ++y)
      if (b.yields[y] == v && y != yieldedAt)
        return false;
    for (const auto &n : b.nodes)
      for (size_t j = 0; j < n->operands.size(); ++j) {
        if (n->operands[j] != v)
          continue;
        const bool matrix = n->op == Op::MatMul && j < 2 && v->type.rank() == 2 && n->operands[1 - j]->type.rank() == 2;
        if (n->body || !(matrix || (inFusedLoop(n.get()) && n->op != Op::Reshape)))
          return false;
      }
    return true;
  };
  auto view = [&](const Value *stacked) {
    std::vector<int64_t> st = stridesOf(stacked->type.shape);
    const int64_t step = st[axis];
    st.erase(st.begin() + axis);
    return SeqView{step, st};
  };
  const auto contiguousRows = [&](const Value *stacked) { return axis + 1 < static_cast<int64_t>(stacked->type.rank()); };
  for (int64_t s = 0; s < nseq; ++s) {
    const Value *arg = b.args[s]; // (one the body never reads costs nothing either)
    if (contiguousRows(scan.operands[s]) && readersTakeStrides(arg, b.yields.size())) // (not yielded either)
      seqViews[arg] = view(scan.operands[s]);
  }
  for (size_t y = ncarry; y < b.yields.size(); ++y) {
    const Value *v = b.yields[y];
    const Node *d = v->def;
    const bool computed = d && d->parent == &b &&
                          ((inFusedLoop(d) && hasTrait(d->op, TR_ELEMENTWISE)) || d->op == Op::Concat); // writers that take strides
    if (!computed || seqViews.count(v))
      continue;
    if (contiguousRows(scan.results[y]) && readersTakeStrides(v, y))
      seqViews[v] = view(scan.results[y]);
  }
}

std::vector<int64_t> LoopLevel::memStrides(const Value *v) const {
  auto it = seqViews.find(v);
  return it != seqViews.end() ? it->second.strides : stridesOf(v->type.shape);
}

Storage LoopLevel::storageOf(const Value *v) const {
  if (captures_.count(v) || inRegisters_.count(v) || seqViews.count(v) || inPlaceRows.count(v))
    return Storage::None;
  if (folded.count(v))
    return Storage::AliasOf0; // the matmul reads the transpose's operand
  if (const Node *d = v->def) {
    if (hasTrait(d->op, TR_RANDOM))
      return Storage::None; // recomputed by every (elementwise) reader
    if ((d->op == Op::Param || d->op == Op::Buffer) && v->type.dtype == DType::F32)
      return Storage::None; // state, outside the arena
    if (d->op == Op::Reshape)
      return Storage::AliasOf0;
  }
  return Storage::Slot;
}

void printMemoryPlans(const Module &m, std::ostream &os, const LowerOptions &opts) { LoopLevel(m, opts, {}, &os); }

} // namespace gradc
