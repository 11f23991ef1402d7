// EmitCpp.cpp: prints the kernel IR (Kernel.h: named buffers, loops, registers, GEMM calls,
// scans) of a module as one readable C++ translation unit implementing the runtime's Backend.
#include "codegen/EmitCpp.h"
#include "codegen/CppScalar.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "lower/Kernel.h"
#include "lower/RunSpec.h"
#include "Philox.h"

namespace gradc {

namespace {

using namespace kernel;

/// A constant as a T literal in its shortest round-trip form.
std::string num(double v) {
  if (std::isinf(v))
    return v > 0 ? "INFINITY" : "-INFINITY";
  return fmt::format("T({})", v);
}

std::string quote(const std::string &s) {
  std::string o = "\"";
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20) { // a control character: a three-digit octal escape
      o += fmt::format("\\{:03o}", static_cast<unsigned char>(c));
      continue;
    }
    if (c == '"' || c == '\\')
      o += '\\';
    o += c;
  }
  return o + "\"";
}

/// The C++ initialiser items of a list of strings: "a", "b".
std::string columnList(const std::vector<std::string> &names) {
  std::string o;
  for (const std::string &n : names)
    o += (o.empty() ? "" : ", ") + quote(n);
  return o;
}

/// The C++ of one scalar operation of result type `dt` on its operands' expressions.
std::string scalar(Op op, DType dt, const std::vector<std::string> &x) {
  if (hasTrait(op, TR_INDEXED))
    return x[0]; // the read itself
  return cppScalarExpr(op, dt, x.data()); // Ops.def's math
}

/// Prints one kernel function's body.
class Printer {
public:
  Printer(const Function &f, std::ostream &o) : f_(f), o_(o) {}

  void run(int ind) {
    line(ind, "T *const A = arena();");
    for (const Buffer &b : f_.buffers) {
      std::string init = b.kind == Buffer::Arena ? fmt::format("A + {}", b.offset) : fmt::format("sf_[{}].data()", b.offset);
      line(ind, fmt::format("T *const {} = {};  // {}{}", b.name, init, b.type.str(), b.where.empty() ? "" : ", " + b.where));
    }
    for (const Stmt &s : f_.body)
      stmt(s, ind);
  }

private:
  void line(int ind, const std::string &text) { o_ << std::string(ind, ' ') << text << "\n"; }

  std::string index(const Affine &a) {
    std::string e;
    for (const auto &[v, s] : a.terms)
      e += (e.empty() ? "" : " + ") + (s == 1 ? f_.vars[v] : fmt::format("{} * {}", f_.vars[v], s));
    if (a.constant || e.empty())
      e += (e.empty() ? "" : " + ") + std::to_string(a.constant);
    return e;
  }
  std::string elem(const Ref &r) { return fmt::format("{}[{}]", f_.buffers[r.buffer].name, index(r.index)); }
  std::string ptr(const Ref &r) {
    const std::string &name = f_.buffers[r.buffer].name;
    if (r.index.terms.empty() && r.index.constant == 0)
      return name;
    const bool single = r.index.terms.size() + (r.index.constant != 0) == 1;
    return single ? name + " + " + index(r.index) : name + " + (" + index(r.index) + ")";
  }
  std::string operand(const Operand &x) {
    switch (x.kind) {
    case Operand::Reg: return f_.regs[x.reg];
    case Operand::Load: return elem(x.ref);
    case Operand::Random:
      return fmt::format("(philox24(b.rng, {}, {}) < {}u ? T(0) : {})", x.reg, index(x.ref.index), rt::dropoutThreshold(x.value),
                         num(1 / (1 - x.value)));
    default: return num(x.value);
    }
  }

  void block(const std::vector<Stmt> &body, int ind) {
    for (const Stmt &s : body)
      stmt(s, ind);
  }

