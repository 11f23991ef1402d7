// Interrupt.cpp: implements InterruptGuard, the async-signal-safe SIGINT/SIGTERM flag the training loop polls between steps.
#include "Interrupt.h"

#include <csignal>
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include <signal.h>

namespace gradc::rt {

namespace {

volatile std::sig_atomic_t gPending = 0;
struct sigaction gOldInt, gOldTerm;
bool gInstalled = false;

/// Records the signal and reinstates the default action (only async-signal-safe calls).
extern "C" void onSignal(int sig) {
  if (gPending == 0) gPending = sig;
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
}

} // namespace

InterruptGuard::InterruptGuard() {
  gPending = 0;
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART; // file writes in progress are not cut short
  sigaction(SIGINT, &sa, &gOldInt);
  sigaction(SIGTERM, &sa, &gOldTerm);
  gInstalled = true;
}

InterruptGuard::~InterruptGuard() {
  if (!gInstalled) return;
  sigaction(SIGINT, &gOldInt, nullptr);
  sigaction(SIGTERM, &gOldTerm, nullptr);
  gInstalled = false;
}

int InterruptGuard::pending() { return static_cast<int>(gPending); }

void InterruptGuard::clear() { gPending = 0; }

const char *signalName(int sig) {
  switch (sig) {
  case SIGINT: return "SIGINT";
  case SIGTERM: return "SIGTERM";
  default: {
    static std::string name; // not called from the handler
    name = fmt::format("signal {}", sig);
    return name.c_str();
  }
  }
}

} // namespace gradc::rt
