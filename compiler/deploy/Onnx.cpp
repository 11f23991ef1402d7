// Onnx.cpp: the ONNX exporter: one walk over the inference graph that writes each graph op as ONNX nodes through Debian's generated protobuf classes (libonnx_proto), scans as ONNX Scan with their bodies as subgraphs.
#include "deploy/Onnx.h"

#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <onnx/onnx_pb.h>

#include "deploy/BatchAxes.h"
#include "deploy/FoldWeights.h"
#include "deploy/RecurrentCells.h"

namespace gradc {

namespace {

int32_t onnxType(DType t) {
  switch (t) {
  case DType::F32: return onnx::TensorProto::FLOAT;
  case DType::I32: return onnx::TensorProto::INT32;
  case DType::I64: return onnx::TensorProto::INT64;
  }
  return onnx::TensorProto::UNDEFINED;
}

/// The name of the symbolic batch dim (--onnx-dynamic-batch).
constexpr const char *kBatchDim = "batch";

/// A value's name and type; the axes in the bit mask `batch` get the symbolic size "batch".
void setValueInfo(onnx::ValueInfoProto *vi, const std::string &name, const TensorType &t, uint64_t batch = 0) {
  vi->set_name(name);
  onnx::TypeProto_Tensor *tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnxType(t.dtype));
  onnx::TensorShapeProto *sh = tt->mutable_shape();
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (i < 64 && ((batch >> i) & 1u))
      sh->add_dim()->set_dim_param(kBatchDim);
    else
      sh->add_dim()->set_dim_value(t.shape[i]);
  }
}

void attrInt(onnx::NodeProto *n, const char *name, int64_t v) {
  onnx::AttributeProto *a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void attrInts(onnx::NodeProto *n, const char *name, const std::vector<int64_t> &v) {
  onnx::AttributeProto *a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v)
    a->add_ints(x);
}

/// A tensor of `dtype` and `shape` holding `value` everywhere (`count` elements).
void fillTensor(onnx::TensorProto *t, DType dtype, const std::vector<int64_t> &shape, double value, int64_t count) {
  t->set_data_type(onnxType(dtype));
  for (int64_t d : shape)
    t->add_dims(d);
  for (int64_t k = 0; k < count; ++k) {
    if (dtype == DType::F32)
      t->add_float_data(static_cast<float>(value));
    else if (dtype == DType::I32)
      t->add_int32_data(static_cast<int32_t>(value));
    else
      t->add_int64_data(static_cast<int64_t>(value));
  }
}

/// Writes the graph IR's inference graph as ONNX.
class Exporter {
public:
  Exporter(const Module &m, const Weights &w, const OnnxOptions &opts, Diagnostics &diag)
      : m_(m), w_(w), opts_(opts), diag_(diag) {}

  void top(onnx::GraphProto *g) {
    top_ = g;
    g->set_name(m_.name);
    if (opts_.dynamicBatch)
      batchSize(*m_.inferGraph);
    fold_.emplace(*m_.inferGraph, w_, [this](const Value *v) { return batchOf(v) != 0; });
    planRecurrences(*m_.inferGraph);
    emitNodes(*m_.inferGraph, g);
    pruneDeadNodes();
    pruneInitializers();
  }

private:
  const std::string &name(const Value *v) {
    auto it = names_.find(v);
    if (it == names_.end()) {
      const FoldedTensor *f = fold_ ? fold_->computed(v) : nullptr;
      it = names_.emplace(v, f ? foldedInitializer(v, *f) : fmt::format("v{}", v->id)).first;
    }
    return it->second;
  }

  /// The first parameter or buffer `v` is computed from (through scan captures), or "".
  std::string stateBehind(const Value *v) {
    if (!v->def) {
      const Node *scan = v->owner ? v->owner->parentNode : nullptr;
      return scan && v->index < scan->operands.size() ? stateBehind(scan->operands[v->index]) : "";
    }
    if (v->def->op == Op::Param || v->def->op == Op::Buffer)
      return v->def->getStr("name");
    for (const Value *o : v->def->operands)
      if (std::string s = stateBehind(o); !s.empty())
        return s;
    return "";
  }