  void stmt(const Stmt &s, int ind) {
    switch (s.kind) {
    case Stmt::Comment: line(ind, "// " + s.text); return;
    case Stmt::Loop:
      if (s.independent)
        line(ind, "GRADC_IVDEP");
      line(ind, fmt::format("for (int64_t {0} = 0; {0} < {1}; ++{0}) {{", f_.vars[s.var], s.extent));
      block(s.body, ind + 2);
      line(ind, "}");
      return;
    case Stmt::Scan:
      if (s.reverse) {
        line(ind, fmt::format("for (int64_t step = 0; step < {}; ++step) {{", s.extent));
        line(ind + 2, fmt::format("const int64_t {} = {} - step;", f_.vars[s.var], s.extent - 1));
      } else {
        line(ind, fmt::format("for (int64_t {0} = 0; {0} < {1}; ++{0}) {{", f_.vars[s.var], s.extent));
      }
      block(s.body, ind + 2);
      line(ind, "}");
      return;
    case Stmt::Let: {
      std::vector<std::string> x;
      for (const Operand &a : s.args)
        x.push_back(operand(a));
      line(ind, fmt::format("const T {} = {};", f_.regs[s.reg], scalar(s.op, s.dtype, x)));
      return;
    }
    case Stmt::Store: line(ind, fmt::format("{} = {};", elem(s.dst), operand(s.value))); return;
    case Stmt::Accum: {
      std::string d = elem(s.dst), x = operand(s.value);
      line(ind, s.op == Op::Maximum ? fmt::format("{0} = std::max({0}, {1});", d, x)
                                    : fmt::format("{} {}= {};", d, s.op == Op::Div ? "/" : "+", x));
      return;
    }
    case Stmt::Fill: line(ind, fmt::format("std::fill_n({}, {}, {});", ptr(s.dst), s.count, num(s.value.value))); return;
    case Stmt::Copy: line(ind, fmt::format("std::copy_n({}, {}, {});", ptr(s.src), s.count, ptr(s.dst))); return;
    case Stmt::Gemm: {
      const GemmCall &g = s.gemm;
      std::string args = fmt::format("{}, {}, {}, {}, {}, T(1), {}, {}, {}, {}, T(0), {}, {}, threads()", g.ta, g.tb, g.M, g.N, g.K,
                                     ptr(g.a), g.lda, ptr(g.b), g.ldb, ptr(g.c), g.ldc);
      line(ind, g.slot >= 0 ? fmt::format("gemmInvariantB({}, {});", g.slot, args) : fmt::format("gemm({});", args));
      return;
    }
    case Stmt::GemmReset:
      line(ind, fmt::format("gemmInvariantReset({}, {}); // B packed once per scan for {} matmul{}", s.index, s.count, s.count,
                            s.count > 1 ? "s" : ""));
      return;
    case Stmt::Input:
      forEach(ind, s.count, fmt::format("{}[{{k}}] = T(static_cast<const {} *>(b.data[{}])[{{k}}]);", ptr(s.dst),
                                        s.integer ? "int32_t" : "float", s.index));
      return;
    case Stmt::StateInt: forEach(ind, s.count, fmt::format("{}[{{k}}] = T(si_[{}][{{k}}]);", ptr(s.dst), s.index)); return;
    case Stmt::Hyper: line(ind, fmt::format("{}[0] = T(lr_);", ptr(s.dst))); return;
    case Stmt::Loss: line(ind, fmt::format("loss = double({});", elem(s.src))); return;
    case Stmt::Output: line(ind, fmt::format("std::copy_n({}, {}, static_cast<T *>(out[{}]));", ptr(s.src), s.count, s.index)); return;
    case Stmt::Update: line(ind, fmt::format("updates.emplace_back({}, {});", s.index, ptr(s.src))); return;
    case Stmt::Grad: {
      std::string p = ptr(s.src);
      line(ind, fmt::format("if (grads) (*grads)[{}].assign({}, {} + {});", s.index, p, p, s.count));
      return;
    }
    case Stmt::OneHot:
      forEach(ind, s.count, fmt::format("{}[{{k}} * {} + int64_t({}[{{k}}])] = T(1);", ptr(s.dst), s.classes, ptr(s.src)));
      return;
    case Stmt::RowLoad:
    case Stmt::RowStore: {
      const std::string r = fmt::format("std::clamp<int64_t>(int64_t({}), 0, {}) * {}", operand(s.value), s.extent - 1, s.count);
      if (s.kind == Stmt::RowLoad)
        line(ind, fmt::format("std::copy_n({} + {}, {}, {});", ptr(s.src), r, s.count, ptr(s.dst)));
      else
        line(ind, fmt::format("std::copy_n({}, {}, {} + {});", ptr(s.src), s.count, ptr(s.dst), r));
      return;
    }
    case Stmt::Gather:
    case Stmt::ScatterAdd: gatherScatter(s, ind); return;
    case Stmt::LossKernel: lossKernel(s, ind); return;
    case Stmt::AllReduce: line(ind, fmt::format("allreduceSum({}, {});", ptr(s.dst), s.count)); return;
    case Stmt::AllReduceStart:
      line(ind, fmt::format("allreduceStart({}, {}, {}); // waited for before its first reader", ptr(s.dst), s.count, s.index));
      return;
    case Stmt::AllReduceWait: line(ind, fmt::format("allreduceWait({});", s.index)); return;
    case Stmt::AllReduceProgress: line(ind, "allreduceProgress(); // the all-reduces in flight advance"); return;
    }
  }

