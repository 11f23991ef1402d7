// MemoryPlan.cpp: liveness of a graph's values over its node order and a first-fit placement
// of their buffers in one arena (scan bodies placed recursively as blocks).
#include "lower/MemoryPlan.h"

#include <algorithm>

#include <fmt/format.h>

#include "ir/Rewrite.h"

namespace gradc {

namespace {

constexpr int64_t kAlign = 16; // elements: 64 bytes in float

int64_t aligned(int64_t n) { return (std::max<int64_t>(1, n) + kAlign - 1) / kAlign * kAlign; }

/// A request for memory: `size` elements live over [start, end] of the graph's node order.
struct Interval {
  const Value *value; ///< Null for a scan body's block.
  const Node *scan;   ///< The scan whose body block this is, or null.
  int64_t size;
  int start, end;
  int64_t offset = -1;
};

/// First fit in order of start: each interval takes the lowest offset where it overlaps no
/// placed interval alive at the same time.
int64_t placeIntervals(std::vector<Interval> &iv, bool share) {
  std::vector<size_t> order(iv.size());
  for (size_t i = 0; i < iv.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return iv[a].start < iv[b].start; });
  int64_t total = 0;
  std::vector<size_t> placed;
  for (size_t k : order) {
    Interval &x = iv[k];
    if (!share) {
      x.offset = total;
      total += x.size;
      continue;
    }
    std::vector<std::pair<int64_t, int64_t>> busy; // [offset, offset + size) of live overlapping intervals
    for (size_t j : placed)
      if (iv[j].start <= x.end && x.start <= iv[j].end)
        busy.push_back({iv[j].offset, iv[j].offset + iv[j].size});
    std::sort(busy.begin(), busy.end());
    int64_t at = 0;
    for (auto [b, e] : busy) {
      if (at + x.size <= b)
        break;
      at = std::max(at, e);
    }
    x.offset = at;
    total = std::max(total, at + x.size);
    placed.push_back(k);
  }
  return total;
}

using StorageFn = std::function<Storage(const Value *)>;
using TimeFn = std::function<int(const Node *)>;

MemoryPlan planGraph(const Graph &g, const StorageFn &storage, const TimeFn &timeOf, bool share, int depth) {
  const int N = static_cast<int>(g.nodes.size()); // after every loop of the graph
  std::unordered_map<const Value *, const Value *> root; // alias -> the value owning the memory
  auto rootOf = [&](const Value *v) {
    auto it = root.find(v);
    return it == root.end() ? v : it->second;
  };
  std::vector<Interval> iv;
  std::unordered_map<const Value *, size_t> index;
  auto request = [&](const Value *v, int start) {
    if (storage(v) != Storage::Slot)
      return;
    index[v] = iv.size();
    iv.push_back({v, nullptr, aligned(v->type.numel()), start, start});
  };
  auto use = [&](const Value *v, int at) {
    auto it = index.find(rootOf(v));
    if (it != index.end())
      iv[it->second].end = std::max(iv[it->second].end, at);
  };
  // Arguments (a body's step slices and carries) live through the whole body.
  for (const Value *a : g.args) {
    request(a, -1);
    use(a, N);
  }
  std::vector<MemoryPlan> bodies;
  for (int k = 0; k < N; ++k) {
    const Node &n = *g.nodes[k];
    const int i = timeOf(&n); // fused nodes share their loop's time
    for (const Value *v : n.operands) {
      use(v, n.op == Op::Update ? N : i);
      // A matmul reads a transposed operand's source with a transpose flag (LoopLevel::matOperand),
      // also when the transpose is computed for another reader: the source lives until here too.
      if (n.op == Op::MatMul && isMatrixTranspose(v))
        use(v->def->operands[0], i);
    }
    if (n.body) {
      bodies.push_back(planGraph(*n.body, storage, timeOf, share, depth + 1));
      iv.push_back({nullptr, &n, bodies.back().size, i, i});
    }
    for (const Value *r : n.results) {
      if (storage(r) == Storage::AliasOf0)
        root[r] = rootOf(n.operands[0]);
      else
        request(r, i);
    }
  }
  for (const Value *y : g.yields)
    use(y, N);

  MemoryPlan plan;
  plan.size = placeIntervals(iv, share);
  size_t b = 0;
  for (const Interval &x : iv) {
    if (x.value) {
      plan.offset[x.value] = x.offset;
      plan.buffers.push_back({x.value, x.offset, x.size, x.start, x.end, depth});
      plan.unsharedSize += x.size;
      continue;
    }
    const MemoryPlan &body = bodies[b++];
    for (const auto &[v, off] : body.offset)
      plan.offset[v] = x.offset + off;
    for (PlacedBuffer pb : body.buffers) {
      pb.offset += x.offset;
      plan.buffers.push_back(pb);
    }
    plan.unsharedSize += body.unsharedSize;
  }
  return plan;
}

} // namespace

MemoryPlan planMemory(const Graph &g, const StorageFn &storage, const TimeFn &timeOf, bool share) {
  return planGraph(g, storage, timeOf, share, 0);
}

void printMemoryPlan(const std::string &graphName, const MemoryPlan &p, std::ostream &os) {
  os << fmt::format("memory plan @{}: {} buffers, arena {} elements ({:.1f} KiB in f32); without sharing {} ({:.1f} KiB)\n",
                    graphName, p.buffers.size(), p.size, p.size * 4 / 1024.0, p.unsharedSize, p.unsharedSize * 4 / 1024.0);
  for (const PlacedBuffer &b : p.buffers) {
    std::string name = b.value->name.empty() ? fmt::format("%{}", b.value->id) : "%" + b.value->name;
    os << fmt::format("  {}{:<28} {:<12} live {:>4}..{:<4} offset {:>10} size {:>9}\n", std::string(2 * b.depth, ' '), name,
                      b.value->type.str(), b.start, b.end, b.offset, b.size);
  }
}

} // namespace gradc
