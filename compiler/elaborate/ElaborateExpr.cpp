// ElaborateExpr.cpp: expressions during elaboration: constant folding, tensor operators,
// indexing and the built-in functions of docs/language.md.
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "elaborate/ElaborateImpl.h"
#include "ir/ScalarMath.h"

namespace gradc {

std::string describe(const Val &v) {
  switch (v.kind) {
  case Val::None: return "nothing";
  case Val::Int: return fmt::format("the integer {}", v.i);
  case Val::Float: return fmt::format("the number {}", v.f);
  case Val::Bool: return v.b ? "true" : "false";
  case Val::Str: return fmt::format("the string \"{}\"", v.s);
  case Val::List: return fmt::format("the list [{}]", fmt::join(v.list, ", "));
  case Val::Tensor: return "a tensor " + v.t->type.str();
  case Val::Layer: return fmt::format("layer '{}'", v.layer->path);
  case Val::State: return fmt::format("{} '{}'", v.isBuffer ? "buffer" : "parameter", v.s);
  case Val::Tuple: return fmt::format("a tuple of {} values", v.tuple.size());
  case Val::StrList: return fmt::format("a list of {} strings", v.strs.size());
  }
  return "?";
}

Node *Elaborator::make(Op op, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs,
                       SrcLoc loc, std::unique_ptr<Graph> body) {
  requireGraph(loc);
  for (Value *&o : operands)
    o = capture(*ctx_, o, loc);
  Builder b(*m_, ctx_->g);
  std::string err;
  Node *n = b.create(op, std::move(operands), std::move(attrs), loc, err, std::move(body));
  if (!n)
    diag_.error(loc, err);
  return n;
}

void Elaborator::requireGraph(SrcLoc loc) {
  if (!ctx_)
    diag_.error(loc, "tensors only exist inside the graph or a layer's forward; here only constants are allowed");
}

Value *Elaborator::constant(double v, TensorType t, SrcLoc loc) {
  requireGraph(loc);
  Builder b(*m_, ctx_->g);
  return b.source(Op::Const, std::move(t), {{"value", v}}, loc);
}

TensorType Elaborator::makeType(DType dt, std::vector<int64_t> dims, SrcLoc loc) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d <= 0)
      diag_.error(loc, "dimension must be a positive integer, got {}", d);
    if (n > (int64_t{1} << 31) / d)
      diag_.error(loc, "tensor too large: [{}] has more than 2^31 elements", fmt::join(dims, ","));
    n *= d;
  }
  if (dims.size() > 8)
    diag_.error(loc, "tensors have at most 8 axes, got {}", dims.size());
  return TensorType{dt, std::move(dims)};
}

TensorType Elaborator::evalType(const TypeExpr &t, Scope &scope) {
  auto dt = dtypeByName(t.dtype);
  if (!dt)
    diag_.error(t.loc, "unknown dtype '{}'; expected f32, i32 or i64", t.dtype);
  std::vector<int64_t> dims;
  for (const ExprPtr &d : t.dims)
    dims.push_back(constInt(eval(*d, scope), d->loc, "a dimension"));
  return makeType(*dt, std::move(dims), t.loc);
}

Value *Elaborator::tensor(const Val &v, SrcLoc loc, const char *what) {
  switch (v.kind) {
  case Val::Tensor: return capture(*ctx_, v.t, loc);
  case Val::State: return stateValue(v, loc);
  case Val::Int:
  case Val::Float: return constant(v.num(), {DType::F32, {}}, loc);
  default: diag_.error(loc, "{} must be a tensor, got {}", what, describe(v));
  }
}

int64_t Elaborator::constInt(const Val &v, SrcLoc loc, const char *what) {
  if (v.kind == Val::Int)
    return v.i;
  if (v.kind == Val::Float && std::floor(v.f) == v.f && std::fabs(v.f) < 9.0e15)
    return static_cast<int64_t>(v.f);
  diag_.error(loc, "{} must be a constant integer, got {}", what, describe(v));
}

double Elaborator::constNum(const Val &v, SrcLoc loc, const char *what) {
  if (v.isNumber())
    return v.num();
  diag_.error(loc, "{} must be a constant number, got {}", what, describe(v));
}

bool Elaborator::constBool(const Val &v, SrcLoc loc, const char *what) {
  if (v.kind == Val::Bool)
    return v.b;
  diag_.error(loc, "{} must be a compile-time condition, got {}", what, describe(v));
}

std::vector<int64_t> Elaborator::constAxes(const Val &v, int rank, SrcLoc loc, const char *what) {
  std::vector<int64_t> axes;
  if (v.kind == Val::List)
    axes = v.list;
  else
    axes.push_back(constInt(v, loc, what));
  for (int64_t &a : axes) {
    int64_t orig = a;
    if (a < 0)
      a += rank;
    if (a < 0 || a >= rank)
      diag_.error(loc, "{}: axis {} is out of range for a tensor of {} axes", what, orig, rank);
  }
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    diag_.error(loc, "{}: an axis is repeated", what);
  return axes;
}