  /// Writes the export-time value `f` of `v` as an initializer named after the model value
  /// (or the first weight it is computed from) with ".folded"; returns the name.
  std::string foldedInitializer(const Value *v, const FoldedTensor &f) {
    std::string out = (v->name.empty() ? stateBehind(v) : v->name) + ".folded";
    if (initialized_.count(out))
      out = fmt::format("{}{}", out, v->id);
    initialized_.insert(out);
    onnx::TensorProto *t = top_->add_initializer();
    t->set_name(out);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : f.shape)
      t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char *>(f.data.data()), f.data.size() * sizeof(float)));
    return out;
  }

  std::string fresh() { return fmt::format("k{}", counter_++); }

  onnx::NodeProto *node(onnx::GraphProto *g, const char *op, const std::vector<std::string> &in,
                        const std::vector<std::string> &out) {
    onnx::NodeProto *n = g->add_node();
    n->set_op_type(op);
    n->set_name(fmt::format("n{}", counter_++));
    for (const std::string &s : in)
      n->add_input(s);
    for (const std::string &s : out)
      n->add_output(s);
    return n;
  }

  /// A Constant node in `g` holding a 1-D int64 tensor.
  std::string constInts(onnx::GraphProto *g, const std::vector<int64_t> &v) {
    std::string out = fresh();
    onnx::NodeProto *n = node(g, "Constant", {}, {out});
    onnx::AttributeProto *a = n->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    onnx::TensorProto *t = a->mutable_t();
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(v.size()));
    for (int64_t x : v)
      t->add_int64_data(x);
    return out;
  }

  /// The batch axes of `v` (none without --onnx-dynamic-batch).
  uint64_t batchOf(const Value *v) const { return batch_ ? batch_->of(v) : 0; }

  /// Traces the batch axes and writes `batch_size_`, the run's batch size as a 1-D int64
  /// tensor of one element: Shape(input)[0:1] of the first input.
  void batchSize(const Graph &graph) {
    batch_.emplace(graph, diag_);
    for (const std::unique_ptr<Node> &n : graph.nodes)
      if (n->op == Op::Input && n->result()->type.rank() > 0) {
        const std::string &x = n->getStr("name"), shape = x + ".shape";
        batchSize_ = x + ".batch_size";
        node(top_, "Shape", {x}, {shape});
        node(top_, "Slice", {shape, constInts(top_, {0}), constInts(top_, {1})}, {batchSize_});
        return;
      }
  }

  /// A 1-D int64 tensor in `g` holding `shape`, with the run's batch size at the axes in
  /// the bit mask `batch`.
  std::string shapeInput(onnx::GraphProto *g, const std::vector<int64_t> &shape, uint64_t batch) {
    if (batch == 0 || batchSize_.empty())
      return constInts(g, shape);
    std::vector<std::string> parts;
    std::vector<int64_t> run;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i < 64 && ((batch >> i) & 1u)) {
        if (!run.empty())
          parts.push_back(constInts(g, run));
        run.clear();
        parts.push_back(batchSize_);
      } else {
        run.push_back(shape[i]);
      }
    }
    if (!run.empty())
      parts.push_back(constInts(g, run));
    std::string out = fresh();
    attrInt(node(g, "Concat", parts, {out}), "axis", 0);
    return out;
  }

  /// A Constant node in `g` holding a scalar (or, with `oneD`, a one-element vector) of `dtype`.
  std::string constScalar(onnx::GraphProto *g, DType dtype, double value, bool oneD = false) {
    std::string out = fresh();
    onnx::NodeProto *n = node(g, "Constant", {}, {out});
    onnx::AttributeProto *a = n->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    fillTensor(a->mutable_t(), dtype, oneD ? std::vector<int64_t>{1} : std::vector<int64_t>{}, value, 1);
    return out;
  }

  /// The initializer of state `n` (a param or buffer node), added to the top graph once.
  void initializer(const Node &n) {
    const std::string &state = n.getStr("name");
    names_[n.result()] = state;
    if (!initialized_.insert(state).second)
      return;
    auto it = w_.find(state);
    if (it == w_.end())
      diag_.error(n.loc, "ONNX export: no weights for '{}'", state);
    const WeightTensor &wt = it->second;
    onnx::TensorProto *t = top_->add_initializer();
    t->set_name(state);
    t->set_data_type(onnxType(n.result()->type.dtype));
    for (int64_t d : wt.shape)
      t->add_dims(d);
    const TensorType &type = n.result()->type;
    if (type.dtype == DType::F32)
      t->set_raw_data(std::string(reinterpret_cast<const char *>(wt.f32.data()), wt.f32.size() * sizeof(float)));
    else if (type.dtype == DType::I64)
      t->set_raw_data(std::string(reinterpret_cast<const char *>(wt.i64.data()), wt.i64.size() * sizeof(int64_t)));
    else
      for (int64_t v : wt.i64)
        t->add_int32_data(static_cast<int32_t>(v));
  }

  void emitNodes(const Graph &graph, onnx::GraphProto *g) {
    for (const std::unique_ptr<Node> &n : graph.nodes) {
      if (skip_.count(n.get()) || fold_->folded(*n))
        continue;
      auto rnn = rnns_.find(n.get());
      if (rnn != rnns_.end())
        emitRecurrence(rnn->second, g);
      else
        emitNode(*n, g);
    }
  }

  void unsupported(const Node &n, const char *why) {
    diag_.error(n.loc, "op '{}' has no ONNX form in gradc's exporter{}; the model cannot be exported with --emit=onnx",
                opInfo(n.op).name, why);
  }

  /// One ONNX LSTM or GRU op: a recognised scan, or a forward and a reverse one whose step
  /// outputs are concatenated on the feature axis (direction "bidirectional").
  struct Recurrence {
    RecurrentCell fwd;
    std::optional<RecurrentCell> back;
    const Node *concat = nullptr; ///< The concat of both directions' step outputs.
  };

  void planRecurrences(const Graph &graph);
  std::string recurrenceWeight(const Recurrence &r, const char *suffix, bool recurrent);
  std::string recurrenceBias(const Recurrence &r);
  void emitRecurrence(const Recurrence &r, onnx::GraphProto *g);
  void pruneDeadNodes();
  void pruneInitializers();
  void emitScan(const Node &n, onnx::GraphProto *g);
  void emitNode(const Node &n, onnx::GraphProto *g);

  const Module &m_;
  const Weights &w_;
  const OnnxOptions &opts_;
  Diagnostics &diag_;
  std::optional<BatchAxes> batch_; ///< With --onnx-dynamic-batch: the batch axes of every value.
  std::string batchSize_;          ///< With --onnx-dynamic-batch: the run's batch size, [1] int64.
  onnx::GraphProto *top_ = nullptr;
  std::unordered_map<const Value *, std::string> names_;
  std::set<std::string> initialized_;
  int64_t counter_ = 0;
  std::unordered_map<const Value *, int> uses_;        ///< Readers of each top-level value.
  std::unordered_map<const Node *, Recurrence> rnns_;  ///< Written as ONNX LSTM/GRU at this scan.
  std::set<const Node *> skip_;                        ///< Nodes an ONNX LSTM/GRU replaces.
  std::optional<WeightFolder> fold_;                   ///< The weight-only nodes, computed at export time.
};

