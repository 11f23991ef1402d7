// IR.h: the graph IR: SSA values with static shapes, nodes described by Ops.def, graphs
// (a scan's body is a nested graph) and the module that holds a model's declarations.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "support/Diagnostics.h"

namespace gradc {

/// Element types.
enum class DType : uint8_t { F32, I32, I64 };
/// "f32", "i32", "i64".
const char *dtypeName(DType t);
std::optional<DType> dtypeByName(std::string_view s);

/// A static tensor type: dtype and shape (rank 0 is a scalar).
struct TensorType {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;

  int rank() const { return static_cast<int>(shape.size()); }
  int64_t numel() const;
  bool operator==(const TensorType &o) const { return dtype == o.dtype && shape == o.shape; }
  bool operator!=(const TensorType &o) const { return !(*this == o); }
  /// "f32[32,64]".
  std::string str() const;
};

/// Trait bits of operations (see Ops.def).
enum OpTrait : uint32_t {
  TR_NONE = 0,
  TR_SOURCE = 1u << 0,      ///< No operands; result type given at construction.
  TR_SINK = 1u << 1,        ///< No results; top-level only.
  TR_ELEMENTWISE = 1u << 2, ///< Result element i depends on operand elements i (after broadcast).
  TR_UNARY = 1u << 3,
  TR_BINARY = 1u << 4,
  TR_REDUCTION = 1u << 5,   ///< Reduces `axes`.
  TR_SHAPE = 1u << 6,       ///< Moves data, computes nothing.
  TR_LOSS = 1u << 7,        ///< A loss: scalar result.
  TR_REGION = 1u << 8,      ///< Has a body graph.
  TR_MATMUL = 1u << 9,      ///< Matrix multiply.
  TR_FLOAT = 1u << 10,      ///< Float operands only.
  TR_INDEXED = 1u << 11,    ///< Each result element is one operand element at an affine index.
  TR_BUILTIN = 1u << 12,    ///< Callable by its name in a model file: `name(x)` or `name(x, y)`.
  TR_RANDOM = 1u << 13,     ///< A source drawn from the step's random key: never stored, every
                            ///< reader (elementwise only) recomputes the element it reads.
  TR_COLLECTIVE = 1u << 14, ///< Communicates across MPI ranks; the lowering may leave it in flight
                            ///< until its first reader (its readers stay where they are).
};

/// The operations, from Ops.def.
enum class Op : uint16_t {
#define OP(ID, NAME, NOPS, NRES, TRAITS, ...) ID,
#include "ir/Ops.def"
#undef OP
};

/// How many operations Ops.def defines.
constexpr size_t kNumOps = 0
#define OP(ID, NAME, NOPS, NRES, TRAITS, ...) +1
#include "ir/Ops.def"
#undef OP
    ;

/// Static description of an operation.
struct OpInfo {
  const char *name;
  int numOperands; ///< -1: variadic.
  int numResults;  ///< -1: variadic.
  uint32_t traits;
};

const OpInfo &opInfo(Op op);
inline bool hasTrait(Op op, OpTrait t) { return (opInfo(op).traits & t) != 0; }
/// The op named `name` in Ops.def.
std::optional<Op> opByName(std::string_view name);

/// An attribute value: integer, float, string or list of integers.
using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>>;

struct Node;
struct Graph;

/// An SSA value: a node's result or a graph's argument.
struct Value {
  unsigned id = 0;       ///< Unique within the module; stable numbering.
  TensorType type;
  Node *def = nullptr;   ///< Defining node; null for a graph argument.
  unsigned index = 0;    ///< Result index in def, or argument index in owner.
  Graph *owner = nullptr;///< The graph the value lives in.
  std::string name;      ///< Name hint for printing (may be empty).
};

/// One operation instance.
struct Node {
  Op op;
  std::vector<Value *> operands;
  std::vector<Value *> results;
  std::map<std::string, AttrValue> attrs; ///< Sorted, so printing is stable.
  SrcLoc loc;                             ///< The model line it comes from.
  std::unique_ptr<Graph> body;            ///< Scan only.
  Graph *parent = nullptr;

