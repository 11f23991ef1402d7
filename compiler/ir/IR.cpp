// IR.cpp: dtypes, tensor types, the op table, attributes, the module and the builder.
#include "ir/IR.h"

#include <fmt/format.h>

namespace gradc {

const char *dtypeName(DType t) {
  switch (t) {
  case DType::F32: return "f32";
  case DType::I32: return "i32";
  case DType::I64: return "i64";
  }
  return "?";
}

std::optional<DType> dtypeByName(std::string_view s) {
  if (s == "f32") return DType::F32;
  if (s == "i32") return DType::I32;
  if (s == "i64") return DType::I64;
  return std::nullopt;
}

int64_t TensorType::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string TensorType::str() const {
  return fmt::format("{}[{}]", dtypeName(dtype), fmt::join(shape, ","));
}

static const OpInfo kOpInfo[] = {
#define OP(ID, NAME, NOPS, NRES, TRAITS, ...) {NAME, NOPS, NRES, TRAITS},
#include "ir/Ops.def"
#undef OP
};

const OpInfo &opInfo(Op op) { return kOpInfo[static_cast<size_t>(op)]; }

std::optional<Op> opByName(std::string_view name) {
  for (size_t i = 0; i < std::size(kOpInfo); ++i)
    if (name == kOpInfo[i].name)
      return static_cast<Op>(i);
  return std::nullopt;
}

int64_t Node::getInt(const std::string &k) const { return std::get<int64_t>(attrs.at(k)); }
double Node::getFloat(const std::string &k) const { return std::get<double>(attrs.at(k)); }
const std::string &Node::getStr(const std::string &k) const { return std::get<std::string>(attrs.at(k)); }
const std::vector<int64_t> &Node::getInts(const std::string &k) const {
  return std::get<std::vector<int64_t>>(attrs.at(k));
}

std::string Init::str() const {
  if (zeroRow >= 0) {
    Init plain = *this;
    plain.zeroRow = -1;
    std::string s = plain.str();
    return (s.back() == ')' ? s.substr(0, s.size() - 1) + ", " : s + "(") + fmt::format("zero_row = {})", zeroRow);
  }
  switch (kind) {
  case Zeros: return "zeros";
  case Ones: return "ones";
  case Full: return fmt::format("full({})", a);
  case Uniform: return fmt::format("uniform({}, {})", a, b);
  case Normal: return fmt::format("normal({}, {})", a, b);
  }
  return "?";
}

Value *Module::newValue(TensorType t, Graph *owner, std::string name) {
  auto v = std::make_unique<Value>();
  v->id = nextId_++;
  v->type = std::move(t);
  v->owner = owner;
  v->name = std::move(name);
  values_.push_back(std::move(v));
  return values_.back().get();
}

std::vector<Graph *> Module::graphs() const {
  std::vector<Graph *> out;
  if (trainGraph) out.push_back(trainGraph.get());
  if (evalGraph) out.push_back(evalGraph.get());
  if (inferGraph) out.push_back(inferGraph.get());
  if (stepGraph) out.push_back(stepGraph.get());
  return out;
}

Node *Builder::create(Op op, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs,
                      SrcLoc loc, std::string &error, std::unique_ptr<Graph> body) {
  std::vector<TensorType> in, out;
  in.reserve(operands.size());
  for (Value *v : operands)
    in.push_back(v->type);
  error = inferTypes(op, in, attrs, body.get(), out);
  if (!error.empty())
    return nullptr;
  auto n = std::make_unique<Node>();
  n->op = op;
  n->operands = std::move(operands);
  n->attrs = std::move(attrs);
  n->loc = loc;
  n->parent = g_;
  n->body = std::move(body);
  if (n->body)
    n->body->parentNode = n.get();
  for (unsigned i = 0; i < out.size(); ++i) {
    Value *r = m_.newValue(out[i], g_);
    r->def = n.get();
    r->index = i;
    n->results.push_back(r);
  }
  g_->nodes.push_back(std::move(n));
  return g_->nodes.back().get();
}

Value *Builder::source(Op op, TensorType type, std::map<std::string, AttrValue> attrs, SrcLoc loc,
                       std::string nameHint) {
  auto n = std::make_unique<Node>();
  n->op = op;
  n->attrs = std::move(attrs);
  n->loc = loc;
  n->parent = g_;
  Value *r = m_.newValue(std::move(type), g_, std::move(nameHint));
  r->def = n.get();
  n->results.push_back(r);
  g_->nodes.push_back(std::move(n));
  return r;
}

void Builder::sink(Op op, Value *v, std::map<std::string, AttrValue> attrs, SrcLoc loc) {
  auto n = std::make_unique<Node>();
  n->op = op;
  n->operands = {v};
  n->attrs = std::move(attrs);
  n->loc = loc;
  n->parent = g_;
  g_->nodes.push_back(std::move(n));
}

Value *Builder::arg(TensorType type, std::string nameHint) {
  Value *v = m_.newValue(std::move(type), g_, std::move(nameHint));
  v->index = static_cast<unsigned>(g_->args.size());
  g_->args.push_back(v);
  return v;
}

} // namespace gradc
