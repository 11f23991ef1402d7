// Parser.cpp: recursive descent over the tokens, one function per grammar rule of
// docs/language.md (the rule is written above each function).
#include "frontend/Parser.h"

#include <fmt/format.h>

#include "frontend/Lexer.h"

namespace gradc {

namespace {

constexpr int kMaxDepth = 200; ///< Nesting bound, so no input overflows the stack.

class Parser {
public:
  Parser(std::vector<Token> toks, Diagnostics &diag) : toks_(std::move(toks)), diag_(diag) {}

  // file := item*
  std::unique_ptr<ModuleAST> file(uint32_t id) {
    auto m = std::make_unique<ModuleAST>();
    m->file = id;
    skipNewlines();
    while (!at(Tok::Eof)) {
      m->decls.push_back(item());
      endOfStatement("declaration");
      skipNewlines();
    }
    return m;
  }

private:
  // --- Token helpers.
  const Token &peek(size_t k = 0) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  bool at(Tok k) const { return peek().kind == k; }
  const Token &take() {
    const Token &t = toks_[pos_];
    if (pos_ + 1 < toks_.size())
      ++pos_;
    return t;
  }
  bool accept(Tok k) {
    if (!at(k))
      return false;
    take();
    return true;
  }
  std::string found() const {
    const Token &t = peek();
    if (t.kind == Tok::Ident)
      return fmt::format("'{}'", t.text);
    if (t.kind == Tok::Int || t.kind == Tok::Float)
      return fmt::format("'{}'", t.text);
    return tokName(t.kind);
  }
  const Token &expect(Tok k, const char *context) {
    if (!at(k))
      diag_.error(peek().loc, "expected {} {}, found {}", tokName(k), context, found());
    return take();
  }
  /// `in` is a contextual keyword: a plain identifier elsewhere (Dense(in, out)).
  void expectIn(const char *context) {
    if (!at(Tok::Ident) || peek().text != "in")
      diag_.error(peek().loc, "expected 'in' {}, found {}", context, found());
    take();
  }
  void skipNewlines() {
    while (at(Tok::Newline))
      take();
  }
  void endOfStatement(const char *what) {
    if (!at(Tok::Newline) && !at(Tok::Eof) && !at(Tok::RBrace))
      diag_.error(peek().loc, "expected the end of the {} (a newline), found {}", what, found());
    skipNewlines();
  }
  struct DepthGuard {
    Parser &p;
    DepthGuard(Parser &p, SrcLoc loc) : p(p) {
      if (++p.depth_ > kMaxDepth)
        p.diag_.error(loc, "nesting too deep (more than {} levels)", kMaxDepth);
    }
    ~DepthGuard() { --p.depth_; }
  };
  /// True when the token after the current one starts right where it ends (no space).
  bool adjacentNext() const {
    const Token &a = peek(), &b = peek(1);
    return a.loc.line == b.loc.line && a.endCol == b.loc.col;
  }

  // name := IDENT ( '{' expr '}' IDENT? )*
  Name name(const char *context) {
    const Token &id = expect(Tok::Ident, context);
    Name n;
    n.loc = id.loc;
    n.text.push_back(id.text);
    const Token *last = &id;
    while (at(Tok::LBrace) && peek().loc.line == last->loc.line && peek().loc.col == last->endCol) {
      take();
      n.holes.push_back(expr());
      const Token &close = expect(Tok::RBrace, "to close the name's '{'");
      last = &close;
      if (at(Tok::Ident) && peek().loc.line == close.loc.line && peek().loc.col == close.endCol) {
        last = &take();
        n.text.push_back(last->text);
      } else {
        n.text.push_back("");
      }
    }
    return n;
  }

  // type := dtype '[' (expr (',' expr)*)? ']'
  TypeExpr type() {
    TypeExpr t;
    t.loc = peek().loc;
    if (at(Tok::KwF32) || at(Tok::KwI32) || at(Tok::KwI64)) {
      t.dtype = take().text;
    } else if (at(Tok::Ident)) {
      diag_.error(peek().loc, "unknown dtype '{}'; expected f32, i32 or i64", peek().text);
    } else {
      diag_.error(peek().loc, "expected a type such as f32[...], found {}", found());
    }
    expect(Tok::LBracket, "after the dtype");
    if (!at(Tok::RBracket)) {
      t.dims.push_back(expr());
      while (accept(Tok::Comma))
        t.dims.push_back(expr());
    }
    expect(Tok::RBracket, "to close the shape");
    return t;
  }