void Exporter::planRecurrences(const Graph &graph) {
  std::vector<RecurrentCell> cells;
  std::unordered_map<const Node *, size_t> pos;
  for (const std::unique_ptr<Node> &n : graph.nodes) {
    pos[n.get()] = pos.size();
    for (const Value *v : n->operands)
      ++uses_[v];
    if (n->op == Op::Scan)
      if (std::optional<RecurrentCell> c = matchRecurrentCell(*n))
        cells.push_back(*c);
  }
  auto onlyUser = [&](const Value *v) -> const Node * {
    if (uses_[v] != 1)
      return nullptr;
    for (const std::unique_ptr<Node> &n : graph.nodes)
      for (const Value *o : n->operands)
        if (o == v)
          return n.get();
    return nullptr;
  };
  std::set<const Node *> paired;
  for (const RecurrentCell &f : cells) {
    if (paired.count(f.scan))
      continue;
    Recurrence r{f, std::nullopt, nullptr};
    const Node *cat = f.reverse ? nullptr : onlyUser(f.scan->results[f.seqResult]);
    for (const RecurrentCell &b : cells) {
      if (!cat || cat->op != Op::Concat || !b.reverse || paired.count(b.scan) || b.kind != f.kind ||
          b.hidden != f.hidden || b.input != f.input || b.scan->getInt("axis") != f.scan->getInt("axis") ||
          pos[b.scan] < pos[f.scan] || cat->operands.size() != 2 || cat->operands[0] != f.scan->results[f.seqResult] ||
          cat->operands[1] != b.scan->results[b.seqResult] || cat->getInt("axis") != cat->result()->type.rank() - 1)
        continue;
      r.back = b;
      r.concat = cat;
      paired.insert(b.scan);
      skip_.insert(b.scan);
      skip_.insert(cat);
      break;
    }
    paired.insert(f.scan);
    for (const RecurrentCell *c : {&r.fwd, r.back ? &*r.back : nullptr}) {
      if (!c)
        continue;
      const Node *t = c->projection[0], *mm = c->projection[1];
      if (uses_[mm->result()] == 1) {
        skip_.insert(mm);
        if (uses_[t->result()] == 1)
          skip_.insert(t);
      }
    }
    rnns_.emplace(f.scan, std::move(r));
  }
}

