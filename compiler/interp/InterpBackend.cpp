// InterpBackend.cpp: feeds batches and state to the interpreter and writes updates back.
#include "interp/InterpBackend.h"

#include <fmt/format.h>

namespace gradc {

InterpBackend::InterpBackend(const Module &m, const rt::ModelSpec &spec) : m_(m), spec_(spec) {
  for (const rt::StateSpec &s : spec.state) {
    int64_t n = 1;
    for (int64_t d : s.shape)
      n *= d;
    f_.emplace_back(s.dtype == rt::DType::I64 ? 0 : n, 0.0);
    i_.emplace_back(s.dtype == rt::DType::I64 ? n : 0, 0);
  }
}

void *InterpBackend::stateData(size_t i) {
  return spec_.state.at(i).dtype == rt::DType::I64 ? static_cast<void *>(i_[i].data()) : f_[i].data();
}

TensorMap InterpBackend::feeds(const std::vector<rt::TensorSpec> &specs, const std::vector<const void *> &data) {
  TensorMap out;
  for (size_t i = 0; i < specs.size(); ++i) {
    const rt::TensorSpec &t = specs[i];
    DTensor d(t.shape);
    for (int64_t k = 0; k < d.numel(); ++k)
      d.data[k] = t.dtype == rt::DType::I32 ? static_cast<const int32_t *>(data[i])[k]
                                            : static_cast<const float *>(data[i])[k];
    out[t.name] = std::move(d);
  }
  return out;
}

TensorMap InterpBackend::state() const {
  TensorMap out;
  for (size_t i = 0; i < spec_.state.size(); ++i) {
    DTensor d(spec_.state[i].shape);
    if (spec_.state[i].dtype == rt::DType::I64)
      for (int64_t k = 0; k < d.numel(); ++k)
        d.data[k] = static_cast<double>(i_[i][k]);
    else
      d.data = f_[i];
    out[spec_.state[i].name] = std::move(d);
  }
  return out;
}

RunResult InterpBackend::run(const Graph &g, const rt::Batch &b) const {
  return interpret(g, feeds(b), state(),
                   {{"lr", spec_.train.lr * lrScale_},
                    {"rng.seed.lo", double(b.rng[0] & 0xFFFFFFFFu)},
                    {"rng.seed.hi", double(b.rng[0] >> 32)},
                    {"rng.step.lo", double(b.rng[1] & 0xFFFFFFFFu)},
                    {"rng.step.hi", double(b.rng[1] >> 32)}});
}

double InterpBackend::trainStep(const rt::Batch &b) {
  RunResult r = run(*m_.trainGraph, b);
  for (size_t i = 0; i < spec_.state.size(); ++i) {
    auto it = r.updates.find(spec_.state[i].name);
    if (it == r.updates.end())
      continue;
    if (spec_.state[i].dtype == rt::DType::I64)
      for (size_t k = 0; k < i_[i].size(); ++k)
        i_[i][k] = static_cast<int64_t>(it->second.data[k]);
    else
      f_[i] = it->second.data;
  }
  return r.loss;
}

double InterpBackend::evalLoss(const rt::Batch &b) { return run(*m_.evalGraph, b).loss; }

void InterpBackend::predict(const rt::Batch &b, const std::vector<void *> &outputs) {
  RunResult r = run(*m_.inferGraph, b);
  for (size_t i = 0; i < spec_.outputs.size(); ++i) {
    const DTensor &t = r.outputs.at(spec_.outputs[i].name);
    std::copy(t.data.begin(), t.data.end(), static_cast<double *>(outputs[i]));
  }
}

void InterpBackend::generateStep(const std::vector<const void *> &in, const std::vector<void *> &out) {
  if (!m_.stepGraph)
    return rt::Backend::generateStep(in, out); // throws: no step function
  RunResult r = interpret(*m_.stepGraph, feeds(spec_.stepInputs, in), state(), {{"lr", spec_.train.lr * lrScale_}});
  for (size_t i = 0; i < spec_.stepOutputs.size(); ++i) {
    const DTensor &t = r.outputs.at(spec_.stepOutputs[i].name);
    std::copy(t.data.begin(), t.data.end(), static_cast<double *>(out[i]));
  }
}

double InterpBackend::lossAndGrads(const rt::Batch &b, std::vector<std::vector<double>> &grads) {
  RunResult r = run(*m_.trainGraph, b);
  grads.clear();
  for (const rt::StateSpec &s : spec_.state)
    if (s.kind == rt::StateSpec::Param)
      grads.push_back(r.grads.at(s.name).data);
  return r.loss;
}

double InterpBackend::loss(const rt::Batch &b) { return run(*m_.trainGraph, b).loss; }

} // namespace gradc
