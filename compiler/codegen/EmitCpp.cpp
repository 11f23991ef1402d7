// EmitCpp.cpp: lowers the loop-level plan (LoopLevel.h: single nodes and fused loops of
// elementwise work and reductions, every buffer placed in one arena) to loop nests and GEMM
// calls, scans to loops over steps, and prints readable C++.
#include "codegen/EmitCpp.h"
#include "codegen/CppScalar.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "lower/Fusion.h"
#include "lower/MemoryPlan.h"
#include "lower/RunSpec.h"

namespace gradc {

namespace {

std::string num(double v) {
  if (std::isinf(v))
    return v > 0 ? "INFINITY" : "-INFINITY";
  return fmt::format("T({:.17g})", v);
}

std::string quote(const std::string &s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      o += '\\';
    o += c;
  }
  return o + "\"";
}

class Emitter {
public:
  Emitter(const Module &m, const SourceManager &sm, std::ostream &os, const LowerOptions &opts)
      : m_(m), sm_(sm), os_(os), opts_(opts), layout_(m, opts) {}

  void run() {
    rt::ModelSpec spec = makeModelSpec(m_);
    for (size_t i = 0; i < spec.state.size(); ++i)
      stateIndex_[spec.state[i].name] = i;
    for (size_t i = 0; i < spec.inputs.size(); ++i)
      inputIndex_[spec.inputs[i].name] = i;
    for (size_t i = 0; i < spec.outputs.size(); ++i)
      outputIndex_[spec.outputs[i].name] = i;
    paramOrder_.clear();
    for (size_t i = 0; i < spec.state.size(); ++i)
      if (spec.state[i].kind == rt::StateSpec::Param)
        paramOrder_[spec.state[i].name] = paramOrder_.size();
    std::ostringstream train, eval, infer;
    // The three graphs never run at the same time and every scan resets its slots at its
    // entry, so each graph numbers its gemmInvariantB slots from 0 (fewer packed copies).
    body(*m_.trainGraph, train, 2);
    nextSlot_ = 0;
    body(*m_.evalGraph, eval, 2);
    nextSlot_ = 0;
    emitOutputs_ = true; // only infer() has output buffers
    body(*m_.inferGraph, infer, 2);
    header(spec);
    os_ << "template <typename T> class Net final : public Backend {\npublic:\n";
    os_ << "  Net() {\n";
    for (size_t i = 0; i < spec.state.size(); ++i) {
      int64_t n = 1;
      for (int64_t d : spec.state[i].shape)
        n *= d;
      if (spec.state[i].dtype == rt::DType::I64)
        os_ << fmt::format("    si_[{}].assign({}, 0);\n", i, n);
      else
        os_ << fmt::format("    sf_[{}].assign({}, T(0));\n", i, n);
    }
    os_ << "  }\n";
    os_ << R"(  DType floatType() const override { return sizeof(T) == 4 ? DType::F32 : DType::F64; }
  void *stateData(size_t i) override {
    return si_[i].empty() ? static_cast<void *>(sf_[i].data()) : static_cast<void *>(si_[i].data());
  }
  void setLearningRateScale(double f) override { lr_ = )" << fmt::format("{:.17g}", spec.train.lr) << R"( * f; }
  double trainStep(const Batch &b) override { return train(b, true, nullptr); }
  double loss(const Batch &b) override { return train(b, false, nullptr); }
  double lossAndGrads(const Batch &b, std::vector<std::vector<double>> &g) override {
    g.assign()" << paramOrder_.size() << R"(, {});
    return train(b, false, &g);
  }
  void predict(const Batch &b, const std::vector<void *> &out) override { infer(b, out); }
  double evalLoss(const Batch &b) override {
    T *const A = arena();
    double loss = 0;
)" << eval.str() << "    return loss;\n  }\n\nprivate:\n";
    os_ << "  double train(const Batch &b, bool apply, std::vector<std::vector<double>> *grads) {\n"
        << "    T *const A = arena();\n    double loss = 0;\n    std::vector<std::pair<size_t, const T *>> updates;\n"
        << train.str()
        << "    if (apply)\n      for (auto &[i, v] : updates) {\n        if (!si_[i].empty())\n"
        << "          for (size_t k = 0; k < si_[i].size(); ++k) si_[i][k] = static_cast<int64_t>(std::llround(v[k]));\n"
        << "        else\n          std::copy(v, v + sf_[i].size(), sf_[i].data());\n      }\n"
        << "    return loss;\n  }\n\n";
    os_ << "  void infer(const Batch &b, const std::vector<void *> &out) {\n    T *const A = arena();\n"
        << infer.str() << "  }\n\n";
    os_ << "  // Every value of every graph, placed by gradc; allocated at the first step, so a build\n"
        << "  // that never runs (the double-precision one, used only by --gradcheck) costs no memory.\n"
        << "  std::vector<T> arena_;\n"
        << fmt::format("  T *arena() {{\n    if (arena_.empty())\n      arena_.resize({});\n    return arena_.data();\n  }}\n", layout_.arenaSize);
    os_ << fmt::format("  std::vector<T> sf_[{}];       // float state (params, buffers, optimizer), spec order\n",
                       std::max<size_t>(1, spec.state.size()));
    os_ << fmt::format("  std::vector<int64_t> si_[{}]; // integer state\n", std::max<size_t>(1, spec.state.size()));
    os_ << "  double lr_ = " << fmt::format("{:.17g}", spec.train.lr) << ";\n};\n\n} // namespace\n\n";
    os_ << "int main(int argc, char **argv) {\n  static Net<float> net;\n  static Net<double> precise;\n"
        << "  return gradc::rt::runMain(spec(), net, argc, argv, &precise);\n}\n";
  }

private:
  void header(const rt::ModelSpec &s) {
    os_ << "// Generated by gradc from " << std::filesystem::path(m_.path).filename().string()
        << ": the training step, validation loss and inference of model " << s.name << ".\n"
        << "// Do not edit: regenerate with `gradc MODEL --emit=cpp`.\n"
        << "#include <algorithm>\n#include <cmath>\n#include <cstdint>\n#include <cstring>\n#include <vector>\n\n"
        << "#include \"FastMath.h\"\n#include \"Gemm.h\"\n#include \"Model.h\"\n\n"
        << "// Marks a loop whose iterations touch disjoint elements (distinct arena buffers).\n"
        << "#if defined(__clang__)\n#define GRADC_IVDEP _Pragma(\"clang loop vectorize(assume_safety)\")\n"
        << "#elif defined(__GNUC__)\n#define GRADC_IVDEP _Pragma(\"GCC ivdep\")\n#else\n#define GRADC_IVDEP\n#endif\n\n"
        << "namespace {\n\nusing namespace gradc::rt;\n\n";
    os_ << "const ModelSpec &spec() {\n  static const ModelSpec s = [] {\n    ModelSpec s;\n";
    os_ << "    s.name = " << quote(s.name) << ";\n    s.batch = " << s.batch << ";\n    s.numInputs = " << s.numInputs << ";\n";
    auto dt = [](rt::DType d) { return fmt::format("DType::{}", rt::dtypeName(d)); };
    for (const auto &t : s.inputs)
      os_ << fmt::format("    s.inputs.push_back({{{}, {}, {{{}}}}});\n", quote(t.name), dt(t.dtype), fmt::join(t.shape, ", "));
    for (const auto &t : s.outputs)
      os_ << fmt::format("    s.outputs.push_back({{{}, {}, {{{}}}}});\n", quote(t.name), dt(t.dtype), fmt::join(t.shape, ", "));
    static const char *kinds[] = {"StateSpec::Param", "StateSpec::Buffer", "StateSpec::OptState"};
    static const char *inits[] = {"StateSpec::Zeros", "StateSpec::Ones", "StateSpec::Full", "StateSpec::Uniform",
                                  "StateSpec::Normal"};
    for (const auto &st : s.state)
      os_ << fmt::format("    s.state.push_back({{{}, {}, {}, {{{}}}, {}, {:.17g}, {:.17g}}});\n", quote(st.name),
                         kinds[st.kind], dt(st.dtype), fmt::join(st.shape, ", "), inits[st.init], st.a, st.b);
    for (size_t i = 0; i < s.state.size(); ++i)
      if (!s.state[i].where.empty())
        os_ << fmt::format("    s.state[{}].where = {};\n", i, quote(s.state[i].where));
    if (!s.lossWhere.empty())
      os_ << "    s.lossWhere = " << quote(s.lossWhere) << ";\n";
    const auto &t = s.train;
    os_ << "    TrainSpec &t = s.train;\n"
        << fmt::format("    t.optimizer = {};\n    t.lr = {:.17g};\n    t.epochs = {};\n    t.seed = {};\n", quote(t.optimizer),
                       t.lr, t.epochs, t.seed)
        << fmt::format("    t.dataKind = {};\n    t.dataPath = {};\n    t.dataLabels = {};\n    t.column = {};\n",
                       quote(t.dataKind), quote(t.dataPath), quote(t.dataLabels), quote(t.column))
        << fmt::format("    t.valKind = {};\n    t.valPath = {};\n    t.valLabels = {};\n", quote(t.valKind), quote(t.valPath),
                       quote(t.valLabels))
        << fmt::format("    t.scale = {};\n    t.length = {};\n    t.horizon = {};\n    t.split = {:.17g};\n", quote(t.scale),
                       t.length, t.horizon, t.split)
        << fmt::format("    t.earlyStopping = {};\n    t.patience = {};\n    t.delta = {:.17g};\n    t.validateEvery = {};\n",
                       t.earlyStopping ? "true" : "false", t.patience, t.delta, t.validateEvery)
        << "    return s;\n  }();\n  return s;\n}\n\n";
  }