/// Row blocks of PyTorch's gate order in ONNX's: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h.
static std::vector<int> onnxGateOrder(CellKind k) {
  return k == CellKind::Lstm ? std::vector<int>{0, 3, 1, 2} : std::vector<int>{1, 0, 2};
}

std::string Exporter::recurrenceWeight(const Recurrence &r, const char *suffix, bool recurrent) {
  const Node *first = recurrent ? r.fwd.wHh : r.fwd.wIh;
  const std::string out = first->getStr("name") + suffix;
  const std::vector<int64_t> &shape = first->result()->type.shape; // [gates*H, cols]
  const int64_t H = r.fwd.hidden, cols = shape[1];
  onnx::TensorProto *t = top_->add_initializer();
  t->set_name(out);
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(r.back ? 2 : 1);
  t->add_dims(shape[0]);
  t->add_dims(cols);
  for (const RecurrentCell *c : {&r.fwd, r.back ? &*r.back : nullptr}) {
    if (!c)
      continue;
    const std::vector<float> &w = w_.at((recurrent ? c->wHh : c->wIh)->getStr("name")).f32;
    for (int blk : onnxGateOrder(c->kind))
      for (int64_t k = blk * H * cols; k < (blk + 1) * H * cols; ++k)
        t->add_float_data(w[k]);
  }
  return out;
}

