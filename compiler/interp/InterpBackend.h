// InterpBackend.h: the reference interpreter as a runtime Backend, so the training driver
// runs a model in double precision without generating code (`gradc run --interpret`).
#pragma once

#include <memory>

#include "Model.h"
#include "ir/IR.h"
#include "interp/Interpreter.h"

namespace gradc {

/// Runs the module's @train, @eval and @infer graphs (and @step, for --generate) with the interpreter. The module must
/// have been through autodiff and the optimizer (its @train graph has grad and update sinks).
class InterpBackend : public rt::Backend {
public:
  InterpBackend(const Module &m, const rt::ModelSpec &spec);

  rt::DType floatType() const override { return rt::DType::F64; }
  void *stateData(size_t i) override;
  void setLearningRateScale(double factor) override { lrScale_ = factor; }
  double trainStep(const rt::Batch &b) override;
  double evalLoss(const rt::Batch &b) override;
  void predict(const rt::Batch &b, const std::vector<void *> &outputs) override;
  double lossAndGrads(const rt::Batch &b, std::vector<std::vector<double>> &grads) override;
  double loss(const rt::Batch &b) override;
  void generateStep(const std::vector<const void *> &in, const std::vector<void *> &out) override;

private:
  /// The tensors `data` points to, named and shaped by `specs`.
  static TensorMap feeds(const std::vector<rt::TensorSpec> &specs, const std::vector<const void *> &data);
  TensorMap feeds(const rt::Batch &b) const { return feeds(spec_.inputs, b.data); }
  TensorMap state() const;
  RunResult run(const Graph &g, const rt::Batch &b) const;

  const Module &m_;
  const rt::ModelSpec &spec_;
  std::vector<std::vector<double>> f_;  ///< Float state, per spec entry (empty for I64 ones).
  std::vector<std::vector<int64_t>> i_; ///< I64 state, per spec entry (empty for float ones).
  double lrScale_ = 1;
};

} // namespace gradc
