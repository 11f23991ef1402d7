// ShapeInference.cpp: result types of every operation from its operands and attributes,
// with the messages users see for shape and dtype errors.
#include <algorithm>

#include <fmt/format.h>

#include "ir/IR.h"

namespace gradc {

std::optional<std::vector<int64_t>> broadcastShapes(const std::vector<int64_t> &a,
                                                    const std::vector<int64_t> &b) {
  size_t n = std::max(a.size(), b.size());
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      return std::nullopt;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

const char *binarySymbol(Op op) {
  switch (op) {
  case Op::Add: return "+";
  case Op::Sub: return "-";
  case Op::Mul: return "*";
  case Op::Div: return "/";
  default: return ",";
}
}

/// Attribute accessors that report a missing or mistyped attribute instead of throwing.
struct AttrReader {
  const std::map<std::string, AttrValue> &attrs;
  std::string &err;
  const char *opName;

  template <typename T> const T *get(const std::string &k) {
    auto it = attrs.find(k);
    if (it == attrs.end() || !std::holds_alternative<T>(it->second)) {
      if (err.empty())
        err = fmt::format("{}: missing or mistyped attribute '{}'", opName, k);
      return nullptr;
    }
    return &std::get<T>(it->second);
  }
};

bool validAxes(const std::vector<int64_t> &axes, int rank) {
  for (size_t i = 0; i < axes.size(); ++i) {
    if (axes[i] < 0 || axes[i] >= rank)
      return false;
    if (i > 0 && axes[i] <= axes[i - 1])
      return false;
  }
  return true;
}

} // namespace

std::string inferTypes(Op op, const std::vector<TensorType> &in,
                       const std::map<std::string, AttrValue> &attrs, const Graph *body,
                       std::vector<TensorType> &out) {
  const OpInfo &info = opInfo(op);
  std::string err;
  AttrReader attr{attrs, err, info.name};
  out.clear();
  if (info.numOperands >= 0 && static_cast<int>(in.size()) != info.numOperands)
    return fmt::format("{}: expects {} operand(s), got {}", info.name, info.numOperands, in.size());
  if (info.traits & TR_SOURCE)
    return fmt::format("{}: a source's type is given, not inferred", info.name);

  if (info.traits & TR_SINK) {
    if (op == Op::Loss && (in[0].rank() != 0 || in[0].dtype != DType::F32))
      return fmt::format("the loss must be a scalar f32[], got {}", in[0].str());
    if (op != Op::Loss && !attr.get<std::string>("name"))
      return err;
    return {};
  }

  if (info.traits & TR_FLOAT)
    for (const TensorType &t : in)
      if (t.dtype != DType::F32)
        return fmt::format("{}: expects f32, got {}", info.name, t.str());

  if (info.traits & TR_BINARY) {
    const TensorType &a = in[0], &b = in[1];
    if (a.dtype != b.dtype)
      return fmt::format("{}: dtypes differ: {} {} {}", info.name, a.str(), binarySymbol(op), b.str());
    auto s = broadcastShapes(a.shape, b.shape);
    if (!s)
      return fmt::format("{}: shapes do not broadcast: {} {} {}", info.name, a.str(), binarySymbol(op),
                         b.str());
    out.push_back({a.dtype, *s});
    return {};
  }

  if (op == Op::Cast) {
    const std::string *d = attr.get<std::string>("dtype");
    if (!d)
      return err;
    auto dt = dtypeByName(*d);
    if (!dt)
      return fmt::format("cast: unknown dtype '{}'", *d);
    out.push_back({*dt, in[0].shape});
    return {};
  }
  if (info.traits & TR_UNARY) {
    out.push_back(in[0]);
    return {};
  }

  switch (op) {
  case Op::AllReduceSum:
    if (in[0].dtype != DType::F32)
      return fmt::format("allreduce_sum: expects a float tensor, got {}", in[0].str());
    out.push_back(in[0]);
    return {};
  case Op::OneHot: {
    const int64_t *classes = attr.get<int64_t>("classes");
    if (!classes)
      return err;
    if (in[0].dtype == DType::F32 || *classes <= 0)
      return fmt::format("one_hot: expects integer labels and classes > 0, got {}", in[0].str());
    TensorType t{DType::F32, in[0].shape};
    t.shape.push_back(*classes);
    out.push_back(t);
    return {};
  }
  case Op::Row:
  case Op::SetRow: {
    const char *nm = op == Op::Row ? "row" : "set_row";
    if (in[0].rank() < 1)
      return fmt::format("{}: expects a tensor with rows, got {}", nm, in[0].str());
    if (in[1].dtype == DType::F32 || in[1].rank() != 0)
      return fmt::format("{}: the row index must be an integer scalar, got {}", nm, in[1].str());
    TensorType row{in[0].dtype, std::vector<int64_t>(in[0].shape.begin() + 1, in[0].shape.end())};
    if (op == Op::SetRow && in[2] != row)
      return fmt::format("set_row: a row of {} is {}, but the new row is {}", in[0].str(), row.str(), in[2].str());
    out.push_back(op == Op::Row ? row : in[0]);
    return {};
  }
  case Op::Gather: {
    if (!attr.get<int64_t>("padding"))
      return err;
    if (in[0].dtype != DType::F32 || in[0].rank() != 2 || in[1].dtype == DType::F32)
      return fmt::format("gather: expects a table f32[N, D] and integer indices, got {} and {}", in[0].str(), in[1].str());
    TensorType t{DType::F32, in[1].shape};
    t.shape.push_back(in[0].shape[1]);
    out.push_back(t);
    return {};
  }
  case Op::ScatterAdd: {
    const int64_t *rows = attr.get<int64_t>("rows");
    if (!rows || !attr.get<int64_t>("padding"))
      return err;
    std::vector<int64_t> lead(in[0].shape.begin(), in[0].shape.empty() ? in[0].shape.end() : in[0].shape.end() - 1);
    if (in[0].dtype != DType::F32 || in[0].rank() < 1 || in[1].dtype == DType::F32 || in[1].shape != lead || *rows <= 0)
      return fmt::format("scatter_add: expects f32[..., D] and integer indices [...], got {} and {}", in[0].str(), in[1].str());
    out.push_back({DType::F32, {*rows, in[0].shape.back()}});
    return {};
  }
  case Op::MatMul: {
    const TensorType &a = in[0], &b = in[1];
    if (a.dtype != DType::F32 || b.dtype != DType::F32)
      return fmt::format("matmul: expects f32 operands: {} @ {}", a.str(), b.str());
    if (a.rank() < 2 || b.rank() < 2)
      return fmt::format("matmul: operands need at least 2 axes: {} @ {}", a.str(), b.str());
    if (a.shape[a.rank() - 1] != b.shape[b.rank() - 2])
      return fmt::format("matmul: inner dimensions differ: {} @ {}", a.str(), b.str());
    std::vector<int64_t> ba(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
    auto batch = broadcastShapes(ba, bb);
    if (!batch)
      return fmt::format("matmul: batch axes do not broadcast: {} @ {}", a.str(), b.str());
    batch->push_back(a.shape[a.rank() - 2]);
    batch->push_back(b.shape[b.rank() - 1]);
    out.push_back({DType::F32, *batch});
    return {};
  }
  case Op::Transpose: {
    const auto *perm = attr.get<std::vector<int64_t>>("perm");
    if (!perm)
      return err;
    if (static_cast<int>(perm->size()) != in[0].rank())
      return fmt::format("transpose: permutation of {} axes for {}", perm->size(), in[0].str());
    std::vector<int64_t> sorted = *perm;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); ++i)
      if (sorted[i] != static_cast<int64_t>(i))
        return fmt::format("transpose: [{}] is not a permutation", fmt::join(*perm, ", "));
    TensorType t{in[0].dtype, {}};
    for (int64_t p : *perm)
      t.shape.push_back(in[0].shape[p]);
    out.push_back(t);
    return {};
  }
  case Op::Reshape: {
    const auto *shape = attr.get<std::vector<int64_t>>("shape");
    if (!shape)
      return err;
    TensorType t{in[0].dtype, *shape};
    for (int64_t d : *shape)
      if (d < 0)
        return fmt::format("reshape: negative dimension in [{}]", fmt::join(*shape, ", "));
    if (t.numel() != in[0].numel())
      return fmt::format("reshape: cannot reshape {} ({} elements) to [{}] ({} elements)", in[0].str(),
                         in[0].numel(), fmt::join(*shape, ","), t.numel());
    out.push_back(t);
    return {};
  }
  case Op::BroadcastTo: {
    const auto *shape = attr.get<std::vector<int64_t>>("shape");
    if (!shape)
      return err;
    auto s = broadcastShapes(in[0].shape, *shape);
    if (!s || *s != *shape)
      return fmt::format("broadcast_to: cannot broadcast {} to [{}]", in[0].str(), fmt::join(*shape, ","));
    out.push_back({in[0].dtype, *shape});
    return {};
  }
  case Op::Slice: {
    const auto *b = attr.get<std::vector<int64_t>>("begin");
    const auto *e = attr.get<std::vector<int64_t>>("end");
    if (!b || !e)
      return err;
    if (static_cast<int>(b->size()) != in[0].rank() || static_cast<int>(e->size()) != in[0].rank())
      return fmt::format("slice: begin/end need {} entries for {}", in[0].rank(), in[0].str());
    TensorType t{in[0].dtype, {}};
    for (int i = 0; i < in[0].rank(); ++i) {
      if ((*b)[i] < 0 || (*b)[i] > (*e)[i] || (*e)[i] > in[0].shape[i])
        return fmt::format("slice: range {}:{} out of bounds for axis {} of size {}", (*b)[i], (*e)[i], i,
                           in[0].shape[i]);
      t.shape.push_back((*e)[i] - (*b)[i]);
    }
    out.push_back(t);
    return {};
  }
  case Op::Pad: {
    const auto *b = attr.get<std::vector<int64_t>>("begin");
    const auto *shape = attr.get<std::vector<int64_t>>("shape");
    if (!b || !shape)
      return err;
    if (static_cast<int>(b->size()) != in[0].rank() || static_cast<int>(shape->size()) != in[0].rank())
      return fmt::format("pad: begin/shape need {} entries for {}", in[0].rank(), in[0].str());
    for (int i = 0; i < in[0].rank(); ++i)
      if ((*b)[i] < 0 || (*b)[i] + in[0].shape[i] > (*shape)[i])
        return fmt::format("pad: {} does not fit into [{}] at [{}]", in[0].str(), fmt::join(*shape, ","),
                           fmt::join(*b, ","));
    out.push_back({in[0].dtype, *shape});
    return {};
  }
  case Op::Concat: {
    const int64_t *axis = attr.get<int64_t>("axis");
    if (!axis)
      return err;
    if (in.empty())
      return "concat: needs at least one operand";
    TensorType t = in[0];
    if (*axis < 0 || *axis >= t.rank())
      return fmt::format("concat: axis {} out of range for {}", *axis, t.str());
    for (size_t i = 1; i < in.size(); ++i) {
      bool ok = in[i].dtype == t.dtype && in[i].rank() == t.rank();
      for (int d = 0; ok && d < t.rank(); ++d)
        ok = d == *axis || in[i].shape[d] == in[0].shape[d];
      if (!ok)
        return fmt::format("concat: {} and {} differ outside axis {}", in[0].str(), in[i].str(), *axis);
      t.shape[*axis] += in[i].shape[*axis];
    }
    out.push_back(t);
    return {};
  }
  case Op::Sum:
  case Op::Mean:
  case Op::Max: {
    const auto *axes = attr.get<std::vector<int64_t>>("axes");
    const int64_t *keep = attr.get<int64_t>("keepdims");
    if (!axes || !keep)
      return err;
    if (!validAxes(*axes, in[0].rank()))
      return fmt::format("{}: axes [{}] invalid for {}", info.name, fmt::join(*axes, ", "), in[0].str());
    if (op == Op::Mean && in[0].dtype != DType::F32)
      return fmt::format("mean: expects f32, got {}", in[0].str());
    TensorType t{in[0].dtype, {}};
    for (int d = 0; d < in[0].rank(); ++d) {
      bool reduced = std::find(axes->begin(), axes->end(), d) != axes->end();
      if (!reduced)
        t.shape.push_back(in[0].shape[d]);
      else if (*keep)
        t.shape.push_back(1);
    }
    out.push_back(t);
    return {};
  }
  case Op::Mse:
  case Op::BceWithLogits:
    if (in[0].dtype != DType::F32 || in[0] != in[1])
      return fmt::format("{}: prediction and target differ: {} vs {}", info.name, in[0].str(), in[1].str());
    out.push_back({DType::F32, {}});
    return {};
  case Op::CrossEntropy:
    if (in[0].dtype != DType::F32 || in[0].rank() != 2)
      return fmt::format("cross_entropy: logits must be f32[B,C], got {}", in[0].str());
    if (in[1].dtype != DType::I32 || in[1].rank() != 1 || in[1].shape[0] != in[0].shape[0])
      return fmt::format("cross_entropy: labels must be i32[{}], got {}", in[0].shape[0], in[1].str());
    out.push_back({DType::F32, {}});
    return {};
  case Op::Scan: {
    const int64_t *axis = attr.get<int64_t>("axis");
    const int64_t *nseq = attr.get<int64_t>("nseq");
    const int64_t *ncarry = attr.get<int64_t>("ncarry");
    if (!axis || !nseq || !ncarry || !attr.get<int64_t>("reverse"))
      return err;
    if (!body)
      return "scan: has no body";
    if (*nseq < 1 || *ncarry < 0 || *nseq + *ncarry > static_cast<int64_t>(in.size()))
      return "scan: bad sequence/carry counts";
    if (body->args.size() != in.size())
      return fmt::format("scan: body has {} arguments for {} operands", body->args.size(), in.size());
    int64_t len = -1;
    for (int64_t i = 0; i < *nseq; ++i) {
      if (*axis < 0 || *axis >= in[i].rank())
        return fmt::format("scan: axis {} out of range for {}", *axis, in[i].str());
      if (len >= 0 && in[i].shape[*axis] != len)
        return fmt::format("scan: sequences differ in length along axis {}: {} vs {}", *axis, in[0].str(),
                           in[i].str());
      len = in[i].shape[*axis];
      TensorType slice = in[i];
      slice.shape.erase(slice.shape.begin() + *axis);
      if (body->args[i]->type != slice)
        return fmt::format("scan: body argument {} is {}, expected {}", i, body->args[i]->type.str(),
                           slice.str());
    }
    for (size_t i = *nseq; i < in.size(); ++i)
      if (body->args[i]->type != in[i])
        return fmt::format("scan: body argument {} is {}, operand is {}", i, body->args[i]->type.str(),
                           in[i].str());
    if (static_cast<int64_t>(body->yields.size()) < *ncarry)
      return "scan: body yields fewer values than it carries";
    for (int64_t i = 0; i < *ncarry; ++i) {
      const TensorType &y = body->yields[i]->type, &c = in[*nseq + i];
      if (y != c)
        return fmt::format("scan: carried value {} changes type from {} to {}", i, c.str(), y.str());
      out.push_back(c);
    }
    for (size_t i = *ncarry; i < body->yields.size(); ++i) {
      TensorType t = body->yields[i]->type;
      if (*axis > t.rank())
        return fmt::format("scan: cannot stack {} along axis {}", t.str(), *axis);
      t.shape.insert(t.shape.begin() + *axis, len);
      out.push_back(t);
    }
    return {};
  }
  default:
    break;
  }
  return fmt::format("{}: no shape rule", info.name);
}

} // namespace gradc