std::string Elaborator::resolveName(const Name &n, Scope &scope) {
  std::string out = n.text[0];
  for (size_t i = 0; i < n.holes.size(); ++i) {
    Val v = eval(*n.holes[i], scope);
    if (v.kind == Val::Int)
      out += std::to_string(v.i);
    else if (v.kind == Val::Str)
      out += v.s;
    else
      diag_.error(n.holes[i]->loc, "a name can only interpolate integers and strings, got {}", describe(v));
    out += n.text[i + 1];
  }
  return out;
}

Value *Elaborator::unary(Op op, Value *x, SrcLoc loc) { return make1(op, {x}, {}, loc); }

Value *Elaborator::elementwise(Op op, const Val &a, const Val &b, SrcLoc loc) {
  // A number next to a tensor takes the tensor's dtype.
  auto side = [&](const Val &v, const Val &other) -> Value * {
    if (v.isNumber() && (other.kind == Val::Tensor || other.kind == Val::State)) {
      Value *o = tensor(other, loc, "operand");
      if (o->type.dtype != DType::F32 && v.kind == Val::Float && std::floor(v.f) != v.f)
        diag_.error(loc, "cannot combine the number {} with an integer tensor {}", v.f, o->type.str());
      return constant(v.num(), {o->type.dtype, {}}, loc);
    }
    return tensor(v, loc, "operand");
  };
  Value *x = side(a, b);
  Value *y = side(b, a);
  return make1(op, {x, y}, {}, loc);
}

static std::optional<double> foldArith(const std::string &op, double a, double b) {
  if (op == "+") return a + b;
  if (op == "-") return a - b;
  if (op == "*") return a * b;
  if (op == "/") return a / b;
  if (op == "%") return std::fmod(a, b);
  return std::nullopt;
}

Val Elaborator::binary(const std::string &op, const Val &a, const Val &b, SrcLoc loc) {
  bool cmp = op == "==" || op == "!=" || op == "<" || op == "<=" || op == ">" || op == ">=";
  if (cmp) {
    if (a.kind == Val::Str && b.kind == Val::Str && (op == "==" || op == "!="))
      return Val::ofBool((a.s == b.s) == (op == "=="));
    if (a.kind == Val::Bool && b.kind == Val::Bool && (op == "==" || op == "!="))
      return Val::ofBool((a.b == b.b) == (op == "=="));
    if (!a.isNumber() || !b.isNumber())
      diag_.error(loc, "'{}' compares constants; got {} and {}", op, describe(a), describe(b));
    double x = a.num(), y = b.num();
    bool r = op == "==" ? x == y : op == "!=" ? x != y : op == "<" ? x < y : op == "<=" ? x <= y : op == ">" ? x > y : x >= y;
    return Val::ofBool(r);
  }
  if (a.isNumber() && b.isNumber()) {
    if (op == "@")
      diag_.error(loc, "'@' multiplies tensors; got {} and {}", describe(a), describe(b));
    if ((op == "/" || op == "%") && b.num() == 0)
      diag_.error(loc, "division by zero in a constant expression");
    if (a.kind == Val::Int && b.kind == Val::Int && op != "/") {
      __int128 x = a.i, y = b.i;
      __int128 r = op == "+" ? x + y : op == "-" ? x - y : op == "*" ? x * y : x % y;
      if (r > std::numeric_limits<int64_t>::max() || r < std::numeric_limits<int64_t>::min())
        diag_.error(loc, "integer overflow in a constant expression");
      return Val::ofInt(static_cast<int64_t>(r));
    }
    return Val::ofFloat(*foldArith(op, a.num(), b.num()));
  }
  auto isT = [](const Val &v) { return v.kind == Val::Tensor || v.kind == Val::State; };
  if (!(isT(a) || a.isNumber()) || !(isT(b) || b.isNumber()))
    diag_.error(loc, "'{}' needs numbers or tensors; got {} and {}", op, describe(a), describe(b));
  if (op == "@") {
    if (!isT(a) || !isT(b))
      diag_.error(loc, "'@' multiplies tensors; got {} and {}", describe(a), describe(b));
    return Val::ofTensor(make1(Op::MatMul, {tensor(a, loc, "'@'"), tensor(b, loc, "'@'")}, {}, loc));
  }
  Op o = op == "+" ? Op::Add : op == "-" ? Op::Sub : op == "*" ? Op::Mul : op == "/" ? Op::Div : Op::Add;
  if (op == "%")
    diag_.error(loc, "'%' is only defined on constants");
  return Val::ofTensor(elementwise(o, a, b, loc));
}