std::string Exporter::recurrenceBias(const Recurrence &r) {
  const Node *named = r.fwd.bIh ? r.fwd.bIh : r.fwd.bHh ? r.fwd.bHh : r.fwd.wIh;
  const std::string out = named->getStr("name") + (r.fwd.kind == CellKind::Lstm ? ".B_iofc" : ".B_zrh");
  const int64_t H = r.fwd.hidden, G = r.fwd.gates;
  onnx::TensorProto *t = top_->add_initializer();
  t->set_name(out);
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(r.back ? 2 : 1);
  t->add_dims(2 * G * H);
  for (const RecurrentCell *c : {&r.fwd, r.back ? &*r.back : nullptr}) {
    if (!c)
      continue;
    for (const Node *bias : {c->bIh, c->bHh}) { // ONNX B = [Wb, Rb]
      const std::vector<float> *b = bias ? &w_.at(bias->getStr("name")).f32 : nullptr;
      for (int blk : onnxGateOrder(c->kind))
        for (int64_t k = blk * H; k < (blk + 1) * H; ++k)
          t->add_float_data(b ? (*b)[k] : 0.0f);
    }
  }
  return out;
}

void Exporter::emitRecurrence(const Recurrence &r, onnx::GraphProto *g) {
  const bool lstm = r.fwd.kind == CellKind::Lstm, axis1 = r.fwd.scan->getInt("axis") == 1;
  const char *order = lstm ? "_iofc" : "_zrh";
  // ONNX runs time-major ([T, B, I]); a batch-first sequence is transposed in and out.
  const Value *seq = r.concat ? r.concat->result() : r.fwd.scan->results[r.fwd.seqResult];
  const std::string base = name(seq);
  std::string x = name(r.fwd.input);
  if (axis1) {
    std::string xt = base + ".X_time_major";
    attrInts(node(g, "Transpose", {x}, {xt}), "perm", {1, 0, 2});
    x = xt;
  }
  const std::string w = recurrenceWeight(r, (std::string(".W") + order).c_str(), false);
  const std::string rw = recurrenceWeight(r, (std::string(".R") + order).c_str(), true);
  const std::string b = recurrenceBias(r);
  const std::string y = base + ".Y", yh = base + ".Y_h", yc = lstm ? base + ".Y_c" : std::string();
  std::vector<std::string> outs{y, yh};
  if (lstm)
    outs.push_back(yc);
  onnx::NodeProto *op = node(g, lstm ? "LSTM" : "GRU", {x, w, rw, b}, outs);
  attrInt(op, "hidden_size", r.fwd.hidden);
  onnx::AttributeProto *dir = op->add_attribute();
  dir->set_name("direction");
  dir->set_type(onnx::AttributeProto::STRING);
  dir->set_s(r.back ? "bidirectional" : r.fwd.reverse ? "reverse" : "forward");
  if (!lstm)
    attrInt(op, "linear_before_reset", 1); // PyTorch applies r to (h @ W_hn^T + b_hn)
  // Y [T, D, B, H] -> the step outputs [B, T, D*H] (or [T, B, D*H]), forward then reverse.
  if (uses_[seq] > 0) {
    std::string yt = base + ".Y_steps";
    attrInts(node(g, "Transpose", {y}, {yt}), "perm", axis1 ? std::vector<int64_t>{2, 0, 1, 3} : std::vector<int64_t>{0, 2, 1, 3});
    node(g, "Reshape", {yt, shapeInput(g, seq->type.shape, batchOf(seq))}, {name(seq)});
  }
  // Y_h, Y_c [D, B, H]: each direction's last state.
  int d = 0;
  for (const RecurrentCell *c : {&r.fwd, r.back ? &*r.back : nullptr}) {
    if (!c)
      continue;
    for (auto [result, all] : {std::pair{c->hResult, yh}, std::pair{c->cResult, yc}})
      if (result >= 0 && uses_[c->scan->results[result]] > 0)
        attrInt(node(g, "Gather", {all, constScalar(g, DType::I64, d)}, {name(c->scan->results[result])}), "axis", 0);
    ++d;
  }
}

/// Every name the nodes of `g` and of their subgraphs read.
static void namesRead(const onnx::GraphProto &g, std::set<std::string> &read) {
  for (const onnx::NodeProto &n : g.node()) {
    for (const std::string &i : n.input())
      read.insert(i);
    for (const onnx::AttributeProto &a : n.attribute())
      if (a.has_g())
        namesRead(a.g(), read);
  }
}

