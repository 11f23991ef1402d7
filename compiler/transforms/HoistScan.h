// HoistScan.h: passes that move work not tied to the recurrence out of scan bodies.
#pragma once

#include "ir/IR.h"

namespace gradc {

/// `hoist-projections` (before autodiff): a body's `xt @ W`, xt a step of a sequence S (not
/// sliced along its last axis) and W a captured matrix, becomes a new sequence `S @ W`
/// computed outside in one matmul over every step (an LSTM's input projection); a
/// sequence the body no longer reads is dropped. Autodiff then derives the projection's
/// backward outside the reverse scan too (one matmul for the weight's gradient).
void hoistProjections(Module &m);

/// `hoist-accumulations` (after autodiff): a carry that only accumulates `c + U^T @ V` or
/// `c + sum(V)`, U and V per-step values, leaves the scan: U and V are stacked (a sequence
/// already, or a new stacked output) and one matmul or sum outside gives the total (a
/// weight or bias gradient of backpropagation through time).
void hoistAccumulations(Module &m);

} // namespace gradc

namespace gradc {

/// `sink-transposes` (late): a scan capture that is the transpose of a matrix and that the
/// body reads only as a matmul operand is replaced by the matrix itself, transposed inside
/// the body, where the transpose folds into the matmul (a transposed-operand flag). This
/// undoes licm's hoisting for transposes, which cost a pass over the matrix per step of
/// training outside the loop but nothing inside it.
void sinkTransposes(Module &m);

} // namespace gradc
