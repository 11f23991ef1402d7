// Interrupt.h: SIGINT/SIGTERM handling for training runs: a handler that only records the signal, so the driver can stop between steps and save a checkpoint.
#pragma once

namespace gradc::rt {

/// While alive, SIGINT and SIGTERM set a flag instead of terminating the process; the
/// previous handlers are restored on destruction. After the first signal the default
/// action is reinstated, so a second Ctrl-C terminates at once (checkpoints are written
/// atomically, so that cannot tear a file). Not reentrant: one guard at a time.
class InterruptGuard {
public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard &) = delete;
  InterruptGuard &operator=(const InterruptGuard &) = delete;

  /// The signal received since construction (SIGINT or SIGTERM), or 0.
  static int pending();
  /// Clears the recorded signal (unit tests).
  static void clear();
};

/// The name of a signal for messages: "SIGINT", "SIGTERM", else "signal N".
const char *signalName(int sig);

} // namespace gradc::rt