Val Elaborator::evalBinary(const Expr &e, Scope &scope) {
  if (e.op == "&&" || e.op == "||") {
    bool x = constBool(eval(*e.operands[0], scope), e.operands[0]->loc, "a condition");
    if (e.op == "&&" ? !x : x)
      return Val::ofBool(x);
    return Val::ofBool(constBool(eval(*e.operands[1], scope), e.operands[1]->loc, "a condition"));
  }
  Val a = eval(*e.operands[0], scope);
  Val b = eval(*e.operands[1], scope);
  return binary(e.op, a, b, e.loc);
}

Val Elaborator::eval(const Expr &e, Scope &scope) {
  countWork(e.loc);
  switch (e.kind) {
  case ExprKind::Int: return Val::ofInt(e.intValue);
  case ExprKind::Float: return Val::ofFloat(e.floatValue);
  case ExprKind::String: return Val::ofStr(e.str);
  case ExprKind::Bool: return Val::ofBool(e.boolValue);
  case ExprKind::Training:
    if (!ctx_)
      diag_.error(e.loc, "'training' is only known inside a graph or a forward");
    return Val::ofBool(training_);
  case ExprKind::NameRef: {
    std::string n = resolveName(e.name, scope);
    Val *v = scope.lookup(n);
    if (!v) {
      if (layerDefs_.count(n))
        diag_.error(e.loc, "'{}' is a layer definition; instantiate it with 'layer x = {}(...)'", n, n);
      diag_.error(e.loc, "unknown name '{}'", n);
    }
    if (v->kind == Val::State) {
      if (!ctx_)
        diag_.error(e.loc, "{} can only be used inside forward", describe(*v));
      return Val::ofTensor(stateValue(*v, e.loc));
    }
    return *v;
  }
  case ExprKind::List: {
    std::vector<int64_t> items;
    Val strs;
    for (const ExprPtr &x : e.operands) {
      Val v = eval(*x, scope);
      if (v.kind == Val::Str && items.empty()) {
        strs.kind = Val::StrList;
        strs.strs.push_back(v.s);
      } else if (strs.kind == Val::StrList) {
        diag_.error(x->loc, "a list holds integers or strings, not both: expected a string, got {}", describe(v));
      } else {
        items.push_back(constInt(v, x->loc, "a list item"));
      }
    }
    if (strs.kind == Val::StrList)
      return strs;
    return Val::ofList(std::move(items));
  }
  case ExprKind::Unary: {
    Val v = eval(*e.operands[0], scope);
    if (e.op == "!")
      return Val::ofBool(!constBool(v, e.loc, "the operand of '!'"));
    if (v.kind == Val::Int) {
      if (v.i == std::numeric_limits<int64_t>::min())
        diag_.error(e.loc, "integer overflow in a constant expression");
      return Val::ofInt(-v.i);
    }
    if (v.kind == Val::Float)
      return Val::ofFloat(-v.f);
    return Val::ofTensor(unary(Op::Neg, tensor(v, e.loc, "the operand of '-'"), e.loc));
  }
  case ExprKind::Binary: return evalBinary(e, scope);
  case ExprKind::Ternary: {
    bool c = constBool(eval(*e.operands[0], scope), e.operands[0]->loc, "the condition of '?:'");
    return eval(*e.operands[c ? 1 : 2], scope);
  }
  case ExprKind::Range: {
    int64_t lo = constInt(eval(*e.operands[0], scope), e.operands[0]->loc, "a range bound");
    int64_t hi = constInt(eval(*e.operands[1], scope), e.operands[1]->loc, "a range bound");
    if (hi - lo > 4096)
      diag_.error(e.loc, "range {}..{} is too long for a list", lo, hi);
    std::vector<int64_t> items;
    for (int64_t i = lo; i < hi; ++i)
      items.push_back(i);
    return Val::ofList(std::move(items));
  }
  case ExprKind::Call: return evalCall(e, scope);
  case ExprKind::Index: return evalIndex(e, scope);
  case ExprKind::Scan: return evalScan(e, scope);
  }
  diag_.error(e.loc, "unsupported expression");
}