  bool has(const std::string &k) const { return attrs.count(k) != 0; }
  int64_t getInt(const std::string &k) const;
  double getFloat(const std::string &k) const;
  const std::string &getStr(const std::string &k) const;
  const std::vector<int64_t> &getInts(const std::string &k) const;
  Value *result(unsigned i = 0) const { return results.at(i); }
};

/// A list of nodes in program order, with arguments and yields (for a scan body).
struct Graph {
  std::string name;
  std::vector<Value *> args;
  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<Value *> yields;
  Node *parentNode = nullptr; ///< The scan that owns this body, or null.
};

/// How a parameter or buffer is initialised (PyTorch's defaults for the standard layers).
struct Init {
  enum Kind { Zeros, Ones, Full, Uniform, Normal } kind = Zeros;
  double a = 0, b = 0; ///< Full: a; Uniform: [a, b); Normal: mean a, std b.
  int64_t zeroRow = -1; ///< A row (index on axis 0) set to zero after the draw (zero_row = N), -1 for none.
  std::string str() const;
};

/// A fed tensor (input or target).
struct TensorDecl {
  std::string name;
  TensorType type;
  SrcLoc loc;
};

/// A parameter or buffer, named `<layer>.<name>`.
struct StateDecl {
  std::string name;
  TensorType type;
  Init init;
  SrcLoc loc;
};

/// The train block, checked and with defaults filled in.
struct TrainConfig {
  struct Optimizer {
    std::string kind = "adam"; ///< "sgd", "adam" or "adamw" (decoupled weight decay).
    double lr = 1e-3, momentum = 0, weightDecay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    bool nesterov = false;
  } optimizer;
  int64_t epochs = 1;
  int64_t seed = 0;
  struct Data {
    std::string kind; ///< "", "windows", "idx", "tensors" or "text".
    std::string path, labels, column = "value", scale = "minmax";
    /// windows(columns = [...], target = NAME): the input columns and the target column
    /// (both empty for the single-column form, which reads `column` for both).
    std::vector<std::string> columns;
    std::string target;
    int64_t length = 0, horizon = 1;
    double split = 0.8;
  } data;
  Data validation; ///< A held-out validation source (kind "" if none).
  std::optional<double> clipGradValue, clipGradNorm;
  struct EarlyStopping {
    int64_t patience = 0;
    double delta = 0;
  };
  std::optional<EarlyStopping> earlyStopping;
  int64_t validateEvery = 0; ///< 0: once per epoch.
  /// `precision = "f32"` (the default) or `"bf16"`: matrix-multiply operands rounded to bf16,
  /// accumulated in fp32 (everything else stays fp32; docs/language.md, Train block).
  std::string precision = "f32";
  /// A learning-rate schedule (`schedule = step(...)` etc.; docs/language.md, Train block).
  struct Schedule {
    std::string kind;                          ///< "" (none), "step", "cosine", "onecycle", "plateau".
    int64_t stepSize = 0;                      ///< step: epochs between decays.
    double gamma = 0.1;                        ///< step: the decay factor.
    int64_t tMax = 0;                          ///< cosine: epochs of the half cosine.
    double etaMin = 0;                         ///< cosine: the smallest learning rate.
    double maxLr = 0;                          ///< onecycle: the peak learning rate.
    int64_t totalSteps = 0;                    ///< onecycle: training steps of the cycle.
    double pctStart = 0.3;                     ///< onecycle: share of the steps spent warming up.
    double factor = 0.1;                       ///< plateau: the reduction factor.
    int64_t patience = 10;                     ///< plateau: validations without improvement tolerated.
  } schedule;
  SrcLoc loc;
};

/// A compiled model: its declarations and its graphs.
class Module {
public:
  std::string name;
  std::string path; ///< The model file.
  std::vector<TensorDecl> inputs, targets;
  std::vector<StateDecl> params, buffers;
  std::vector<StateDecl> optState; ///< Optimizer state (moments, step), saved with checkpoints.
  /// "file:line" of each top-level `layer` declaration and of the loss (for run-time
  /// messages about non-finite values).
  std::map<std::string, std::string> layerWhere;
  std::string lossWhere;
  /// Integer inputs read as table rows (gather, an Embedding's indices): input name -> the
  /// table's row count (the smallest, if several) and the instance path of the layer reading it.
  std::map<std::string, std::pair<int64_t, std::string>> indexBounds;
  TrainConfig train;
  /// The number of MPI ranks the module is compiled for (gradc --ranks): each computes
  /// inputs' dim 0 (the local batch, the global batch / ranks) of every step.
  int64_t ranks = 1;
  std::unique_ptr<Graph> trainGraph; ///< The training step: loss, outputs, updates (and grads).
  std::unique_ptr<Graph> evalGraph;  ///< Inference mode with the loss (validation).
  std::unique_ptr<Graph> inferGraph; ///< Inference: outputs only.
  /// --generate's one-step inference (elaborate/StepGraph.cpp): the inference graph of one
  /// sample and one time step, whose recurrences start from the carries given as inputs and
  /// return their final carries as outputs, so a caller can run it step after step. Null when
  /// the model has none; stepWhy then says why.
  std::unique_ptr<Graph> stepGraph;
  /// The step graph's inputs, in the order they are fed: the model's input, then each carry.
  std::vector<TensorDecl> stepInputs;
  std::string stepWhy; ///< Why there is no step graph ("" when there is one).

