// Autodiff.h: reverse-mode differentiation of the training graph, through scans, and the
// optimizer update that turns it into one training step.
#pragma once

#include "support/Diagnostics.h"
#include "ir/IR.h"

namespace gradc {

/// Appends to `m.trainGraph` the backward pass: the gradient of the loss with respect to
/// every parameter, as `grad` sinks. Scans are differentiated as reverse scans that read
/// what the forward scan saved per step. An op with no gradient rule is a diagnostic.
/// Expects scan bodies free of loop-invariant work (the `licm` pass, which the pipeline
/// runs before it): whatever a body computes counts as per-step and is saved per step.
/// The `autodiff` pass (transforms/Passes.h's registry).
void differentiate(Module &m, Diagnostics &diag);

/// Appends gradient clipping and the optimizer's update (`update` sinks for every
/// parameter and optimizer state), following PyTorch's update rules exactly. The
/// `optimizer` pass.
void addOptimizer(Module &m);

} // namespace gradc
