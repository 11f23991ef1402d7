// DriverData.cpp: the data of a run (loadDriverData: the train block's source or --data, checked against the model's inputs and targets, plus a validation source) and the Batcher that assembles batches from it.
#include <climits>
#include <cmath>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "DataSources.h"
#include "Driver.h"
#include "DriverInternal.h"
#include "Safetensors.h"

namespace gradc::rt {

using namespace detail;

namespace {

/// Converts data tensor `t` (read from `file`, called `what` in messages) to spec entry i:
/// checks the per-sample shape and dtype; converts F64 -> F32 and I64 -> I32; with
/// `allowReshape` accepts any per-sample shape with the same number of elements.
HostTensor adopt(const ModelSpec &spec, size_t i, HostTensor t, const std::string &file, const std::string &what,
                 bool allowReshape) {
  const TensorSpec &ts = spec.inputs[i];
  std::vector<int64_t> sample(ts.shape.begin() + 1, ts.shape.end());
  auto fail = [&](const std::string &extra) {
    std::string want = std::string(dtypeName(ts.dtype)) + "[*";
    for (int64_t d : sample) want += ", " + std::to_string(d);
    throw DataError(file + ": " + what + ": expected " + want + "] (" + describeEntry(spec, i) + "), found " +
                    t.typeString() + extra);
  };
  const bool dtypeOk = t.dtype == ts.dtype || (ts.dtype == DType::F32 && t.dtype == DType::F64) ||
                       (ts.dtype == DType::I32 && t.dtype == DType::I64);
  if (!dtypeOk || t.shape.empty()) fail("");
  std::vector<int64_t> have(t.shape.begin() + 1, t.shape.end());
  if (have != sample) {
    int64_t a = 0, b = 0;
    if (!(allowReshape && checkedNumel(have, a) && checkedNumel(sample, b) && a == b)) fail("");
  }
  std::vector<int64_t> shape = sample;
  shape.insert(shape.begin(), t.shape[0]);
  if (t.dtype == ts.dtype) {
    t.shape = shape;
    return t;
  }
  HostTensor out(ts.dtype, shape);
  const int64_t n = out.numel();
  if (ts.dtype == DType::F32) {
    const double *src = t.f64();
    float *dst = out.f32();
    for (int64_t k = 0; k < n; ++k) {
      dst[k] = static_cast<float>(src[k]);
      if (std::isfinite(src[k]) && !std::isfinite(dst[k]))
        throw DataError(file + ": " + what + ": element " + std::to_string(k) + " (" + fmt::format("{:g}", src[k]) +
                        ") is outside the range of f32");
    }
  } else {
    const int64_t *src = t.i64();
    int32_t *dst = out.i32();
    for (int64_t k = 0; k < n; ++k) {
      if (src[k] < INT32_MIN || src[k] > INT32_MAX)
        throw DataError(file + ": " + what + ": element " + std::to_string(k) + " (" + std::to_string(src[k]) +
                        ") is outside the range of i32");
      dst[k] = static_cast<int32_t>(src[k]);
    }
  }
  return out;
}

/// For windows and idx: the model must have one input and at most one target.
void requireOneInput(const ModelSpec &spec, const std::string &file, const char *source) {
  if (spec.numInputs != 1 || spec.inputs.size() > 2)
    throw DataError(file + ": a " + source + " data source feeds one input and one target, but the model has " +
                    std::to_string(spec.numInputs) + " input(s) and " +
                    std::to_string(spec.inputs.size() - spec.numInputs) + " target(s)");
}

/// The windows data source of `spec` (or --data PATH.csv for a model without one): fills
/// d's input and target, and d.meta with the scaling (the checkpoint's when it has one).
void loadWindowsData(const ModelSpec &spec, const std::string &path, const DataMeta *fromCheckpoint,
                     const std::string &checkpointPath, DriverData &d) {
  const TrainSpec &tr = spec.train;
  requireOneInput(spec, path, "windows");
  WindowsOptions wo;
  if (tr.dataKind == "windows") {
    wo.columns = tr.columns.empty() ? std::vector<std::string>{tr.column} : tr.columns;
    wo.target = tr.column;
    wo.scale = tr.scale;
    wo.length = tr.length;
    wo.horizon = tr.horizon;
    wo.split = tr.split;
  } else {
    const TensorSpec &x = spec.inputs[0];
    if (x.shape.size() != 3 || x.shape[2] != 1)
      throw DataError(path + ": a CSV file is read as windows, which feed an input f32[B, T, 1]; the model has " +
                      describeEntry(spec, 0));
    wo.length = x.shape[1];
  }
  const WindowsScaling *fixed = nullptr;
  if (fromCheckpoint && fromCheckpoint->hasScaling) {
    checkScalingFits(fromCheckpoint->scaling, wo, checkpointPath);
    fixed = &fromCheckpoint->scaling;
  }
  Dataset ds = loadWindows(path, wo, fixed);
  const std::string what = wo.columns.size() == 1 ? "windows of column " + quoted(wo.columns[0])
                                                  : "windows of " + std::to_string(wo.columns.size()) + " columns";
  d.tensors[0] = adopt(spec, 0, std::move(ds.x), path, what, false);
  d.present[0] = true;
  const size_t target = spec.numInputs;
  if (target < spec.inputs.size()) {
    d.tensors[target] = adopt(spec, target, std::move(ds.y), path, "window targets", false);
    d.present[target] = true;
  }
  d.n = ds.n;
  d.trainCount = ds.trainCount;
  d.meta.hasScaling = true;
  d.meta.scaling = std::move(ds.scaling);
}

/// The text data source of `spec` (or --data PATH.txt): fills d's input and target, and
/// d.meta with the vocabulary (the checkpoint's when it has one).
void loadTextData(const ModelSpec &spec, const std::string &path, const DataMeta *fromCheckpoint,
                  const std::string &checkpointPath, DriverData &d) {
  const TrainSpec &tr = spec.train;
  requireOneInput(spec, path, "text");
  int64_t length = tr.length;
  double split = tr.split;
  if (tr.dataKind != "text") {
    const TensorSpec &x = spec.inputs[0];
    if (x.shape.size() != 2 || x.dtype != DType::I32)
      throw DataError(path + ": a text file is read as character windows, which feed an input i32[B, T]; the model has " +
                      describeEntry(spec, 0));
    length = x.shape[1];
    split = 0.9;
  }
  const std::vector<uint32_t> *fixed = nullptr;
  if (fromCheckpoint && fromCheckpoint->hasVocabulary) {
    checkVocabularyFits(fromCheckpoint->vocabulary.size(), spec,
                        checkpointPath + ": metadata '" + kVocabularyKey + "'");
    fixed = &fromCheckpoint->vocabulary;
  }
  Dataset ds = loadText(path, length, split, fixed);
  if (!fixed) checkVocabularyFits(ds.vocabulary.size(), spec, path);
  d.tensors[0] = adopt(spec, 0, std::move(ds.x), path, "character windows", false);
  d.present[0] = true;
  const size_t target = spec.numInputs;
  if (target < spec.inputs.size()) {
    d.tensors[target] = adopt(spec, target, std::move(ds.y), path, "character window targets", false);
    d.present[target] = true;
  }
  d.n = ds.n;
  d.trainCount = ds.trainCount;
  d.meta.hasVocabulary = true;
  d.meta.vocabulary = std::move(ds.vocabulary);
}

} // namespace

bool findClassification(const ModelSpec &spec, size_t &output, size_t &target) {
  bool haveOut = false, haveTarget = false;
  for (size_t i = 0; i < spec.outputs.size() && !haveOut; ++i) {
    const TensorSpec &t = spec.outputs[i];
    if (t.shape.size() == 2 && t.shape[0] == spec.batch && t.shape[1] > 1) {
      output = i;
      haveOut = true;
    }
  }
  for (size_t i = spec.numInputs; i < spec.inputs.size() && !haveTarget; ++i) {
    const TensorSpec &t = spec.inputs[i];
    if (t.dtype == DType::I32 && t.shape.size() == 1 && t.shape[0] == spec.batch) {
      target = i;
      haveTarget = true;
    }
  }
  return haveOut && haveTarget;
}

DriverData loadDriverData(const ModelSpec &spec, const std::string &dataPath, bool targetsOptional,
                          const DataMeta *fromCheckpoint, const std::string &checkpointPath) {
  checkSpec(spec);
  const TrainSpec &tr = spec.train;
  std::string kind, path = dataPath;
  if (!dataPath.empty()) {
    if (endsWithNoCase(dataPath, ".safetensors")) kind = "tensors";
    else if (endsWithNoCase(dataPath, ".csv")) kind = "windows";
    else if (tr.dataKind == "text" || endsWithNoCase(dataPath, ".txt")) kind = "text";
    else
      throw DataError(dataPath + ": --data expects a .safetensors file, a .csv file for a windows data source or a "
                                 ".txt file for a text data source");
  } else {
    kind = tr.dataKind;
    path = tr.dataPath;
    if (kind.empty())
      throw DataError("model " + spec.name + " has no data source (its train block sets no `data`); pass --data PATH");
  }

  DriverData d;
  d.source = path;
  d.tensors.resize(spec.inputs.size());
  d.present.assign(spec.inputs.size(), false);
  const size_t target = spec.numInputs; // the first target, for windows and idx

  if (kind == "tensors") {
    std::map<std::string, HostTensor> all = readSafetensors(path);
    std::string firstName;
    for (size_t i = 0; i < spec.inputs.size(); ++i) {
      const std::string &name = spec.inputs[i].name;
      auto it = all.find(name);
      if (it == all.end()) {
        if (targetsOptional && i >= spec.numInputs) continue;
        std::string have;
        for (const auto &kv : all) have += (have.empty() ? "" : ", ") + quoted(kv.first);
        throw DataError(path + ": no tensor named " + quoted(name) + " for " + describeEntry(spec, i) + "; " +
                        (all.empty() ? std::string("the file has no tensors") : "the file has " + have));
      }
      d.tensors[i] = adopt(spec, i, std::move(it->second), path, "tensor " + quoted(name), false);
      d.present[i] = true;
      const int64_t n = d.tensors[i].shape[0];
      if (firstName.empty()) {
        firstName = name;
        d.n = n;
      } else if (n != d.n) {
        throw DataError(path + ": tensor " + quoted(name) + " has " + std::to_string(n) + " samples but tensor " +
                        quoted(firstName) + " has " + std::to_string(d.n) + " (the leading axes must agree)");
      }
    }
    if (firstName.empty()) throw DataError(path + ": the model has no inputs to read");
    d.trainCount = d.n;
  } else if (kind == "windows") {
    loadWindowsData(spec, path, fromCheckpoint, checkpointPath, d);
  } else if (kind == "text") {
    loadTextData(spec, path, fromCheckpoint, checkpointPath, d);
  } else if (kind == "idx") {
    requireOneInput(spec, path, "idx");
    size_t out = 0, tgt = 0;
    int64_t classes = 256; // any byte label
    if (findClassification(spec, out, tgt)) classes = spec.outputs[out].shape[1];
    Dataset ds = loadIdx(path, tr.dataLabels, classes);
    d.tensors[0] = adopt(spec, 0, std::move(ds.x), path, "images", true);
    d.present[0] = true;
    if (target < spec.inputs.size()) {
      d.tensors[target] = adopt(spec, target, std::move(ds.y), tr.dataLabels, "labels", false);
      d.present[target] = true;
    }
    d.n = ds.n;
    d.trainCount = ds.trainCount;
  } else {
    throw DataError("model " + spec.name + ": unknown data source kind " + quoted(kind));
  }
  if (d.n <= 0) throw DataError(path + ": the data has no samples");
  // A held-out validation source: its samples follow the training ones.
  if (dataPath.empty() && !tr.valKind.empty() && d.validationCount() == 0) {
    ModelSpec vs = spec;
    vs.train.dataKind = tr.valKind;
    vs.train.dataPath = tr.valPath;
    vs.train.dataLabels = tr.valLabels;
    vs.train.valKind.clear();
    DriverData v = loadDriverData(vs, "", targetsOptional);
    for (size_t i = 0; i < d.tensors.size(); ++i) {
      if (!d.present[i]) continue;
      if (!v.present[i]) throw DataError(v.source + ": the validation data lacks " + describeEntry(spec, i));
      d.tensors[i].bytes.insert(d.tensors[i].bytes.end(), v.tensors[i].bytes.begin(), v.tensors[i].bytes.end());
      d.tensors[i].shape[0] += v.n;
    }
    d.n += v.n;
  }
  return d;
}

Batcher::Batcher(const ModelSpec &spec, const DriverData &data) : inputs_(spec.inputs), data_(data), batch_(spec.batch) {
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const TensorSpec &t = spec.inputs[i];
    sampleBytes_.push_back(static_cast<size_t>(sampleNumel(t.shape)) * dtypeSize(t.dtype));
    bufs_.emplace_back(sampleBytes_.back() * static_cast<size_t>(batch_), 0);
    b_.data.push_back(bufs_.back().data());
  }
}

