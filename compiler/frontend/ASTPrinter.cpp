// ASTPrinter.cpp: the syntax tree as indented, stable text for --emit=ast and lit tests.
#include "frontend/ASTPrinter.h"

#include <filesystem>

#include <fmt/format.h>

namespace gradc {

namespace {

class Printer {
public:
  explicit Printer(std::ostream &os) : os_(os) {}

  void line(int d, const std::string &text, SrcLoc loc) {
    os_ << std::string(2 * d, ' ') << text << fmt::format(" <{}:{}>\n", loc.line, loc.col);
  }

  std::string nameText(const Name &n) {
    std::string s = n.text[0];
    for (size_t i = 0; i < n.holes.size(); ++i)
      s += "{...}" + n.text[i + 1];
    return s;
  }

  void nameHoles(const Name &n, int d) {
    for (const ExprPtr &h : n.holes)
      expr(*h, d);
  }

  void expr(const Expr &e, int d) {
    switch (e.kind) {
    case ExprKind::Int: line(d, fmt::format("Int {}", e.intValue), e.loc); break;
    case ExprKind::Float: line(d, fmt::format("Float {}", e.floatValue), e.loc); break;
    case ExprKind::String: line(d, fmt::format("String \"{}\"", e.str), e.loc); break;
    case ExprKind::Bool: line(d, e.boolValue ? "Bool true" : "Bool false", e.loc); break;
    case ExprKind::Training: line(d, "Training", e.loc); break;
    case ExprKind::NameRef:
      line(d, "Name " + nameText(e.name), e.loc);
      nameHoles(e.name, d + 1);
      break;
    case ExprKind::List: line(d, "List", e.loc); break;
    case ExprKind::Unary: line(d, "Unary " + e.op, e.loc); break;
    case ExprKind::Binary: line(d, "Binary " + e.op, e.loc); break;
    case ExprKind::Ternary: line(d, "Ternary", e.loc); break;
    case ExprKind::Range: line(d, "Range", e.loc); break;
    case ExprKind::Call: line(d, "Call", e.loc); break;
    case ExprKind::Index: line(d, "Index", e.loc); break;
    case ExprKind::Scan: {
      std::string s = e.reverse ? "Scan reverse" : "Scan";
      for (const ScanSeq &q : e.seqs)
        s += " " + q.var;
      line(d, s, e.loc);
      for (const ScanSeq &q : e.seqs) {
        line(d + 1, "Seq " + q.var, q.loc);
        expr(*q.seq, d + 2);
      }
      if (e.axis) {
        line(d + 1, "Along", e.axis->loc);
        expr(*e.axis, d + 2);
      }
      if (!e.indexVar.empty())
        line(d + 1, "Index " + e.indexVar, e.indexLoc);
      for (const ScanCarry &c : e.carries) {
        line(d + 1, "Carry " + c.var, c.loc);
        expr(*c.init, d + 2);
      }
      stmts(e.body, d + 1);
      return;
    }
    }
    for (const ExprPtr &o : e.operands)
      expr(*o, d + 1);
    for (const Arg &a : e.args) {
      if (!a.keyword.empty()) {
        line(d + 1, "Keyword " + a.keyword, a.loc);
        expr(*a.value, d + 2);
      } else {
        expr(*a.value, d + 1);
      }
    }
    for (const IndexItem &it : e.indices) {
      if (!it.isSlice) {
        expr(*it.index, d + 1);
        continue;
      }
      line(d + 1, "Slice", it.loc);
      if (it.lo)
        expr(*it.lo, d + 2);
      else
        line(d + 2, "Begin", it.loc);
      if (it.hi)
        expr(*it.hi, d + 2);
      else
        line(d + 2, "End", it.loc);
    }
  }

  void stmts(const std::vector<StmtPtr> &ss, int d) {
    for (const StmtPtr &s : ss)
      stmt(*s, d);
  }

