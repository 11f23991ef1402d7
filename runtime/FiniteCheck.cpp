// FiniteCheck.cpp: implements the NaN/Inf scans of the loss, state and gradients and the diagnosis of where a non-finite value first appeared (FiniteCheck.h).
#include "FiniteCheck.h"

#include <cmath>
#include <cstdio>

#include <fmt/format.h>

namespace gradc::rt {

namespace {

const char *kindName(StateSpec::Kind k) {
  return k == StateSpec::Param ? "parameter" : k == StateSpec::Buffer ? "buffer" : "optimizer state";
}

int64_t numel(const std::vector<int64_t> &shape) {
  int64_t n = 0;
  return checkedNumel(shape, n) ? n : 0;
}

} // namespace

std::string elementIndex(const std::vector<int64_t> &shape, int64_t k) {
  if (shape.empty()) return "";
  std::vector<int64_t> idx(shape.size(), 0);
  for (size_t d = shape.size(); d-- > 0;) {
    const int64_t e = shape[d] > 0 ? shape[d] : 1;
    idx[d] = k % e;
    k /= e;
  }
  std::string s = "[";
  for (size_t d = 0; d < idx.size(); ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
  return s + "]";
}

std::string nonFiniteText(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{:.6g}", v);
}

std::optional<NonFiniteValue> firstNonFiniteState(const ModelSpec &spec, Backend &backend, unsigned kinds) {
  const DType ft = backend.floatType();
  for (size_t i = 0; i < spec.state.size(); ++i) {
    const StateSpec &s = spec.state[i];
    if (!(kinds & (1u << s.kind)) || s.dtype == DType::I64 || s.dtype == DType::I32) continue;
    const int64_t n = numel(s.shape);
    const void *p = backend.stateData(i);
    if (n == 0 || !p) continue;
    int64_t bad = -1;
    double v = 0;
    if (ft == DType::F32) {
      const float *f = static_cast<const float *>(p);
      for (int64_t k = 0; k < n; ++k)
        if (!std::isfinite(f[k])) {
          bad = k;
          v = f[k];
          break;
        }
    } else {
      const double *f = static_cast<const double *>(p);
      for (int64_t k = 0; k < n; ++k)
        if (!std::isfinite(f[k])) {
          bad = k;
          v = f[k];
          break;
        }
    }
    if (bad >= 0)
      return NonFiniteValue{std::string(kindName(s.kind)) + " '" + s.name + "'", s.name, s.where, bad,
                            elementIndex(s.shape, bad), v};
  }
  return std::nullopt;
}

std::optional<NonFiniteValue> firstNonFiniteGradient(const ModelSpec &spec,
                                                     const std::vector<std::vector<double>> &grads) {
  size_t g = 0;
  for (const StateSpec &s : spec.state) {
    if (s.kind != StateSpec::Param) continue;
    if (g >= grads.size()) break;
    const std::vector<double> &v = grads[g++];
    for (size_t k = 0; k < v.size(); ++k)
      if (!std::isfinite(v[k]))
        return NonFiniteValue{"gradient of parameter '" + s.name + "'", s.name, s.where, static_cast<int64_t>(k),
                              elementIndex(s.shape, static_cast<int64_t>(k)), v[k]};
  }
  return std::nullopt;
}

NonFiniteValue locateNonFinite(const ModelSpec &spec, Backend &backend, const Batch &batch, double loss,
                               const std::optional<NonFiniteValue> &after) {
  // Non-finite before the step: the loaded state itself (a damaged --load checkpoint).
  if (auto v = firstNonFiniteState(spec, backend, ~0u)) {
    v->beforeStep = true;
    return *v;
  }
  if (!std::isfinite(loss)) return NonFiniteValue{"the loss", "", spec.lossWhere, 0, "", loss};
  // The forward pass's buffer updates (BatchNorm running statistics) come next, then the
  // backward pass; the update last.
  if (after && after->tensor.rfind("buffer ", 0) == 0) return *after;
  std::vector<std::vector<double>> grads;
  const double lg = backend.lossAndGrads(batch, grads);
  if (!std::isfinite(lg)) return NonFiniteValue{"the loss", "", spec.lossWhere, 0, "", lg};
  if (auto g = firstNonFiniteGradient(spec, grads)) return *g;
  if (after) return *after;
  return NonFiniteValue{"the loss", "", spec.lossWhere, 0, "", loss};
}

std::string nonFiniteHint(const NonFiniteValue &v) {
  if (v.beforeStep)
    return "the state was already non-finite before this step: check the checkpoint given to --load";
  if (v.tensor == "the loss")
    return "the forward pass produced it: inputs with extreme values, or parameters grown too large (try a smaller --lr)";
  if (v.tensor.rfind("gradient", 0) == 0)
    return "the backward pass produced it while the loss was finite: exploding gradients (try a smaller --lr or "
           "clip_grad_norm in the train block)";
  if (v.tensor.rfind("buffer", 0) == 0)
    return "a running statistic overflowed: the layer's inputs are too large";
  return "the gradients were finite, so the update overflowed: the learning rate is too large for this model (try a "
         "smaller --lr)";
}

} // namespace gradc::rt