  std::string ptr(const Value *v) {
    auto it = layout_.offset.find(v);
    if (it == layout_.offset.end())
      throw std::logic_error(fmt::format("emit-cpp: value %{} ({}) has no buffer", v->name.empty() ? std::to_string(v->id) : v->name,
                                         v->def ? opInfo(v->def->op).name : "argument"));
    return fmt::format("(A + {})", it->second);
  }
  /// The expression of v's storage (state lives outside the arena).
  std::string ref(const Value *v) {
    auto it = alias_.find(v);
    return it != alias_.end() ? it->second : ptr(v);
  }

  std::string locText(SrcLoc loc) {
    if (!loc.valid())
      return "";
    return fmt::format("{}:{}:{}", std::filesystem::path(sm_.get(loc.file).path).filename().string(), loc.line, loc.col);
  }

  /// Emits `for` nests over `shape`; `inner(offsets)` receives, for each stride vector
  /// given, the linear offset expression.
  /// `independent`: every iteration writes its own output element and reads no element
  /// another iteration writes (the buffers are distinct), so the innermost loop is marked
  /// GRADC_IVDEP for the vectoriser.
  void loops(std::ostream &o, int ind, const std::vector<int64_t> &shape, const std::vector<std::vector<int64_t>> &strides,
             const std::function<void(std::ostream &, int, const std::vector<std::string> &)> &inner, bool independent = false) {
    std::string pad(ind, ' ');
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    // Contiguous operands (or scalars) of an output of the same size: one flat loop.
    bool flat = true;
    std::vector<int64_t> full = stridesOf(shape);
    for (const auto &st : strides) {
      bool zero = std::all_of(st.begin(), st.end(), [](int64_t s) { return s == 0; });
      flat = flat && (st == full || zero);
    }
    std::vector<std::string> offs;
    if (flat) {
      if (independent)
        o << pad << "GRADC_IVDEP\n";
      o << pad << "for (int64_t i = 0; i < " << n << "; ++i) {\n";
      for (const auto &st : strides)
        offs.push_back(std::all_of(st.begin(), st.end(), [](int64_t s) { return s == 0; }) ? "0" : "i");
      inner(o, ind + 2, offs);
      o << pad << "}\n";
      return;
    }
    for (size_t a = 0; a < shape.size(); ++a) {
      if (independent && a + 1 == shape.size())
        o << std::string(ind + 2 * a, ' ') << "GRADC_IVDEP\n";
      o << std::string(ind + 2 * a, ' ') << fmt::format("for (int64_t i{0} = 0; i{0} < {1}; ++i{0})\n", a, shape[a]);
    }
    std::string ip(ind + 2 * shape.size(), ' ');
    for (const auto &st : strides) {
      std::string e;
      for (size_t a = 0; a < st.size(); ++a)
        if (st[a])
          e += fmt::format("{}i{} * {}", e.empty() ? "" : " + ", a, st[a]);
      offs.push_back(e.empty() ? "0" : e);
    }
    o << ip << "{\n";
    inner(o, ind + 2 * shape.size() + 2, offs);
    o << ip << "}\n";
  }

