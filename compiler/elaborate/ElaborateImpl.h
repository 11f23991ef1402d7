// ElaborateImpl.h: the elaborator's internal state, shared by Elaborate.cpp (declarations,
// statements, recurrences, the train block) and ElaborateExpr.cpp (expressions, built-ins).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "frontend/AST.h"
#include "elaborate/Elaborate.h"
#include "ir/IR.h"

namespace gradc {

struct LayerInstance;

/// A value during elaboration: a compile-time constant, a tensor, a layer instance, a
/// reference to a parameter or buffer, or a tuple of values.
struct Val {
  enum Kind { None, Int, Float, Bool, Str, List, StrList, Tensor, Layer, State, Tuple } kind = None;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;                ///< Str; State: the full parameter/buffer name.
  std::vector<int64_t> list;    ///< List.
  std::vector<std::string> strs; ///< StrList: a list of strings (windows(columns = [...])).
  Value *t = nullptr;           ///< Tensor.
  LayerInstance *layer = nullptr;
  bool isBuffer = false;        ///< State: buffer (true) or parameter.
  std::vector<Val> tuple;

  static Val ofInt(int64_t v) { Val x; x.kind = Int; x.i = v; return x; }
  static Val ofFloat(double v) { Val x; x.kind = Float; x.f = v; return x; }
  static Val ofBool(bool v) { Val x; x.kind = Bool; x.b = v; return x; }
  static Val ofStr(std::string v) { Val x; x.kind = Str; x.s = std::move(v); return x; }
  static Val ofList(std::vector<int64_t> v) { Val x; x.kind = List; x.list = std::move(v); return x; }
  static Val ofTensor(Value *v) { Val x; x.kind = Tensor; x.t = v; return x; }
  bool isNumber() const { return kind == Int || kind == Float; }
  double num() const { return kind == Int ? static_cast<double>(i) : f; }
};

/// What a Val is, for messages: "an integer", "f32[32,64]", "layer 'lstm'".
std::string describe(const Val &v);

/// A lexical scope: names to values, with a parent. A scan body is a boundary that
/// assignments may not cross (outer values must be carried instead).
struct Scope {
  Scope *parent = nullptr;
  bool scanBoundary = false;
  bool functionRoot = false; ///< A forward's or the graph's scope: assignments stop here.
  std::map<std::string, Val> names;

  Val *lookup(const std::string &n) {
    for (Scope *s = this; s; s = s->parent) {
      auto it = s->names.find(n);
      if (it != s->names.end())
        return &it->second;
    }
    return nullptr;
  }
};

/// An instantiated layer: its path ("lstm", "cell.bn_i"), definition and constant scope.
struct LayerInstance {
  std::string path;
  std::string defName;
  std::string ctorText; ///< The constructor call as written ("Dense(9, 1)"), for diagnostics.
  const Decl *def = nullptr;
  const Decl *forward = nullptr;
  Scope scope;
  SrcLoc loc;
};

/// The graph being built and, for a scan body, how it connects to the enclosing graph.
struct GraphCtx {
  Graph *g = nullptr;
  GraphCtx *parent = nullptr;
  std::map<std::string, Value *> bufferState;          ///< Current value of each buffer here.
  std::map<std::string, Value *> paramCache;           ///< Top level: param source nodes.
  std::vector<std::string> updated;                    ///< Buffers given a new value (top level).
  // Scan bodies only.
  std::vector<Value *> seqArgs, carryArgs, captureArgs;
  std::vector<Value *> seqOuter, carryInit, captureOuter;
  std::vector<std::string> carryBuffer;                ///< Per carry: buffer name, or "" for a user carry.
  std::unordered_map<const Value *, Value *> captured; ///< Outer value -> body argument.
};

class Elaborator {
public:
  Elaborator(const SourceManager &sm, Diagnostics &diag) : sm_(sm), diag_(diag) {}
  std::unique_ptr<Module> run(const std::vector<const ModuleAST *> &files);

