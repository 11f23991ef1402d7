// ThreadTuner.h: chooses the default worker-thread count of a training run by timing its first steps with each candidate count (results are bitwise identical at any count, so switching mid-run changes no number).
#pragma once

#include <cstdint>
#include <vector>

namespace gradc::rt {

/// The default --threads of a training run, measured rather than guessed: with no
/// --threads flag, the first steps alternate between 1 worker and every hardware thread
/// (and the powers of two between), in blocks of a few steps, and the run continues with
/// the candidate whose steps were fastest. A small model, whose steps are too short for a
/// second thread to pay for its wake-ups, runs on one thread; a large one on all of them.
///
/// The trainer calls beforeStep(i) before the i-th step of the run (counting from 0) and
/// afterStep(i, seconds) with its time. setThreads() is only ever called between steps.
class ThreadTuner {
public:
  /// `enabled` is false when --threads forced a count (the tuner then never changes it);
  /// `maxThreads` is the default count (all hardware threads).
  ThreadTuner(bool enabled, int maxThreads);

  /// Sets the thread count step i runs with.
  void beforeStep(int64_t i);
  /// Records step i's time and, at the end of the measurement, fixes the count.
  void afterStep(int64_t i, double seconds);
  /// The most steps the measurement can take (0 when disabled); it may settle sooner, after
  /// one round with a clear winner. (--timing starts once settled(), at the steady state.)
  int64_t steps() const { return enabled_ ? kWarmup + kRounds * static_cast<int64_t>(cand_.size()) * kBlock : 0; }
  /// True once the count is fixed: forced by --threads, or chosen.
  bool settled() const { return !enabled_ || chosen_ > 0; }

private:
  static constexpr int64_t kWarmup = 2; ///< First steps at maxThreads, untimed: first touch of the arena.
  static constexpr int64_t kBlock = 2;  ///< Steps per candidate per round; the first of a block is untimed.
  static constexpr int64_t kRounds = 2; ///< Rounds over all candidates.
  /// Stop after a round when one candidate is this much faster than every other.
  static constexpr double kClearWin = 1.25;

  /// The candidate block `i` belongs to, or -1 outside the measurement.
  int candidateOf(int64_t i) const;
  /// Fixes the count to the fastest candidate so far.
  void decide();

  bool enabled_;
  int maxThreads_;
  std::vector<int> cand_;    ///< Candidate counts: 1, 2, 4, ..., maxThreads.
  std::vector<double> best_; ///< Each candidate's fastest timed step (seconds), +inf if none yet.
  int chosen_ = 0;
};

} // namespace gradc::rt
