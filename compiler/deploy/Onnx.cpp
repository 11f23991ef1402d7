// Onnx.cpp: the ONNX exporter: one walk over the inference graph that writes each graph op as ONNX nodes through Debian's generated protobuf classes (libonnx_proto), scans as ONNX Scan with their bodies as subgraphs.
#include "deploy/Onnx.h"

#include <cstring>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <onnx/onnx_pb.h>

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

void setValueInfo(onnx::ValueInfoProto *vi, const std::string &name, const TensorType &t) {
  vi->set_name(name);
  onnx::TypeProto_Tensor *tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnxType(t.dtype));
  onnx::TensorShapeProto *sh = tt->mutable_shape();
  for (int64_t d : t.shape)
    sh->add_dim()->set_dim_value(d);
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
  Exporter(const Module &m, const Weights &w, Diagnostics &diag) : m_(m), w_(w), diag_(diag) {}

  void top(onnx::GraphProto *g) {
    top_ = g;
    g->set_name(m_.name);
    emitNodes(*m_.inferGraph, g);
  }

private:
  const std::string &name(const Value *v) {
    auto it = names_.find(v);
    if (it == names_.end())
      it = names_.emplace(v, fmt::format("v{}", v->id)).first;
    return it->second;
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
    for (const std::unique_ptr<Node> &n : graph.nodes)
      emitNode(*n, g);
  }

  void unsupported(const Node &n, const char *why) {
    diag_.error(n.loc, "op '{}' has no ONNX form in gradc's exporter{}; the model cannot be exported with --emit=onnx",
                opInfo(n.op).name, why);
  }

  void emitScan(const Node &n, onnx::GraphProto *g);
  void emitNode(const Node &n, onnx::GraphProto *g);

  const Module &m_;
  const Weights &w_;
  Diagnostics &diag_;
  onnx::GraphProto *top_ = nullptr;
  std::unordered_map<const Value *, std::string> names_;
  std::set<std::string> initialized_;
  int64_t counter_ = 0;
};

void Exporter::emitScan(const Node &n, onnx::GraphProto *g) {
  const Graph &b = *n.body;
  const int64_t axis = n.getInt("axis"), nseq = n.getInt("nseq"), ncarry = n.getInt("ncarry");
  const int64_t reverse = n.has("reverse") ? n.getInt("reverse") : 0;
  const int64_t nout = static_cast<int64_t>(n.results.size()) - ncarry;
  onnx::GraphProto body;
  body.set_name(fmt::format("scan{}", n.result()->id));
  // ONNX's body inputs: the carries, then one slice of each sequence; captures are read by name.
  for (int64_t c = 0; c < ncarry; ++c)
    setValueInfo(body.add_input(), name(b.args[nseq + c]), b.args[nseq + c]->type);
  for (int64_t s = 0; s < nseq; ++s)
    setValueInfo(body.add_input(), name(b.args[s]), b.args[s]->type);
  for (size_t k = nseq + ncarry; k < b.args.size(); ++k)
    names_[b.args[k]] = name(n.operands[k]);
  emitNodes(b, &body);
  for (size_t i = 0; i < b.yields.size(); ++i) {
    std::string out = fmt::format("{}_y{}", body.name(), i);
    node(&body, "Identity", {name(b.yields[i])}, {out});
    setValueInfo(body.add_output(), out, b.yields[i]->type);
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
    setValueInfo(top_->add_input(), n.getStr("name"), rt);
    return;
  case Op::Param:
  case Op::Buffer: initializer(n); return;
  case Op::Const: {
    onnx::NodeProto *c = node(g, "ConstantOfShape", {constInts(g, rt.shape)}, {name(n.result())});
    onnx::AttributeProto *a = c->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    fillTensor(a->mutable_t(), rt.dtype, {1}, n.getFloat("value"), 1);
    return;
  }
  case Op::Output: {
    const std::string &out = n.getStr("name");
    node(g, "Identity", {in(0)}, {out});
    setValueInfo(top_->add_output(), out, n.operands[0]->type);
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
  case Op::Reshape: node(g, "Reshape", {in(0), constInts(g, n.getInts("shape"))}, {name(n.result())}); return;
  case Op::BroadcastTo: node(g, "Expand", {in(0), constInts(g, n.getInts("shape"))}, {name(n.result())}); return;
  case Op::Slice: {
    std::vector<int64_t> axes;
    for (int i = 0; i < n.operands[0]->type.rank(); ++i)
      axes.push_back(i);
    node(g, "Slice", {in(0), constInts(g, n.getInts("begin")), constInts(g, n.getInts("end")), constInts(g, axes)},
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
  default: unsupported(n, " (a loss or training-only op; export the inference outputs and compute it outside)"); return;
  }
}

} // namespace

void exportOnnx(const Module &m, const Weights &w, Diagnostics &diag, std::string &bytes) {
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
  Exporter ex(m, w, diag);
  ex.top(model.mutable_graph());
  if (!model.SerializeToString(&bytes))
    diag.error(SrcLoc{}, "ONNX export: the model (over 2 GB?) could not be serialised");
}

} // namespace gradc