void Exporter::pruneDeadNodes() {
  // Backwards from the graph's outputs: a node is live when a live node or an output reads it.
  std::set<std::string> live;
  for (const onnx::ValueInfoProto &o : top_->output())
    live.insert(o.name());
  std::vector<bool> keep(top_->node_size(), false);
  for (int i = top_->node_size(); i-- > 0;) {
    const onnx::NodeProto &n = top_->node(i);
    for (const std::string &o : n.output())
      keep[i] = keep[i] || live.count(o);
    if (!keep[i])
      continue;
    for (const std::string &in : n.input())
      live.insert(in);
    for (const onnx::AttributeProto &a : n.attribute())
      if (a.has_g())
        namesRead(a.g(), live);
  }
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (int i = 0; i < top_->node_size(); ++i)
    if (keep[i])
      *kept.Add() = std::move(*top_->mutable_node(i));
  top_->mutable_node()->Swap(&kept);
}

void Exporter::pruneInitializers() {
  std::set<std::string> read;
  namesRead(*top_, read);
  google::protobuf::RepeatedPtrField<onnx::TensorProto> kept;
  for (onnx::TensorProto &t : *top_->mutable_initializer())
    if (read.count(t.name()))
      *kept.Add() = std::move(t);
  top_->mutable_initializer()->Swap(&kept);
}

void Exporter::emitScan(const Node &n, onnx::GraphProto *g) {
  const Graph &b = *n.body;
  const int64_t axis = n.getInt("axis"), nseq = n.getInt("nseq"), ncarry = n.getInt("ncarry");
  const int64_t reverse = n.has("reverse") ? n.getInt("reverse") : 0;
  const int64_t nout = static_cast<int64_t>(n.results.size()) - ncarry;
  onnx::GraphProto body;
  body.set_name(fmt::format("scan{}", n.result()->id));
  // ONNX's body inputs: the carries, then one slice of each sequence; captures are read by name.
  for (int64_t c = 0; c < ncarry; ++c)
    setValueInfo(body.add_input(), name(b.args[nseq + c]), b.args[nseq + c]->type, batchOf(b.args[nseq + c]));
  for (int64_t s = 0; s < nseq; ++s)
    setValueInfo(body.add_input(), name(b.args[s]), b.args[s]->type, batchOf(b.args[s]));
  for (size_t k = nseq + ncarry; k < b.args.size(); ++k)
    names_[b.args[k]] = name(n.operands[k]);
  emitNodes(b, &body);
  for (size_t i = 0; i < b.yields.size(); ++i) {
    std::string out = fmt::format("{}_y{}", body.name(), i);
    node(&body, "Identity", {name(b.yields[i])}, {out});
    setValueInfo(body.add_output(), out, b.yields[i]->type, batchOf(b.yields[i]));
  }
  std::vector<std::string> in, out;
  for (int64_t c = 0; c < ncarry; ++c)
    in.push_back(name(n.operands[nseq + c]));
  for (int64_t s = 0; s < nseq; ++s)
    in.push_back(name(n.operands[s]));
  for (const Value *r : n.results)
    out.push_back(name(r));
  onnx::NodeProto *scan = node(g, "Scan", in, out);
  onnx::AttributeProto *a = scan->add_attribute();
  a->set_name("body");
  a->set_type(onnx::AttributeProto::GRAPH);
  *a->mutable_g() = std::move(body);
  attrInt(scan, "num_scan_inputs", nseq);
  attrInts(scan, "scan_input_axes", std::vector<int64_t>(nseq, axis));
  attrInts(scan, "scan_input_directions", std::vector<int64_t>(nseq, reverse));
  if (nout > 0) {
    attrInts(scan, "scan_output_axes", std::vector<int64_t>(nout, axis));
    attrInts(scan, "scan_output_directions", std::vector<int64_t>(nout, reverse));
  }
}

