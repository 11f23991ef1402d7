// RecurrentCells.cpp: matches a scan body against PyTorch's LSTM and GRU cell equations, op by op and operand by operand (either order of a commutative add or mul), and the scan's outer wiring (zero initial state, hoisted input projection).
#include "deploy/RecurrentCells.h"

#include <functional>

namespace gradc {

namespace {

/// The node defining `v` when it is an `op`, else null.
const Node *def(const Value *v, Op op) { return v && v->def && v->def->op == op ? v->def : nullptr; }

/// Tries `f(a, b)` and `f(b, a)` on a two-operand node.
bool either(const Node *n, const std::function<bool(const Value *, const Value *)> &f) {
  return n && n->operands.size() == 2 && (f(n->operands[0], n->operands[1]) || f(n->operands[1], n->operands[0]));
}

/// The body of one scan with the helpers that read through its captures.
struct Body {
  const Node &scan;
  const Graph &g;
  int64_t nseq, ncarry, H = 0, rows = 0;

  explicit Body(const Node &s)
      : scan(s), g(*s.body), nseq(s.getInt("nseq")), ncarry(s.getInt("ncarry")) {}

  const Value *seq() const { return g.args[0]; }
  const Value *carry(int64_t k) const { return g.args[nseq + k]; }

  /// The outer value a body argument captures, or null for a sequence slice or carry.
  const Value *outer(const Value *v) const {
    if (v->def || v->owner != &g || v->index < nseq + ncarry)
      return nullptr;
    return scan.operands.at(v->index);
  }

  /// The param or buffer node behind captured value `v` when it has `shape`.
  const Node *state(const Value *v, const std::vector<int64_t> &shape) const {
    const Value *o = outer(v);
    if (!o || !o->def || (o->def->op != Op::Param && o->def->op != Op::Buffer) || o->type.shape != shape ||
        o->type.dtype != DType::F32)
      return nullptr;
    return o->def;
  }

  /// Whether captured value `v` is the scalar constant `value`.
  bool constant(const Value *v, double value) const {
    const Value *o = outer(v);
    const Node *c = o ? def(o, Op::Const) : nullptr;
    return c && c->getFloat("value") == value;
  }

  /// h @ transpose(W_hh) with h carry `k`: returns W_hh's node, or null.
  const Node *recurrentMatmul(const Value *v, int64_t k, int64_t gates) const {
    const Node *mm = def(v, Op::MatMul);
    if (!mm || mm->operands[0] != carry(k))
      return nullptr;
    const Node *t = def(mm->operands[1], Op::Transpose);
    if (!t || t->getInts("perm") != std::vector<int64_t>{1, 0})
      return nullptr;
    return state(t->operands[0], {gates * H, H});
  }

  /// Column block `k` of `src` ([rows, gates*H]): src[:, k*H:(k+1)*H].
  bool block(const Value *v, const Value *&src, int64_t k) const {
    const Node *s = def(v, Op::Slice);
    if (!s || s->operands[0]->type.rank() != 2 || s->getInts("begin") != std::vector<int64_t>{0, k * H} ||
        s->getInts("end") != std::vector<int64_t>{rows, (k + 1) * H})
      return false;
    src = s->operands[0];
    return true;
  }