  /// The value of elementwise or indexed member `op` (result dtype `dt`) on operand
  /// expressions `x`: its math from Ops.def, or (indexed) the read itself.
  static std::string scalar(Op op, DType dt, const std::vector<std::string> &x) {
    if (hasTrait(op, TR_INDEXED) || op == Op::BroadcastTo)
      return x[0];
    return cppScalarExpr(op, dt, x.data());
  }

  void body(const Graph &g, std::ostream &o, int ind) {
    // Views first (state, reshapes): a fused loop may read one before its node's turn.
    for (const auto &n : g.nodes)
      if (n->op == Op::Reshape)
        alias_[n->results[0]] = ref(n->operands[0]);
      else if ((n->op == Op::Param || n->op == Op::Buffer) && n->results[0]->type.dtype == DType::F32)
        alias_[n->results[0]] = fmt::format("sf_[{}].data()", stateIndex_.at(n->getStr("name")));
    for (const FusedLoop &l : layout_.loops.at(&g)) {
      if (l.fused())
        fusedLoop(l, o, ind);
      else if (!l.nodes[0]->results.empty() && layout_.folded.count(l.nodes[0]->results[0]))
        o << std::string(ind, ' ') << "// transpose  (" << locText(l.nodes[0]->loc) << "): folded into the matmul that reads it\n";
      else
        node(*l.nodes[0], o, ind);
    }
  }

