// AST.h: the syntax tree of a model file; every node carries its source location.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/Diagnostics.h"

namespace gradc {

struct Expr;
struct Stmt;
struct Decl;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using DeclPtr = std::unique_ptr<Decl>;

/// A possibly interpolated name: text[0] {holes[0]} text[1] {holes[1]} ... text[n].
/// A plain identifier has one text part and no holes. text.size() == holes.size() + 1.
struct Name {
  std::vector<std::string> text;
  std::vector<ExprPtr> holes;
  SrcLoc loc;
  bool isPlain() const { return holes.empty(); }
  /// The plain identifier (only when isPlain()).
  const std::string &plain() const { return text.front(); }
};

enum class ExprKind {
  Int,      ///< intValue
  Float,    ///< floatValue
  String,   ///< str
  Bool,     ///< boolValue
  Training, ///< the `training` keyword
  NameRef,  ///< name
  List,     ///< [a, b, ...]: operands
  Unary,    ///< op ("-" or "!"), operands[0]
  Binary,   ///< op ("+","-","*","/","%","@","==","!=","<","<=",">",">=","&&","||"), operands[0..1]
  Ternary,  ///< operands: cond, then, else
  Range,    ///< lo .. hi: operands[0..1]
  Call,     ///< callee(args): operands[0] is the callee, args the arguments
  Index,    ///< base[indices]: operands[0] is the base
  Scan,     ///< scan ...: see the scan fields
};

/// One call argument; `keyword` is empty for a positional one.
struct Arg {
  std::string keyword;
  SrcLoc loc;
  ExprPtr value;
};

/// One item inside `[...]` indexing: an index expression, or a slice lo:hi (either may be null).
struct IndexItem {
  bool isSlice = false;
  ExprPtr index;
  ExprPtr lo, hi;
  SrcLoc loc;
};

/// `var in seq` of a scan.
struct ScanSeq {
  std::string var;
  SrcLoc loc;
  ExprPtr seq;
};

/// `var = init` in a scan's carry list.
struct ScanCarry {
  std::string var;
  SrcLoc loc;
  ExprPtr init;
};

struct Expr {
  ExprKind kind;
  SrcLoc loc;
  int64_t intValue = 0;
  double floatValue = 0;
  bool boolValue = false;
  std::string str; ///< String literal contents.
  std::string op;  ///< Unary/Binary operator spelling.
  Name name;       ///< NameRef.
  std::vector<ExprPtr> operands;
  std::vector<Arg> args;           ///< Call.
  std::vector<IndexItem> indices;  ///< Index.
  // Scan.
  bool reverse = false;
  std::vector<ScanSeq> seqs;
  ExprPtr axis; ///< null: axis 0.
  std::string indexVar; ///< `index NAME`: the step's index (empty: none).
  SrcLoc indexLoc;
  std::vector<ScanCarry> carries;
  std::vector<StmtPtr> body;

  Expr(ExprKind k, SrcLoc l) : kind(k), loc(l) {}
};

enum class StmtKind {
  Assign, ///< targets = value  (also `let x = value` in a block)
  Update, ///< update name = value
  Return, ///< return values
  Output, ///< output value
  Yield,  ///< yield values
  If,     ///< if value { body } else { elseBody }
  For,    ///< for var in value .. hi { body }
};

struct Stmt {
  StmtKind kind;
  SrcLoc loc;
  std::vector<std::string> targets; ///< Assign.
  std::vector<SrcLoc> targetLocs;
  Name name;          ///< Update.
  ExprPtr row;        ///< Update of one row: `update name[row] = value` (null: the whole buffer).
  std::string var;    ///< For.
  SrcLoc varLoc;
  ExprPtr value;      ///< Assign/Update/Output value; If condition; For lower bound.
  ExprPtr hi;         ///< For upper bound (exclusive).
  std::vector<ExprPtr> values; ///< Return/Yield.
  std::vector<StmtPtr> body, elseBody;

  Stmt(StmtKind k, SrcLoc l) : kind(k), loc(l) {}
};

/// `f32[d0, d1]`.
struct TypeExpr {
  std::string dtype; ///< "f32", "i32" or "i64".
  SrcLoc loc;
  std::vector<ExprPtr> dims;
};

/// A layer definition's parameter `name = default`.
struct LayerParam {
  std::string name;
  SrcLoc loc;
  ExprPtr defaultValue; ///< May be null.
};

/// `key = value` in a train block.
struct TrainSetting {
  std::string key;
  SrcLoc loc;
  ExprPtr value;
};

enum class DeclKind {
  Model,     ///< model ident
  Let,       ///< let ident = value
  Input,     ///< input ident: type
  Target,    ///< target ident: type
  LayerDef,  ///< layer ident(params) { body }
  LayerInst, ///< layer name = value (a Call of the constructor)
  Param,     ///< param name: type = value (initializer)
  Buffer,    ///< buffer name: type = value
  For,       ///< for ident in value .. hi { body }
  Forward,   ///< forward(forwardArgs) { stmts }
  Graph,     ///< graph { stmts }
  Train,     ///< train { settings }
};

struct Decl {
  DeclKind kind;
  SrcLoc loc;
  std::string ident; ///< Model/Let/Input/Target/LayerDef/For name.
  SrcLoc identLoc;
  Name name;         ///< LayerInst/Param/Buffer name.
  ExprPtr value;
  ExprPtr hi;
  TypeExpr type;
  std::vector<LayerParam> params;
  std::vector<std::string> forwardArgs;
  std::vector<SrcLoc> forwardArgLocs;
  std::vector<DeclPtr> body;   ///< LayerDef items, For items.
  std::vector<StmtPtr> stmts;  ///< Forward and Graph bodies.
  std::vector<TrainSetting> settings;

  Decl(DeclKind k, SrcLoc l) : kind(k), loc(l) {}
};

/// A parsed source file (the model, or the prelude).
struct ModuleAST {
  uint32_t file = 0;
  std::vector<DeclPtr> decls;
};

} // namespace gradc
