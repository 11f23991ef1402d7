// Lower.cpp: lowers the loop-level plan (LoopLevel.h) to the kernel IR (Kernel.h): every
// loop, index, register, buffer, GEMM argument and scan copy both code generators print.
#include "lower/Kernel.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "lower/RunSpec.h"

namespace gradc::kernel {

Affine Affine::plus(const Affine &other, int64_t k) const {
  Affine r = *this;
  r.constant += other.constant * k;
  for (const auto &[v, s] : other.terms) {
    auto it = std::find_if(r.terms.begin(), r.terms.end(), [&](const auto &t) { return t.first == v; });
    if (it == r.terms.end())
      r.terms.push_back({v, s * k});
    else
      it->second += s * k;
  }
  r.terms.erase(std::remove_if(r.terms.begin(), r.terms.end(), [](const auto &t) { return t.second == 0; }), r.terms.end());
  return r;
}

namespace {

using Strides = std::vector<int64_t>;

bool allZero(const Strides &s) {
  return std::all_of(s.begin(), s.end(), [](int64_t x) { return x == 0; });
}

/// Names a C++ or LLVM backend must not give a buffer or register (loop variables, the
/// generated class's members and functions, keywords).
bool reserved(const std::string &s) {
  static const std::unordered_set<std::string> words = {
      "A", "T", "b", "out", "loss", "apply", "grads", "updates", "i", "k", "o", "t", "step", "std", "threads", "gemm",
      "gemmInvariantB", "gemmInvariantReset", "philox24", "fexp", "fexpm1", "fsigmoid", "ftanh", "arena", "spec", "Net", "main", "INFINITY",
      "auto", "bool", "break", "case", "char", "class", "const", "continue", "default", "delete", "do", "double", "else", "enum",
      "explicit", "extern", "false", "float", "for", "friend", "goto", "if", "inline", "int", "long", "namespace", "new",
      "operator", "private", "protected", "public", "register", "return", "short", "signed", "sizeof", "static", "struct",
      "switch", "template", "this", "throw", "true", "try", "typedef", "typename", "union", "unsigned", "using", "virtual",
      "void", "volatile", "while", "entry", "start", "state", "batch", "outputs", "lr", "sinks"};
  if (words.count(s) || s.back() == '_')
    return true;
  return s.size() > 1 && s[0] == 'i' && std::all_of(s.begin() + 1, s.end(), [](char c) { return std::isdigit(c); });
}

/// Lowers one module's graphs.
class Lowerer {
public:
  Lowerer(const Module &m, const SourceManager &sm, const LowerOptions &opts, std::function<bool(const Node &)> canFuse)
      : m_(m), sm_(sm), plan_(m, opts, std::move(canFuse)), overlap_(opts.overlapCollectives), spec_(makeModelSpec(m)) {
    for (size_t i = 0; i < spec_.state.size(); ++i) {
      stateIndex_[spec_.state[i].name] = i;
      if (spec_.state[i].kind == rt::StateSpec::Param)
        paramOrder_[spec_.state[i].name] = paramOrder_.size();
    }
    useSinks(spec_.inputs, spec_.outputs);
    for (const Graph *g : m.graphs())
      findInlineConstants(*g);
  }

  Program run() {
    Program p;
    p.arenaSize = plan_.arenaSize;
    function(*m_.trainGraph, "train", p.train);
    function(*m_.evalGraph, "eval", p.eval);
    emitOutputs_ = true; // only infer() and step() have output buffers
    function(*m_.inferGraph, "infer", p.infer);
    if (m_.stepGraph) { // its own inputs and outputs (rt::ModelSpec::stepInputs / stepOutputs)
      useSinks(spec_.stepInputs, spec_.stepOutputs);
      function(*m_.stepGraph, "step", p.step);
      p.hasStep = true;
    }
    return p;
  }

private:
  /// The batch pointers and output buffers the next function reads and writes: input and
  /// output nodes find their index by name; the random key's pointer follows the inputs.
  void useSinks(const std::vector<rt::TensorSpec> &inputs, const std::vector<rt::TensorSpec> &outputs) {
    inputIndex_.clear();
    outputIndex_.clear();
    for (size_t i = 0; i < inputs.size(); ++i)
      inputIndex_[inputs[i].name] = i;
    for (size_t i = 0; i < outputs.size(); ++i)
      outputIndex_[outputs[i].name] = i;
    randomKeySlot_ = static_cast<int64_t>(inputs.size());
  }

  // --- Decisions about values.
  /// One-element constants that only loops read (elementwise, indexed, reductions): they
  /// become literals in the expressions reading them and get no buffer.
  void findInlineConstants(const Graph &g) {
    for (const auto &n : g.nodes) {
      if (n->op == Op::Const && n->results[0]->type.numel() == 1)
        inline_.insert(n->results[0]);
      for (const Value *v : n->operands)
        if (!(hasTrait(n->op, TR_ELEMENTWISE) || n->op == Op::BroadcastTo || n->op == Op::Slice || n->op == Op::Pad ||
              n->op == Op::Concat || hasTrait(n->op, TR_REDUCTION)))
          notInline_.insert(v);
      if (n->body)
        findInlineConstants(*n->body);
    }
    for (const Value *v : g.yields)
      notInline_.insert(v);
    for (const Value *v : notInline_)
      inline_.erase(v);
  }