  void stmt(const Stmt &s, int d) {
    switch (s.kind) {
    case StmtKind::Assign:
      line(d, fmt::format("Assign {}", fmt::join(s.targets, ", ")), s.loc);
      expr(*s.value, d + 1);
      break;
    case StmtKind::Update:
      line(d, "Update " + nameText(s.name), s.loc);
      nameHoles(s.name, d + 1);
      if (s.row) {
        line(d + 1, "Row", s.row->loc);
        expr(*s.row, d + 2);
      }
      expr(*s.value, d + 1);
      break;
    case StmtKind::Return:
    case StmtKind::Yield:
      line(d, s.kind == StmtKind::Return ? "Return" : "Yield", s.loc);
      for (const ExprPtr &e : s.values)
        expr(*e, d + 1);
      break;
    case StmtKind::Output:
      line(d, "Output", s.loc);
      expr(*s.value, d + 1);
      break;
    case StmtKind::If:
      line(d, "If", s.loc);
      expr(*s.value, d + 1);
      line(d + 1, "Then", s.loc);
      stmts(s.body, d + 2);
      if (!s.elseBody.empty()) {
        line(d + 1, "Else", s.loc);
        stmts(s.elseBody, d + 2);
      }
      break;
    case StmtKind::For:
      line(d, "For " + s.var, s.loc);
      expr(*s.value, d + 1);
      expr(*s.hi, d + 1);
      stmts(s.body, d + 1);
      break;
    }
  }

  void type(const TypeExpr &t, int d) {
    line(d, "Type " + t.dtype, t.loc);
    for (const ExprPtr &e : t.dims)
      expr(*e, d + 1);
  }

  void decl(const Decl &x, int d) {
    switch (x.kind) {
    case DeclKind::Model: line(d, "Model " + x.ident, x.loc); break;
    case DeclKind::Let:
      line(d, "Let " + x.ident, x.loc);
      expr(*x.value, d + 1);
      break;
    case DeclKind::Input:
    case DeclKind::Target:
      line(d, (x.kind == DeclKind::Input ? "Input " : "Target ") + x.ident, x.loc);
      type(x.type, d + 1);
      break;
    case DeclKind::LayerDef: {
      std::vector<std::string> ps;
      for (const LayerParam &p : x.params)
        ps.push_back(p.defaultValue ? p.name + "=" : p.name);
      line(d, fmt::format("LayerDef {}({})", x.ident, fmt::join(ps, ", ")), x.loc);
      for (const LayerParam &p : x.params)
        if (p.defaultValue) {
          line(d + 1, "Default " + p.name, p.loc);
          expr(*p.defaultValue, d + 2);
        }
      for (const DeclPtr &b : x.body)
        decl(*b, d + 1);
      break;
    }
    case DeclKind::LayerInst:
      line(d, "LayerInst " + nameText(x.name), x.loc);
      nameHoles(x.name, d + 1);
      expr(*x.value, d + 1);
      break;
    case DeclKind::Param:
    case DeclKind::Buffer:
      line(d, (x.kind == DeclKind::Param ? "Param " : "Buffer ") + nameText(x.name), x.loc);
      nameHoles(x.name, d + 1);
      type(x.type, d + 1);
      expr(*x.value, d + 1);
      break;
    case DeclKind::For:
      line(d, "For " + x.ident, x.loc);
      expr(*x.value, d + 1);
      expr(*x.hi, d + 1);
      for (const DeclPtr &b : x.body)
        decl(*b, d + 1);
      break;
    case DeclKind::Forward:
      line(d, fmt::format("Forward({})", fmt::join(x.forwardArgs, ", ")), x.loc);
      stmts(x.stmts, d + 1);
      break;
    case DeclKind::Graph:
      line(d, "Graph", x.loc);
      stmts(x.stmts, d + 1);
      break;
    case DeclKind::Train:
      line(d, "Train", x.loc);
      for (const TrainSetting &s : x.settings) {
        line(d + 1, "Setting " + s.key, s.loc);
        expr(*s.value, d + 2);
      }
      break;
    }
  }

private:
  std::ostream &os_;
};

} // namespace

void printAST(const ModuleAST &m, const SourceManager &sm, std::ostream &os) {
  os << "Module " << std::filesystem::path(sm.get(m.file).path).filename().string() << "\n";
  Printer p(os);
  for (const DeclPtr &d : m.decls)
    p.decl(*d, 1);
}

} // namespace gradc
