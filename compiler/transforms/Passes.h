// Passes.h: the pass registry that --print-after, --disable-pass and --list-passes name, and
// the declaration of every graph pass it registers (the pipeline's order is in
// driver/Pipeline.cpp).
#pragma once

#include <string>
#include <vector>

#include "support/Diagnostics.h"
#include "ir/IR.h"

namespace gradc {

/// One row of the registry: a module-to-module rewrite of the graph IR, or (run == nullptr)
/// a switch of the loop level or a backend that only --disable-pass names.
struct PassInfo {
  const char *name;
  const char *description;
  void (*run)(Module &m, Diagnostics &diag); ///< nullptr: a loop-level or backend switch.
  bool required; ///< Cannot be disabled (the training step needs it).
};

/// Every pass the compiler knows, graph passes first (in registry order, not pipeline order).
const std::vector<PassInfo> &allPasses();
/// The registry row called `name`, or nullptr.
const PassInfo *findPass(const std::string &name);

// --- The graph passes (registry rows in Passes.cpp; autodiff/Autodiff.h declares
// `autodiff` (differentiate) and `optimizer` (addOptimizer), which belong to that stage).

/// `fold`: folds elementwise operations whose operands are all constants into one constant.
void foldConstants(Module &m);
/// `cse`: merges identical nodes (same op, operands and attributes).
void eliminateCommonSubexpressions(Module &m);
/// `dce`: removes nodes whose results are never used (sinks and their inputs stay), and
/// scan captures and outputs that nothing uses.
void eliminateDeadCode(Module &m);

/// `licm` (Licm.cpp): moves loop-invariant nodes out of scan bodies; they become captures.
/// Autodiff needs scan bodies free of invariant work, so that only per-step values become
/// residuals: the pipeline runs it before `autodiff`, which does not run it itself.
void hoistLoopInvariants(Module &m);

/// `hoist-projections` (HoistScan.cpp, before autodiff): a body's `xt @ W`, xt a step of a
/// sequence S (not sliced along its last axis) and W a captured matrix, becomes a new
/// sequence `S @ W` computed outside in one matmul over every step (an LSTM's input
/// projection); a sequence the body no longer reads is dropped. Autodiff then derives the
/// projection's backward outside the reverse scan too (one matmul for the weight's gradient).
void hoistProjections(Module &m);

/// `hoist-accumulations` (HoistScan.cpp, after autodiff): a carry that only accumulates
/// `c + U^T @ V` or `c + sum(V)`, U and V per-step values, leaves the scan: U and V are
/// stacked (a sequence already, or a new stacked output) and one matmul or sum outside gives
/// the total (a weight or bias gradient of backpropagation through time).
void hoistAccumulations(Module &m);

/// `centered-sums` (Reductions.cpp): a sum (or mean) over axes A whose operand is a linear
/// combination of terms, with coefficients constant along A, is split into one reduction per
/// term, and a term `x - mean(x, A)` (a centred value) contributes exactly zero. Applied only
/// where a term vanishes. In BatchNorm's backward this removes the reduction that needed the
/// first one's result: every remaining sum reads only the incoming gradient and saved
/// forward values, so they share one pass.
void cancelCenteredSums(Module &m);

/// `one-pass-variance` (Reductions.cpp): `mean((x - mean(x, A))^2, A)` becomes
/// `max(mean(e^2, A) - mean(e, A)^2, 0)` with `e = x - s`, s the first element of x along A
/// (a shift that keeps the difference well conditioned in f32). Both means read x, as does
/// `mean(x, A)` itself, so the loop level computes the three in one pass.
void onePassVariance(Module &m);

/// `early-allreduce` (EarlyAllReduce.cpp, last): each top-level all-reduce of @train (a
/// gradient bucket of an MPI build), with the reshapes and concats assembling its operand,
/// moves up to just after its inputs are computed, so that the lowering can start it there and
/// wait for it only before its first reader: the sum over the ranks overlaps the rest of the
/// backward pass. Only node order changes.
void startAllReducesEarly(Module &m);

/// `pads-to-concat` (PadsToConcat.cpp): a sum of zero-padded tensors whose blocks tile the
/// result along one axis (the gradient of slicing a tensor into parts, like an LSTM's four
/// gates) becomes one concat of the blocks: each element is written once instead of
/// zero-filled per part and added up.
void padsToConcat(Module &m);

/// `fold-affine` (FoldAffine.cpp), on @eval and @infer: `(x * a + c) @ M` becomes
/// `x @ (a[:, None] * M) + c @ M` and `(x @ M) * a + c` becomes `x @ (M * a[None, :]) + c`
/// when a, c and M depend only on parameters, buffers and constants (a chain of adds,
/// subtractions, multiplies and divisions by per-feature vectors, each value of it used
/// once). The data pass of the map disappears; the folded weights cost one pass over M per call.
void foldAffineIntoMatmul(Module &m);

/// `sink-transposes` (SinkTransposes.cpp, late): a scan capture that is the transpose of a
/// matrix and that the body reads only as a matmul operand is replaced by the matrix itself,
/// transposed inside the body, where the transpose folds into the matmul (a
/// transposed-operand flag). This undoes licm's hoisting for transposes, which cost a pass
/// over the matrix per step of training outside the loop but nothing inside it.
void sinkTransposes(Module &m);

} // namespace gradc
