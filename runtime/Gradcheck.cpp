// Gradcheck.cpp: --gradcheck: every parameter's gradient compared with finite differences of the loss on the first training batch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include <fmt/format.h>

#include "Driver.h"
#include "DriverInternal.h"
#include "Progress.h"

// The finite differences must round identically everywhere: no a*b+c fused into one FMA.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace gradc::rt {

using namespace detail;

/// --gradcheck on the first training batch (samples 0 .. B-1 in file order).
int detail::gradcheck(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &o, uint64_t seed,
              const std::string &exe) {
  const int64_t B = spec.batch;
  if (data.trainCount < B)
    throw DataError(data.source + ": the training split has " + std::to_string(data.trainCount) +
                    " samples, fewer than the batch size " + std::to_string(B));
  const bool isDouble = be.floatType() == DType::F64;
  // Float: central differences with h = 1e-3 (double: see below).
  const double relStep = 1e-3;
  const double tol = o.gradcheckTol.value_or(isDouble ? 1e-6 : 1e-2);
  Batcher batcher(spec, data);
  std::vector<int64_t> first(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) first[static_cast<size_t>(i)] = i;
  batcher.setRandomKey(seed, 0); // every loss below draws the same dropout masks
  const Batch &batch = batcher.gather(first.data(), B);

  StateSnapshot others(spec, be, StateSnapshot::AllButParams); // buffers and optimizer state: must not change
  StateSnapshot params(spec, be, StateSnapshot::ParamsOnly);
  others.take();
  params.take();
  std::vector<std::vector<double>> grads;
  be.lossAndGrads(batch, grads);

  size_t nParams = 0;
  for (const StateSpec &s : spec.state) nParams += s.kind == StateSpec::Param;
  if (grads.size() != nParams)
    throw std::runtime_error("lossAndGrads returned " + std::to_string(grads.size()) + " gradients for " +
                             std::to_string(nParams) + " parameters");

  double worst = 0;
  std::string worstName;
  size_t g = 0;
  for (size_t i = 0; i < spec.state.size(); ++i) {
    const StateSpec &s = spec.state[i];
    if (s.kind != StateSpec::Param) continue;
    const std::vector<double> &ad = grads[g++];
    const int64_t n = numelOf(s.shape);
    if (static_cast<int64_t>(ad.size()) != n)
      throw std::runtime_error("lossAndGrads returned " + std::to_string(ad.size()) + " gradient elements for '" +
                               s.name + "' " + shapeString(s.shape));
    std::vector<int64_t> elems;
    if (n <= 256) {
      for (int64_t k = 0; k < n; ++k) elems.push_back(k);
    } else {
      std::vector<int64_t> all(static_cast<size_t>(n));
      for (int64_t k = 0; k < n; ++k) all[static_cast<size_t>(k)] = k;
      Rng rng(streamSeed(seed, "gradcheck:" + s.name));
      for (size_t k = 0; k < 256; ++k) std::swap(all[k], all[k + rng.below(all.size() - k)]);
      elems.assign(all.begin(), all.begin() + 256);
      std::sort(elems.begin(), elems.end());
    }
    // An Embedding's padding row gets no gradient by definition (nn.Embedding's padding_idx)
    // although the loss reads it: its elements are not checked.
    if (s.zeroRow >= 0 && !s.shape.empty()) {
      const int64_t row = n / s.shape[0];
      elems.erase(std::remove_if(elems.begin(), elems.end(), [&](int64_t e) { return e / row == s.zeroRow; }), elems.end());
    }
    double maxDiff = 0, maxFd = 0;
    bool nan = false;
    void *p = be.stateData(i);
    for (int64_t e : elems) {
      double fd = 0;
      if (isDouble) {
        // Central differences at h = 1e-4 (relative) first: 2 loss evaluations, about 1e-8
        // relative error on smooth losses. Where that estimate and the gradient being checked
        // differ by more than a tenth of the tolerance, a more accurate estimate replaces it,
        // computed without looking at the gradient: five-point differences (truncation
        // O(h^4), rounding ~eps/h) at h = 1e-3, 1e-4, 1e-5, keeping the larger step of the
        // closest-agreeing pair (Ridders' idea; its error is about their difference). One step
        // cannot serve both a sharply curved loss (BatchNorm over a batch with little variance
        // needs a small h) and a gradient that is truly zero (needs a large h).
        double &x = static_cast<double *>(p)[e];
        const double orig = x, scale = std::max(1.0, std::fabs(orig));
        auto at = [&](double step) {
          x = orig + step;
          const double l = be.loss(batch);
          x = orig;
          return l;
        };
        {
          const double h = 1e-4 * scale;
          fd = (at(h) - at(-h)) / (2 * h);
        }
        const double adE = ad[static_cast<size_t>(e)];
        if (!(std::fabs(adE - fd) <= 0.1 * tol * std::max(std::fabs(fd), 1e-6))) {
          auto fivePoint = [&](double h) { return (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h); };
          double prev = fivePoint(1e-3 * scale), best = INFINITY;
          fd = prev;
          for (double rel : {1e-4, 1e-5}) {
            const double cur = fivePoint(rel * scale);
            const double gap = std::fabs(cur - prev);
            if (gap < best) {
              best = gap;
              fd = prev;
            }
            prev = cur;
          }
        }
      } else {
        float &x = static_cast<float *>(p)[e];
        const float orig = x;
        const double h = relStep * std::max(1.0, std::fabs(static_cast<double>(orig)));
        x = static_cast<float>(orig + h);
        const double xp = x, lp = be.loss(batch);
        x = static_cast<float>(orig - h);
        const double xm = x, lm = be.loss(batch);
        x = orig;
        fd = (lp - lm) / (xp - xm);
      }
      const double diff = std::fabs(ad[static_cast<size_t>(e)] - fd);
      if (std::isnan(diff)) nan = true;
      maxDiff = std::max(maxDiff, diff);
      maxFd = std::max(maxFd, std::fabs(fd));
    }
    const double err = nan ? std::numeric_limits<double>::quiet_NaN() : maxDiff / std::max(maxFd, 1e-6); // truly zero gradients compare absolutely
    printLine(nullptr, "gradcheck " + s.name + " max_rel_err " + e3(err) + " (" + std::to_string(elems.size()) +
                           " of " + std::to_string(n) + " elements)");
    if (worstName.empty() || (std::isnan(err) && !std::isnan(worst)) || err > worst) {
      worst = err;
      worstName = s.name;
    }
  }
  if (std::string changed = others.firstDifference(); !changed.empty())
    throw std::runtime_error("the backend changed state tensor '" + changed +
                             "' while computing the loss (loss and lossAndGrads must not change state)");
  if (std::string changed = params.firstDifference(); !changed.empty())
    throw std::runtime_error("parameter '" + changed + "' was not restored after the finite differences");
  printLine(nullptr, "gradcheck worst " + e3(worst));
  if (!(worst <= tol)) {
    fmt::print(stderr, "{}: error: gradcheck failed: worst relative error {} (parameter '{}') is above the tolerance {:.3g}\n",
               exe, e3(worst), worstName, tol);
    return 1;
  }
  return 0;
}

} // namespace gradc::rt