  // item := 'model' IDENT | 'let' IDENT '=' expr | 'input' IDENT ':' type
  //       | 'target' IDENT ':' type | layer | 'graph' block | 'train' trainblock
  DeclPtr item() {
    SrcLoc loc = peek().loc;
    switch (peek().kind) {
    case Tok::KwModel: {
      take();
      auto d = std::make_unique<Decl>(DeclKind::Model, loc);
      const Token &id = expect(Tok::Ident, "after 'model' (the model's name)");
      d->ident = id.text;
      d->identLoc = id.loc;
      return d;
    }
    case Tok::KwLet:
      return letDecl();
    case Tok::KwInput:
    case Tok::KwTarget: {
      bool input = take().kind == Tok::KwInput;
      auto d = std::make_unique<Decl>(input ? DeclKind::Input : DeclKind::Target, loc);
      const Token &id = expect(Tok::Ident, input ? "after 'input'" : "after 'target'");
      d->ident = id.text;
      d->identLoc = id.loc;
      expect(Tok::Colon, "before the type");
      d->type = type();
      return d;
    }
    case Tok::KwLayer:
      return layer(true);
    case Tok::KwGraph: {
      take();
      auto d = std::make_unique<Decl>(DeclKind::Graph, loc);
      if (!at(Tok::LBrace))
        diag_.error(peek().loc, "expected '{{' after graph, found {}", found());
      d->stmts = block();
      return d;
    }
    case Tok::KwTrain:
      return trainBlock();
    case Tok::KwParam:
    case Tok::KwBuffer:
    case Tok::KwForward:
      diag_.error(loc, "{} is only allowed inside a layer definition", tokName(peek().kind));
    default:
      diag_.error(loc, "expected a declaration (model, let, input, target, layer, graph or train), found {}", found());
    }
  }

  // let := 'let' IDENT '=' expr
  DeclPtr letDecl() {
    SrcLoc loc = take().loc;
    auto d = std::make_unique<Decl>(DeclKind::Let, loc);
    const Token &id = expect(Tok::Ident, "after 'let'");
    d->ident = id.text;
    d->identLoc = id.loc;
    expect(Tok::Assign, "after the name in 'let'");
    d->value = expr();
    return d;
  }

  // layer := 'layer' IDENT '(' paramlist? ')' '{' layeritem* '}'     (definition)
  //        | 'layer' name '=' expr                                   (instance)
  DeclPtr layer(bool topLevel) {
    SrcLoc loc = take().loc;
    if (at(Tok::Ident) && peek(1).kind == Tok::LParen) {
      if (!topLevel)
        diag_.error(loc, "layer definitions are only allowed at the top level");
      auto d = std::make_unique<Decl>(DeclKind::LayerDef, loc);
      const Token &id = take();
      d->ident = id.text;
      d->identLoc = id.loc;
      take(); // (
      // paramlist := IDENT ('=' expr)? (',' IDENT ('=' expr)?)*
      if (!at(Tok::RParen)) {
        do {
          const Token &p = expect(Tok::Ident, "in the layer's parameter list");
          LayerParam lp;
          lp.name = p.text;
          lp.loc = p.loc;
          if (accept(Tok::Assign))
            lp.defaultValue = expr();
          d->params.push_back(std::move(lp));
        } while (accept(Tok::Comma));
      }
      expect(Tok::RParen, "to close the layer's parameter list");
      d->body = layerBody();
      return d;
    }
    auto d = std::make_unique<Decl>(DeclKind::LayerInst, loc);
    d->name = name("after 'layer' (the layer's name)");
    if (at(Tok::LParen))
      diag_.error(peek().loc, "a layer definition's name cannot be interpolated");
    expect(Tok::Assign, "after the layer's name ('layer NAME = Constructor(...)')");
    d->value = expr();
    return d;
  }

  // '{' layeritem* '}'
  std::vector<DeclPtr> layerBody() {
    DepthGuard g(*this, peek().loc);
    expect(Tok::LBrace, "to open the layer's body");
    std::vector<DeclPtr> items;
    skipNewlines();
    while (!at(Tok::RBrace)) {
      if (at(Tok::Eof))
        diag_.error(peek().loc, "expected '}' to close the layer's body, found end of file");
      items.push_back(layerItem());
      endOfStatement("layer item");
    }
    take();
    return items;
  }