  /// One loop nest computing its elementwise and indexed members element by element and
  /// accumulating its reductions: values used only inside the loop stay in registers.
  void fusedLoop(const FusedLoop &l, std::ostream &o, int ind) {
    std::string pad(ind, ' ');
    o << pad << "// fused loop over [" << fmt::format("{}", fmt::join(l.shape, ", ")) << "]";
    const int nred = l.reductions();
    if (nred)
      o << fmt::format(", {} reduction{}", nred, nred > 1 ? "s" : "");
    o << ":\n";
    std::unordered_map<const Value *, size_t> local;
    for (size_t k = 0; k < l.nodes.size(); ++k) {
      const Node &n = *l.nodes[k];
      o << pad << "//   " << opInfo(n.op).name << (n.results[0]->name.empty() ? "" : " %" + n.results[0]->name);
      std::string loc = locText(n.loc);
      if (hasTrait(n.op, TR_REDUCTION))
        o << fmt::format(" over axes [{}]", fmt::join(n.getInts("axes"), ", "));
      o << (loc.empty() ? "" : "  (" + loc + ")") << (l.stored[k] ? "" : "  [register]") << "\n";
    }
    const size_t rank = l.shape.size();
    std::vector<std::vector<int64_t>> strides{stridesOf(l.shape)};
    // Operand j of member k: a register (local index) or a memory read (stride index, offset).
    struct Access {
      bool reg;
      size_t index;
      int64_t offset;
      std::string base;
    };
    std::vector<std::vector<Access>> acc(l.nodes.size());
    for (size_t k = 0; k < l.nodes.size(); ++k) {
      const Node &n = *l.nodes[k];
      for (size_t j = 0; j < n.operands.size(); ++j) {
        auto it = local.find(n.operands[j]);
        if (it != local.end()) {
          acc[k].push_back({true, it->second, 0, ""});
          continue;
        }
        auto [st, off] = readAccess(n, j, rank, layout_.memStrides(n.operands[j]));
        size_t si = std::find(strides.begin(), strides.end(), st) - strides.begin();
        if (si == strides.size())
          strides.push_back(st);
        acc[k].push_back({false, si, off, ref(n.operands[j])});
      }
      local[n.results[0]] = k;
    }
    // A reduction member accumulates into its result, zeroed (or -inf for max) first, at the
    // element's index with the reduced axes dropped.
    std::vector<size_t> outStride(l.nodes.size(), 0);
    bool independent = true; // unless a reduction accumulates along the innermost axis
    for (size_t k = 0; k < l.nodes.size(); ++k) {
      const Node &n = *l.nodes[k];
      if (!hasTrait(n.op, TR_REDUCTION))
        continue;
      auto st = reductionStrides(n, l.shape, independent);
      outStride[k] = std::find(strides.begin(), strides.end(), st) - strides.begin();
      if (outStride[k] == strides.size())
        strides.push_back(st);
      o << pad << fmt::format("std::fill_n({}, {}, {});\n", ptr(n.results[0]), n.results[0]->type.numel(),
                              n.op == Op::Max ? "-INFINITY" : "T(0)");
    }
    // Where each stored elementwise member writes: its buffer (row-major, stride 0), or a
    // stacked output's step in place.
    std::vector<size_t> outIndex(l.nodes.size(), 0);
    std::vector<std::string> outBase(l.nodes.size());
    for (size_t k = 0; k < l.nodes.size(); ++k) {
      const Value *r = l.nodes[k]->results[0];
      if (!l.stored[k] || hasTrait(l.nodes[k]->op, TR_REDUCTION))
        continue;
      outBase[k] = layout_.seqViews.count(r) ? ref(r) : ptr(r);
      if (!layout_.seqViews.count(r))
        continue;
      auto st = layout_.memStrides(r);
      outIndex[k] = std::find(strides.begin(), strides.end(), st) - strides.begin();
      if (outIndex[k] == strides.size())
        strides.push_back(st);
    }
    loops(o, ind, l.shape, strides, [&](std::ostream &oo, int i2, const std::vector<std::string> &off) {
      std::string ip(i2, ' ');
      for (size_t k = 0; k < l.nodes.size(); ++k) {
        const Node &n = *l.nodes[k];
        std::vector<std::string> x;
        for (const Access &a : acc[k]) {
          if (a.reg)
            x.push_back(fmt::format("v{}", a.index));
          else
            x.push_back(a.base + "[" + (a.offset ? fmt::format("{} + ", a.offset) : "") + off[a.index] + "]");
        }
        if (hasTrait(n.op, TR_REDUCTION)) {
          std::string d = ptr(n.results[0]) + "[" + off[outStride[k]] + "]";
          oo << ip << (n.op == Op::Max ? d + " = std::max(" + d + ", " + x[0] + ");\n" : d + " += " + x[0] + ";\n");
          continue;
        }
        std::string e = scalar(n.op, n.results[0]->type.dtype, x);
        oo << ip << fmt::format("const T v{} = {};\n", k, e);
        if (l.stored[k])
          oo << ip << fmt::format("{}[{}] = v{};\n", outBase[k], off[outIndex[k]], k);
      }
    }, independent);
    for (size_t k = 0; k < l.nodes.size(); ++k)
      if (l.nodes[k]->op == Op::Mean)
        meanDivide(*l.nodes[k], o, ind);
  }