void Batcher::checkIndices(size_t e, int64_t s, int64_t r) const {
  const TensorSpec &t = inputs_[e];
  const int64_t per = sampleNumel(t.shape);
  const int32_t *x = reinterpret_cast<const int32_t *>(data_.tensors[e].bytes.data()) + s * per;
  for (int64_t k = 0; k < per; ++k) {
    if (x[k] >= 0 && x[k] < t.bound) continue;
    std::string pos; // k as an index into the sample's shape
    for (size_t a = t.shape.size(), rest = static_cast<size_t>(k); a-- > 1;) {
      pos = std::to_string(rest % static_cast<size_t>(t.shape[a])) + (pos.empty() ? "" : ", ") + pos;
      rest /= static_cast<size_t>(t.shape[a]);
    }
    throw DataError(data_.source + ": batch " + std::to_string(batches_) + ", row " + std::to_string(r) + " (sample " +
                    std::to_string(s) + "), " + t.name + "[" + pos + "]: index " + std::to_string(x[k]) + " is outside [0, " +
                    std::to_string(t.bound) + ")" + (t.boundWhere.empty() ? "" : " of " + t.boundWhere));
  }
}

const Batch &Batcher::gather(const int64_t *idx, int64_t count) {
  ++batches_;
  for (size_t e = 0; e < bufs_.size(); ++e) {
    if (!data_.present[e] || sampleBytes_[e] == 0) continue;
    if (inputs_[e].bound > 0 && inputs_[e].dtype == DType::I32)
      for (int64_t r = 0; r < count; ++r) checkIndices(e, idx[r], r);
    const unsigned char *src = data_.tensors[e].bytes.data();
    unsigned char *dst = bufs_[e].data();
    const size_t sb = sampleBytes_[e];
    for (int64_t r = 0; r < batch_; ++r) {
      const int64_t s = idx[r < count ? r : count - 1];
      std::memcpy(dst + static_cast<size_t>(r) * sb, src + static_cast<size_t>(s) * sb, sb);
    }
  }
  return b_;
}

const Batch &Batcher::fillWith(int64_t i) { return gather(&i, 1); }

} // namespace gradc::rt
