// Interpreter.h: a deliberately simple interpreter of the graph IR in double precision,
// the oracle that gradients and code generators are checked against.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "ir/IR.h"

namespace gradc {

/// A dense row-major tensor of doubles (integer dtypes hold integral values).
struct DTensor {
  std::vector<int64_t> shape;
  std::vector<double> data;
  DTensor() = default;
  explicit DTensor(std::vector<int64_t> s, double fill = 0);
  int64_t numel() const { return static_cast<int64_t>(data.size()); }
};

using TensorMap = std::map<std::string, DTensor>;

/// A run-time failure of the interpreter (missing feed, label out of range...).
struct InterpError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// What the sinks of a top-level graph received.
struct RunResult {
  bool hasLoss = false;
  double loss = 0;
  TensorMap outputs, updates, grads;
};

/// Runs a top-level graph. `input` nodes read `feeds`, `param`/`buffer` nodes read `state`
/// (parameters, buffers and optimizer state by name), `hyper` nodes read `hypers`.
RunResult interpret(const Graph &g, const TensorMap &feeds, const TensorMap &state,
                    const std::map<std::string, double> &hypers);

} // namespace gradc