  // --- Expressions (ElaborateExpr.cpp).
  Val eval(const Expr &e, Scope &scope);
  Val evalBinary(const Expr &e, Scope &scope);
  Val evalCall(const Expr &e, Scope &scope);
  Val evalIndex(const Expr &e, Scope &scope);
  /// A row index: an integer constant (as an i64[] constant) or an integer scalar tensor.
  Value *rowIndex(const Val &v, SrcLoc loc);
  /// `x[i]` with a run-time index i (an integer scalar tensor) on axis 0: x's row i (clamped),
  /// the other index items being whole-axis slices.
  Val dynamicRow(const Expr &e, Value *x, Value *i);
  /// `cur` with row i replaced by v (`update buf[i] = v`, `set_row(x, i, v)`); `what` names
  /// cur in messages.
  Value *setRow(Value *cur, Value *i, SrcLoc iloc, Value *v, SrcLoc vloc, const std::string &what);
  Val evalBuiltin(const std::string &name, const Expr &call, Scope &scope);
  /// A binary operation on two values (constants fold; tensors get a node).
  Val binary(const std::string &op, const Val &a, const Val &b, SrcLoc loc);
  /// Elementwise node over tensors (numbers become scalar constants of the tensor's dtype).
  Value *elementwise(Op op, const Val &a, const Val &b, SrcLoc loc);
  Value *unary(Op op, Value *x, SrcLoc loc);
  /// Creates a node, reporting a type error at `loc`.
  Node *make(Op op, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs, SrcLoc loc,
             std::unique_ptr<Graph> body = nullptr);
  Value *make1(Op op, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs, SrcLoc loc) {
    return make(op, std::move(operands), std::move(attrs), loc)->result(0);
  }
  Value *constant(double v, TensorType t, SrcLoc loc);
  /// Reports an error unless a graph is being built (tensors need one).
  void requireGraph(SrcLoc loc);
  /// The value as a tensor in the current graph (captures outer values; numbers become f32[]).
  Value *tensor(const Val &v, SrcLoc loc, const char *what);
  /// The value as a constant integer / number / bool / string.
  int64_t constInt(const Val &v, SrcLoc loc, const char *what);
  double constNum(const Val &v, SrcLoc loc, const char *what);
  bool constBool(const Val &v, SrcLoc loc, const char *what);
  std::vector<int64_t> constAxes(const Val &v, int rank, SrcLoc loc, const char *what);
  /// Resolves an interpolated name to its text.
  std::string resolveName(const Name &n, Scope &scope);
  /// Checks a shape from a type expression or a built-in; returns the tensor type.
  TensorType makeType(DType dt, std::vector<int64_t> dims, SrcLoc loc);
  TensorType evalType(const TypeExpr &t, Scope &scope);

  // --- Declarations, statements, scans (Elaborate.cpp).
  LayerInstance *instantiate(const std::string &path, const Expr &ctor, Scope &scope, SrcLoc declLoc);
  void layerItems(LayerInstance &inst, const std::vector<DeclPtr> &items);
  Val callLayer(LayerInstance &inst, const Expr &call, Scope &scope);
  /// Runs inst's forward on evaluated inputs (callLayer, and built-ins that are prelude layers).
  Val callForward(LayerInstance &inst, const std::vector<Val> &args, SrcLoc loc);
  /// An instance of prelude layer `defName` with constant arguments `args` (the rest defaulted),
  /// for a built-in function written as a layer without tensors (softmax: Softmax).
  LayerInstance *preludeInstance(const std::string &defName, std::map<std::string, Val> args, SrcLoc loc);
  /// Runs statements; returns true when a `return` ended the block (its values in *ret).
  bool stmts(const std::vector<StmtPtr> &ss, Scope &scope, Val *ret);
  void assign(const std::string &name, Val v, Scope &scope, SrcLoc loc);
  Val evalScan(const Expr &e, Scope &scope);
  Value *stateValue(const Val &ref, SrcLoc loc);
  Value *bufferValue(GraphCtx &ctx, const std::string &name);
  Value *capture(GraphCtx &ctx, Value *v, SrcLoc loc);
  /// Train, eval and infer build the module's three graphs; Step builds the inference graph of
  /// one sample and one time step (every input's axes 0 and 1 of size 1) into stepGraph.
  enum class Mode { Train, Eval, Infer, Step };
  void buildGraph(Mode mode);
  /// Builds --generate's step graph of a text model, or says in stepWhy why there is none
  /// (StepGraph.cpp). Never fails the compile.
  void buildStepGraph();
  void trainBlock(const Decl &d, Scope &scope);
  /// The train block's `schedule = step(...) | cosine(...) | onecycle(...) | plateau(...)`.
  void schedule(const Expr &e, Scope &scope);
  /// Checks that data source `source` can fill the model's `kind` ("input" or "target")
  /// `name` with dtype[N, rest...]; an error at `loc` otherwise.
  void checkFilled(SrcLoc loc, const char *source, const char *kind, const char *name, DType dtype,
                   const std::vector<int64_t> &rest);
  void countWork(SrcLoc loc);

  const SourceManager &sm_;
  Diagnostics &diag_;
  std::unique_ptr<Module> m_;
  std::map<std::string, const Decl *> layerDefs_;
  std::vector<std::unique_ptr<LayerInstance>> instances_;
  std::map<std::string, SrcLoc> stateNames_;
  Scope global_;
  const Decl *graphDecl_ = nullptr;
  bool training_ = true;
  int64_t ranks_ = 1; ///< MPI ranks compiled for (elaborate()'s `ranks`).
  int64_t randomStreams_ = 0;      ///< dropout() calls in the graph being built (each its own stream).
  GraphCtx *ctx_ = nullptr;        ///< The graph being built.
  std::string path_;               ///< Instance path of the forward being elaborated ("" at model level).
  enum class Where { Model, Forward } where_ = Where::Model;
  struct ScanFrame {
    std::vector<Val> yields;
    bool yielded = false;
  };
  std::vector<ScanFrame *> scans_; ///< Scan bodies being elaborated, innermost last.
  int depth_ = 0;                  ///< Layer instantiation / call depth.
  uint64_t work_ = 0;              ///< Statements elaborated, to bound compile-time loops.
  std::vector<int64_t> loopDepthVars_;
};

} // namespace gradc
