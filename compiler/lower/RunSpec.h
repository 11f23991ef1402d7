// RunSpec.h: the runtime's description of a compiled model (rt::ModelSpec) from the IR.
#pragma once

#include "Model.h"
#include "ir/IR.h"

namespace gradc {

/// Inputs, targets, outputs, state (params, buffers, optimizer state) and train block of
/// the module, as the training driver sees them.
rt::ModelSpec makeModelSpec(const Module &m);

} // namespace gradc
