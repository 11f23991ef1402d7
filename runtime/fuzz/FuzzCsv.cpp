// FuzzCsv.cpp: libFuzzer target for the CSV column parser and the sliding-window builder: any bytes either load or give a DataError, and loaded windows are consistent with the series.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "DataSources.h"

using namespace gradc::rt;

/// libFuzzer entry point. The first 4 bytes choose length, horizon, split and scaling; the
/// rest is the CSV text, read for the column "value".
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  const int64_t length = 1 + data[0] % 8;
  const int64_t horizon = 1 + data[1] % 3;
  const double split = (1 + data[2]) / 256.0;
  static const char *const scales[] = {"minmax", "standard", "none", "bogus"};
  const std::string scale = scales[data[3] % 4];
  std::string_view text(reinterpret_cast<const char *>(data) + 4, size - 4);
  std::vector<double> series;
  std::vector<int64_t> lines;
  try {
    series = parseCsvColumn(text, "value", "fuzz.csv", &lines);
  } catch (const DataError &) {
    return 0;
  }
  if (lines.size() != series.size()) std::abort();
  for (double v : series)
    if (!std::isfinite(v)) std::abort();
  Dataset d;
  try {
    d = makeWindows(series, length, horizon, split, scale, "fuzz.csv", &lines);
  } catch (const DataError &) {
    return 0;
  }
  const int64_t n = static_cast<int64_t>(series.size()) - length - horizon + 1;
  if (d.n != n || d.trainCount < 1 || d.trainCount > n || !d.x.consistent() || !d.y.consistent() ||
      d.x.shape != std::vector<int64_t>{n, length, 1} || d.y.shape != std::vector<int64_t>{n, 1})
    std::abort();
  const float *x = d.x.f32();
  const float *y = d.y.f32();
  // Windows slide by one value, and y[i] = v[i + length + horizon - 1] = x[i + horizon][length - 1].
  for (int64_t i = 0; i + 1 < n && length > 1; ++i)
    if (x[i * length + 1] != x[(i + 1) * length]) std::abort();
  for (int64_t i = 0; i + horizon < n; ++i)
    if (y[i] != x[(i + horizon) * length + length - 1]) std::abort();
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(y[i])) std::abort();
  return 0;
}
