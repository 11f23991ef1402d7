// Printer.cpp: the graph IR as stable text (--emit=graph) and as Graphviz (--emit=dot).
#include <filesystem>
#include <ostream>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "ir/IR.h"

namespace gradc {

namespace {

std::string attrText(const AttrValue &v) {
  struct V {
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return fmt::format("{}", d); }
    std::string operator()(const std::string &s) const { return fmt::format("\"{}\"", s); }
    std::string operator()(const std::vector<int64_t> &l) const { return fmt::format("[{}]", fmt::join(l, ", ")); }
  };
  return std::visit(V{}, v);
}

/// Gives every value a unique printed name: its hint (deduplicated) or a number.
class Namer {
public:
  const std::string &name(const Value *v) {
    auto it = names_.find(v);
    if (it != names_.end())
      return it->second;
    std::string n;
    if (v->name.empty()) {
      n = fmt::format("%{}", next_++);
    } else {
      n = "%" + v->name;
      for (unsigned k = 1; used_.count(n); ++k)
        n = fmt::format("%{}.{}", v->name, k);
    }
    used_.insert(n);
    return names_[v] = n;
  }

private:
  std::unordered_map<const Value *, std::string> names_;
  std::unordered_set<std::string> used_;
  unsigned next_ = 0;
};

std::string locText(const SourceManager &sm, SrcLoc loc) {
  if (!loc.valid())
    return {};
  std::string path = std::filesystem::path(sm.get(loc.file).path).filename().string();
  return fmt::format("{}:{}:{}", path, loc.line, loc.col);
}

class TextPrinter {
public:
  TextPrinter(const SourceManager &sm, std::ostream &os) : sm_(sm), os_(os) {}

  void graph(const Graph &g, int indent) {
    std::string pad(indent, ' ');
    if (!g.args.empty()) {
      std::vector<std::string> args;
      for (const Value *a : g.args)
        args.push_back(fmt::format("{}: {}", namer_.name(a), a->type.str()));
      os_ << pad << "^body(" << fmt::format("{}", fmt::join(args, ", ")) << "):\n";
    }
    for (const auto &n : g.nodes)
      node(*n, indent);
    if (g.parentNode) {
      std::vector<std::string> ys;
      for (const Value *y : g.yields)
        ys.push_back(namer_.name(y));
      os_ << pad << "yield " << fmt::format("{}", fmt::join(ys, ", ")) << "\n";
    }
  }

  void node(const Node &n, int indent) {
    std::string line(indent, ' ');
    if (!n.results.empty()) {
      std::vector<std::string> rs;
      for (const Value *r : n.results)
        rs.push_back(namer_.name(r));
      line += fmt::format("{} = ", fmt::join(rs, ", "));
    }
    line += opInfo(n.op).name;
    std::vector<std::string> ops;
    for (const Value *o : n.operands)
      ops.push_back(namer_.name(o));
    if (!ops.empty())
      line += " " + fmt::format("{}", fmt::join(ops, ", "));
    if (!n.attrs.empty()) {
      std::vector<std::string> as;
      for (const auto &[k, v] : n.attrs)
        as.push_back(k + " = " + attrText(v));
      line += fmt::format(" {{{}}}", fmt::join(as, ", "));
    }
    if (!n.results.empty()) {
      std::vector<std::string> ts;
      for (const Value *r : n.results)
        ts.push_back(r->type.str());
      line += fmt::format(" : {}", fmt::join(ts, ", "));
    }
    if (n.body)
      line += " {";
    std::string loc = locText(sm_, n.loc);
    if (!loc.empty()) {
      if (line.size() < 72)
        line.append(72 - line.size(), ' ');
      line += "  # " + loc;
    }
    os_ << line << "\n";
    if (n.body) {
      graph(*n.body, indent + 2);
      os_ << std::string(indent, ' ') << "}\n";
    }
  }

private:
  const SourceManager &sm_;
  std::ostream &os_;
  Namer namer_;
};

} // namespace

void printGraph(const Graph &g, const SourceManager &sm, std::ostream &os) {
  TextPrinter p(sm, os);
  os << "graph @" << g.name << " {\n";
  p.graph(g, 2);
  os << "}\n";
}

void printModule(const Module &m, const SourceManager &sm, std::ostream &os) {
  os << "module " << m.name << "\n";
  for (const auto &d : m.inputs)
    os << "  input " << d.name << ": " << d.type.str() << "\n";
  for (const auto &d : m.targets)
    os << "  target " << d.name << ": " << d.type.str() << "\n";
  int64_t nparams = 0;
  for (const auto &d : m.params) {
    os << "  param " << d.name << ": " << d.type.str() << " = " << d.init.str() << "\n";
    nparams += d.type.numel();
  }
  for (const auto &d : m.buffers)
    os << "  buffer " << d.name << ": " << d.type.str() << " = " << d.init.str() << "\n";
  for (const auto &d : m.optState)
    os << "  state " << d.name << ": " << d.type.str() << " = " << d.init.str() << "\n";
  os << "  # " << nparams << " trainable parameters\n";
  for (const Graph *g : m.graphs()) {
    TextPrinter p(sm, os); // Names are unique per graph.
    os << "\ngraph @" << g->name << " {\n";
    p.graph(*g, 2);
    os << "}\n";
  }
}

namespace {

class DotPrinter {
public:
  explicit DotPrinter(std::ostream &os) : os_(os) {}

  void graph(const Graph &g, const std::string &prefix) {
    for (const Value *a : g.args)
      os_ << fmt::format("  v{} [label=\"arg {}\\n{}\", shape=ellipse];\n", a->id, a->index, a->type.str());
    for (const auto &n : g.nodes) {
      std::string id = fmt::format("n{}", counter_++);
      std::string label = opInfo(n->op).name;
      if (n->has("name"))
        label += " " + n->getStr("name");
      for (const Value *r : n->results)
        label += "\\n" + r->type.str();
      if (n->body) {
        os_ << fmt::format("  subgraph cluster_{} {{\n  label=\"{}\";\n", id, label);
        graph(*n->body, id);
        for (const Value *y : n->body->yields)
          os_ << fmt::format("  {} -> {}_yield [style=dashed];\n", source(y), id);
        os_ << fmt::format("  {}_yield [label=\"yield\", shape=point];\n  }}\n", id);
      }
      os_ << fmt::format("  {} [label=\"{}\", shape={}];\n", id, label,
                         hasTrait(n->op, TR_SOURCE) || hasTrait(n->op, TR_SINK) ? "box" : "record");
      for (const Value *r : n->results)
        nodeOf_[r] = id;
      for (const Value *o : n->operands)
        os_ << fmt::format("  {} -> {};\n", source(o), id);
    }
    (void)prefix;
  }

private:
  std::string source(const Value *v) {
    auto it = nodeOf_.find(v);
    return it == nodeOf_.end() ? fmt::format("v{}", v->id) : it->second;
  }
  std::ostream &os_;
  std::unordered_map<const Value *, std::string> nodeOf_;
  unsigned counter_ = 0;
};

} // namespace

void printDot(const Module &m, std::ostream &os) {
  os << "digraph \"" << m.name << "\" {\n  rankdir=TB;\n  node [fontname=\"monospace\"];\n";
  DotPrinter p(os);
  for (const Graph *g : m.graphs()) {
    os << fmt::format("  subgraph cluster_{} {{\n  label=\"@{}\";\n", g->name, g->name);
    p.graph(*g, g->name);
    os << "  }\n";
  }
  os << "}\n";
}

} // namespace gradc