Val Elaborator::evalIndex(const Expr &e, Scope &scope) {
  Val base = eval(*e.operands[0], scope);
  if (base.kind == Val::List) {
    if (e.indices.size() != 1 || e.indices[0].isSlice)
      diag_.error(e.loc, "a list takes one integer index");
    int64_t i = constInt(eval(*e.indices[0].index, scope), e.indices[0].loc, "an index");
    int64_t n = static_cast<int64_t>(base.list.size());
    if (i < -n || i >= n)
      diag_.error(e.indices[0].loc, "index {} is out of bounds for a list of {} items", i, n);
    return Val::ofInt(base.list[i < 0 ? i + n : i]);
  }
  if (base.kind == Val::Tuple) {
    if (e.indices.size() != 1 || e.indices[0].isSlice)
      diag_.error(e.loc, "a tuple takes one integer index");
    int64_t i = constInt(eval(*e.indices[0].index, scope), e.indices[0].loc, "an index");
    int64_t n = static_cast<int64_t>(base.tuple.size());
    if (i < -n || i >= n)
      diag_.error(e.indices[0].loc, "index {} is out of bounds for a tuple of {} values", i, n);
    return base.tuple[i < 0 ? i + n : i];
  }
  Value *x = tensor(base, e.loc, "an indexed value");
  const TensorType &t = x->type;
  if (static_cast<int>(e.indices.size()) > t.rank())
    diag_.error(e.loc, "too many indices for {}: {}", t.str(), e.indices.size());
  // The first index, evaluated once: a tensor there is a row chosen at run time.
  Val first;
  if (!e.indices.empty() && !e.indices[0].isSlice) {
    first = eval(*e.indices[0].index, scope);
    if (first.kind == Val::Tensor)
      return dynamicRow(e, x, rowIndex(first, e.indices[0].loc));
  }
  std::vector<int64_t> begin(t.rank(), 0), end = t.shape, keep;
  bool sliced = false;
  for (int a = 0; a < t.rank(); ++a) {
    int64_t n = t.shape[a];
    if (a >= static_cast<int>(e.indices.size())) {
      keep.push_back(n);
      continue;
    }
    const IndexItem &it = e.indices[a];
    if (!it.isSlice) {
      int64_t i = constInt(a == 0 ? first : eval(*it.index, scope), it.loc, "an index");
      if (i < -n || i >= n)
        diag_.error(it.loc, "index {} is out of bounds for axis {} of size {}", i, a, n);
      begin[a] = i < 0 ? i + n : i;
      end[a] = begin[a] + 1;
      sliced = sliced || n != 1;
      continue;
    }
    auto bound = [&](const ExprPtr &p, int64_t dflt) {
      if (!p)
        return dflt;
      int64_t v = constInt(eval(*p, scope), p->loc, "a slice bound");
      if (v < 0)
        v += n;
      return std::clamp<int64_t>(v, 0, n);
    };
    begin[a] = bound(it.lo, 0);
    end[a] = bound(it.hi, n);
    if (end[a] <= begin[a])
      diag_.error(it.loc, "slice selects nothing from axis {} of size {}", a, n);
    sliced = sliced || begin[a] != 0 || end[a] != n;
    keep.push_back(end[a] - begin[a]);
  }
  Value *r = x;
  if (sliced)
    r = make1(Op::Slice, {r}, {{"begin", begin}, {"end", end}}, e.loc);
  if (keep.size() != static_cast<size_t>(t.rank()))
    r = make1(Op::Reshape, {r}, {{"shape", keep}}, e.loc);
  return Val::ofTensor(r);
}

Value *Elaborator::rowIndex(const Val &v, SrcLoc loc) {
  if (v.kind == Val::Int)
    return constant(static_cast<double>(v.i), TensorType{DType::I64, {}}, loc);
  if (v.kind != Val::Tensor)
    diag_.error(loc, "a row index must be an integer or an integer scalar tensor, got {}", describe(v));
  Value *i = tensor(v, loc, "a row index");
  if (i->type.dtype == DType::F32 || i->type.rank() != 0)
    diag_.error(loc, "a row index must be an integer scalar (i32[] or i64[]), got {}", i->type.str());
  return i;
}

Val Elaborator::dynamicRow(const Expr &e, Value *x, Value *i) {
  for (size_t a = 1; a < e.indices.size(); ++a) {
    const IndexItem &it = e.indices[a];
    if (!it.isSlice || it.lo || it.hi)
      diag_.error(it.loc, "with a run-time row index, the other axes must be whole (':')");
  }
  return Val::ofTensor(make1(Op::Row, {x, i}, {}, e.loc));
}

Value *Elaborator::setRow(Value *cur, Value *i, SrcLoc iloc, Value *v, SrcLoc vloc, const std::string &what) {
  if (cur->type.rank() < 1)
    diag_.error(iloc, "{} is {}, which has no rows", what, cur->type.str());
  const TensorType rt{cur->type.dtype, std::vector<int64_t>(cur->type.shape.begin() + 1, cur->type.shape.end())};
  if (v->type != rt)
    diag_.error(vloc, "a row of {} ({}) is {}, but the new row is {}", what, cur->type.str(), rt.str(), v->type.str());
  return make1(Op::SetRow, {cur, i, v}, {}, vloc);
}

Val Elaborator::evalCall(const Expr &e, Scope &scope) {
  const Expr &callee = *e.operands[0];
  if (callee.kind != ExprKind::NameRef)
    diag_.error(e.loc, "only named layers and built-in functions can be called");
  std::string name = resolveName(callee.name, scope);
  if (Val *v = scope.lookup(name)) {
    if (v->kind == Val::Layer)
      return callLayer(*v->layer, e, scope);
    diag_.error(callee.loc, "'{}' is {}, which cannot be called", name, describe(*v));
  }
  if (layerDefs_.count(name))
    diag_.error(callee.loc, "layer constructor '{}' can only be used in a 'layer' declaration", name);
  return evalBuiltin(name, e, scope);
}

