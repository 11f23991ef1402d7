// Predict.cpp: --predict: the model's outputs for every sample of the data, as CSV on stdout or in --out (CSV or .safetensors); a windows model's predictions in the target's original units.
#include <cstdio>
#include <cstring>

#include "Driver.h"
#include "DriverInternal.h"
#include "Safetensors.h"

namespace gradc::rt {

using namespace detail;

namespace {

/// A windows model's outputs with one value per sample are predictions of the target:
/// maps them back to its units (v = scaled * scale + offset, in double, rounded to the
/// backend's float type) for the first `rows` samples of the batch.
void unscaleOutputs(const ModelSpec &spec, const DriverData &data, OutputBuffers &outs, DType ft, int64_t rows) {
  if (!data.meta.hasScaling) return;
  const double offset = data.meta.scaling.target.offset, scale = data.meta.scaling.target.scale;
  for (size_t k = 0; k < spec.outputs.size(); ++k) {
    if (outs.perSample[k] != 1 || spec.outputs[k].dtype != DType::F32) continue;
    for (int64_t r = 0; r < rows; ++r) {
      if (ft == DType::F32) {
        float &v = static_cast<float *>(outs.ptrs[k])[r];
        v = static_cast<float>(static_cast<double>(v) * scale + offset);
      } else {
        double &v = static_cast<double *>(outs.ptrs[k])[r];
        v = v * scale + offset;
      }
    }
  }
}

} // namespace

/// --predict: every sample of the data, in order; CSV on stdout or to --out.
int detail::predictAll(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &o) {
  if (spec.outputs.empty()) throw DataError("model " + spec.name + " has no `output`, so --predict has nothing to write");
  const int64_t B = spec.batch, N = data.n;
  const DType ft = be.floatType();
  Batcher batcher(spec, data);
  OutputBuffers outs(spec, ft);
  std::vector<int64_t> idx(static_cast<size_t>(B));
  const bool toSafetensors = !o.out.empty() && endsWithNoCase(o.out, ".safetensors");
  const bool toStdout = o.out.empty();

  std::vector<HostTensor> results;
  if (toSafetensors)
    for (const TensorSpec &t : spec.outputs) {
      std::vector<int64_t> shape = t.shape;
      shape[0] = N;
      results.emplace_back(ft, shape);
    }

  std::string csv;
  auto flushCsv = [&](bool force) {
    if (toStdout && (force || csv.size() >= (1u << 20))) {
      std::fwrite(csv.data(), 1, csv.size(), stdout);
      csv.clear();
    }
  };
  if (!toSafetensors) {
    std::string header;
    for (size_t k = 0; k < spec.outputs.size(); ++k) {
      const std::string &name = spec.outputs[k].name;
      const bool needsQuotes = name.find_first_of(",\"\r\n") != std::string::npos;
      auto col = [&](const std::string &c) {
        if (!header.empty()) header += ',';
        if (!needsQuotes) {
          header += c;
          return;
        }
        header += '"';
        for (char ch : c) header += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        header += '"';
      };
      if (outs.perSample[k] == 1) col(name);
      else
        for (int64_t j = 0; j < outs.perSample[k]; ++j) col(name + "_" + std::to_string(j));
    }
    csv += header + "\n";
  }

  char num[64];
  for (int64_t start = 0; start < N; start += B) {
    const int64_t cnt = std::min(B, N - start);
    for (int64_t r = 0; r < cnt; ++r) idx[static_cast<size_t>(r)] = start + r;
    be.predict(batcher.gather(idx.data(), cnt), outs.ptrs);
    unscaleOutputs(spec, data, outs, ft, cnt);
    for (int64_t r = 0; r < cnt; ++r) {
      if (toSafetensors) {
        for (size_t k = 0; k < results.size(); ++k) {
          const size_t rowBytes = static_cast<size_t>(outs.perSample[k]) * outs.elemSize;
          std::memcpy(results[k].bytes.data() + static_cast<size_t>(start + r) * rowBytes,
                      outs.bufs[k].data() + static_cast<size_t>(r) * rowBytes, rowBytes);
        }
        continue;
      }
      bool first = true;
      for (size_t k = 0; k < spec.outputs.size(); ++k)
        for (int64_t j = 0; j < outs.perSample[k]; ++j) {
          if (!first) csv += ',';
          first = false;
          const int64_t e = r * outs.perSample[k] + j;
          const size_t len = ft == DType::F32 ? toChars(num, sizeof num, static_cast<const float *>(outs.ptrs[k])[e])
                                              : toChars(num, sizeof num, static_cast<const double *>(outs.ptrs[k])[e]);
          csv.append(num, len);
        }
      csv += '\n';
      flushCsv(false);
    }
  }
  if (toSafetensors) {
    std::vector<std::pair<std::string, const HostTensor *>> named;
    for (size_t k = 0; k < results.size(); ++k) named.emplace_back(spec.outputs[k].name, &results[k]);
    writeSafetensors(o.out, named);
  } else if (toStdout) {
    flushCsv(true);
    std::fflush(stdout);
  } else {
    writeFileAtomic(o.out, csv.data(), csv.size());
  }
  return 0;
}

} // namespace gradc::rt