  // layeritem := 'let' IDENT '=' expr | 'param' name ':' type '=' expr
  //            | 'buffer' name ':' type '=' expr | 'layer' name '=' expr
  //            | 'for' IDENT 'in' expr '..' expr '{' layeritem* '}'
  //            | 'forward' '(' IDENT (',' IDENT)* ')' block
  DeclPtr layerItem() {
    SrcLoc loc = peek().loc;
    switch (peek().kind) {
    case Tok::KwLet:
      return letDecl();
    case Tok::KwParam:
    case Tok::KwBuffer: {
      bool param = take().kind == Tok::KwParam;
      auto d = std::make_unique<Decl>(param ? DeclKind::Param : DeclKind::Buffer, loc);
      d->name = name(param ? "after 'param'" : "after 'buffer'");
      expect(Tok::Colon, "before the type");
      d->type = type();
      expect(Tok::Assign, "before the initializer");
      d->value = expr();
      return d;
    }
    case Tok::KwLayer:
      return layer(false);
    case Tok::KwFor: {
      take();
      auto d = std::make_unique<Decl>(DeclKind::For, loc);
      const Token &id = expect(Tok::Ident, "after 'for'");
      d->ident = id.text;
      d->identLoc = id.loc;
      expectIn("after the loop variable");
      d->value = additive();
      expect(Tok::DotDot, "in the loop range 'lo .. hi'");
      d->hi = additive();
      d->body = layerBody();
      return d;
    }
    case Tok::KwForward: {
      take();
      auto d = std::make_unique<Decl>(DeclKind::Forward, loc);
      expect(Tok::LParen, "after 'forward'");
      if (!at(Tok::RParen)) {
        do {
          const Token &a = expect(Tok::Ident, "in forward's inputs");
          d->forwardArgs.push_back(a.text);
          d->forwardArgLocs.push_back(a.loc);
        } while (accept(Tok::Comma));
      }
      expect(Tok::RParen, "to close forward's inputs");
      d->stmts = block();
      return d;
    }
    case Tok::KwModel: case Tok::KwInput: case Tok::KwTarget: case Tok::KwGraph: case Tok::KwTrain:
      diag_.error(loc, "{} is not allowed inside a layer definition", tokName(peek().kind));
    default:
      diag_.error(loc, "expected a layer item (let, param, buffer, layer, for or forward), found {}", found());
    }
  }

  // train := 'train' '{' (IDENT '=' expr)* '}'
  DeclPtr trainBlock() {
    SrcLoc loc = take().loc;
    auto d = std::make_unique<Decl>(DeclKind::Train, loc);
    if (!at(Tok::LBrace))
      diag_.error(peek().loc, "expected '{{' after train, found {}", found());
    take();
    skipNewlines();
    while (!at(Tok::RBrace)) {
      if (at(Tok::Eof))
        diag_.error(peek().loc, "expected '}' to close the train block, found end of file");
      TrainSetting s;
      const Token &k = expect(Tok::Ident, "(a train setting such as 'epochs')");
      s.key = k.text;
      s.loc = k.loc;
      expect(Tok::Assign, "after the setting's name");
      s.value = expr();
      d->settings.push_back(std::move(s));
      endOfStatement("train setting");
    }
    take();
    return d;
  }

  // block := '{' stmt* '}'
  std::vector<StmtPtr> block() {
    DepthGuard g(*this, peek().loc);
    expect(Tok::LBrace, "to open a block");
    std::vector<StmtPtr> out;
    skipNewlines();
    while (!at(Tok::RBrace)) {
      if (at(Tok::Eof))
        diag_.error(peek().loc, "expected '}' to close the block, found end of file");
      out.push_back(stmt());
      endOfStatement("statement");
    }
    take();
    return out;
  }