namespace {

/// Positional and keyword arguments of a built-in call, evaluated.
struct Args {
  std::vector<Val> pos;
  std::vector<SrcLoc> posLoc;
  std::map<std::string, std::pair<Val, SrcLoc>> kw;
};

} // namespace

Val Elaborator::evalBuiltin(const std::string &name, const Expr &e, Scope &scope) {
  Args a;
  for (const Arg &arg : e.args) {
    Val v = eval(*arg.value, scope);
    if (arg.keyword.empty()) {
      if (!a.kw.empty())
        diag_.error(arg.loc, "a positional argument cannot follow keyword arguments");
      a.pos.push_back(std::move(v));
      a.posLoc.push_back(arg.loc);
    } else if (!a.kw.emplace(arg.keyword, std::make_pair(std::move(v), arg.loc)).second) {
      diag_.error(arg.loc, "argument '{}' given twice", arg.keyword);
    }
  }
  SrcLoc loc = e.loc;
  auto expectArgs = [&](size_t lo, size_t hi, std::initializer_list<const char *> kws) {
    if (a.pos.size() < lo || a.pos.size() > hi) {
      if (lo == hi)
        diag_.error(loc, "{}() takes {} argument{}, got {}", name, lo, lo == 1 ? "" : "s", a.pos.size());
      diag_.error(loc, "{}() takes {} to {} arguments, got {}", name, lo, hi, a.pos.size());
    }
    for (const auto &[k, v] : a.kw) {
      bool ok = false;
      for (const char *kw : kws)
        ok = ok || k == kw;
      if (!ok)
        diag_.error(v.second, "{}() has no argument '{}'", name, k);
    }
  };
  auto kw = [&](const char *k) -> const std::pair<Val, SrcLoc> * {
    auto it = a.kw.find(k);
    return it == a.kw.end() ? nullptr : &it->second;
  };

  // The elementwise builtins (TR_BUILTIN in Ops.def), on numbers folded with their math there.
  if (std::optional<Op> op = opByName(name); op && hasTrait(*op, TR_BUILTIN)) {
    const int arity = opInfo(*op).numOperands;
    expectArgs(arity, arity, {});
    bool numbers = true;
    for (const Val &x : a.pos)
      numbers = numbers && x.isNumber();
    if (numbers) {
      double r = *evalScalarMath(*op, DType::F32, a.pos[0].num(), arity > 1 ? a.pos[1].num() : 0);
      if (!std::isfinite(r))
        diag_.error(loc, "{}({}) is not a finite number", name,
                    arity > 1 ? fmt::format("{}, {}", a.pos[0].num(), a.pos[1].num()) : fmt::format("{}", a.pos[0].num()));
      return Val::ofFloat(r);
    }
    if (arity == 1)
      return Val::ofTensor(unary(*op, tensor(a.pos[0], a.posLoc[0], "the argument"), loc));
    return Val::ofTensor(elementwise(*op, a.pos[0], a.pos[1], loc));
  }
  if (name == "min" && a.pos.size() == 2 && a.pos[0].isNumber()) {
    expectArgs(2, 2, {});
    Val x = a.pos[0], y = a.pos[1];
    constNum(y, a.posLoc[1], "min()'s argument");
    return (x.num() <= y.num()) ? x : y;
  }
  if (name == "max" && a.pos.size() == 2 && a.pos[0].isNumber()) {
    expectArgs(2, 2, {});
    Val x = a.pos[0], y = a.pos[1];
    constNum(y, a.posLoc[1], "max()'s argument");
    return (x.num() >= y.num()) ? x : y;
  }
  // allreduce_sum(x): x summed over the ranks of an MPI run. A number is the same on every
  // rank, so its sum is known here; a tensor is an allreduce_sum node, or itself on one rank.
  if (name == "allreduce_sum") {
    expectArgs(1, 1, {});
    if (a.pos[0].kind == Val::Int)
      return Val::ofInt(a.pos[0].i * ranks_);
    if (a.pos[0].isNumber())
      return Val::ofFloat(a.pos[0].num() * static_cast<double>(ranks_));
    Value *x = tensor(a.pos[0], a.posLoc[0], "the argument");
    if (ranks_ == 1)
      return Val::ofTensor(x);
    return Val::ofTensor(make1(Op::AllReduceSum, {x}, {}, loc));
  }
  if (name == "sum" || name == "mean" || name == "max") {
    expectArgs(1, 1, {"axis", "keepdims"});
    Value *x = tensor(a.pos[0], a.posLoc[0], "the argument");
    std::vector<int64_t> axes;
    if (auto *ax = kw("axis"))
      axes = constAxes(ax->first, x->type.rank(), ax->second, (name + "()").c_str());
    else
      for (int i = 0; i < x->type.rank(); ++i)
        axes.push_back(i);
    int64_t keep = 0;
    if (auto *k = kw("keepdims"))
      keep = constBool(k->first, k->second, "keepdims");
    Op op = name == "sum" ? Op::Sum : name == "mean" ? Op::Mean : Op::Max;
    if (axes.empty())
      return Val::ofTensor(x);
    return Val::ofTensor(make1(op, {x}, {{"axes", axes}, {"keepdims", keep}}, loc));
  }
  // row(x, i) (also written x[i]) and set_row(x, i, v): a row of x chosen at run time.
  if (name == "row" || name == "set_row") {
    const bool set = name == "set_row";
    expectArgs(set ? 3 : 2, set ? 3 : 2, {});
    Value *x = tensor(a.pos[0], a.posLoc[0], "the tensor");
    Value *i = rowIndex(a.pos[1], a.posLoc[1]);
    if (!set) {
      if (x->type.rank() < 1)
        diag_.error(a.posLoc[0], "row(): {} has no rows", x->type.str());
      return Val::ofTensor(make1(Op::Row, {x, i}, {}, loc));
    }
    return Val::ofTensor(setRow(x, i, a.posLoc[1], tensor(a.pos[2], a.posLoc[2], "the new row"), a.posLoc[2], "set_row()'s tensor"));
  }
  if (name == "transpose") {
    expectArgs(1, 2, {});
    Value *x = tensor(a.pos[0], a.posLoc[0], "the argument");
    int r = x->type.rank();
    std::vector<int64_t> perm;
    if (a.pos.size() == 2) {
      if (a.pos[1].kind != Val::List)
        diag_.error(a.posLoc[1], "transpose()'s permutation must be a list, got {}", describe(a.pos[1]));
      perm = a.pos[1].list;
      for (int64_t &p : perm)
        if (p < 0)
          p += r;
    } else {
      if (r < 2)
        diag_.error(loc, "transpose() needs at least 2 axes, got {}", x->type.str());
      for (int i = 0; i < r; ++i)
        perm.push_back(i);
      std::swap(perm[r - 1], perm[r - 2]);
    }
    return Val::ofTensor(make1(Op::Transpose, {x}, {{"perm", perm}}, loc));
  }
  if (name == "reshape") {
    if (a.pos.size() < 2)
      diag_.error(loc, "reshape() takes a tensor and its new dimensions");
    expectArgs(2, 9, {});
    Value *x = tensor(a.pos[0], a.posLoc[0], "the argument");
    std::vector<int64_t> dims;
    if (a.pos.size() == 2 && a.pos[1].kind == Val::List)
      dims = a.pos[1].list;
    else
      for (size_t i = 1; i < a.pos.size(); ++i)
        dims.push_back(constInt(a.pos[i], a.posLoc[i], "a dimension"));
    int infer = -1;
    int64_t known = 1;
    for (size_t i = 0; i < dims.size(); ++i) {
      if (dims[i] == -1) {
        if (infer >= 0)
          diag_.error(loc, "reshape() can infer only one dimension");
        infer = static_cast<int>(i);
      } else if (dims[i] <= 0) {
        diag_.error(loc, "dimension must be a positive integer, got {}", dims[i]);
      } else {
        known *= dims[i];
        if (known > (int64_t{1} << 31))
          diag_.error(loc, "tensor too large");
      }
    }
    if (infer >= 0) {
      if (x->type.numel() % known != 0)
        diag_.error(loc, "reshape: cannot reshape {} to [{}]", x->type.str(), fmt::join(dims, ","));
      dims[infer] = x->type.numel() / known;
    }
    return Val::ofTensor(make1(Op::Reshape, {x}, {{"shape", dims}}, loc));
  }
  if (name == "concat") {
    if (a.pos.empty())
      diag_.error(loc, "concat() needs at least one tensor");
    expectArgs(1, 64, {"axis"});
    std::vector<Value *> xs;
    for (size_t i = 0; i < a.pos.size(); ++i)
      xs.push_back(tensor(a.pos[i], a.posLoc[i], "concat()'s argument"));
    int64_t axis = -1;
    if (auto *ax = kw("axis"))
      axis = constInt(ax->first, ax->second, "axis");
    int r = xs[0]->type.rank();
    if (axis < -r || axis >= r)
      diag_.error(loc, "concat(): axis {} is out of range for {}", axis, xs[0]->type.str());
    if (axis < 0)
      axis += r;
    return Val::ofTensor(make1(Op::Concat, xs, {{"axis", axis}}, loc));
  }
  if (name == "zeros" || name == "ones" || name == "full") {
    size_t first = name == "full" ? 1 : 0;
    if (a.pos.size() < first)
      diag_.error(loc, "full() takes a value and dimensions");
    expectArgs(first, first + 8, {});
    double v = name == "zeros" ? 0 : name == "ones" ? 1 : constNum(a.pos[0], a.posLoc[0], "full()'s value");
    std::vector<int64_t> dims;
    if (a.pos.size() == first + 1 && a.pos[first].kind == Val::List)
      dims = a.pos[first].list;
    else
      for (size_t i = first; i < a.pos.size(); ++i)
        dims.push_back(constInt(a.pos[i], a.posLoc[i], "a dimension"));
    if (!ctx_)
      diag_.error(loc, "{}() makes a tensor, which only exists inside a graph or a forward", name);
    return Val::ofTensor(constant(v, makeType(DType::F32, dims, loc), loc));
  }
  if (name == "cast") {
    expectArgs(2, 2, {});
    Value *x = tensor(a.pos[0], a.posLoc[0], "the argument");
    if (a.pos[1].kind != Val::Str || !dtypeByName(a.pos[1].s))
      diag_.error(a.posLoc[1], "cast() takes a dtype name: \"f32\", \"i32\" or \"i64\"");
    return Val::ofTensor(make1(Op::Cast, {x}, {{"dtype", a.pos[1].s}}, loc));
  }
  // softmax(x, axis=-1), log_softmax(x, axis=-1): the prelude's Softmax and LogSoftmax layers
  // (which have no tensors), called as functions.
  if (name == "softmax" || name == "log_softmax") {
    expectArgs(1, 1, {"axis"});
    Val x = Val::ofTensor(tensor(a.pos[0], a.posLoc[0], "the argument"));
    int64_t axis = -1;
    if (auto *ax = kw("axis"))
      axis = constInt(ax->first, ax->second, "axis");
    const int r = x.t->type.rank();
    if (axis < -r || axis >= r)
      diag_.error(kw("axis") ? kw("axis")->second : loc, "{}(): axis {} is out of range for {}", name, axis, x.t->type.str());
    LayerInstance *inst = preludeInstance(name == "softmax" ? "Softmax" : "LogSoftmax", {{"axis", Val::ofInt(axis)}}, loc);
    return callForward(*inst, {x}, loc);
  }
  // dropout(x, p): in training, x times a mask that is 0 with probability p and 1/(1-p)
  // elsewhere, drawn per element from the step's random key (a dropout_mask node, its own
  // stream per call); in inference (or with p = 0), x itself.
  if (name == "dropout") {
    expectArgs(2, 2, {});
    requireGraph(loc);
    Value *x = tensor(a.pos[0], a.posLoc[0], "the argument");
    double p = constNum(a.pos[1], a.posLoc[1], "dropout()'s probability");
    if (!(p >= 0 && p < 1))
      diag_.error(a.posLoc[1], "dropout(): the probability must be in [0, 1), got {}", p);
    if (x->type.dtype != DType::F32)
      diag_.error(a.posLoc[0], "dropout() takes an f32 tensor, got {}", x->type.str());
    if (!training_ || p == 0)
      return Val::ofTensor(x);
    if (ctx_->parent)
      diag_.error(loc, "dropout() inside a scan body is not supported yet (every step would draw the same mask); "
                       "apply it to the scan's input or output");
    Builder b(*m_, ctx_->g);
    Value *mask = b.source(Op::DropoutMask, x->type, {{"p", p}, {"stream", randomStreams_++}}, loc, "mask");
    return Val::ofTensor(elementwise(Op::Mul, Val::ofTensor(x), Val::ofTensor(mask), loc));
  }
  // gather(table, indices, padding = -1): row indices[...] of table f32[N, D], as f32[..., D]
  // (F.embedding); row `padding` gets no gradient.
  if (name == "gather") {
    expectArgs(2, 2, {"padding"});
    requireGraph(loc);
    Value *table = tensor(a.pos[0], a.posLoc[0], "the table");
    Value *idx = tensor(a.pos[1], a.posLoc[1], "the indices");
    if (table->type.dtype != DType::F32 || table->type.rank() != 2)
      diag_.error(a.posLoc[0], "gather(): the table must be f32[N, D], got {}", table->type.str());
    if (idx->type.dtype == DType::F32)
      diag_.error(a.posLoc[1], "gather(): the indices must be i32 or i64, got {}", idx->type.str());
    int64_t padding = -1;
    if (auto *p = kw("padding"))
      padding = constInt(p->first, p->second, "padding");
    if (padding < -1 || padding >= table->type.shape[0])
      diag_.error(kw("padding")->second, "gather(): padding {} is outside [0, {}) (or -1 for none)", padding, table->type.shape[0]);
    // Indices fed straight from an input (through reshapes and casts) are checked by the driver.
    const Value *src = idx;
    while (src->def && (src->def->op == Op::Reshape || src->def->op == Op::Cast))
      src = src->def->operands[0];
    if (src->def && src->def->op == Op::Input) {
      auto [it, fresh] = m_->indexBounds.try_emplace(src->def->getStr("name"), table->type.shape[0], path_);
      if (!fresh && table->type.shape[0] < it->second.first)
        it->second = {table->type.shape[0], path_};
    }
    return Val::ofTensor(make1(Op::Gather, {table, idx}, {{"padding", padding}}, loc));
  }
  if (name == "mse" || name == "cross_entropy" || name == "bce_with_logits") {
    expectArgs(2, 2, {});
    Value *p = tensor(a.pos[0], a.posLoc[0], "the prediction");
    Value *t = tensor(a.pos[1], a.posLoc[1], "the target");
    Op op = name == "mse" ? Op::Mse : name == "cross_entropy" ? Op::CrossEntropy : Op::BceWithLogits;
    if (op == Op::CrossEntropy && p->type.rank() > 2) {
      // Logits [..., C] with labels [...]: the mean over every position, as F.cross_entropy on
      // the flattened [N, C] and [N].
      const std::vector<int64_t> lead(p->type.shape.begin(), p->type.shape.end() - 1);
      if (t->type.dtype != DType::I32 || t->type.shape != lead)
        diag_.error(a.posLoc[1], "cross_entropy: labels of logits {} must be i32[{}], got {}", p->type.str(), fmt::join(lead, ","),
                    t->type.str());
      const int64_t C = p->type.shape.back(), N = p->type.numel() / C;
      p = make1(Op::Reshape, {p}, {{"shape", std::vector<int64_t>{N, C}}}, loc);
      t = make1(Op::Reshape, {t}, {{"shape", std::vector<int64_t>{N}}}, loc);
    }
    return Val::ofTensor(make1(op, {p, t}, {}, loc));
  }
  // expect(condition, "message", values...): a compile-time check in a layer; when the condition
  // is false the message is the error (reported at the user's line that uses the layer), each
  // "{}" in it replaced by the next value: a number as itself, a tensor as its type.
  if (name == "expect") {
    if (a.pos.size() < 2)
      diag_.error(loc, "expect() takes a condition, a message and the message's values, got {} argument{}", a.pos.size(),
                  a.pos.size() == 1 ? "" : "s");
    expectArgs(a.pos.size(), a.pos.size(), {});
    if (a.pos[0].kind != Val::Bool)
      diag_.error(a.posLoc[0], "expect()'s condition must be a compile-time condition, got {}", describe(a.pos[0]));
    if (a.pos[1].kind != Val::Str)
      diag_.error(a.posLoc[1], "expect()'s message must be a string, got {}", describe(a.pos[1]));
    const std::string &msg = a.pos[1].s;
    std::string text;
    size_t next = 2;
    for (size_t i = 0; i < msg.size(); ++i) {
      if (msg.compare(i, 2, "{}") != 0) {
        text += msg[i];
        continue;
      }
      if (next >= a.pos.size())
        diag_.error(a.posLoc[1], "expect()'s message has more '{{}}' than the {} value(s) after it", a.pos.size() - 2);
      const Val &v = a.pos[next++];
      text += v.kind == Val::Tensor ? v.t->type.str()
            : v.kind == Val::Int    ? std::to_string(v.i)
            : v.kind == Val::Float  ? fmt::format("{}", v.f)
            : v.kind == Val::Str    ? v.s
                                    : describe(v);
      ++i;
    }
    if (next != a.pos.size())
      diag_.error(a.posLoc[next], "expect()'s message has {} '{{}}' for {} value(s)", next - 2, a.pos.size() - 2);
    if (!a.pos[0].b)
      diag_.error(loc, "{}", text);
    return Val::ofBool(true);
  }
  // ranks(): the number of MPI ranks the model is compiled for (gradc --ranks; 1 by default).
  if (name == "ranks") {
    expectArgs(0, 0, {});
    return Val::ofInt(ranks_);
  }
  if (name == "dim" || name == "rank" || name == "numel") {
    expectArgs(name == "dim" ? 2 : 1, name == "dim" ? 2 : 1, {});
    Value *x = tensor(a.pos[0], a.posLoc[0], "the argument");
    if (name == "rank")
      return Val::ofInt(x->type.rank());
    if (name == "numel")
      return Val::ofInt(x->type.numel());
    int64_t i = constInt(a.pos[1], a.posLoc[1], "an axis");
    int r = x->type.rank();
    if (i < -r || i >= r)
      diag_.error(a.posLoc[1], "dim(): axis {} is out of range for {}", i, x->type.str());
    return Val::ofInt(x->type.shape[i < 0 ? i + r : i]);
  }
  if (name == "uniform" || name == "normal")
    diag_.error(loc, "{}() is an initializer; it belongs after 'param NAME: TYPE ='", name);
  diag_.error(e.operands[0]->loc, "unknown function '{}'", name);
}

} // namespace gradc
