// Reductions.h: algebraic rewrites of reductions that let the loop level compute a
// normalization's statistics and its backward sums in fewer passes over the data.
#pragma once

#include "ir/IR.h"

namespace gradc {

/// `centered-sums`: a sum (or mean) over axes A whose operand is a linear combination of
/// terms, with coefficients constant along A, is split into one reduction per term, and a
/// term `x - mean(x, A)` (a centred value) contributes exactly zero. Applied only where a
/// term vanishes. In BatchNorm's backward this removes the reduction that needed the
/// first one's result: every remaining sum reads only the incoming gradient and saved
/// forward values, so they share one pass.
void cancelCenteredSums(Module &m);

/// `one-pass-variance`: `mean((x - mean(x, A))^2, A)` becomes
/// `max(mean(e^2, A) - mean(e, A)^2, 0)` with `e = x - s`, s the first element of x along A
/// (a shift that keeps the difference well conditioned in f32). Both means read x, as does
/// `mean(x, A)` itself, so the loop level computes the three in one pass.
void onePassVariance(Module &m);

} // namespace gradc

namespace gradc {

/// `pads-to-concat`: a sum of zero-padded tensors whose blocks tile the result along one
/// axis (the gradient of slicing a tensor into parts, like an LSTM's four gates) becomes
/// one concat of the blocks: each element is written once instead of zero-filled per
/// part and added up.
void padsToConcat(Module &m);

} // namespace gradc