  /// gather: row i = indices[k] of the table copied to position k (zeros when outside the table);
  /// scatter_add: position k's row added to row i, in position order.
  void gatherScatter(const Stmt &s, int ind) {
    const std::string dst = ptr(s.dst), src = ptr(s.src), idx = ptr(s.src2);
    const int64_t D = s.classes;
    if (s.kind == Stmt::ScatterAdd)
      line(ind, fmt::format("std::fill_n({}, {}, T(0));", dst, s.rows * D));
    line(ind, fmt::format("for (int64_t k = 0; k < {}; ++k) {{", s.count));
    line(ind + 2, fmt::format("const int64_t i_ = int64_t({}[k]);", idx));
    const std::string inside = fmt::format("i_ >= 0 && i_ < {}", s.rows);
    if (s.kind == Stmt::Gather) {
      line(ind + 2, fmt::format("if ({}) std::copy_n({} + i_ * {}, {}, {} + k * {});", inside, src, D, D, dst, D));
      line(ind + 2, fmt::format("else std::fill_n({} + k * {}, {}, T(0));", dst, D, D));
    } else {
      line(ind + 2, fmt::format("if ({}{}) for (int64_t j_ = 0; j_ < {}; ++j_) {}[i_ * {} + j_] += {}[k * {} + j_];", inside,
                                s.padding >= 0 ? fmt::format(" && i_ != {}", s.padding) : "", D, dst, D, src, D));
    }
    line(ind, "}");
  }

  /// `body` ({k}: the element) for each of n elements: a loop over k, or element 0 alone.
  void forEach(int ind, int64_t n, const std::string &body) {
    if (n == 1)
      line(ind, fmt::format(fmt::runtime(body), fmt::arg("k", "0")));
    else
      line(ind, fmt::format("for (int64_t k = 0; k < {}; ++k) ", n) + fmt::format(fmt::runtime(body), fmt::arg("k", "k")));
  }

