// ThreadTuner.cpp: implements ThreadTuner, the measured default thread count of a training run.
#include "ThreadTuner.h"

#include <algorithm>
#include <limits>

#include "Model.h"

namespace gradc::rt {

ThreadTuner::ThreadTuner(bool enabled, int maxThreads) : enabled_(enabled && maxThreads > 1), maxThreads_(maxThreads) {
  if (!enabled_) return;
  for (int c = 1; c < maxThreads_; c *= 2) cand_.push_back(c);
  cand_.push_back(maxThreads_);
  best_.assign(cand_.size(), std::numeric_limits<double>::infinity());
}

int ThreadTuner::candidateOf(int64_t i) const {
  if (!enabled_ || chosen_ > 0 || i < kWarmup || i >= steps()) return -1;
  return static_cast<int>(((i - kWarmup) / kBlock) % static_cast<int64_t>(cand_.size()));
}

void ThreadTuner::beforeStep(int64_t i) {
  if (!enabled_ || chosen_ > 0) return;
  const int c = candidateOf(i);
  setThreads(c < 0 ? maxThreads_ : cand_[static_cast<size_t>(c)]);
}

void ThreadTuner::afterStep(int64_t i, double seconds) {
  const int c = candidateOf(i);
  if (c < 0) return;
  const int64_t k = i - kWarmup;
  // The first step of a block runs on caches the other count left: only the rest is timed.
  if (k % kBlock != 0) best_[static_cast<size_t>(c)] = std::min(best_[static_cast<size_t>(c)], seconds);
  const bool roundEnds = (k + 1) % (kBlock * static_cast<int64_t>(cand_.size())) == 0;
  if (!roundEnds) return;
  if (i + 1 >= steps()) {
    decide();
    return;
  }
  // A clear winner after a round ends the measurement early.
  const size_t fastest = static_cast<size_t>(std::min_element(best_.begin(), best_.end()) - best_.begin());
  bool clear = true;
  for (size_t j = 0; j < best_.size(); ++j)
    if (j != fastest && !(best_[j] > kClearWin * best_[fastest])) clear = false;
  if (clear) decide();
}

void ThreadTuner::decide() {
  const size_t fastest = static_cast<size_t>(std::min_element(best_.begin(), best_.end()) - best_.begin());
  chosen_ = cand_[fastest];
  setThreads(chosen_);
}

} // namespace gradc::rt
