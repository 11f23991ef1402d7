// Progress.cpp: implements the training progress bar (Progress.h) and printLine.
#include "Progress.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace gradc::rt::detail {

std::string formatDuration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const long long s = static_cast<long long>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

void Progress::update(int64_t step, int64_t epoch, int64_t epochs, double loss) {
  if (!enabled_) return;
  const Clock::time_point now = Clock::now();
  if (shown_ && step < total_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(step * batch_) / elapsed : 0;
  const std::string eta =
      formatDuration(step > 0 ? elapsed * static_cast<double>(total_ - step) / static_cast<double>(step) : -1);
  constexpr int width = 24;
  std::string bar(width, ' ');
  const int64_t filled = total_ > 0 ? std::min<int64_t>(width, step * width / total_) : width;
  for (int i = 0; i < width; ++i) bar[static_cast<size_t>(i)] = i < filled ? '=' : (i == filled ? '>' : ' ');
  fmt::print(stderr, "\r\033[Kepoch {}/{} [{}] {}/{} loss {:.5g} {:.0f} samples/s ETA {}", epoch, epochs, bar, step,
             total_, loss, rate, eta);
  std::fflush(stderr);
  shown_ = true;
}

void Progress::clear() {
  if (!shown_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  shown_ = false;
}

void printLine(Progress *progress, const std::string &line) {
  if (progress) progress->clear();
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

} // namespace gradc::rt::detail