  /// Divides a mean's accumulated sums by the number of elements each one reduced.
  void meanDivide(const Node &n, std::ostream &o, int ind) {
    int64_t count = 1;
    for (int64_t a : n.getInts("axes"))
      count *= n.operands[0]->type.shape[a];
    o << std::string(ind, ' ')
      << fmt::format("for (int64_t k = 0; k < {}; ++k) {}[k] /= T({});\n", n.results[0]->type.numel(), ptr(n.results[0]), count);
  }

  void node(const Node &n, std::ostream &o, int ind) {
    std::string pad(ind, ' ');
    const OpInfo &info = opInfo(n.op);
    std::string resName = n.results.empty() ? "" : n.results[0]->name;
    o << pad << "// " << info.name << (resName.empty() ? "" : " %" + resName);
    std::string loc = locText(n.loc);
    if (!loc.empty())
      o << "  (" << loc << ")";
    o << "\n";
    const Value *r = n.results.empty() ? nullptr : n.results[0];
    auto in = [&](size_t i) { return ref(n.operands[i]); };
    switch (n.op) {
    case Op::Input: {
      size_t i = inputIndex_.at(n.getStr("name"));
      bool integer = r->type.dtype != DType::F32;
      o << pad << fmt::format("{{ const {} *src = static_cast<const {} *>(b.data[{}]); T *dst = {};\n", integer ? "int32_t" : "float",
                              integer ? "int32_t" : "float", i, ptr(r))
        << pad << fmt::format("  for (int64_t k = 0; k < {}; ++k) dst[k] = T(src[k]); }}\n", r->type.numel());
      return;
    }
    case Op::Param:
    case Op::Buffer: {
      size_t i = stateIndex_.at(n.getStr("name"));
      if (r->type.dtype == DType::F32) {
        alias_[r] = fmt::format("sf_[{}].data()", i);
      } else {
        o << pad << fmt::format("for (int64_t k = 0; k < {}; ++k) {}[k] = T(si_[{}][k]);\n", r->type.numel(), ptr(r), i);
      }
      return;
    }
    case Op::Const:
      o << pad << fmt::format("std::fill_n({}, {}, {});\n", ptr(r), r->type.numel(), num(n.getFloat("value")));
      return;
    case Op::Hyper:
      o << pad << fmt::format("{}[0] = T(lr_);\n", ptr(r));
      return;
    case Op::Loss:
      o << pad << fmt::format("loss = double({}[0]);\n", in(0));
      return;
    case Op::Output: {
      auto it = outputIndex_.find(n.getStr("name"));
      if (!emitOutputs_ || it == outputIndex_.end())
        return;
      o << pad << fmt::format("std::copy_n({}, {}, static_cast<T *>(out[{}]));\n", in(0), n.operands[0]->type.numel(), it->second);
      return;
    }
    case Op::Update:
      o << pad << fmt::format("updates.emplace_back({}, {});\n", stateIndex_.at(n.getStr("name")), in(0));
      return;
    case Op::Grad:
      o << pad << fmt::format("if (grads) (*grads)[{}].assign({}, {} + {});\n", paramOrder_.at(n.getStr("name")), in(0), in(0),
                              n.operands[0]->type.numel());
      return;
    case Op::Reshape:
      alias_[r] = in(0);
      o << pad << "// (a view of its operand)\n";
      return;
    case Op::MatMul: matmul(n, o, ind); return;
    case Op::Scan: scan(n, o, ind); return;
    default: break;
    }
    std::string out = layout_.seqViews.count(r) ? ref(r) : ptr(r); // a concat may write a stacked step
    const auto &os = r->type.shape;
    if (hasTrait(n.op, TR_BINARY)) {
      std::string a = in(0), b = in(1);
      loops(o, ind, os, {stridesOf(os), broadcastStrides(n.operands[0]->type.shape, os.size()),
                         broadcastStrides(n.operands[1]->type.shape, os.size())},
            [&](std::ostream &oo, int i2, const std::vector<std::string> &off) {
              oo << std::string(i2, ' ') << out << "[" << off[0] << "] = "
                 << scalar(n.op, r->type.dtype, {a + "[" + off[1] + "]", b + "[" + off[2] + "]"}) << ";\n";
            }, true);
      return;
    }
    if (hasTrait(n.op, TR_UNARY) || n.op == Op::BroadcastTo) {
      std::string a = in(0);
      loops(o, ind, os, {stridesOf(os), broadcastStrides(n.operands[0]->type.shape, os.size())},
            [&](std::ostream &oo, int i2, const std::vector<std::string> &off) {
              oo << std::string(i2, ' ') << out << "[" << off[0] << "] = " << scalar(n.op, r->type.dtype, {a + "[" + off[1] + "]"}) << ";\n";
            }, true);
      return;
    }
    switch (n.op) {
    case Op::Transpose: {
      const auto &perm = n.getInts("perm");
      auto si = stridesOf(n.operands[0]->type.shape);
      std::vector<int64_t> st;
      for (int64_t p : perm)
        st.push_back(si[p]);
      std::string a = in(0);
      loops(o, ind, os, {stridesOf(os), st}, [&](std::ostream &oo, int i2, const std::vector<std::string> &off) {
        oo << std::string(i2, ' ') << out << "[" << off[0] << "] = " << a << "[" << off[1] << "];\n";
      }, true);
      return;
    }
    case Op::Slice:
    case Op::Pad: {
      // slice: out[i] = x[i + begin]; pad: out = 0, out[i + begin] = x[i].
      bool isPad = n.op == Op::Pad;
      const auto &begin = n.getInts("begin");
      const auto &shifted = isPad ? os : n.operands[0]->type.shape;
      const auto &iter = isPad ? n.operands[0]->type.shape : os;
      int64_t base = 0;
      auto ss = stridesOf(shifted);
      for (size_t a = 0; a < begin.size(); ++a)
        base += begin[a] * ss[a];
      if (isPad)
        o << pad << fmt::format("std::fill_n({}, {}, T(0));\n", out, r->type.numel());
      std::string a = in(0);
      loops(o, ind, iter, {stridesOf(iter), ss}, [&](std::ostream &oo, int i2, const std::vector<std::string> &off) {
        if (isPad)
          oo << std::string(i2, ' ') << out << "[" << base << " + " << off[1] << "] = " << a << "[" << off[0] << "];\n";
        else
          oo << std::string(i2, ' ') << out << "[" << off[0] << "] = " << a << "[" << base << " + " << off[1] << "];\n";
      }, true);
      return;
    }
    case Op::Concat: {
      int64_t axis = n.getInt("axis"), base = 0;
      auto st = layout_.memStrides(r); // row-major, or a stacked output's step in place
      for (size_t i = 0; i < n.operands.size(); ++i) {
        const auto &s = n.operands[i]->type.shape;
        std::string a = in(i);
        int64_t shift = base * st[axis];
        loops(o, ind, s, {stridesOf(s), st}, [&](std::ostream &oo, int i2, const std::vector<std::string> &off) {
          oo << std::string(i2, ' ') << out << "[" << shift << " + " << off[1] << "] = " << a << "[" << off[0] << "];\n";
        }, true);
        base += s[axis];
      }
      return;
    }
    case Op::Sum:
    case Op::Mean:
    case Op::Max: {
      const auto &xs = n.operands[0]->type.shape;
      std::vector<int64_t> keep = xs;
      for (int64_t a : n.getInts("axes"))
        keep[a] = 1;
      bool mx = n.op == Op::Max;
      o << pad << fmt::format("std::fill_n({}, {}, {});\n", out, r->type.numel(), mx ? "-INFINITY" : "T(0)");
      std::string a = in(0);
      loops(o, ind, xs, {stridesOf(xs), broadcastStrides(keep, xs.size())},
            [&](std::ostream &oo, int i2, const std::vector<std::string> &off) {
              std::string d = out + "[" + off[1] + "]", s = a + "[" + off[0] + "]";
              oo << std::string(i2, ' ') << (mx ? d + " = std::max(" + d + ", " + s + ");\n" : d + " += " + s + ";\n");
            });
      if (n.op == Op::Mean)
        meanDivide(n, o, ind);
      return;
    }
    case Op::OneHot: {
      int64_t c = n.getInt("classes");
      o << pad << fmt::format("std::fill_n({}, {}, T(0));\n", out, r->type.numel())
        << pad << fmt::format("for (int64_t k = 0; k < {}; ++k) {}[k * {} + int64_t({}[k])] = T(1);\n",
                              n.operands[0]->type.numel(), out, c, in(0));
      return;
    }
    case Op::Mse:
      o << pad << fmt::format("{{ T s = 0; for (int64_t k = 0; k < {0}; ++k) {{ T d = {1}[k] - {2}[k]; s += d * d; }} {3}[0] = s / T({0}); }}\n",
                              n.operands[0]->type.numel(), in(0), in(1), out);
      return;
    case Op::BceWithLogits:
      o << pad << fmt::format("{{ T s = 0; for (int64_t k = 0; k < {0}; ++k) {{ T x = {1}[k], t = {2}[k]; "
                              "s += std::max(x, T(0)) - x * t + std::log1p(std::exp(-std::fabs(x))); }} {3}[0] = s / T({0}); }}\n",
                              n.operands[0]->type.numel(), in(0), in(1), out);
      return;
    case Op::CrossEntropy: {
      int64_t B = n.operands[0]->type.shape[0], C = n.operands[0]->type.shape[1];
      o << pad << "{ T s = 0;\n"
        << pad << fmt::format("  for (int64_t b = 0; b < {}; ++b) {{\n", B)
        << pad << fmt::format("    const T *x = {} + b * {}; T m = x[0];\n", in(0), C)
        << pad << fmt::format("    for (int64_t c = 1; c < {}; ++c) m = std::max(m, x[c]);\n", C)
        << pad << fmt::format("    T z = 0; for (int64_t c = 0; c < {}; ++c) z += std::exp(x[c] - m);\n", C)
        << pad << fmt::format("    s += m + std::log(z) - x[int64_t({}[b])];\n", in(1))
        << pad << "  }\n" << pad << fmt::format("  {}[0] = s / T({}); }}\n", out, B);
      return;
    }
    default:
      throw std::logic_error(fmt::format("emit-cpp: no lowering for '{}'", info.name));
    }
  }

