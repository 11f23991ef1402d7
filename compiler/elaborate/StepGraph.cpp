// StepGraph.cpp: derives --generate's one-step inference graph of a text model: the inference
// graph elaborated for one sample and one time step, with each recurrence's initial carries
// made inputs and its final carries outputs, so that the runtime feeds one character at a
// time and carries the state from step to step instead of re-running a whole window.
#include <algorithm>

#include "elaborate/ElaborateImpl.h"

namespace gradc {

namespace {

/// Why `m` (elaborated, without its step graph) cannot have one, or "" if it may.
std::string stepPrecondition(const Module &m) {
  if (m.ranks != 1)
    return "--generate runs in one process; use the executable compiled without --ranks";
  if (m.inputs.size() != 1 || m.inputs[0].type.rank() != 2 || m.inputs[0].type.dtype == DType::F32)
    return "--generate needs one input of character indices i32[B, T]";
  int outputs = 0;
  for (const auto &n : m.inferGraph->nodes)
    if (n->op == Op::Output) {
      ++outputs;
      if (n->operands[0]->type.rank() != 3)
        return "--generate needs the output to be logits [B, T, vocabulary], not " + n->operands[0]->type.str();
    }
  if (outputs != 1)
    return "--generate needs exactly one output, the logits [B, T, vocabulary]";
  return "";
}

/// The first line of a captured diagnostic, "file:line:col: message" (without "error: ": the
/// location says which line does not fit one step).
std::string firstLine(const std::string &text) {
  std::string line = text.substr(0, text.find('\n'));
  if (size_t e = line.find(": error: "); e != std::string::npos)
    line.erase(e, 7);
  return line;
}

/// Where `scan` comes from, for messages: the user's layer declaration that runs it ("layer rnn,
/// net.model:7", from the instance path of its carries), else its own line.
std::string scanWhere(const Module &m, const Node &scan, const SourceManager &sm) {
  const int64_t nseq = scan.getInt("nseq");
  if (scan.getInt("ncarry") > 0) {
    const std::string &carry = scan.body->args[nseq]->name;
    auto it = m.layerWhere.find(carry.substr(0, carry.find('.')));
    if (it != m.layerWhere.end())
      return "layer " + it->first + " (" + it->second + ")";
  }
  return "the recurrence at " + sm.describe(scan.loc);
}

/// Makes the carries of every top-level scan of `g` (the step graph) inputs and outputs: the
/// initial value of carry k becomes input `state<k>.<carry>` (in m.stepInputs, after the
/// model's input) and its final value output `state<k>.<carry>`. Returns why it cannot ("" on
/// success): a scan running backwards in time has no state to carry to the next character, and
/// a carry must start at zero (where the runtime starts it).
std::string exposeCarries(Module &m, Graph &g, const SourceManager &sm) {
  Builder b(m, &g);
  std::vector<Node *> scans;
  for (const auto &n : g.nodes)
    if (n->op == Op::Scan)
      scans.push_back(n.get());
  if (scans.empty())
    return "--generate needs a recurrence (a scan over the time axis) to carry from character to character; this "
           "model has none";
  int64_t k = 0;
  for (Node *scan : scans) {
    if (scan->getInt("reverse"))
      return scanWhere(m, *scan, sm) + " runs a recurrence backwards in time (scan reverse: a bidirectional "
                                         "layer), and a character cannot depend on the ones generated after it";
    const int64_t nseq = scan->getInt("nseq"), ncarry = scan->getInt("ncarry");
    for (int64_t i = 0; i < ncarry; ++i, ++k) {
      Value *init = scan->operands[nseq + i];
      // The runtime starts every carry at zero (the prelude's recurrences and a forward step index do).
      const Node *d = init->def;
      while (d && d->op == Op::BroadcastTo)
        d = d->operands[0]->def;
      if (!d || d->op != Op::Const || d->getFloat("value") != 0)
        return scanWhere(m, *scan, sm) + ": the recurrence's carry '" + scan->body->args[nseq + i]->name +
               "' does not start at zero, and --generate starts every carry at zero";
      const std::string name = fmt::format("state{}.{}", k, scan->body->args[nseq + i]->name);
      TensorType t = init->type;
      if (t.dtype == DType::I64)
        t.dtype = DType::I32; // a step index: fed as int32, as integer inputs are
      Value *in = b.source(Op::Input, t, {{"name", name}}, scan->loc, name);
      // Sources lead the graph: the new inputs go first, in carry order.
      std::rotate(g.nodes.begin() + k, g.nodes.end() - 1, g.nodes.end());
      if (t.dtype != init->type.dtype) {
        std::string err;
        Node *c = b.create(Op::Cast, {in}, {{"dtype", std::string("i64")}}, scan->loc, err);
        if (!c)
          return err;
        auto pos = std::find_if(g.nodes.begin(), g.nodes.end(), [&](auto &n) { return n.get() == scan; });
        std::rotate(pos, g.nodes.end() - 1, g.nodes.end());
        in = c->results[0];
      }
      scan->operands[nseq + i] = in;
      m.stepInputs.push_back({name, t, scan->loc});
      b.sink(Op::Output, scan->results[i], {{"name", name}}, scan->loc);
    }
  }
  return "";
}

} // namespace

void Elaborator::buildStepGraph() {
  if (m_->train.data.kind != "text")
    return; // not a text model: the runtime says --generate needs one
  m_->stepWhy = stepPrecondition(*m_);
  if (!m_->stepWhy.empty())
    return;
  {
    DiagCapture capture(diag_); // a model that does not fit one step still compiles
    try {
      buildGraph(Mode::Step);
    } catch (const CompileError &) {
      ctx_ = nullptr;
      scans_.clear();
      path_.clear();
      m_->stepGraph.reset();
      m_->stepWhy = "the model does not elaborate for one sample of one step (input " + m_->inputs[0].name +
                    " as [1, 1]): " + firstLine(capture.text());
      return;
    }
  }
  TensorDecl x = m_->inputs[0];
  x.type.shape = {1, 1};
  m_->stepInputs = {x};
  m_->stepWhy = exposeCarries(*m_, *m_->stepGraph, sm_);
  if (!m_->stepWhy.empty()) {
    m_->stepGraph.reset();
    m_->stepInputs.clear();
  }
}

} // namespace gradc