  void lossKernel(const Stmt &s, int ind) {
    std::string a = ptr(s.src), t = ptr(s.src2), out = ptr(s.dst);
    if (s.op == Op::Mse) {
      line(ind, fmt::format("{{ T s_ = 0; for (int64_t k = 0; k < {0}; ++k) {{ T d_ = {1}[k] - {2}[k]; s_ += d_ * d_; }} {3}[0] = s_ / T({0}); }}",
                            s.count, a, t, out));
    } else if (s.op == Op::BceWithLogits) {
      line(ind, fmt::format("{{ T s_ = 0; for (int64_t k = 0; k < {0}; ++k) {{ T x_ = {1}[k], t_ = {2}[k]; "
                            "s_ += std::max(x_, T(0)) - x_ * t_ + std::log1p(std::exp(-std::fabs(x_))); }} {3}[0] = s_ / T({0}); }}",
                            s.count, a, t, out));
    } else {
      line(ind, "{ T s_ = 0;");
      line(ind + 2, fmt::format("for (int64_t b_ = 0; b_ < {}; ++b_) {{", s.count));
      line(ind + 4, fmt::format("const T *x_ = {} + b_ * {}; T m_ = x_[0];", a, s.classes));
      line(ind + 4, fmt::format("for (int64_t c_ = 1; c_ < {}; ++c_) m_ = std::max(m_, x_[c_]);", s.classes));
      line(ind + 4, fmt::format("T z_ = 0; for (int64_t c_ = 0; c_ < {}; ++c_) z_ += std::exp(x_[c_] - m_);", s.classes));
      line(ind + 4, fmt::format("s_ += m_ + std::log(z_) - x_[int64_t({}[b_])];", t));
      line(ind + 2, "}");
      line(ind + 2, fmt::format("{}[0] = s_ / T({}); }}", out, s.count));
    }
  }

  const Function &f_;
  std::ostream &o_;
};

class Emitter {
public:
  Emitter(const Module &m, const SourceManager &sm, std::ostream &os, const LowerOptions &opts)
      : m_(m), os_(os), prog_(lower(m, sm, opts)) {}

  void run() {
    rt::ModelSpec spec = makeModelSpec(m_);
    size_t params = 0;
    for (const auto &st : spec.state)
      params += st.kind == rt::StateSpec::Param;
    std::ostringstream train, eval, infer, step;
    Printer(prog_.train, train).run(4);
    Printer(prog_.eval, eval).run(4);
    Printer(prog_.infer, infer).run(4);
    if (prog_.hasStep)
      Printer(prog_.step, step).run(4);
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
  void setLearningRateScale(double f) override { lr_ = )" << fmt::format("{}", spec.train.lr) << R"( * f; }
  double trainStep(const Batch &b) override { return train(b, true, nullptr); }
  double loss(const Batch &b) override { return train(b, false, nullptr); }
  double lossAndGrads(const Batch &b, std::vector<std::vector<double>> &g) override {
    g.assign()" << params << R"(, {});
    return train(b, false, &g);
  }
  void predict(const Batch &b, const std::vector<void *> &out) override { infer(b, out); }
)" << (prog_.hasStep ? R"(  void generateStep(const std::vector<const void *> &in, const std::vector<void *> &out) override {
    Batch b;
    b.data = in;
    step(b, out);
  }
)" : "") << R"(  double evalLoss(const Batch &b) override {
    double loss = 0;
)" << eval.str() << "    return loss;\n  }\n\nprivate:\n";
    os_ << "  double train(const Batch &b, bool apply, std::vector<std::vector<double>> *grads) {\n"
        << "    double loss = 0;\n    std::vector<std::pair<size_t, const T *>> updates;\n"
        << train.str()
        << "    if (apply)\n      for (auto &[i, v] : updates) {\n        if (!si_[i].empty())\n"
        << "          for (size_t k = 0; k < si_[i].size(); ++k) si_[i][k] = static_cast<int64_t>(std::llround(v[k]));\n"
        << "        else\n          std::copy(v, v + sf_[i].size(), sf_[i].data());\n      }\n"
        << "    return loss;\n  }\n\n";
    os_ << "  void infer(const Batch &b, const std::vector<void *> &out) {\n"
        << infer.str() << "  }\n\n";
    if (prog_.hasStep)
      os_ << "  // --generate: one character of one sample; b.data and out: the character (logits) then the carries.\n"
          << "  void step(const Batch &b, const std::vector<void *> &out) {\n"
          << step.str() << "  }\n\n";
    os_ << "  // Every value of every graph, placed by gradc; allocated at the first step, so a build\n"
        << "  // that never runs (the double-precision one, used only by --gradcheck) costs no memory.\n"
        << "  std::vector<T> arena_;\n"
        << fmt::format("  T *arena() {{\n    if (arena_.empty())\n      arena_.resize({});\n    return arena_.data();\n  }}\n", prog_.arenaSize);
    os_ << fmt::format("  std::vector<T> sf_[{}];       // float state (params, buffers, optimizer), spec order\n",
                       std::max<size_t>(1, spec.state.size()));
    os_ << fmt::format("  std::vector<int64_t> si_[{}]; // integer state\n", std::max<size_t>(1, spec.state.size()));
    os_ << "  double lr_ = " << fmt::format("{}", spec.train.lr) << ";\n};\n\n} // namespace\n\n";
    os_ << "int main(int argc, char **argv) {\n  static Net<float> net;\n  static Net<double> precise;\n"
        << "  return gradc::rt::runMain(spec(), net, argc, argv, &precise);\n}\n";
  }

