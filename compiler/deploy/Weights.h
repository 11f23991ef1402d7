// Weights.h: reads a trained checkpoint (--weights) for a compiled model and checks it against the model's parameters and buffers.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/IR.h"

namespace gradc {

/// One parameter or buffer's trained values, converted to the model's storage type.
struct WeightTensor {
  DType dtype = DType::F32;   ///< F32 for float state, I64 for integer state.
  std::vector<int64_t> shape; ///< The model's declared shape.
  std::vector<float> f32;     ///< The values when dtype is F32.
  std::vector<int64_t> i64;   ///< The values when dtype is I64.
};

/// The weights of a model: every parameter and buffer, by its state name ("lstm.weight_ih_l0").
using Weights = std::map<std::string, WeightTensor>;

/// Reads the safetensors checkpoint `path` and checks it against `m`: the file is valid
/// safetensors with a matching checksum (when it has one), it was written for model `m.name`
/// (when it records a model), and every parameter and buffer of `m` is present with the
/// declared shape and a dtype --load accepts (F32 or F64 for float state, I64 or I32 for
/// integer state). Optimizer state and extra tensors are ignored. On failure returns false
/// with `error` set to a message naming `path` and the tensor.
bool readWeights(const Module &m, const std::string &path, Weights &out, std::string &error);

} // namespace gradc