  /// Makes a new value owned by the module.
  Value *newValue(TensorType t, Graph *owner, std::string name = {});
  /// All graphs at top level, in a fixed order (train, eval, infer, step; null ones skipped).
  std::vector<Graph *> graphs() const;

private:
  std::vector<std::unique_ptr<Value>> values_;
  unsigned nextId_ = 0;
};

/// Infers the result types of `node` from its operand types, attributes and body.
/// Returns an empty string on success, otherwise the message (e.g. "matmul: inner
/// dimensions differ: f32[32,64] @ f32[65,256]").
std::string inferTypes(Op op, const std::vector<TensorType> &operands,
                       const std::map<std::string, AttrValue> &attrs, const Graph *body,
                       std::vector<TensorType> &results);

/// The NumPy broadcast of two shapes, or nullopt when they do not broadcast.
std::optional<std::vector<int64_t>> broadcastShapes(const std::vector<int64_t> &a,
                                                    const std::vector<int64_t> &b);

/// Builds nodes into a graph, checking types as it goes.
class Builder {
public:
  Builder(Module &m, Graph *g) : m_(m), g_(g) {}
  Graph *graph() const { return g_; }
  void setGraph(Graph *g) { g_ = g; }
  Module &module() const { return m_; }

  /// Creates a node whose result types are inferred; on a type error, returns null and
  /// sets `error`.
  Node *create(Op op, std::vector<Value *> operands, std::map<std::string, AttrValue> attrs,
               SrcLoc loc, std::string &error, std::unique_ptr<Graph> body = nullptr);
  /// Creates a source node (input, param, buffer, const) of the given type.
  Value *source(Op op, TensorType type, std::map<std::string, AttrValue> attrs, SrcLoc loc,
                std::string nameHint = {});
  /// Creates a sink node (loss, output, update).
  void sink(Op op, Value *v, std::map<std::string, AttrValue> attrs, SrcLoc loc);
  /// Adds a graph argument.
  Value *arg(TensorType type, std::string nameHint = {});

private:
  Module &m_;
  Graph *g_;
};

/// Checks the structural invariants of every graph of the module; returns the problems
/// found (empty when it is well formed).
std::vector<std::string> verifyModule(const Module &m);

/// Prints the module as stable text (`--emit=graph`).
void printModule(const Module &m, const SourceManager &sm, std::ostream &os);
/// Prints one graph (used by --print-after).
void printGraph(const Graph &g, const SourceManager &sm, std::ostream &os);
/// Prints the graphs in Graphviz dot (`--emit=dot`).
void printDot(const Module &m, std::ostream &os);

} // namespace gradc