  void matmul(const Node &n, std::ostream &o, int ind) {
    std::string pad(ind, ' ');
    const Value *r = n.results[0];
    auto [a, ta] = LoopLevel::matOperand(n.operands[0]);
    auto [b, tb] = LoopLevel::matOperand(n.operands[1]);
    const auto &as = n.operands[0]->type.shape, &bs = n.operands[1]->type.shape, &cs = r->type.shape;
    int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (bs.size() == 2) {
      // [..., M, K] @ [K, N]: the leading axes fold into M (A is contiguous, or a step read
      // in place, rows apart by its memory stride).
      int64_t rows = r->type.numel() / N;
      if (as.size() > 2 && ta)
        throw std::logic_error("emit-cpp: transposed batched operand");
      if (layout_.seqViews.count(a))
        lda = layout_.memStrides(a)[0];
      if (layout_.seqViews.count(b))
        ldb = layout_.memStrides(b)[0];
      // A B that no step of the enclosing scan changes is packed once per scan, in its slot.
      auto slot = invariantSlot_.find(&n);
      if (slot != invariantSlot_.end())
        o << pad << fmt::format("gemmInvariantB({}, {}, {}, {}, {}, {}, T(1), {}, {}, {}, {}, T(0), {}, {}, threads());\n", slot->second, ta,
                                tb, rows, N, K, ref(a), lda, ref(b), ldb, ptr(r), N);
      else
        o << pad << fmt::format("gemm({}, {}, {}, {}, {}, T(1), {}, {}, {}, {}, T(0), {}, {}, threads());\n", ta, tb, rows, N, K, ref(a),
                                lda, ref(b), ldb, ptr(r), N);
      return;
    }
    // Batched: one GEMM per batch index, operands broadcast over the leading axes.
    std::vector<int64_t> batch(cs.begin(), cs.end() - 2);
    auto sa = broadcastStrides(std::vector<int64_t>(as.begin(), as.end() - 2), batch.size());
    auto sb = broadcastStrides(std::vector<int64_t>(bs.begin(), bs.end() - 2), batch.size());
    std::string pa = ref(a), pb = ref(b), pc = ptr(r);
    loops(o, ind, batch, {stridesOf(batch), sa, sb}, [&](std::ostream &oo, int i2, const std::vector<std::string> &off) {
      oo << std::string(i2, ' ')
         << fmt::format("gemm({}, {}, {}, {}, {}, T(1), {} + ({}) * {}, {}, {} + ({}) * {}, {}, T(0), {} + ({}) * {}, {}, threads());\n", ta, tb,
                        M, N, K, pa, off[1], M * K, lda, pb, off[2], K * N, ldb, pc, off[0], M * N, N);
    });
  }

