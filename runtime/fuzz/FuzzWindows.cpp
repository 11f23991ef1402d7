// FuzzWindows.cpp: libFuzzer target for multi-column windows and the checkpoint's scaling metadata: any bytes either load or give a DataError; loaded windows are consistent with their columns, and a decoded scaling survives an encode/decode round trip exactly.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "DataMeta.h"
#include "DataSources.h"

using namespace gradc::rt;

namespace {

/// Decodes `value` as a checkpoint's gradc.scaling; false for a DataError. Aborts if a
/// decoded scaling does not re-encode to one that decodes the same.
bool decodeScaling(const std::string &value, WindowsScaling &out) {
  DataMeta d;
  try {
    d = decodeDataMeta({{kScalingKey, value}}, "fuzz.safetensors");
  } catch (const DataError &) {
    return false;
  }
  if (!d.hasScaling || d.hasVocabulary) std::abort();
  SafetensorsMetadata again;
  encodeDataMeta(d, again);
  DataMeta e = decodeDataMeta(again, "fuzz.safetensors");
  const auto same = [](const ColumnScaling &a, const ColumnScaling &b) {
    return a.name == b.name && a.offset == b.offset && a.scale == b.scale;
  };
  if (e.scaling.method != d.scaling.method || e.scaling.inputs.size() != d.scaling.inputs.size() ||
      !same(e.scaling.target, d.scaling.target))
    std::abort();
  for (size_t i = 0; i < d.scaling.inputs.size(); ++i)
    if (!same(e.scaling.inputs[i], d.scaling.inputs[i])) std::abort();
  out = d.scaling;
  return true;
}

} // namespace

/// libFuzzer entry point. Bytes 0-3 choose length, horizon, split and scaling; byte 4 the
/// input columns (1 to 3 of "a", "b", "c") and the target ("a", "b", "c" or "t"); byte 5
/// the length M of a gradc.scaling value in bytes 6 .. 6+M (none if M = 0); the rest is the CSV text.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 6) return 0;
  WindowsOptions o;
  o.length = 1 + data[0] % 6;
  o.horizon = 1 + data[1] % 3;
  o.split = (1 + data[2]) / 256.0;
  static const char *const scales[] = {"minmax", "standard", "none", "bogus"};
  o.scale = scales[data[3] % 4];
  static const char *const names[] = {"a", "b", "c", "t"};
  o.columns.assign(names, names + 1 + data[4] % 3);
  o.target = names[(data[4] / 3) % 4];
  const size_t m = std::min<size_t>(data[5], size - 6);
  WindowsScaling fixed;
  const bool haveFixed = m > 0 && decodeScaling(std::string(reinterpret_cast<const char *>(data) + 6, m), fixed);
  if (haveFixed) {
    try {
      checkScalingFits(fixed, o, "fuzz.safetensors");
    } catch (const DataError &) {
      return 0;
    }
  }
  std::string_view text(reinterpret_cast<const char *>(data) + 6 + m, size - 6 - m);
  std::vector<std::string> all = o.columns; // the inputs, then the target unless it is one
  if (std::find(all.begin(), all.end(), o.target) == all.end()) all.push_back(o.target);
  std::vector<std::vector<double>> cols;
  std::vector<int64_t> lines;
  try {
    cols = parseCsvColumns(text, all, "fuzz.csv", &lines);
  } catch (const DataError &) {
    return 0;
  }
  for (const auto &c : cols)
    if (c.size() != lines.size()) std::abort();
  const size_t ti = static_cast<size_t>(std::find(all.begin(), all.end(), o.target) - all.begin());
  std::vector<double> target = cols[ti];
  cols.resize(o.columns.size());
  Dataset d;
  try {
    d = makeMultiWindows(cols, target, o, "fuzz.csv", &lines, haveFixed ? &fixed : nullptr);
  } catch (const DataError &) {
    return 0;
  }
  const int64_t K = static_cast<int64_t>(o.columns.size()), L = o.length;
  const int64_t n = static_cast<int64_t>(target.size()) - L - o.horizon + 1;
  if (d.n != n || d.trainCount < 1 || d.trainCount > n || !d.x.consistent() || !d.y.consistent() ||
      d.x.shape != std::vector<int64_t>{n, L, K} || d.y.shape != std::vector<int64_t>{n, 1} ||
      d.scaling.inputs.size() != static_cast<size_t>(K))
    std::abort();
  const float *x = d.x.f32();
  const float *y = d.y.f32();
  // Windows slide by one row; every value is its column's value, scaled with its column's scaling.
  for (int64_t i = 0; i + 1 < n && L > 1; ++i)
    for (int64_t k = 0; k < K; ++k)
      if (x[(i * L + 1) * K + k] != x[((i + 1) * L) * K + k]) std::abort();
  for (int64_t k = 0; k < K; ++k) {
    const ColumnScaling &c = d.scaling.inputs[static_cast<size_t>(k)];
    if (!(c.scale > 0) || !std::isfinite(c.offset)) std::abort();
    if (x[k] != static_cast<float>((cols[static_cast<size_t>(k)][0] - c.offset) / c.scale)) std::abort();
  }
  const ColumnScaling &t = d.scaling.target;
  if (y[0] != static_cast<float>((target[static_cast<size_t>(L + o.horizon - 1)] - t.offset) / t.scale)) std::abort();
  return 0;
}