  // stmt := targets '=' expr | 'let' IDENT '=' expr | 'update' name ('[' expr ']')? '=' expr
  //       | 'return' expr (',' expr)* | 'output' expr | 'yield' expr (',' expr)*
  //       | 'if' expr block ('else' (block | if))? | 'for' IDENT 'in' expr '..' expr block
  StmtPtr stmt() {
    SrcLoc loc = peek().loc;
    switch (peek().kind) {
    case Tok::KwLet: {
      take();
      auto s = std::make_unique<Stmt>(StmtKind::Assign, loc);
      const Token &id = expect(Tok::Ident, "after 'let'");
      s->targets.push_back(id.text);
      s->targetLocs.push_back(id.loc);
      expect(Tok::Assign, "after the name in 'let'");
      s->value = expr();
      return s;
    }
    case Tok::KwUpdate: {
      take();
      auto s = std::make_unique<Stmt>(StmtKind::Update, loc);
      s->name = name("after 'update' (a buffer)");
      if (accept(Tok::LBracket)) { // update name[row] = value
        s->row = expr();
        expect(Tok::RBracket, "to close the updated row's index");
      }
      expect(Tok::Assign, "after the buffer's name");
      s->value = expr();
      return s;
    }
    case Tok::KwReturn:
    case Tok::KwYield: {
      bool ret = take().kind == Tok::KwReturn;
      auto s = std::make_unique<Stmt>(ret ? StmtKind::Return : StmtKind::Yield, loc);
      s->values.push_back(expr());
      while (accept(Tok::Comma))
        s->values.push_back(expr());
      return s;
    }
    case Tok::KwOutput: {
      take();
      auto s = std::make_unique<Stmt>(StmtKind::Output, loc);
      s->value = expr();
      return s;
    }
    case Tok::KwIf:
      return ifStmt();
    case Tok::KwFor: {
      take();
      auto s = std::make_unique<Stmt>(StmtKind::For, loc);
      const Token &id = expect(Tok::Ident, "after 'for'");
      s->var = id.text;
      s->varLoc = id.loc;
      expectIn("after the loop variable");
      s->value = additive();
      expect(Tok::DotDot, "in the loop range 'lo .. hi'");
      s->hi = additive();
      s->body = block();
      return s;
    }
    case Tok::Ident: {
      // targets := IDENT (',' IDENT)*
      auto s = std::make_unique<Stmt>(StmtKind::Assign, loc);
      size_t save = pos_;
      s->targets.push_back(peek().text);
      s->targetLocs.push_back(take().loc);
      while (accept(Tok::Comma)) {
        const Token &id = expect(Tok::Ident, "in the list of names to assign");
        s->targets.push_back(id.text);
        s->targetLocs.push_back(id.loc);
      }
      if (!at(Tok::Assign)) {
        pos_ = save;
        diag_.error(peek().loc, "expected a statement such as 'name = expression', found an expression");
      }
      take();
      s->value = expr();
      return s;
    }
    case Tok::KwParam: case Tok::KwBuffer: case Tok::KwLayer:
      diag_.error(loc, "{} declarations belong in a layer's body, outside forward", tokName(peek().kind));
    default:
      diag_.error(loc, "expected a statement, found {}", found());
    }
  }

  // if := 'if' expr block ('else' (block | if))?
  StmtPtr ifStmt() {
    DepthGuard g(*this, peek().loc);
    SrcLoc loc = take().loc;
    auto s = std::make_unique<Stmt>(StmtKind::If, loc);
    s->value = expr();
    if (!at(Tok::LBrace))
      diag_.error(peek().loc, "expected '{{' after the condition of 'if', found {}", found());
    s->body = block();
    size_t save = pos_;
    skipNewlines();
    if (accept(Tok::KwElse)) {
      if (at(Tok::KwIf))
        s->elseBody.push_back(ifStmt());
      else
        s->elseBody = block();
    } else {
      pos_ = save;
    }
    return s;
  }

  // expr := ternary      ternary := or ('?' expr ':' expr)?
  ExprPtr expr() {
    DepthGuard g(*this, peek().loc);
    ExprPtr c = logicalOr();
    if (!at(Tok::Question))
      return c;
    SrcLoc loc = take().loc;
    auto e = std::make_unique<Expr>(ExprKind::Ternary, loc);
    e->operands.push_back(std::move(c));
    e->operands.push_back(expr());
    expect(Tok::Colon, "in 'condition ? a : b'");
    e->operands.push_back(expr());
    return e;
  }

