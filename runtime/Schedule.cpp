// Schedule.cpp: implements the learning-rate schedules (Schedule.h) with the operations, in
// the order, of torch.optim.lr_scheduler (PyTorch 1.13's chainable StepLR and
// CosineAnnealingLR, OneCycleLR's closed form, ReduceLROnPlateau with threshold 1e-4 'rel',
// cooldown 0, min_lr 0, eps 1e-8), in double precision as Python computes them.
#include "Schedule.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "Tensor.h"

// The rates must round as Python's do: no a*b+c fused into one FMA.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace gradc::rt {

namespace {

constexpr double kPi = 3.141592653589793; // Python's math.pi

/// Python's a % b for b > 0 (never negative).
int64_t pyMod(int64_t a, int64_t b) {
  const int64_t r = a % b;
  return r < 0 ? r + b : r;
}

} // namespace

LrSchedule::LrSchedule(const ScheduleSpec &spec, double baseLr) : spec_(spec), base_(baseLr) {
  st_.lr = spec_.kind == "onecycle" ? oneCycleLr(spec_, 0) : baseLr;
}

double LrSchedule::oneCycleLr(const ScheduleSpec &s, int64_t step) {
  const double initial = s.maxLr / 25.0, minLr = initial / 1e4; // div_factor, final_div_factor
  const double total = static_cast<double>(s.totalSteps);
  const double end1 = s.pctStart * total - 1, end2 = total - 1;
  const double n = static_cast<double>(step);
  double start, end, pct;
  if (n <= end1) {
    pct = (n - 0) / (end1 - 0);
    start = initial;
    end = s.maxLr;
  } else {
    pct = (n - end1) / (end2 - end1);
    start = s.maxLr;
    end = minLr;
  }
  const double cosOut = std::cos(kPi * pct) + 1; // _annealing_cos
  return end + (start - end) / 2.0 * cosOut;
}

void LrSchedule::epochEnd() {
  if (spec_.kind == "step") {
    const int64_t e = ++st_.count;
    if (e % spec_.stepSize == 0) st_.lr = st_.lr * spec_.gamma;
  } else if (spec_.kind == "cosine") {
    const int64_t e = ++st_.count, T = spec_.tMax;
    const double de = static_cast<double>(e), dT = static_cast<double>(T);
    if (pyMod(e - 1 - T, 2 * T) == 0)
      st_.lr = st_.lr + (base_ - spec_.etaMin) * (1 - std::cos(kPi / dT)) / 2;
    else
      st_.lr = (1 + std::cos(kPi * de / dT)) / (1 + std::cos(kPi * (de - 1) / dT)) * (st_.lr - spec_.etaMin) +
               spec_.etaMin;
  }
}

void LrSchedule::stepEnd() {
  if (spec_.kind != "onecycle") return;
  const int64_t n = ++st_.count;
  if (n > spec_.totalSteps)
    throw DataError("onecycle(total_steps = " + std::to_string(spec_.totalSteps) + ") was stepped " +
                    std::to_string(n) + " times; raise total_steps to the run's number of training steps");
  st_.lr = oneCycleLr(spec_, n);
}

void LrSchedule::validated(double v) {
  if (spec_.kind != "plateau") return;
  ++st_.count;
  if (v < st_.best * (1. - 1e-4)) { // is_better, mode 'min', threshold_mode 'rel'
    st_.best = v;
    st_.bad = 0;
  } else {
    ++st_.bad;
  }
  if (st_.bad > spec_.patience) {
    const double oldLr = st_.lr, newLr = std::max(oldLr * spec_.factor, 0.0);
    if (oldLr - newLr > 1e-8) st_.lr = newLr;
    st_.bad = 0;
  }
}

} // namespace gradc::rt
