// Progress.h: the training progress bar on stderr and the printing of result lines around it (used by Trainer.cpp and the --gradcheck lines). Not part of the runtime's interface.
#pragma once

#include <cstdint>
#include <string>

#include "DriverInternal.h"

namespace gradc::rt::detail {

/// A duration for the progress bar's ETA: "1h02m", "3m07s", "12s"; "?" if negative or huge.
std::string formatDuration(double seconds);

/// The progress bar on stderr (only on a terminal, and not with --quiet): redrawn at most
/// ten times a second; cleared before anything is printed and when destroyed.
class Progress {
public:
  /// A bar for `totalSteps` steps of `batch` samples; draws nothing unless `enabled`.
  Progress(bool enabled, int64_t totalSteps, int64_t batch)
      : enabled_(enabled), total_(totalSteps), batch_(batch), start_(Clock::now()) {}
  ~Progress() { clear(); }
  Progress(const Progress &) = delete;
  Progress &operator=(const Progress &) = delete;

  /// Redraws the bar after `step` steps (rate-limited, except for the last step).
  void update(int64_t step, int64_t epoch, int64_t epochs, double loss);
  /// Erases the bar if it is shown.
  void clear();

private:
  bool enabled_;
  int64_t total_, batch_;
  Clock::time_point start_, last_;
  bool shown_ = false;
};

/// Prints one line to stdout (clearing the progress bar first, if given) and flushes it.
void printLine(Progress *progress, const std::string &line);

} // namespace gradc::rt::detail
