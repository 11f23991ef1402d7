// FiniteCheck.h: detection of NaN and Inf in a training run's loss, state and gradients, and the message that says where a non-finite value first appeared.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "Model.h"

namespace gradc::rt {

/// One non-finite element found in a tensor.
struct NonFiniteValue {
  std::string tensor; ///< "parameter 'head.weight'", "gradient of parameter 'head.weight'", "the loss".
  std::string name;   ///< The state tensor's name ("" for the loss).
  std::string where;  ///< StateSpec::where or ModelSpec::lossWhere ("" if unknown).
  int64_t element = 0;
  std::string index;  ///< "[3, 0]" (empty for a scalar).
  double value = 0;   ///< NaN, +Inf or -Inf.
  bool beforeStep = false; ///< Found in the state before the step (a damaged --load checkpoint).
};

/// The multi-index "[i, j, ...]" of flat element `k` of a tensor of `shape` ("" for a scalar).
std::string elementIndex(const std::vector<int64_t> &shape, int64_t k);

/// "nan", "inf" or "-inf".
std::string nonFiniteText(double v);

/// The first non-finite element of the float state tensors of `backend` whose kind is in
/// `kinds` (a bit mask of 1 << StateSpec::Kind), in ModelSpec::state order; none if all
/// are finite.
std::optional<NonFiniteValue> firstNonFiniteState(const ModelSpec &spec, Backend &backend, unsigned kinds);

/// The first non-finite element of the parameter gradients `grads` (one vector per Param of
/// `spec`, in state order, as lossAndGrads returns them).
std::optional<NonFiniteValue> firstNonFiniteGradient(const ModelSpec &spec,
                                                     const std::vector<std::vector<double>> &grads);

/// Where a non-finite value of a training step first appeared. Called with the state as it
/// was before the step (the step's update undone) and the batch of the step; `loss` is
/// what the step returned and `after` what was found in the state after it (if anything).
/// Looks, in the order the step computes them, at the loss, the buffers the forward pass
/// updates, the gradients (backend.lossAndGrads, which changes no state) and finally the
/// update's result; returns that value.
NonFiniteValue locateNonFinite(const ModelSpec &spec, Backend &backend, const Batch &batch, double loss,
                               const std::optional<NonFiniteValue> &after);

/// The explanation printed after the error line for `v` (no trailing newline): what
/// usually causes a value of that kind to become non-finite.
std::string nonFiniteHint(const NonFiniteValue &v);

} // namespace gradc::rt
