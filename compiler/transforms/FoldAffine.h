// FoldAffine.h: folds state-only per-feature affine maps (inference BatchNorm, biases) into
// the weights of adjacent matrix multiplies in the inference graphs.
#pragma once

#include "ir/IR.h"

namespace gradc {

/// `fold-affine`, on @eval and @infer: `(x * a + c) @ M` becomes `x @ (a[:, None] * M) + c @ M`
/// and `(x @ M) * a + c` becomes `x @ (M * a[None, :]) + c` when a, c and M depend only on
/// parameters, buffers and constants (a chain of adds, subtractions, multiplies and
/// divisions by per-feature vectors, each value of it used once). The data pass of the map
/// disappears; the folded weights cost one pass over M per call.
void foldAffineIntoMatmul(Module &m);

} // namespace gradc
