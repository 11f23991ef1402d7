// Metrics.cpp: implements the --metrics CSV writer (Metrics.h).
#include "Metrics.h"

#include <charconv>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "Safetensors.h"
#include "Tensor.h"

namespace gradc::rt {

namespace {

/// A value in a metrics cell: the shortest text that reads back exactly, "nan" / "inf" / "-inf".
std::string cell(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{}", v);
}

} // namespace

MetricsWriter::MetricsWriter(std::string path, bool val, bool acc, bool bpc)
    : path_(std::move(path)), val_(val), acc_(acc), bpc_(bpc) {
  header_ = std::string("epoch,step,loss") + (val ? ",val_loss" : "") + (acc ? ",val_acc" : "") + (bpc ? ",bpc" : "") +
            (val && bpc ? ",val_bpc" : "") + ",lr,seconds";
}

void MetricsWriter::keepRowsBefore(int64_t epoch) {
  std::vector<unsigned char> bytes;
  try {
    bytes = readFileBytes(path_, 64u << 20);
  } catch (const DataError &) {
    return; // no earlier file (or unreadable): start afresh
  }
  const std::string text(bytes.begin(), bytes.end());
  std::vector<std::string> lines;
  size_t b = 0;
  while (b < text.size()) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    lines.push_back(text.substr(b, e - b));
    b = e + 1;
  }
  if (lines.empty() || lines[0] != header_) return;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string &l = lines[i];
    int64_t e = 0;
    auto r = std::from_chars(l.data(), l.data() + l.size(), e);
    if (r.ec != std::errc() || r.ptr == l.data() + l.size() || *r.ptr != ',' || e >= epoch) break;
    lines_.push_back(l);
  }
}

void MetricsWriter::add(const MetricsRow &r) {
  std::string l = std::to_string(r.epoch) + "," + std::to_string(r.step) + "," + cell(r.loss);
  if (val_) l += "," + cell(r.valLoss);
  if (acc_) l += "," + cell(r.valAcc);
  if (bpc_) l += "," + cell(r.bpc);
  if (val_ && bpc_) l += "," + cell(r.valBpc);
  l += "," + cell(r.lr) + "," + fmt::format("{:.3f}", r.seconds);
  lines_.push_back(std::move(l));
  std::string text = header_ + "\n";
  for (const std::string &x : lines_) text += x + "\n";
  writeFileAtomic(path_, text.data(), text.size());
}

} // namespace gradc::rt