  ExprPtr binary(ExprPtr l, const Token &op, ExprPtr r) {
    auto e = std::make_unique<Expr>(ExprKind::Binary, op.loc);
    e->op = op.kind == Tok::AndAnd ? "&&" : op.kind == Tok::OrOr ? "||" : tokName(op.kind).substr(1, tokName(op.kind).size() - 2);
    e->operands.push_back(std::move(l));
    e->operands.push_back(std::move(r));
    return e;
  }

  // or := and ('||' and)*
  ExprPtr logicalOr() {
    ExprPtr l = logicalAnd();
    while (at(Tok::OrOr)) {
      const Token &op = take();
      l = binary(std::move(l), op, logicalAnd());
    }
    return l;
  }

  // and := cmp ('&&' cmp)*
  ExprPtr logicalAnd() {
    ExprPtr l = comparison();
    while (at(Tok::AndAnd)) {
      const Token &op = take();
      l = binary(std::move(l), op, comparison());
    }
    return l;
  }

  // cmp := range (('=='|'!='|'<'|'<='|'>'|'>=') range)?
  ExprPtr comparison() {
    ExprPtr l = range();
    switch (peek().kind) {
    case Tok::Eq: case Tok::Ne: case Tok::Lt: case Tok::Le: case Tok::Gt: case Tok::Ge: {
      const Token &op = take();
      return binary(std::move(l), op, range());
    }
    default:
      return l;
    }
  }

  // range := add ('..' add)?
  ExprPtr range() {
    ExprPtr l = additive();
    if (!at(Tok::DotDot))
      return l;
    SrcLoc loc = take().loc;
    auto e = std::make_unique<Expr>(ExprKind::Range, loc);
    e->operands.push_back(std::move(l));
    e->operands.push_back(additive());
    return e;
  }

  // add := mul (('+'|'-') mul)*
  ExprPtr additive() {
    ExprPtr l = multiplicative();
    while (at(Tok::Plus) || at(Tok::Minus)) {
      const Token &op = take();
      l = binary(std::move(l), op, multiplicative());
    }
    return l;
  }

  // mul := unary (('*'|'/'|'%'|'@') unary)*
  ExprPtr multiplicative() {
    ExprPtr l = unary();
    while (at(Tok::Star) || at(Tok::Slash) || at(Tok::Percent) || at(Tok::At)) {
      const Token &op = take();
      l = binary(std::move(l), op, unary());
    }
    return l;
  }

  // unary := ('-' | '!') unary | postfix
  ExprPtr unary() {
    if (at(Tok::Minus) || at(Tok::Not)) {
      DepthGuard g(*this, peek().loc);
      const Token &op = take();
      auto e = std::make_unique<Expr>(ExprKind::Unary, op.loc);
      e->op = op.kind == Tok::Minus ? "-" : "!";
      e->operands.push_back(unary());
      return e;
    }
    return postfix();
  }

  // postfix := primary ( '(' args? ')' | '[' index (',' index)* ']' )*
  ExprPtr postfix() {
    ExprPtr e = primary();
    while (true) {
      if (at(Tok::LParen)) {
        SrcLoc loc = take().loc;
        auto call = std::make_unique<Expr>(ExprKind::Call, loc);
        call->operands.push_back(std::move(e));
        if (!at(Tok::RParen)) {
          // arg := ((IDENT | 'target') '=')? expr  ('target' as in windows(..., target = "y"))
          do {
            Arg a;
            a.loc = peek().loc;
            if ((at(Tok::Ident) || at(Tok::KwTarget)) && peek(1).kind == Tok::Assign) {
              a.keyword = take().text;
              take();
            }
            a.value = expr();
            call->args.push_back(std::move(a));
          } while (accept(Tok::Comma));
        }
        expect(Tok::RParen, "to close the argument list");
        e = std::move(call);
      } else if (at(Tok::LBracket)) {
        SrcLoc loc = take().loc;
        auto ix = std::make_unique<Expr>(ExprKind::Index, loc);
        ix->operands.push_back(std::move(e));
        do
          ix->indices.push_back(indexItem());
        while (accept(Tok::Comma));
        expect(Tok::RBracket, "to close the index");
        e = std::move(ix);
      } else {
        return e;
      }
    }
  }