  /// Copies step `t` of axis `axis` between a stacked tensor and a step tensor.
  void stepCopy(std::ostream &o, int ind, const std::vector<int64_t> &stacked, int64_t axis, const std::string &stackedPtr,
                const std::string &stepPtr, bool toStep) {
    int64_t outer = 1, inner = 1;
    for (int64_t a = 0; a < axis; ++a)
      outer *= stacked[a];
    for (size_t a = axis + 1; a < stacked.size(); ++a)
      inner *= stacked[a];
    int64_t len = stacked[axis];
    o << std::string(ind, ' ')
      << fmt::format("for (int64_t o = 0; o < {}; ++o) std::copy_n({}, {}, {});\n", outer,
                     toStep ? fmt::format("{} + (o * {} + t) * {}", stackedPtr, len, inner) : fmt::format("{} + o * {}", stepPtr, inner), inner,
                     toStep ? fmt::format("{} + o * {}", stepPtr, inner) : fmt::format("{} + (o * {} + t) * {}", stackedPtr, len, inner));
  }

  void scan(const Node &n, std::ostream &o, int ind) {
    std::string pad(ind, ' ');
    const Graph &b = *n.body;
    int64_t axis = n.getInt("axis"), nseq = n.getInt("nseq"), ncarry = n.getInt("ncarry");
    bool rev = n.getInt("reverse") != 0;
    int64_t len = n.operands[0]->type.shape[axis];
    // Captures alias their operands; carries start as copies of the initial values.
    for (size_t k = nseq + ncarry; k < n.operands.size(); ++k)
      alias_[b.args[k]] = ref(n.operands[k]);
    for (int64_t c = 0; c < ncarry; ++c)
      o << pad << fmt::format("std::copy_n({}, {}, {});\n", ref(n.operands[nseq + c]), b.args[nseq + c]->type.numel(), ptr(b.args[nseq + c]));
    // The body's matmuls by a loop-invariant B get slots, stale until their first call here.
    std::vector<const Node *> invariant = LoopLevel::invariantMatmuls(n);
    if (!invariant.empty()) {
      o << pad << fmt::format("gemmInvariantReset({}, {}); // B packed once per scan for {} matmul{}\n", nextSlot_, invariant.size(),
                              invariant.size(), invariant.size() > 1 ? "s" : "");
      for (const Node *mm : invariant)
        invariantSlot_[mm] = nextSlot_++;
    }
    o << pad << fmt::format("for (int64_t step = 0; step < {}; ++step) {{\n", len);
    std::string ip(ind + 2, ' ');
    o << ip << (rev ? fmt::format("const int64_t t = {} - step;\n", len - 1) : "const int64_t t = step;\n");
    for (int64_t s = 0; s < nseq; ++s) {
      auto view = layout_.seqViews.find(b.args[s]);
      if (view != layout_.seqViews.end()) // read in place
        alias_[b.args[s]] = fmt::format("({} + t * {})", ref(n.operands[s]), view->second.step);
      else
        stepCopy(o, ind + 2, n.operands[s]->type.shape, axis, ref(n.operands[s]), ptr(b.args[s]), true);
    }
    for (size_t y = ncarry; y < b.yields.size(); ++y) {
      auto view = layout_.seqViews.find(b.yields[y]);
      if (view != layout_.seqViews.end()) // written in place
        alias_[b.yields[y]] = fmt::format("({} + t * {})", ptr(n.results[y]), view->second.step);
    }
    body(b, o, ind + 2);
    // Stacked outputs, then the next carries (read every yield before writing any carry).
    for (size_t y = ncarry; y < b.yields.size(); ++y)
      if (!layout_.seqViews.count(b.yields[y]))
        stepCopy(o, ind + 2, n.results[y]->type.shape, axis, ptr(n.results[y]), ref(b.yields[y]), false);
    // Unless a carry's next value is another carry's argument (a swap), each next value is
    // copied straight into its argument's buffer and the results are copied once at the end;
    // otherwise through the result buffers, so that every yield is read before any is written.
    bool swap = false;
    for (int64_t c = 0; c < ncarry; ++c)
      for (int64_t c2 = 0; c2 < ncarry; ++c2)
        swap = swap || (c != c2 && b.yields[c] == b.args[nseq + c2]);
    for (int64_t c = 0; c < ncarry; ++c)
      if (b.yields[c] != b.args[nseq + c])
        o << ip << fmt::format("std::copy_n({}, {}, {});\n", ref(b.yields[c]), b.args[nseq + c]->type.numel(),
                               swap ? ptr(n.results[c]) : ptr(b.args[nseq + c]));
    if (swap)
      for (int64_t c = 0; c < ncarry; ++c)
        if (b.yields[c] != b.args[nseq + c])
          o << ip << fmt::format("std::copy_n({}, {}, {});\n", ptr(n.results[c]), b.args[nseq + c]->type.numel(), ptr(b.args[nseq + c]));
    o << pad << "}\n";
    for (int64_t c = 0; c < ncarry; ++c)
      if (!swap || b.yields[c] == b.args[nseq + c])
        o << pad << fmt::format("std::copy_n({}, {}, {});\n", ptr(b.args[nseq + c]), b.args[nseq + c]->type.numel(), ptr(n.results[c]));
  }

  const Module &m_;
  const SourceManager &sm_;
  std::ostream &os_;
  LowerOptions opts_;
  LoopLevel layout_; ///< The loops and the arena this emitter prints.
  std::unordered_map<const Value *, std::string> alias_;
  std::unordered_map<const Node *, int64_t> invariantSlot_; ///< gemmInvariantB slot of each matmul by a scan-invariant B.
  int64_t nextSlot_ = 0;                                     ///< The next unused slot of the graph being emitted.
  std::map<std::string, size_t> stateIndex_, inputIndex_, outputIndex_, paramOrder_;
  bool emitOutputs_ = false;
};

} // namespace

void emitCpp(const Module &m, const SourceManager &sm, std::ostream &os, const LowerOptions &opts) {
  Emitter(m, sm, os, opts).run();
}

void printMemoryPlans(const Module &m, const SourceManager &sm, std::ostream &os, const LowerOptions &opts) {
  (void)sm;
  LoopLevel(m, opts, {}, &os);
}

} // namespace gradc
