// Kernel.h: the kernel IR below the loop level: per graph, a tree of loops, scalar register
// definitions, loads, stores, accumulations, copies, GEMM and all-reduce calls over named buffers, with
// every lowering decision made (Lower.cpp); each code generator only prints or builds it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ir/IR.h"
#include "lower/LoopLevel.h"
#include "support/Diagnostics.h"

namespace gradc::kernel {

/// A named buffer a kernel reads or writes.
struct Buffer {
  enum Kind { Arena, State } kind = Arena;
  std::string name;  ///< A valid identifier, unique in its function, from the model value's name.
  int64_t offset = 0; ///< Arena: element offset; State: index in the model's state (spec order).
  std::string value; ///< The model value's (or state tensor's) name, as the graph prints it.
  TensorType type;   ///< The type of the value it holds (numel, dtype, shape).
  std::string where; ///< "file:line" of the model value, or empty.
};

/// An affine element index: constant + Σ var·stride (loop variables and the scan's step `t`).
struct Affine {
  int64_t constant = 0;
  std::vector<std::pair<int, int64_t>> terms; ///< (variable, stride), strides never 0.
  /// This index plus `k` times `other`.
  Affine plus(const Affine &other, int64_t k = 1) const;
};

/// An element address (or, as a base pointer, the address of element `index`): a buffer and
/// an index into it.
struct Ref {
  int buffer = -1;
  Affine index;
};

/// An operand of a scalar expression: a register, a load, a literal constant, or a dropout
/// mask element recomputed where it is read: with p = `value`, stream = `reg` and the
/// element's index `ref.index` (ref.buffer unused), 0 when rt::philox24(batch random key,
/// stream, index) < rt::dropoutThreshold(p), else 1/(1-p) (runtime/Philox.h).
struct Operand {
  enum Kind { Reg, Load, Const, Random } kind = Load;
  int reg = -1;
  Ref ref;
  double value = 0;
};

/// The arguments of one GEMM call, C = op(A)·op(B), all resolved.
struct GemmCall {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0, lda = 0, ldb = 0, ldc = 0;
  Ref a, b, c;
  int64_t slot = -1; ///< gemmInvariantB slot (B packed once per scan), or -1 for plain gemm.
};

/// One statement of a kernel.
struct Stmt {
  enum Kind {
    Comment,    ///< text: describes the statements after it.
    Loop,       ///< for var < extent: body; independent: iterations touch disjoint elements.
    Scan,       ///< for step < extent, t = reverse ? extent-1-step : step (var): body.
    Let,        ///< reg = scalar(op, dtype, args).
    Store,      ///< dst = value.
    Accum,      ///< dst = dst (+ | max | /) value, op Add, Maximum or Div.
    Fill,       ///< dst[0..count) = value.value.
    Copy,       ///< dst[0..count) = src[0..count).
    Gemm,       ///< gemm.
    GemmReset,  ///< Resets gemmInvariantB slots [index, index+count).
    Input,      ///< dst[0..count) = batch input `index` (float, or int32 when integer).
    StateInt,   ///< dst[0..count) = integer state `index`.
    Hyper,      ///< dst[0] = the learning rate.
    Loss,       ///< the loss = src[0].
    Output,     ///< output `index`[0..count) = src.
    Update,     ///< state `index` = src (applied after the step).
    Grad,       ///< gradient of parameter `index` (param order) = src[0..count).
    OneHot,     ///< dst[k·classes + label k] = 1, labels src[0..count).
    RowLoad,    ///< dst[0..count) = src[r·count ..), r = value (an integer) clamped into [0, extent).
    RowStore,   ///< dst[r·count ..) = src[0..count), r = value clamped into [0, extent).
    Gather,     ///< dst[k·classes + j] = src[i·classes + j] for i = indices src2[k], k < count, j < classes;
                ///< zeros when i is outside [0, rows).
    ScatterAdd, ///< dst[rows·classes] = 0, then for k < count in order, i = indices src2[k]: unless i is
                ///< `padding` or outside [0, rows), dst[i·classes + j] += src[k·classes + j].
    LossKernel, ///< dst[0] = op(src, src2) over count elements (mse, bce_with_logits), or
                ///< cross_entropy of src [count, classes] against labels src2.
    AllReduce,  ///< dst[0..count) = its sum over the MPI ranks, in place (runtime/Mpi.h).
    AllReduceStart, ///< Starts AllReduce of dst[0..count) in slot `index` without waiting; nothing touches dst until
                    ///< the AllReduceWait of that slot.
    AllReduceWait,  ///< Waits for the all-reduce of slot `index`.
    AllReduceProgress, ///< Lets the all-reduces in flight advance (MPI progresses only inside its calls).
  } kind = Comment;
  std::string text;
  int var = -1;
  int64_t extent = 0;
  bool independent = false, reverse = false, integer = false;
  std::vector<Stmt> body;
  Op op = Op::Add;
  DType dtype = DType::F32;
  std::vector<Operand> args;
  int reg = -1;
  Ref dst, src, src2;
  Operand value;
  int64_t count = 0, index = 0, classes = 0;
  int64_t rows = 0, padding = -1; ///< Gather and ScatterAdd: the table's rows, the padding row.
  GemmCall gemm;
};

/// One graph's kernel: a function of the arena, the state, the batch and the sinks.
struct Function {
  std::string name;                ///< "train", "eval", "infer" or "step".
  std::vector<Buffer> buffers;     ///< In order of first use.
  std::vector<std::string> vars;   ///< Loop and step variable names, by id.
  std::vector<std::string> regs;   ///< Register names, by id (unique in the function).
  int64_t randomKeySlot = 0;       ///< Index of the random key's pointer in the batch pointers.
  std::vector<Stmt> body;
};

/// The kernels of a module's graphs: train, eval, infer, and --generate's step (when the
/// module has a step graph; hasStep).
struct Program {
  Function train, eval, infer, step;
  bool hasStep = false;
  int64_t arenaSize = 0;
};

/// Lowers the loop-level plan of `m` to kernels. `canFuse` as for LoopLevel.
Program lower(const Module &m, const SourceManager &sm, const LowerOptions &opts, std::function<bool(const Node &)> canFuse = {});

} // namespace gradc::kernel