void Exporter::emitNode(const Node &n, onnx::GraphProto *g) {
  auto in = [&](size_t i) -> std::string { return name(n.operands.at(i)); };
  auto simple = [&](const char *op) {
    std::vector<std::string> ins;
    for (size_t i = 0; i < n.operands.size(); ++i)
      ins.push_back(in(i));
    return node(g, op, ins, {name(n.result())});
  };
  const TensorType &rt = n.results.empty() ? n.operands.at(0)->type : n.result()->type;
  switch (n.op) {
  case Op::Input:
    names_[n.result()] = n.getStr("name");
    setValueInfo(top_->add_input(), n.getStr("name"), rt, batchOf(n.result()));
    return;
  case Op::Param:
  case Op::Buffer: initializer(n); return;
  case Op::Const: {
    onnx::NodeProto *c = node(g, "ConstantOfShape", {shapeInput(g, rt.shape, batchOf(n.result()))}, {name(n.result())});
    onnx::AttributeProto *a = c->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    fillTensor(a->mutable_t(), rt.dtype, {1}, n.getFloat("value"), 1);
    return;
  }
  case Op::Output: {
    const std::string &out = n.getStr("name");
    node(g, "Identity", {in(0)}, {out});
    setValueInfo(top_->add_output(), out, n.operands[0]->type, batchOf(n.operands[0]));
    return;
  }
  case Op::Add: simple("Add"); return;
  case Op::Sub: simple("Sub"); return;
  case Op::Mul: simple("Mul"); return;
  case Op::Div: simple("Div"); return;
  case Op::Maximum: simple("Max"); return;
  case Op::Minimum: simple("Min"); return;
  case Op::CmpGT:
  case Op::CmpEQ: {
    std::string b = fresh();
    node(g, n.op == Op::CmpGT ? "Greater" : "Equal", {in(0), in(1)}, {b});
    attrInt(node(g, "Cast", {b}, {name(n.result())}), "to", onnxType(rt.dtype));
    return;
  }
  case Op::Neg: simple("Neg"); return;
  case Op::Exp: simple("Exp"); return;
  case Op::Log: simple("Log"); return;
  case Op::Sqrt: simple("Sqrt"); return;
  case Op::Sigmoid: simple("Sigmoid"); return;
  case Op::Tanh: simple("Tanh"); return;
  case Op::Relu: simple("Relu"); return;
  case Op::Abs: simple("Abs"); return;
  case Op::Sign: simple("Sign"); return;
  case Op::Rsqrt: {
    std::string s = fresh();
    node(g, "Sqrt", {in(0)}, {s});
    node(g, "Reciprocal", {s}, {name(n.result())});
    return;
  }
  case Op::Softplus: { // max(x, 0) + log(1 + exp(-|x|)), as Ops.def computes it
    std::string r = fresh(), a = fresh(), na = fresh(), e = fresh(), p = fresh(), l = fresh();
    node(g, "Relu", {in(0)}, {r});
    node(g, "Abs", {in(0)}, {a});
    node(g, "Neg", {a}, {na});
    node(g, "Exp", {na}, {e});
    node(g, "Add", {e, constScalar(g, rt.dtype, 1)}, {p});
    node(g, "Log", {p}, {l});
    node(g, "Add", {r, l}, {name(n.result())});
    return;
  }
  case Op::Cast: attrInt(simple("Cast"), "to", onnxType(rt.dtype)); return;
  case Op::OneHot: {
    std::string values = fresh();
    onnx::NodeProto *c = node(g, "Constant", {}, {values});
    onnx::AttributeProto *a = c->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    onnx::TensorProto *t = a->mutable_t();
    fillTensor(t, rt.dtype, {2}, 0, 1);
    fillTensor(t, rt.dtype, {}, 1, 1); // appends the "on" value; dims stay [2]
    std::string depth = constScalar(g, DType::I64, static_cast<double>(n.getInt("classes")), true);
    attrInt(node(g, "OneHot", {in(0), depth, values}, {name(n.result())}), "axis", -1);
    return;
  }
  case Op::Gather: attrInt(node(g, "Gather", {in(0), in(1)}, {name(n.result())}), "axis", 0); return;
  case Op::MatMul: simple("MatMul"); return;
  case Op::Transpose: attrInts(simple("Transpose"), "perm", n.getInts("perm")); return;
  case Op::Reshape:
    node(g, "Reshape", {in(0), shapeInput(g, n.getInts("shape"), batchOf(n.result()))}, {name(n.result())});
    return;
  case Op::BroadcastTo:
    node(g, "Expand", {in(0), shapeInput(g, n.getInts("shape"), batchOf(n.result()))}, {name(n.result())});
    return;
  case Op::Slice: {
    std::vector<int64_t> axes;
    for (int i = 0; i < n.operands[0]->type.rank(); ++i)
      axes.push_back(i);
    // The batch axis (never sliced: BatchAxes checks) ends at the run's batch size.
    node(g, "Slice", {in(0), constInts(g, n.getInts("begin")), shapeInput(g, n.getInts("end"), batchOf(n.operands[0])), constInts(g, axes)},
         {name(n.result())});
    return;
  }
  case Op::Pad: {
    const std::vector<int64_t> &begin = n.getInts("begin"), &shape = n.getInts("shape");
    const std::vector<int64_t> &inShape = n.operands[0]->type.shape;
    std::vector<int64_t> pads = begin;
    for (size_t i = 0; i < begin.size(); ++i)
      pads.push_back(shape[i] - inShape[i] - begin[i]);
    node(g, "Pad", {in(0), constInts(g, pads), constScalar(g, rt.dtype, 0)}, {name(n.result())});
    return;
  }
  case Op::Concat: attrInt(simple("Concat"), "axis", n.getInt("axis")); return;
  case Op::Sum:
  case Op::Mean:
  case Op::Max: {
    const std::vector<int64_t> &axes = n.getInts("axes");
    if (axes.empty()) {
      node(g, "Identity", {in(0)}, {name(n.result())});
      return;
    }
    const int64_t keep = n.has("keepdims") ? n.getInt("keepdims") : 0;
    onnx::NodeProto *r;
    if (n.op == Op::Sum) {
      r = node(g, "ReduceSum", {in(0), constInts(g, axes)}, {name(n.result())});
    } else {
      r = node(g, n.op == Op::Mean ? "ReduceMean" : "ReduceMax", {in(0)}, {name(n.result())});
      attrInts(r, "axes", axes);
    }
    attrInt(r, "keepdims", keep);
    return;
  }
  case Op::Scan: emitScan(n, g); return;
  case Op::Hyper: unsupported(n, " (a run-time training hyperparameter)"); return;
  case Op::Row:
  case Op::SetRow: unsupported(n, " (a row chosen at run time, e.g. BNLSTM's per-step statistics, is not exported yet)"); return;
  default: unsupported(n, " (a loss or training-only op; export the inference outputs and compute it outside)"); return;
  }
}

} // namespace

void exportOnnx(const Module &m, const Weights &w, const OnnxOptions &opts, Diagnostics &diag, std::string &bytes) {
  if (!m.inferGraph)
    diag.error(SrcLoc{}, "model '{}' has no inference graph to export", m.name);
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("gradc");
  model.set_producer_version("0.1");
  model.set_doc_string(fmt::format("model {} from {}, exported by gradc --emit=onnx", m.name, m.path));
  onnx::OperatorSetIdProto *opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  Exporter ex(m, w, opts, diag);
  ex.top(model.mutable_graph());
  if (!model.SerializeToString(&bytes))
    diag.error(SrcLoc{}, "ONNX export: the model (over 2 GB?) could not be serialised");
}

} // namespace gradc
