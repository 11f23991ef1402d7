// Builder.cpp: NodeBuilder, the node-building helper of the gradient rules, the optimizer
// and the graph rewrites (Builder.h).
#include "ir/Builder.h"

#include <stdexcept>
#include <utility>

namespace gradc {

Node *NodeBuilder::node(Op o, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs,
                        std::unique_ptr<Graph> body) {
  std::string err;
  Node *n = b_.create(o, std::move(operands), std::move(attrs), loc, err, std::move(body));
  if (!n)
    throw std::logic_error(std::string(who_) + " built an ill-typed node: " + err);
  return n;
}

Value *NodeBuilder::op(Op o, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs) {
  return node(o, std::move(operands), std::move(attrs))->result(0);
}

Value *NodeBuilder::source(Op o, TensorType t, std::map<std::string, AttrValue> attrs, std::string nameHint) {
  return b_.source(o, std::move(t), std::move(attrs), loc, std::move(nameHint));
}

Value *NodeBuilder::source(Op o, TensorType t, std::map<std::string, AttrValue> attrs, SrcLoc at, std::string nameHint) {
  return b_.source(o, std::move(t), std::move(attrs), at, std::move(nameHint));
}

void NodeBuilder::sink(Op o, Value *v, std::map<std::string, AttrValue> attrs, SrcLoc at) {
  b_.sink(o, v, std::move(attrs), at);
}

Value *NodeBuilder::scalar(double v, DType dt) { return source(Op::Const, TensorType{dt, {}}, {{"value", v}}); }

Value *NodeBuilder::fill(double v, const TensorType &t) { return source(Op::Const, t, {{"value", v}}); }

Value *NodeBuilder::reshape(Value *v, const std::vector<int64_t> &shape) {
  return v->type.shape == shape ? v : op(Op::Reshape, {v}, {{"shape", shape}});
}

Value *NodeBuilder::broadcastTo(Value *v, const std::vector<int64_t> &shape) {
  return v->type.shape == shape ? v : op(Op::BroadcastTo, {v}, {{"shape", shape}});
}

Value *NodeBuilder::transposeLast(Value *v) {
  std::vector<int64_t> perm;
  for (int i = 0; i < v->type.rank(); ++i)
    perm.push_back(i);
  if (perm.size() < 2)
    throw std::logic_error(std::string(who_) + ": transposeLast of a value of rank < 2");
  std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
  return op(Op::Transpose, {v}, {{"perm", perm}});
}

Value *NodeBuilder::sum(Value *v, const std::vector<int64_t> &axes, bool keepdims) {
  return axes.empty() ? v : op(Op::Sum, {v}, {{"axes", axes}, {"keepdims", int64_t{keepdims ? 1 : 0}}});
}

Value *NodeBuilder::unbroadcast(Value *v, const std::vector<int64_t> &shape) {
  if (v->type.shape == shape)
    return v;
  const auto &vs = v->type.shape;
  size_t lead = vs.size() - shape.size();
  std::vector<int64_t> axes;
  for (size_t i = 0; i < vs.size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && vs[i] != 1))
      axes.push_back(static_cast<int64_t>(i));
  return reshape(sum(v, axes), shape);
}

} // namespace gradc