  /// act(src[:, k*H:(k+1)*H]) with `act` sigmoid or tanh: the gate's source.
  const Value *gate(const Value *v, Op act, int64_t k) const {
    const Node *a = def(v, act);
    const Value *src = nullptr;
    return a && block(a->operands[0], src, k) ? src : nullptr;
  }
};

/// Collects the leaves of a tree of adds.
void addLeaves(const Value *v, std::vector<const Value *> &out) {
  if (const Node *a = def(v, Op::Add)) {
    addLeaves(a->operands[0], out);
    addLeaves(a->operands[1], out);
  } else {
    out.push_back(v);
  }
}

/// LSTM gates = x_t + b_ih + h @ W_hh^T + b_hh, summed in any order (biases optional).
bool lstmGates(const Body &b, const Value *gates, int64_t hCarry, RecurrentCell &cell) {
  std::vector<const Value *> leaves;
  addLeaves(gates, leaves);
  bool seq = false;
  std::vector<const Node *> biases;
  for (const Value *l : leaves) {
    if (l == b.seq() && !seq) {
      seq = true;
    } else if (const Node *w = b.recurrentMatmul(l, hCarry, 4); w && !cell.wHh) {
      cell.wHh = w;
    } else if (const Node *bias = b.state(l, {4 * b.H}); bias && biases.size() < 2) {
      biases.push_back(bias);
    } else {
      return false;
    }
  }
  cell.bIh = biases.size() > 0 ? biases[0] : nullptr;
  cell.bHh = biases.size() > 1 ? biases[1] : nullptr;
  return seq && cell.wHh;
}

/// The LSTM body: yields (h', c', h') or (c', h', h') with c' = f*c + i*g, h' = o*tanh(c').
bool matchLstm(const Body &b, RecurrentCell &cell) {
  if (b.ncarry != 2 || b.nseq != 1 || b.g.yields.size() != 3)
    return false;
  for (int hIdx = 0; hIdx < 2; ++hIdx) {
    const int cIdx = 1 - hIdx;
    const Value *h2 = b.g.yields[hIdx], *c2 = b.g.yields[cIdx];
    if (b.g.yields[2] != h2 || b.carry(hIdx)->type.shape != b.carry(cIdx)->type.shape)
      continue;
    const Value *src = nullptr;
    auto gateOf = [&](const Value *v, Op act, int64_t k) {
      const Value *s = b.gate(v, act, k);
      if (!s || (src && s != src))
        return false;
      src = s;
      return true;
    };
    bool ok = either(def(h2, Op::Mul), [&](const Value *o, const Value *t) {
      const Node *tn = def(t, Op::Tanh);
      return tn && tn->operands[0] == c2 && gateOf(o, Op::Sigmoid, 3);
    });
    ok = ok && either(def(c2, Op::Add), [&](const Value *p, const Value *q) {
      bool fc = either(def(p, Op::Mul), [&](const Value *f, const Value *c) {
        return c == b.carry(cIdx) && gateOf(f, Op::Sigmoid, 1);
      });
      return fc && either(def(q, Op::Mul), [&](const Value *i, const Value *g) {
        return gateOf(i, Op::Sigmoid, 0) && gateOf(g, Op::Tanh, 2);
      });
    });
    if (ok && lstmGates(b, src, hIdx, cell)) {
      cell.hResult = hIdx;
      cell.cResult = cIdx;
      return true;
    }
  }
  return false;
}

/// GRU gi = x_t (+ b_ih): returns whether `v` is that, setting the bias.
bool gruInput(const Body &b, const Value *v, RecurrentCell &cell) {
  if (v == b.seq())
    return true;
  return either(def(v, Op::Add), [&](const Value *x, const Value *bias) {
    cell.bIh = b.state(bias, {3 * b.H});
    return x == b.seq() && cell.bIh;
  });
}

/// GRU gh = h @ W_hh^T (+ b_hh).
bool gruHidden(const Body &b, const Value *v, RecurrentCell &cell) {
  if ((cell.wHh = b.recurrentMatmul(v, 0, 3)))
    return true;
  return either(def(v, Op::Add), [&](const Value *mm, const Value *bias) {
    cell.bHh = b.state(bias, {3 * b.H});
    cell.wHh = b.recurrentMatmul(mm, 0, 3);
    return cell.wHh && cell.bHh;
  });
}

/// The GRU body: yields (h', h') with h' = (1 - z)*n + z*h.
bool matchGru(const Body &b, RecurrentCell &cell) {
  if (b.ncarry != 1 || b.nseq != 1 || b.g.yields.size() != 2 || b.g.yields[0] != b.g.yields[1])
    return false;
  const Value *gi = nullptr, *gh = nullptr;
  // gi is the sequence slice, alone or plus something; gh is not.
  auto fromSeq = [&](const Value *v) {
    const Node *a = def(v, Op::Add);
    return v == b.seq() || (a && (a->operands[0] == b.seq() || a->operands[1] == b.seq()));
  };
  // act(gi[:, k] + gh[:, k]) for the gates r (k = 0) and z (k = 1).
  auto sumGate = [&](const Value *v, int64_t k) {
    const Node *s = def(v, Op::Sigmoid);
    return s && either(def(s->operands[0], Op::Add), [&](const Value *a, const Value *c) {
      const Value *sa = nullptr, *sc = nullptr;
      if (!b.block(a, sa, k) || !b.block(c, sc, k) || !fromSeq(sa) || fromSeq(sc) || (gi && sa != gi) ||
          (gh && sc != gh))
        return false;
      gi = sa, gh = sc;
      return true;
    });
  };
  auto nGate = [&](const Value *v) { // tanh(gi[:, 2] + r * gh[:, 2])
    const Node *t = def(v, Op::Tanh);
    return t && either(def(t->operands[0], Op::Add), [&](const Value *a, const Value *rg) {
      const Value *sa = nullptr;
      return b.block(a, sa, 2) && sa == gi && either(def(rg, Op::Mul), [&](const Value *r, const Value *g) {
        const Value *sg = nullptr;
        return b.block(g, sg, 2) && sg == gh && sumGate(r, 0);
      });
    });
  };
  const Value *h = b.carry(0);
  bool ok = either(def(b.g.yields[0], Op::Add), [&](const Value *p, const Value *q) {
    const Value *z = nullptr;
    bool zh = either(def(q, Op::Mul), [&](const Value *zz, const Value *hh) {
      z = zz;
      return hh == h && sumGate(zz, 1);
    });
    return zh && either(def(p, Op::Mul), [&](const Value *oneMinusZ, const Value *n) {
      const Node *s = def(oneMinusZ, Op::Sub);
      return s && b.constant(s->operands[0], 1) && s->operands[1] == z && nGate(n);
    });
  });
  if (!ok || !gruInput(b, gi, cell) || !gruHidden(b, gh, cell))
    return false;
  cell.hResult = 0;
  return true;
}

/// The scan's sequence operand x @ transpose(W_ih) and zero initial carries.
bool matchOuter(const Node &scan, RecurrentCell &cell) {
  const int64_t ncarry = scan.getInt("ncarry");
  for (int64_t k = 0; k < ncarry; ++k) {
    const Node *c = def(scan.operands[1 + k], Op::Const);
    if (!c || c->getFloat("value") != 0)
      return false;
  }
  const Node *mm = def(scan.operands[0], Op::MatMul);
  if (!mm || mm->operands[0]->type.rank() != 3 || mm->operands[0]->type.dtype != DType::F32)
    return false;
  const Node *t = def(mm->operands[1], Op::Transpose);
  if (!t || t->getInts("perm") != std::vector<int64_t>{1, 0})
    return false;
  const Node *w = t->operands[0]->def;
  const int64_t in = mm->operands[0]->type.shape[2];
  if (!w || (w->op != Op::Param && w->op != Op::Buffer) ||
      w->result()->type.shape != std::vector<int64_t>{cell.gates * cell.hidden, in})
    return false;
  cell.input = mm->operands[0];
  cell.wIh = w;
  cell.projection = {t, mm};
  return true;
}

} // namespace

std::optional<RecurrentCell> matchRecurrentCell(const Node &scan) {
  if (scan.op != Op::Scan || !scan.body || scan.getInt("nseq") != 1 || scan.getInt("ncarry") < 1)
    return std::nullopt;
  const int64_t axis = scan.getInt("axis");
  Body b(scan);
  const TensorType &h = b.carry(0)->type;
  if ((axis != 0 && axis != 1) || h.rank() != 2 || h.dtype != DType::F32)
    return std::nullopt;
  b.rows = h.shape[0];
  b.H = h.shape[1];
  auto start = [&]() {
    RecurrentCell cell;
    cell.scan = &scan;
    cell.hidden = b.H;
    cell.reverse = scan.has("reverse") && scan.getInt("reverse") != 0;
    return cell;
  };
  RecurrentCell cell = start();
  if (matchLstm(b, cell)) {
    cell.kind = CellKind::Lstm;
    cell.gates = 4;
    cell.seqResult = 2;
  } else if (cell = start(); matchGru(b, cell)) {
    cell.kind = CellKind::Gru;
    cell.gates = 3;
    cell.seqResult = 1;
  } else {
    return std::nullopt;
  }
  if (b.seq()->type.shape != std::vector<int64_t>{b.rows, cell.gates * b.H})
    return std::nullopt;
  if (!matchOuter(scan, cell))
    return std::nullopt;
  return cell;
}

} // namespace gradc