  // index := expr | expr? ':' expr?
  IndexItem indexItem() {
    IndexItem it;
    it.loc = peek().loc;
    if (!at(Tok::Colon))
      it.index = expr();
    if (!accept(Tok::Colon))
      return it;
    it.isSlice = true;
    it.lo = std::move(it.index);
    if (!at(Tok::Comma) && !at(Tok::RBracket))
      it.hi = expr();
    return it;
  }

  // primary := NUMBER | STRING | 'true' | 'false' | 'training' | name | '(' expr ')'
  //          | '[' (expr (',' expr)*)? ']' | scan
  ExprPtr primary() {
    const Token &t = peek();
    SrcLoc loc = t.loc;
    switch (t.kind) {
    case Tok::Int: {
      auto e = std::make_unique<Expr>(ExprKind::Int, loc);
      e->intValue = take().intValue;
      return e;
    }
    case Tok::Float: {
      auto e = std::make_unique<Expr>(ExprKind::Float, loc);
      e->floatValue = take().floatValue;
      return e;
    }
    case Tok::String: {
      auto e = std::make_unique<Expr>(ExprKind::String, loc);
      e->str = take().text;
      return e;
    }
    case Tok::KwTrue:
    case Tok::KwFalse: {
      auto e = std::make_unique<Expr>(ExprKind::Bool, loc);
      e->boolValue = take().kind == Tok::KwTrue;
      return e;
    }
    case Tok::KwTraining:
      take();
      return std::make_unique<Expr>(ExprKind::Training, loc);
    case Tok::Ident: {
      auto e = std::make_unique<Expr>(ExprKind::NameRef, loc);
      e->name = name("");
      return e;
    }
    case Tok::LParen: {
      take();
      ExprPtr e = expr();
      expect(Tok::RParen, "to close '('");
      return e;
    }
    case Tok::LBracket: {
      take();
      auto e = std::make_unique<Expr>(ExprKind::List, loc);
      if (!at(Tok::RBracket)) {
        e->operands.push_back(expr());
        while (accept(Tok::Comma))
          e->operands.push_back(expr());
      }
      expect(Tok::RBracket, "to close the list");
      return e;
    }
    case Tok::KwScan:
      return scan();
    default:
      diag_.error(loc, "expected an expression, found {}", found());
    }
  }

  // scan := 'scan' 'reverse'? IDENT 'in' expr (',' IDENT 'in' expr)* ('along' expr)?
  //         ('index' IDENT)? ('carry' '(' IDENT '=' expr (',' IDENT '=' expr)* ')')? block
  // ('index' is a keyword only there.)
  ExprPtr scan() {
    SrcLoc loc = take().loc;
    auto e = std::make_unique<Expr>(ExprKind::Scan, loc);
    e->reverse = accept(Tok::KwReverse);
    do {
      ScanSeq s;
      const Token &id = expect(Tok::Ident, "(the per-step name) in 'scan NAME in SEQUENCE'");
      s.var = id.text;
      s.loc = id.loc;
      expectIn("after the scan's per-step name");
      s.seq = additive();
      e->seqs.push_back(std::move(s));
    } while (accept(Tok::Comma));
    if (accept(Tok::KwAlong))
      e->axis = additive();
    if (at(Tok::Ident) && peek().text == "index") {
      take();
      const Token &id = expect(Tok::Ident, "after 'index' (the name of the step's index)");
      e->indexVar = id.text;
      e->indexLoc = id.loc;
    }
    if (accept(Tok::KwCarry)) {
      expect(Tok::LParen, "after 'carry'");
      do {
        ScanCarry c;
        const Token &id = expect(Tok::Ident, "in the carry list");
        c.var = id.text;
        c.loc = id.loc;
        expect(Tok::Assign, "after a carried name (its initial value)");
        c.init = expr();
        e->carries.push_back(std::move(c));
      } while (accept(Tok::Comma));
      expect(Tok::RParen, "to close the carry list");
    }
    if (!at(Tok::LBrace))
      diag_.error(peek().loc, "expected '{{' to open the scan's body, found {}", found());
    e->body = block();
    return e;
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  Diagnostics &diag_;
};

} // namespace

std::unique_ptr<ModuleAST> parseModule(uint32_t fileId, const SourceManager &sm, Diagnostics &diag) {
  Parser p(lex(fileId, sm, diag), diag);
  return p.file(fileId);
}

} // namespace gradc