private:
  void header(const rt::ModelSpec &s) {
    os_ << "// Generated by gradc from " << std::filesystem::path(m_.path).filename().string()
        << ": the training step, validation loss and inference of model " << s.name << ".\n"
        << "// Do not edit: regenerate with `gradc MODEL --emit=cpp`.\n"
        << "#include <algorithm>\n#include <cmath>\n#include <cstdint>\n#include <cstring>\n#include <vector>\n\n"
        << "#include \"FastMath.h\"\n#include \"Gemm.h\"\n#include \"Model.h\"\n" << (s.ranks != 1 ? "#include \"Mpi.h\"\n" : "")
        << "#include \"Philox.h\"\n\n"
        << "// Marks a loop whose iterations touch disjoint elements (distinct arena buffers).\n"
        << "#if defined(__clang__)\n#define GRADC_IVDEP _Pragma(\"clang loop vectorize(assume_safety)\")\n"
        << "#elif defined(__GNUC__)\n#define GRADC_IVDEP _Pragma(\"GCC ivdep\")\n#else\n#define GRADC_IVDEP\n#endif\n\n"
        << "namespace {\n\nusing namespace gradc::rt;\n\n";
    os_ << "const ModelSpec &spec() {\n  static const ModelSpec s = [] {\n    ModelSpec s;\n";
    os_ << "    s.name = " << quote(s.name) << ";\n    s.batch = " << s.batch << ";\n    s.numInputs = " << s.numInputs << ";\n";
    if (s.ranks != 1)
      os_ << "    s.ranks = " << s.ranks << ";\n";
    auto dt = [](rt::DType d) { return fmt::format("DType::{}", rt::dtypeName(d)); };
    for (const auto &t : s.inputs)
      os_ << fmt::format("    s.inputs.push_back({{{}, {}, {{{}}}}});\n", quote(t.name), dt(t.dtype), fmt::join(t.shape, ", "));
    for (size_t i = 0; i < s.inputs.size(); ++i)
      if (s.inputs[i].bound > 0)
        os_ << fmt::format("    s.inputs[{}].bound = {};\n    s.inputs[{}].boundWhere = {};\n", i, s.inputs[i].bound, i,
                           quote(s.inputs[i].boundWhere));
    for (const auto &t : s.outputs)
      os_ << fmt::format("    s.outputs.push_back({{{}, {}, {{{}}}}});\n", quote(t.name), dt(t.dtype), fmt::join(t.shape, ", "));
    for (const auto &t : s.stepInputs)
      os_ << fmt::format("    s.stepInputs.push_back({{{}, {}, {{{}}}}});\n", quote(t.name), dt(t.dtype), fmt::join(t.shape, ", "));
    for (const auto &t : s.stepOutputs)
      os_ << fmt::format("    s.stepOutputs.push_back({{{}, {}, {{{}}}}});\n", quote(t.name), dt(t.dtype), fmt::join(t.shape, ", "));
    if (!s.stepWhy.empty())
      os_ << "    s.stepWhy = " << quote(s.stepWhy) << ";\n";
    static const char *kinds[] = {"StateSpec::Param", "StateSpec::Buffer", "StateSpec::OptState"};
    static const char *inits[] = {"StateSpec::Zeros", "StateSpec::Ones", "StateSpec::Full", "StateSpec::Uniform",
                                  "StateSpec::Normal"};
    for (const auto &st : s.state)
      os_ << fmt::format("    s.state.push_back({{{}, {}, {}, {{{}}}, {}, {}, {}}});\n", quote(st.name),
                         kinds[st.kind], dt(st.dtype), fmt::join(st.shape, ", "), inits[st.init], st.a, st.b);
    for (size_t i = 0; i < s.state.size(); ++i)
      if (!s.state[i].where.empty())
        os_ << fmt::format("    s.state[{}].where = {};\n", i, quote(s.state[i].where));
    for (size_t i = 0; i < s.state.size(); ++i)
      if (s.state[i].zeroRow >= 0)
        os_ << fmt::format("    s.state[{}].zeroRow = {};\n", i, s.state[i].zeroRow);
    if (!s.lossWhere.empty())
      os_ << "    s.lossWhere = " << quote(s.lossWhere) << ";\n";
    const auto &t = s.train;
    os_ << "    TrainSpec &t = s.train;\n"
        << fmt::format("    t.optimizer = {};\n    t.lr = {};\n    t.epochs = {};\n    t.seed = {};\n", quote(t.optimizer),
                       t.lr, t.epochs, t.seed)
        << fmt::format("    t.dataKind = {};\n    t.dataPath = {};\n    t.dataLabels = {};\n    t.column = {};\n",
                       quote(t.dataKind), quote(t.dataPath), quote(t.dataLabels), quote(t.column))
        << fmt::format("    t.valKind = {};\n    t.valPath = {};\n    t.valLabels = {};\n", quote(t.valKind), quote(t.valPath),
                       quote(t.valLabels))
        << (t.columns.empty() ? std::string() : "    t.columns = {" + columnList(t.columns) + "};\n")
        << fmt::format("    t.scale = {};\n    t.length = {};\n    t.horizon = {};\n    t.split = {};\n", quote(t.scale),
                       t.length, t.horizon, t.split)
        << fmt::format("    t.earlyStopping = {};\n    t.patience = {};\n    t.delta = {};\n    t.validateEvery = {};\n",
                       t.earlyStopping ? "true" : "false", t.patience, t.delta, t.validateEvery);
    if (t.precision != "f32") // absent for f32, the default
      os_ << "    t.precision = " << quote(t.precision) << ";\n";
    if (const rt::ScheduleSpec &sc = t.schedule; !sc.kind.empty()) // absent for a constant learning rate
      os_ << fmt::format("    t.schedule = {{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}}};\n", quote(sc.kind), sc.stepSize,
                         sc.gamma, sc.tMax, sc.etaMin, sc.maxLr, sc.totalSteps, sc.pctStart, sc.factor, sc.patience);
    os_ << "    return s;\n  }();\n  return s;\n}\n\n";
  }

  const Module &m_;
  std::ostream &os_;
  Program prog_; ///< The kernels this emitter prints.
};

} // namespace

void emitCpp(const Module &m, const SourceManager &sm, std::ostream &os, const LowerOptions &opts) {
  Emitter(m, sm, os, opts).run();
}

} // namespace gradc