  std::string where(const Value *v) {
    const Node *d = v->def ? v->def : (v->owner ? v->owner->parentNode : nullptr);
    if (!d || !d->loc.valid())
      return "";
    return fmt::format("{}:{}", std::filesystem::path(sm_.get(d->loc.file).path).filename().string(), d->loc.line);
  }
  std::string locText(SrcLoc loc) {
    if (!loc.valid())
      return "";
    return fmt::format("{}:{}:{}", std::filesystem::path(sm_.get(loc.file).path).filename().string(), loc.line, loc.col);
  }

  /// A valid identifier from `hint`, unique in the function being lowered.
  std::string uniqueName(const std::string &hint) {
    std::string s;
    for (char c : hint)
      s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    s.erase(0, s.find_first_not_of('_')); // (".saved" of an unnamed value: "saved")
    if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0])))
      s = "v" + s;
    std::string name = s;
    for (int k = 2; reserved(name) || names_.count(name); ++k)
      name = fmt::format("{}_{}", s, k);
    names_.insert(name);
    return name;
  }
  std::string valueName(const Value *v) {
    if (!v->name.empty())
      return v->name;
    return v->def ? fmt::format("{}{}", opInfo(v->def->op).name, v->id) : fmt::format("arg{}", v->id);
  }

  int newVar(const std::string &name) {
    f_->vars.push_back(name);
    return static_cast<int>(f_->vars.size() - 1);
  }
  int newReg(const Value *v) {
    f_->regs.push_back(uniqueName(v->name.empty() ? fmt::format("v{}", v->id) : v->name));
    return static_cast<int>(f_->regs.size() - 1);
  }

  /// v's own arena buffer.
  Ref arena(const Value *v) {
    auto it = bufferOf_.find(v);
    if (it != bufferOf_.end())
      return {it->second, {}};
    auto off = plan_.offset.find(v);
    if (off == plan_.offset.end())
      throw std::logic_error(fmt::format("lower: value %{} ({}) has no buffer", valueName(v), v->def ? opInfo(v->def->op).name : "argument"));
    f_->buffers.push_back({Buffer::Arena, uniqueName(valueName(v)), off->second, valueName(v), v->type, where(v)});
    return {bufferOf_[v] = static_cast<int>(f_->buffers.size() - 1), {}};
  }
  /// Where v lives: its arena buffer, or what it aliases (state, a reshaped operand, a
  /// capture, a step of a stacked tensor).
  Ref ref(const Value *v) {
    auto it = alias_.find(v);
    return it != alias_.end() ? it->second : arena(v);
  }
  Ref stateRef(const Node &n) {
    const std::string &name = n.getStr("name");
    int64_t index = static_cast<int64_t>(stateIndex_.at(name));
    auto it = stateBuffer_.find(index);
    if (it == stateBuffer_.end()) {
      f_->buffers.push_back({Buffer::State, uniqueName(name), index, name, n.results[0]->type, where(n.results[0])});
      it = stateBuffer_.emplace(index, static_cast<int>(f_->buffers.size() - 1)).first;
    }
    return {it->second, {}};
  }
  /// Whether v has no buffer: an inlined constant, or a random mask its readers recompute.
  bool noBuffer(const Value *v) const { return inline_.count(v) || (v->def && hasTrait(v->def->op, TR_RANDOM)); }
  /// The operand reading v at `base` + index: a literal for an inlined constant, the element
  /// at `index` recomputed for a random mask.
  Operand read(const Value *v, const Ref &base, const Affine &index) {
    if (inline_.count(v))
      return {Operand::Const, -1, {}, v->def->getFloat("value")};
    if (v->def && hasTrait(v->def->op, TR_RANDOM))
      return {Operand::Random, static_cast<int>(v->def->getInt("stream")), {-1, index}, v->def->getFloat("p")};
    return {Operand::Load, -1, {base.buffer, base.index.plus(index)}, 0};
  }
  static Ref at(Ref r, const Affine &index, int64_t k = 1) {
    r.index = r.index.plus(index, k);
    return r;
  }
  static Operand regOperand(int reg) { return {Operand::Reg, reg, {}, 0}; }

  // --- Statements.
  static Stmt stmt(Stmt::Kind kind) {
    Stmt s;
    s.kind = kind;
    return s;
  }
  static Stmt comment(std::string text) {
    Stmt s = stmt(Stmt::Comment);
    s.text = std::move(text);
    return s;
  }
  static Stmt fill(Ref dst, int64_t count, double value) {
    Stmt s = stmt(Stmt::Fill);
    s.dst = std::move(dst);
    s.count = count;
    s.value = {Operand::Const, -1, {}, value};
    return s;
  }
  static Stmt copy(Ref dst, Ref src, int64_t count) {
    Stmt s = stmt(Stmt::Copy);
    s.dst = std::move(dst);
    s.src = std::move(src);
    s.count = count;
    return s;
  }
  static Stmt store(Ref dst, Operand value) {
    Stmt s = stmt(Stmt::Store);
    s.dst = std::move(dst);
    s.value = std::move(value);
    return s;
  }
  static Stmt accum(Op op, Ref dst, Operand value) {
    Stmt s = stmt(Stmt::Accum);
    s.op = op;
    s.dst = std::move(dst);
    s.value = std::move(value);
    return s;
  }
  Stmt loop(const std::string &var, int64_t extent, bool independent) {
    Stmt s = stmt(Stmt::Loop);
    s.var = newVar(var);
    s.extent = extent;
    s.independent = independent;
    return s;
  }

  using Inner = std::function<void(std::vector<Stmt> &, const std::vector<Affine> &)>;
  /// Loop nests over `shape`: one flat loop when every stride vector is row-major or zero,
  /// otherwise one loop per axis of extent > 1. `inner` receives, per stride vector, the
  /// element index. `independent`: every iteration of the innermost axis writes its own
  /// element and reads none another writes (the vectoriser may assume it).
  void loops(std::vector<Stmt> &out, const std::vector<int64_t> &shape, const std::vector<Strides> &strides, bool independent,
             const Inner &inner) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    const Strides full = stridesOf(shape);
    const bool flat = std::all_of(strides.begin(), strides.end(), [&](const Strides &st) { return st == full || allZero(st); });
    std::vector<Affine> offs(strides.size());
    if (flat) {
      if (n == 1) {
        inner(out, offs);
        return;
      }
      Stmt l = loop("i", n, independent);
      for (size_t k = 0; k < strides.size(); ++k)
        if (!allZero(strides[k]))
          offs[k].terms.push_back({l.var, 1});
      inner(l.body, offs);
      out.push_back(std::move(l));
      return;
    }
    std::function<void(size_t, std::vector<Stmt> &, std::vector<Affine>)> level = [&](size_t a, std::vector<Stmt> &dst,
                                                                                       std::vector<Affine> offs) {
      if (a == shape.size())
        return inner(dst, offs);
      if (shape[a] == 1)
        return level(a + 1, dst, offs);
      Stmt l = loop(fmt::format("i{}", a), shape[a], independent && a + 1 == shape.size());
      for (size_t k = 0; k < strides.size(); ++k)
        if (strides[k][a])
          offs[k].terms.push_back({l.var, strides[k][a]});
      level(a + 1, l.body, offs);
      dst.push_back(std::move(l));
    };
    level(0, out, offs);
  }
  static size_t strideIndex(std::vector<Strides> &strides, const Strides &st) {
    size_t i = std::find(strides.begin(), strides.end(), st) - strides.begin();
    if (i == strides.size())
      strides.push_back(st);
    return i;
  }

  // --- Graphs.
  void function(const Graph &g, const std::string &name, Function &f) {
    f = Function{};
    f.name = name;
    f.randomKeySlot = randomKeySlot_;
    f_ = &f;
    names_.clear();
    alias_.clear();
    bufferOf_.clear();
    stateBuffer_.clear();
    // The three graphs never run at the same time and every scan resets its slots at its
    // entry, so each graph numbers its gemmInvariantB slots from 0 (fewer packed copies).
    nextSlot_ = 0;
    nextReduceSlot_ = 0;
    graph(g, f.body);
  }

  void graph(const Graph &g, std::vector<Stmt> &out) {
    // Views first (state, reshapes): a fused loop may read one before its node's turn.
    for (const auto &n : g.nodes)
      if (n->op == Op::Reshape)
        alias_[n->results[0]] = ref(n->operands[0]);
      else if ((n->op == Op::Param || n->op == Op::Buffer) && n->results[0]->type.dtype == DType::F32)
        alias_[n->results[0]] = stateRef(*n);
    // All-reduces this graph started and has not waited for yet (an outer graph's are waited
    // for before the scan that reads them).
    auto savedPending = std::move(pending_);
    const FusedLoop *savedNext = nextLoop_;
    pending_.clear();
    if (!savedPending.empty()) // a scan body while the outer graph's all-reduces are in flight: drive them each step
      out.push_back(stmt(Stmt::AllReduceProgress));
    const std::vector<FusedLoop> &loops = plan_.loops.at(&g);
    for (size_t i = 0; i < loops.size(); ++i) {
      const FusedLoop &l = loops[i];
      waitForReads(l, out);
      nextLoop_ = i + 1 < loops.size() ? &loops[i + 1] : nullptr;
      if (l.fused())
        fusedLoop(l, out);
      else if (l.nodes[0]->results.empty() || !plan_.folded.count(l.nodes[0]->results[0])) // (a folded transpose: no code)
        node(*l.nodes[0], out);
    }
    for (const auto &[v, slot] : pending_) // the graph's end (a body's yields) reads them all
      out.push_back(allReduceWait(slot));
    pending_ = std::move(savedPending);
    nextLoop_ = savedNext;
  }

  /// The value v lives in (through reshapes, which are views).
  static const Value *storageRoot(const Value *v) {
    while (v->def && v->def->op == Op::Reshape)
      v = v->def->operands[0];
    return v;
  }
  /// Whether a member of `l` reads v (directly or through a view).
  static bool reads(const FusedLoop &l, const Value *v) {
    for (const Node *n : l.nodes)
      for (const Value *o : n->operands)
        if (storageRoot(o) == v)
          return true;
    return false;
  }
  Stmt allReduceWait(int64_t slot) {
    Stmt s = stmt(Stmt::AllReduceWait);
    s.index = slot;
    return s;
  }
  /// Waits for the pending all-reduces that a member of `l` reads, in the order they started.
  void waitForReads(const FusedLoop &l, std::vector<Stmt> &out) {
    for (auto it = pending_.begin(); it != pending_.end();)
      if (reads(l, it->first)) {
        out.push_back(allReduceWait(it->second));
        it = pending_.erase(it);
      } else {
        ++it;
      }
  }

  std::string header(const Node &n) {
    std::string loc = locText(n.loc), name = n.results.empty() || n.results[0]->name.empty() ? "" : " %" + n.results[0]->name;
    return opInfo(n.op).name + name + (loc.empty() ? "" : "  (" + loc + ")");
  }

  /// One loop nest computing its elementwise and indexed members element by element and
  /// accumulating its reductions: values used only inside the loop stay in registers.
  void fusedLoop(const FusedLoop &l, std::vector<Stmt> &out) {
    const int nred = l.reductions();
    out.push_back(comment(fmt::format("fused loop over [{}]{}:", fmt::join(l.shape, ", "),
                                      nred ? fmt::format(", {} reduction{}", nred, nred > 1 ? "s" : "") : "")));
    for (size_t k = 0; k < l.nodes.size(); ++k) {
      const Node &n = *l.nodes[k];
      std::string axes = hasTrait(n.op, TR_REDUCTION) ? fmt::format(" over axes [{}]", fmt::join(n.getInts("axes"), ", ")) : "";
      std::string loc = locText(n.loc), name = n.results[0]->name.empty() ? "" : " %" + n.results[0]->name;
      out.push_back(comment(fmt::format("  {}{}{}{}{}", opInfo(n.op).name, name, axes, loc.empty() ? "" : "  (" + loc + ")",
                                        l.stored[k] ? "" : "  [register]")));
    }
    // Operand j of member k: a register (member index), or a read at a stride vector.
    struct Access {
      bool reg;
      size_t index;
      Ref base;
    };
    std::vector<Strides> strides{stridesOf(l.shape)};
    std::unordered_map<const Value *, size_t> local;
    std::vector<std::vector<Access>> acc(l.nodes.size());
    std::vector<int> reg(l.nodes.size(), -1);
    std::vector<size_t> outIndex(l.nodes.size(), 0);
    std::vector<Ref> outBase(l.nodes.size());
    bool independent = true; // unless a reduction accumulates along the innermost axis
    for (size_t k = 0; k < l.nodes.size(); ++k) {
      const Node &n = *l.nodes[k];
      const Value *r = n.results[0];
      for (size_t j = 0; j < n.operands.size(); ++j) {
        auto it = local.find(n.operands[j]);
        if (it != local.end()) {
          acc[k].push_back({true, it->second, {}});
          continue;
        }
        const Value *v = n.operands[j];
        auto [st, off] = readAccess(n, j, l.shape.size(), plan_.memStrides(v));
        acc[k].push_back({false, strideIndex(strides, st), noBuffer(v) ? Ref{} : at(ref(v), Affine{off, {}})});
      }
      local[r] = k;
      if (hasTrait(n.op, TR_REDUCTION)) {
        // Accumulates into its result, zeroed (or -inf for max) first, at the element's
        // index with the reduced axes dropped.
        outIndex[k] = strideIndex(strides, reductionStrides(n, l.shape, independent));
        outBase[k] = arena(r);
        out.push_back(fill(outBase[k], r->type.numel(), n.op == Op::Max ? -INFINITY : 0.0));
        continue;
      }
      if (l.stored[k]) {
        // Its buffer (row-major), or a stacked output's step in place.
        outBase[k] = plan_.seqViews.count(r) ? ref(r) : arena(r);
        if (plan_.seqViews.count(r))
          outIndex[k] = strideIndex(strides, plan_.memStrides(r));
      }
      reg[k] = newReg(r);
    }
    loops(out, l.shape, strides, independent, [&](std::vector<Stmt> &body, const std::vector<Affine> &off) {
      for (size_t k = 0; k < l.nodes.size(); ++k) {
        const Node &n = *l.nodes[k];
        std::vector<Operand> x;
        for (size_t j = 0; j < acc[k].size(); ++j)
          x.push_back(acc[k][j].reg ? regOperand(reg[acc[k][j].index]) : read(n.operands[j], acc[k][j].base, off[acc[k][j].index]));
        if (hasTrait(n.op, TR_REDUCTION)) {
          body.push_back(accum(n.op == Op::Max ? Op::Maximum : Op::Add, at(outBase[k], off[outIndex[k]]), x[0]));
          continue;
        }
        body.push_back(let(reg[k], n, std::move(x)));
        if (l.stored[k])
          body.push_back(store(at(outBase[k], off[outIndex[k]]), regOperand(reg[k])));
      }
    });
    for (const Node *n : l.nodes)
      if (n->op == Op::Mean)
        meanDivide(*n, out);
  }

  static Stmt let(int reg, const Node &n, std::vector<Operand> args) {
    Stmt s = stmt(Stmt::Let);
    s.reg = reg;
    s.op = n.op;
    s.dtype = n.results[0]->type.dtype;
    s.args = std::move(args);
    return s;
  }

  /// Divides a mean's accumulated sums by the number of elements each one reduced.
  void meanDivide(const Node &n, std::vector<Stmt> &out) {
    int64_t count = 1;
    for (int64_t a : n.getInts("axes"))
      count *= n.operands[0]->type.shape[a];
    Ref r = arena(n.results[0]);
    loops(out, {n.results[0]->type.numel()}, {{1}}, true, [&](std::vector<Stmt> &body, const std::vector<Affine> &off) {
      body.push_back(accum(Op::Div, at(r, off[0]), {Operand::Const, -1, {}, double(count)}));
    });
  }

  void node(const Node &n, std::vector<Stmt> &out) {
    const Value *r = n.results.empty() ? nullptr : n.results[0];
    const bool silent = n.op == Op::Reshape || ((n.op == Op::Param || n.op == Op::Buffer) && r->type.dtype == DType::F32) ||
                        (n.op == Op::Const && inline_.count(r)) || hasTrait(n.op, TR_RANDOM) ||
                        (n.op == Op::Output && (!emitOutputs_ || !outputIndex_.count(n.getStr("name"))));
    if (silent)
      return; // a view, a literal, or an output infer() alone writes: no code
    out.push_back(comment(header(n)));
    auto in = [&](size_t i) { return ref(n.operands[i]); };
    auto numel = [&](size_t i) { return n.operands[i]->type.numel(); };
    auto sink = [&](Stmt::Kind kind, int64_t index, int64_t count) {
      Stmt s = stmt(kind);
      s.index = index;
      s.src = in(0);
      s.count = count;
      out.push_back(std::move(s));
    };
    switch (n.op) {
    case Op::Input: {
      Stmt s = stmt(Stmt::Input);
      s.index = static_cast<int64_t>(inputIndex_.at(n.getStr("name")));
      s.integer = r->type.dtype != DType::F32;
      s.dst = arena(r);
      s.count = r->type.numel();
      out.push_back(std::move(s));
      return;
    }
    case Op::Param:
    case Op::Buffer: {
      Stmt s = stmt(Stmt::StateInt);
      s.index = static_cast<int64_t>(stateIndex_.at(n.getStr("name")));
      s.dst = arena(r);
      s.count = r->type.numel();
      out.push_back(std::move(s));
      return;
    }
    case Op::Const: out.push_back(fill(arena(r), r->type.numel(), n.getFloat("value"))); return;
    case Op::Hyper: {
      Stmt s = stmt(Stmt::Hyper);
      s.dst = arena(r);
      out.push_back(std::move(s));
      return;
    }
    case Op::Loss: sink(Stmt::Loss, 0, 1); return;
    case Op::Output: sink(Stmt::Output, static_cast<int64_t>(outputIndex_.at(n.getStr("name"))), numel(0)); return;
    case Op::Update: sink(Stmt::Update, static_cast<int64_t>(stateIndex_.at(n.getStr("name"))), numel(0)); return;
    case Op::Grad: sink(Stmt::Grad, static_cast<int64_t>(paramOrder_.at(n.getStr("name"))), numel(0)); return;
    case Op::MatMul: matmul(n, out); return;
    case Op::Scan: scan(n, out); return;
    default: loopNode(n, out); return;
    }
  }

  /// A node computed by loops of its own: elementwise, indexed, pad, concat, a reduction,
  /// one_hot, gather, scatter_add or a loss.
  void loopNode(const Node &n, std::vector<Stmt> &out) {
    const Value *r = n.results[0];
    auto in = [&](size_t i) { return ref(n.operands[i]); };
    // A concat may write a stacked step; a set_row, the carry it updates.
    const Ref dst = plan_.seqViews.count(r) || plan_.inPlaceRows.count(r) ? ref(r) : arena(r);
    const auto &os = r->type.shape;
    if (hasTrait(n.op, TR_ELEMENTWISE) || n.op == Op::BroadcastTo) {
      std::vector<Strides> strides{stridesOf(os)};
      for (const Value *v : n.operands)
        strides.push_back(broadcastStrides(v->type.shape, os.size()));
      const int reg = newReg(r); // (after its buffer, which keeps the plain name)
      loops(out, os, strides, true, [&](std::vector<Stmt> &body, const std::vector<Affine> &off) {
        std::vector<Operand> x;
        for (size_t j = 0; j < n.operands.size(); ++j)
          x.push_back(read(n.operands[j], noBuffer(n.operands[j]) ? Ref{} : in(j), off[j + 1]));
        body.push_back(let(reg, n, std::move(x)));
        body.push_back(store(at(dst, off[0]), regOperand(reg)));
      });
      return;
    }
    auto readAt = [&](size_t j, Affine index) { return read(n.operands[j], noBuffer(n.operands[j]) ? Ref{} : in(j), index); };
    switch (n.op) {
    case Op::Transpose:
      loops(out, os, {stridesOf(os), readAccess(n, 0, os.size()).first}, true,
            [&](std::vector<Stmt> &body, const std::vector<Affine> &off) { body.push_back(store(at(dst, off[0]), readAt(0, off[1]))); });
      return;
    case Op::AllReduceSum: {
      // The operand copied to the result, then summed over the ranks in place: at once when
      // the next loop reads it, else started here and waited for before its first reader
      // (a gradient bucket in flight while the backward pass goes on).
      loops(out, os, {stridesOf(os), readAccess(n, 0, os.size()).first}, true,
            [&](std::vector<Stmt> &body, const std::vector<Affine> &off) { body.push_back(store(at(dst, off[0]), readAt(0, off[1]))); });
      const bool overlap = overlap_ && nextLoop_ && !reads(*nextLoop_, r);
      Stmt s = stmt(overlap ? Stmt::AllReduceStart : Stmt::AllReduce);
      s.dst = dst;
      s.count = r->type.numel();
      if (overlap) {
        s.index = nextReduceSlot_++;
        pending_.emplace_back(r, s.index);
      }
      out.push_back(std::move(s));
      return;
    }
    case Op::Slice:
    case Op::Pad: {
      // slice: out[i] = x[i + begin]; pad: out = 0, out[i + begin] = x[i].
      const bool isPad = n.op == Op::Pad;
      const auto &begin = n.getInts("begin");
      const auto &shifted = isPad ? os : n.operands[0]->type.shape;
      const auto &iter = isPad ? n.operands[0]->type.shape : os;
      const Strides ss = stridesOf(shifted);
      Affine base;
      for (size_t a = 0; a < begin.size(); ++a)
        base.constant += begin[a] * ss[a];
      if (isPad)
        out.push_back(fill(dst, r->type.numel(), 0.0));
      loops(out, iter, {stridesOf(iter), ss}, true, [&](std::vector<Stmt> &body, const std::vector<Affine> &off) {
        if (isPad)
          body.push_back(store(at(dst, base.plus(off[1])), readAt(0, off[0])));
        else
          body.push_back(store(at(dst, off[0]), readAt(0, base.plus(off[1]))));
      });
      return;
    }
    case Op::Concat: {
      const int64_t axis = n.getInt("axis");
      int64_t base = 0;
      const Strides st = plan_.memStrides(r); // row-major, or a stacked output's step in place
      for (size_t i = 0; i < n.operands.size(); ++i) {
        const auto &s = n.operands[i]->type.shape;
        const Affine shift{base * st[axis], {}};
        loops(out, s, {stridesOf(s), st}, true, [&](std::vector<Stmt> &body, const std::vector<Affine> &off) {
          body.push_back(store(at(dst, shift.plus(off[1])), readAt(i, off[0])));
        });
        base += s[axis];
      }
      return;
    }
    case Op::Sum:
    case Op::Mean:
    case Op::Max: {
      const auto &xs = n.operands[0]->type.shape;
      out.push_back(fill(dst, r->type.numel(), n.op == Op::Max ? -INFINITY : 0.0));
      // Each element accumulates in order over the reduced axes; when the innermost axis is
      // kept, its iterations update distinct elements.
      bool independent = !xs.empty();
      const Strides keep = reductionStrides(n, xs, independent);
      independent = independent && !allZero(keep);
      loops(out, xs, {stridesOf(xs), keep}, independent, [&](std::vector<Stmt> &body, const std::vector<Affine> &off) {
        body.push_back(accum(n.op == Op::Max ? Op::Maximum : Op::Add, at(dst, off[1]), readAt(0, off[0])));
      });
      if (n.op == Op::Mean)
        meanDivide(n, out);
      return;
    }
    case Op::OneHot: {
      out.push_back(fill(dst, r->type.numel(), 0.0));
      Stmt s = stmt(Stmt::OneHot);
      s.dst = dst;
      s.src = in(0);
      s.count = n.operands[0]->type.numel();
      s.classes = n.getInt("classes");
      out.push_back(std::move(s));
      return;
    }
    case Op::Row:
    case Op::SetRow: {
      // row: the row read at run time; set_row: x copied (unless it updates x's buffer in
      // place), then the row written. The index is clamped into [0, rows).
      const Value *x = n.operands[0];
      const int64_t rows = x->type.shape[0];
      if (n.op == Op::SetRow && !plan_.inPlaceRows.count(r))
        out.push_back(copy(dst, in(0), x->type.numel()));
      Stmt s = stmt(n.op == Op::Row ? Stmt::RowLoad : Stmt::RowStore);
      s.dst = dst;
      s.src = in(n.op == Op::Row ? 0 : 2);
      s.value = readAt(1, Affine{});
      s.count = x->type.numel() / rows;
      s.extent = rows;
      out.push_back(std::move(s));
      return;
    }
    case Op::Gather:
    case Op::ScatterAdd: {
      const bool gather = n.op == Op::Gather;
      Stmt s = stmt(gather ? Stmt::Gather : Stmt::ScatterAdd);
      s.dst = dst;
      s.src = in(0);
      s.src2 = in(1);
      s.count = n.operands[1]->type.numel();
      s.classes = r->type.shape.back();
      s.rows = gather ? n.operands[0]->type.shape[0] : r->type.shape[0];
      s.padding = n.getInt("padding");
      out.push_back(std::move(s));
      return;
    }
    case Op::Mse:
    case Op::BceWithLogits:
    case Op::CrossEntropy: {
      Stmt s = stmt(Stmt::LossKernel);
      s.op = n.op;
      s.dst = dst;
      s.src = in(0);
      s.src2 = in(1);
      s.count = n.op == Op::CrossEntropy ? n.operands[0]->type.shape[0] : n.operands[0]->type.numel();
      s.classes = n.op == Op::CrossEntropy ? n.operands[0]->type.shape[1] : 0;
      out.push_back(std::move(s));
      return;
    }
    default: throw std::logic_error(fmt::format("lower: no lowering for '{}'", opInfo(n.op).name));
    }
  }

  void matmul(const Node &n, std::vector<Stmt> &out) {
    const Value *r = n.results[0];
    auto [a, ta] = LoopLevel::matOperand(n.operands[0]);
    auto [b, tb] = LoopLevel::matOperand(n.operands[1]);
    const auto &as = n.operands[0]->type.shape, &bs = n.operands[1]->type.shape, &cs = r->type.shape;
    GemmCall g;
    g.ta = ta;
    g.tb = tb;
    g.M = as[as.size() - 2];
    g.K = as.back();
    g.N = bs.back();
    g.lda = ta ? g.M : g.K;
    g.ldb = tb ? g.K : g.N;
    g.ldc = g.N;
    g.a = ref(a);
    g.b = ref(b);
    g.c = arena(r);
    Stmt s = stmt(Stmt::Gemm);
    if (bs.size() == 2) {
      // [..., M, K] @ [K, N]: the leading axes fold into M (A is contiguous, or a step read
      // in place, rows apart by its memory stride).
      if (as.size() > 2 && ta)
        throw std::logic_error("lower: transposed batched operand");
      g.M = r->type.numel() / g.N;
      if (plan_.seqViews.count(a))
        g.lda = plan_.memStrides(a)[0];
      if (plan_.seqViews.count(b))
        g.ldb = plan_.memStrides(b)[0];
      // A B that no step of the enclosing scan changes is packed once per scan, in its slot.
      auto slot = invariantSlot_.find(&n);
      g.slot = slot == invariantSlot_.end() ? -1 : slot->second;
      s.gemm = g;
      out.push_back(std::move(s));
      return;
    }
    // Batched: one GEMM per batch index, operands broadcast over the leading axes.
    std::vector<int64_t> batch(cs.begin(), cs.end() - 2);
    Strides sa = broadcastStrides(std::vector<int64_t>(as.begin(), as.end() - 2), batch.size());
    Strides sb = broadcastStrides(std::vector<int64_t>(bs.begin(), bs.end() - 2), batch.size());
    loops(out, batch, {stridesOf(batch), sa, sb}, false, [&](std::vector<Stmt> &body, const std::vector<Affine> &off) {
      Stmt one = s;
      one.gemm = g;
      one.gemm.a = at(g.a, off[1], g.M * g.K);
      one.gemm.b = at(g.b, off[2], g.K * g.N);
      one.gemm.c = at(g.c, off[0], g.M * g.N);
      body.push_back(std::move(one));
    });
  }

  /// Copies step `t` of axis `axis` between a stacked tensor and a step tensor.
  void stepCopy(std::vector<Stmt> &out, const std::vector<int64_t> &stacked, int64_t axis, const Ref &stackedRef, const Ref &stepRef,
                int t, bool toStep) {
    const StepLayout l = stepLayout(stacked, axis);
    loops(out, {l.outer}, {{1}}, false, [&](std::vector<Stmt> &body, const std::vector<Affine> &off) {
      Ref s = at(at(stackedRef, off[0], l.len * l.inner), Affine{0, {{t, l.inner}}}), p = at(stepRef, off[0], l.inner);
      body.push_back(toStep ? copy(p, s, l.inner) : copy(s, p, l.inner));
    });
  }

  void scan(const Node &n, std::vector<Stmt> &out) {
    const Graph &b = *n.body;
    const int64_t axis = n.getInt("axis"), nseq = n.getInt("nseq"), ncarry = n.getInt("ncarry");
    const int64_t len = n.operands[0]->type.shape[axis];
    // Captures alias their operands; carries start as copies of the initial values.
    for (size_t k = nseq + ncarry; k < n.operands.size(); ++k)
      alias_[b.args[k]] = ref(n.operands[k]);
    for (int64_t c = 0; c < ncarry; ++c)
      out.push_back(copy(arena(b.args[nseq + c]), ref(n.operands[nseq + c]), b.args[nseq + c]->type.numel()));
    // The body's matmuls by a loop-invariant B get slots, stale until their first call here.
    std::vector<const Node *> invariant = LoopLevel::invariantMatmuls(n);
    if (!invariant.empty()) {
      Stmt reset = stmt(Stmt::GemmReset);
      reset.index = nextSlot_;
      reset.count = static_cast<int64_t>(invariant.size());
      out.push_back(std::move(reset));
      for (const Node *mm : invariant)
        invariantSlot_[mm] = nextSlot_++;
    }
    Stmt loop = stmt(Stmt::Scan);
    loop.var = newVar("t");
    loop.extent = len;
    loop.reverse = n.getInt("reverse") != 0;
    const Affine t{0, {{loop.var, 1}}};
    std::vector<Stmt> &body = loop.body;
    for (int64_t s = 0; s < nseq; ++s) {
      auto view = plan_.seqViews.find(b.args[s]);
      if (view != plan_.seqViews.end()) // read in place
        alias_[b.args[s]] = at(ref(n.operands[s]), t, view->second.step);
      else
        stepCopy(body, n.operands[s]->type.shape, axis, ref(n.operands[s]), arena(b.args[s]), loop.var, true);
    }
    // A carry whose next value is a set_row of it in place: the carry's buffer is the value's.
    auto stays = [&](int64_t c) { return b.yields[c] == b.args[nseq + c] || plan_.inPlaceRows.count(b.yields[c]); };
    for (int64_t c = 0; c < ncarry; ++c)
      if (plan_.inPlaceRows.count(b.yields[c]))
        alias_[b.yields[c]] = arena(b.args[nseq + c]);
    for (size_t y = ncarry; y < b.yields.size(); ++y) {
      auto view = plan_.seqViews.find(b.yields[y]);
      if (view != plan_.seqViews.end()) // written in place
        alias_[b.yields[y]] = at(arena(n.results[y]), t, view->second.step);
    }
    graph(b, body);
    // Stacked outputs, then the next carries (read every yield before writing any carry).
    for (size_t y = ncarry; y < b.yields.size(); ++y)
      if (!plan_.seqViews.count(b.yields[y]))
        stepCopy(body, n.results[y]->type.shape, axis, arena(n.results[y]), ref(b.yields[y]), loop.var, false);
    // Unless a carry's next value is another carry's argument (a swap), each next value is
    // copied straight into its argument's buffer and the results are copied once at the end;
    // otherwise through the result buffers, so that every yield is read before any is written.
    bool swap = false;
    for (int64_t c = 0; c < ncarry; ++c)
      for (int64_t c2 = 0; c2 < ncarry; ++c2)
        swap = swap || (c != c2 && b.yields[c] == b.args[nseq + c2]);
    for (int64_t c = 0; c < ncarry; ++c)
      if (!stays(c))
        body.push_back(copy(swap ? arena(n.results[c]) : arena(b.args[nseq + c]), ref(b.yields[c]), b.args[nseq + c]->type.numel()));
    if (swap)
      for (int64_t c = 0; c < ncarry; ++c)
        if (!stays(c))
          body.push_back(copy(arena(b.args[nseq + c]), arena(n.results[c]), b.args[nseq + c]->type.numel()));
    out.push_back(std::move(loop));
    for (int64_t c = 0; c < ncarry; ++c)
      if (!swap || stays(c))
        out.push_back(copy(arena(n.results[c]), arena(b.args[nseq + c]), b.args[nseq + c]->type.numel()));
  }

  const Module &m_;
  const SourceManager &sm_;
  LoopLevel plan_; ///< The loops and the arena this lowering follows.
  bool overlap_;   ///< LowerOptions::overlapCollectives.
  rt::ModelSpec spec_; ///< The runtime's view of the module: state, inputs and outputs by index.
  Function *f_ = nullptr;
  std::unordered_set<std::string> names_;                ///< Identifiers taken in the function.
  std::unordered_map<const Value *, Ref> alias_;         ///< Values living in another's storage.
  std::unordered_map<const Value *, int> bufferOf_;      ///< Arena buffers of the function.
  std::unordered_map<int64_t, int> stateBuffer_;         ///< State index -> its buffer.
  std::unordered_set<const Value *> inline_, notInline_; ///< One-element constants printed as literals.
  std::unordered_map<const Node *, int64_t> invariantSlot_;
  int64_t nextSlot_ = 0;
  std::vector<std::pair<const Value *, int64_t>> pending_; ///< All-reduces started and not yet waited for, with their slots.
  int64_t nextReduceSlot_ = 0;                             ///< The function's next all-reduce slot.
  const FusedLoop *nextLoop_ = nullptr;                    ///< The loop after the one being lowered, in its graph.
  std::map<std::string, size_t> stateIndex_, inputIndex_, outputIndex_, paramOrder_;
  int64_t randomKeySlot_ = 0; ///< The batch pointer of the random key: after every input and target.
  bool emitOutputs_ = false;
};

} // namespace

Program lower(const Module &m, const SourceManager &sm, const LowerOptions &opts, std::function<bool(const Node &)> canFuse) {
  return Lowerer(m, sm, opts, std::move(canFuse)).run();
}

} // namespace gradc::kernel
