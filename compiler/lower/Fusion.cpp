// Fusion.cpp: groups elementwise, indexed and reduction nodes into loop nests (moving a node
// up to an earlier loop over the same space when its operands are ready there) and decides
// which of their results must be written to memory.
#include "lower/Fusion.h"

#include <algorithm>
#include <functional>
#include <unordered_map>
#include <unordered_set>

namespace gradc {

int FusedLoop::reductions() const {
  int n = 0;
  for (const Node *m : nodes)
    n += hasTrait(m->op, TR_REDUCTION);
  return n;
}

bool isLoopFusable(const Node &n) {
  if (n.results.size() != 1 || n.body)
    return false;
  return hasTrait(n.op, TR_ELEMENTWISE) || hasTrait(n.op, TR_INDEXED);
}

bool isFusableReduction(const Node &n) { return hasTrait(n.op, TR_REDUCTION) && n.results.size() == 1; }

namespace {

/// A group being built: its loop, where it runs, and what it computes.
struct Group {
  FusedLoop loop;
  size_t start;                                  ///< Position of its first member.
  std::unordered_set<const Value *> results;     ///< Results of its members.
  std::unordered_set<const Value *> reduced;     ///< Results of its reduction members.
  bool fusable;                                  ///< False for a single non-fusable node.
};

} // namespace

std::vector<FusedLoop> planLoops(const Graph &g, bool fuse, const LoopHooks &hooks) {
  std::unordered_map<const Value *, std::vector<const Node *>> users;
  for (const auto &n : g.nodes)
    for (const Value *v : n->operands)
      users[v].push_back(n.get());
  std::unordered_set<const Value *> yielded(g.yields.begin(), g.yields.end());

  auto alone = [&](const Node &n) { return hooks.alone && hooks.alone(n); };

  // The order loops are formed in: an elementwise or indexed node waits until just before
  // its first user. A user's waiting operands of another shape go first, so those of its
  // own shape come right before it and can share its loop.
  std::vector<const Node *> order;
  std::unordered_set<const Node *> deferred, placed;
  std::function<void(const Node *)> put = [&](const Node *n) {
    if (!placed.insert(n).second)
      return;
    const std::vector<int64_t> *own = n->results.size() == 1 ? &n->results[0]->type.shape : nullptr;
    for (int sameShape = 0; sameShape < 2; ++sameShape)
      for (const Value *o : n->operands)
        if (o->def && deferred.count(o->def) && (own && o->type.shape == *own) == (sameShape == 1))
          put(o->def);
    order.push_back(n);
  };
  for (const auto &n : g.nodes) {
    if (fuse && isLoopFusable(*n) && !alone(*n))
      deferred.insert(n.get());
    else
      put(n.get());
  }
  for (const auto &n : g.nodes)
    put(n.get()); // deferred nodes only yielded

  std::vector<Group> groups;
  std::unordered_map<const Value *, size_t> time; // value -> start of the group computing it
  for (size_t pos = 0; pos < order.size(); ++pos) {
    const Node &n = *order[pos];
    const bool single = alone(n);
    const bool reduction = !single && isFusableReduction(n);
    const bool elementwise = !single && isLoopFusable(n);
    std::vector<int64_t> space = reduction ? n.operands[0]->type.shape
                                           : (n.results.empty() ? std::vector<int64_t>{} : n.results[0]->type.shape);
    // The latest group n may join. A reader of a collective's result (through views) joins
    // only the group just before it: moving it up would wait for the collective earlier and
    // leave less work to overlap it with.
    const bool readsCollective = std::any_of(n.operands.begin(), n.operands.end(), [](const Value *o) {
      while (o->def && hasTrait(o->def->op, TR_SHAPE) && !o->def->operands.empty())
        o = o->def->operands[0];
      return o->def && hasTrait(o->def->op, TR_COLLECTIVE);
    });
    size_t chosen = groups.size();
    if (fuse && (reduction || elementwise)) {
      for (size_t gi = groups.size(); gi-- > 0;) {
        if (readsCollective && gi + 1 != groups.size())
          break;
        const Group &G = groups[gi];
        if (!G.fusable || G.loop.shape != space)
          continue;
        bool ok = true;
        for (const Value *o : n.operands) {
          if (G.results.count(o)) {
            // Inside the loop: a register, unless n reads it at another index or it is a
            // reduction still accumulating.
            ok = ok && !hasTrait(n.op, TR_INDEXED) && !G.reduced.count(o);
            continue;
          }
          if (o->def && hasTrait(o->def->op, TR_RANDOM))
            continue; // recomputed by its reader: available to any loop
          auto t = time.find(o);
          ok = ok && (t == time.end() || t->second < G.start);
        }
        if (ok) {
          chosen = gi;
          break;
        }
        // n cannot move above a group that computes one of its operands.
        bool feeds = false;
        for (const Value *o : n.operands)
          feeds = feeds || G.results.count(o);
        if (feeds)
          break;
      }
    }
    if (chosen == groups.size()) {
      Group G;
      G.start = pos;
      G.fusable = fuse && (reduction || elementwise);
      G.loop.shape = space;
      groups.push_back(std::move(G));
    }
    Group &G = groups[chosen];
    G.loop.nodes.push_back(&n);
    for (const Value *r : n.results) {
      G.results.insert(r);
      time[r] = G.start;
      if (hooks.readyAtStart && hooks.readyAtStart(n))
        time.erase(r);
      // A reshape is a view: its result is ready as soon as its operand is.
      if (n.op == Op::Reshape) {
        auto t = time.find(n.operands[0]);
        if (t == time.end())
          time.erase(r);
        else
          time[r] = t->second;
      }
      if (reduction)
        G.reduced.insert(r);
    }
  }

  std::vector<FusedLoop> loops;
  for (Group &G : groups) {
    FusedLoop &l = G.loop;
    std::unordered_set<const Node *> members(l.nodes.begin(), l.nodes.end());
    for (const Node *m : l.nodes) {
      if (m->results.empty()) {
        l.stored.push_back(true);
        continue;
      }
      const Value *r = m->results[0];
      bool outside = yielded.count(r) != 0 || hasTrait(m->op, TR_REDUCTION);
      for (const Node *u : users[r])
        outside = outside || !members.count(u);
      l.stored.push_back(outside || !l.fused());
    }
    loops.push_back(std::move(l));
  }
  return loops;
}

} // namespace gradc
