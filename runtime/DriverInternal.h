// DriverInternal.h: helpers shared by the training driver's sources (Driver.cpp, Flags.cpp, Checkpoint.cpp, DriverData.cpp, Predict.cpp, Gradcheck.cpp, Trainer.cpp): number formatting, spec checks, state snapshots, output buffers and the entry points of --predict and --gradcheck. Not part of the runtime's interface.
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "Driver.h"
#include "Json.h"
#include "Model.h"
#include "Resume.h"
#include "Tensor.h"

namespace gradc::rt::detail {

using Clock = std::chrono::steady_clock;

/// When the program started (static initialisation, before main): --timing's origin.
inline const Clock::time_point gProcessStart = Clock::now();

/// A user-supplied string in single quotes, made printable.
inline std::string quoted(std::string_view s) { return "'" + printableForMessage(s, 200) + "'"; }

/// A loss or other value for the output lines: 6 significant digits (as printf's "%.6g");
/// NaN is always "nan" (never "-nan").
inline std::string g6(double v) { return std::isnan(v) ? std::string("nan") : fmt::format("{:.6g}", v); }

/// A relative error for the gradcheck lines (as printf's "%.3e", NaN as "nan").
inline std::string e3(double v) { return std::isnan(v) ? std::string("nan") : fmt::format("{:.3e}", v); }

/// The default of --threads: the hardware's threads (at least 1, at most 65536).
int defaultThreads();

/// Number of elements of a shape; throws if it is invalid.
inline int64_t numelOf(const std::vector<int64_t> &shape) {
  int64_t n = 0;
  if (!checkedNumel(shape, n)) throw std::runtime_error("invalid shape " + shapeString(shape));
  return n;
}

/// Elements of one sample of a batched spec shape [B, ...].
inline int64_t sampleNumel(const std::vector<int64_t> &shape) {
  return numelOf(std::vector<int64_t>(shape.begin() + 1, shape.end()));
}

/// The model-language spelling of a dtype ("f32").
inline std::string langDType(DType t) {
  std::string s = dtypeName(t);
  for (char &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// "input x: f32[32, 30, 1]" / "target y: i32[32]".
inline std::string describeEntry(const ModelSpec &spec, size_t i) {
  const TensorSpec &t = spec.inputs[i];
  return std::string(i < spec.numInputs ? "input " : "target ") + t.name + ": " + langDType(t.dtype) +
         shapeString(t.shape);
}

/// True if `s` ends with `suffix`, ignoring ASCII case.
inline bool endsWithNoCase(const std::string &s, const std::string &suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) !=
        std::tolower(static_cast<unsigned char>(suffix[i])))
      return false;
  return true;
}

/// Storage of state tensor `s` in a backend whose float type is `ft`.
inline DType storageType(const StateSpec &s, DType ft) {
  switch (s.dtype) {
  case DType::F32:
  case DType::F64: return ft;
  case DType::I64: return DType::I64;
  case DType::I32: break;
  }
  throw std::runtime_error("state tensor '" + s.name + "' has dtype I32; state must be F32 or I64");
}

/// Checks what the driver relies on in the backend (a programming error if violated).
inline void checkBackend(Backend &b) {
  DType ft = b.floatType();
  if (ft != DType::F32 && ft != DType::F64)
    throw std::runtime_error(std::string("backend float type is ") + dtypeName(ft) + ", not F32 or F64");
}

/// Checks the model's tensors have a leading batch axis of spec.batch. Throws DataError.
inline void checkSpec(const ModelSpec &spec) {
  if (spec.batch < 1) throw DataError("the model's batch size is " + std::to_string(spec.batch) + "; it must be at least 1");
  if (spec.numInputs > spec.inputs.size()) throw std::runtime_error("ModelSpec::numInputs exceeds the number of inputs");
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const TensorSpec &t = spec.inputs[i];
    if (t.shape.empty() || t.shape[0] != spec.batch)
      throw DataError("model " + describeEntry(spec, i) + " has no leading batch axis of size " +
                      std::to_string(spec.batch) + ", so it cannot be fed from data");
    if (t.dtype != DType::F32 && t.dtype != DType::I32)
      throw DataError("model " + describeEntry(spec, i) + ": inputs and targets must be f32 or i32");
    (void)sampleNumel(t.shape);
  }
  for (const TensorSpec &t : spec.outputs)
    if (t.shape.empty() || t.shape[0] != spec.batch)
      throw DataError("model output " + t.name + " " + shapeString(t.shape) + " has no leading batch axis of size " +
                      std::to_string(spec.batch));
}

/// Bytes of state tensor i as stored by the backend.
inline size_t stateBytes(const StateSpec &s, DType ft) {
  return static_cast<size_t>(numelOf(s.shape)) * dtypeSize(storageType(s, ft));
}

/// Shortest round-trip text of a value.
template <class T> size_t toChars(char *buf, size_t cap, T v) {
  auto r = std::to_chars(buf, buf + cap, v);
  return r.ec == std::errc() ? static_cast<size_t>(r.ptr - buf) : 0;
}


/// Copies of some state tensors of a backend: early stopping's best params and buffers,
/// and --gradcheck's check that nothing but the perturbed parameter changes.
class StateSnapshot {
public:
  /// Which tensors a snapshot holds.
  enum Which { ParamsAndBuffers, ParamsOnly, AllButParams, All };
  StateSnapshot(const ModelSpec &spec, Backend &be, Which which) : spec_(spec), be_(be) {
    const DType ft = be.floatType();
    for (size_t i = 0; i < spec.state.size(); ++i) {
      const StateSpec::Kind k = spec.state[i].kind;
      const bool in = which == All                ? true
                      : which == ParamsAndBuffers ? k != StateSpec::OptState
                      : which == ParamsOnly       ? k == StateSpec::Param
                                                  : k != StateSpec::Param;
      if (!in) continue;
      idx_.push_back(i);
      bytes_.emplace_back(stateBytes(spec.state[i], ft), 0);
    }
  }
  void take() {
    for (size_t k = 0; k < idx_.size(); ++k)
      if (!bytes_[k].empty()) std::memcpy(bytes_[k].data(), be_.stateData(idx_[k]), bytes_[k].size());
  }
  void restore() {
    for (size_t k = 0; k < idx_.size(); ++k)
      if (!bytes_[k].empty()) std::memcpy(be_.stateData(idx_[k]), bytes_[k].data(), bytes_[k].size());
  }
  /// The snapshot as tensors (storage dtype) named like the state, for a checkpoint.
  std::vector<HostTensor> tensors() const {
    std::vector<HostTensor> out;
    const DType ft = be_.floatType();
    for (size_t k = 0; k < idx_.size(); ++k) {
      const StateSpec &s = spec_.state[idx_[k]];
      out.emplace_back(storageType(s, ft), s.shape);
      if (!bytes_[k].empty()) std::memcpy(out.back().bytes.data(), bytes_[k].data(), bytes_[k].size());
    }
    return out;
  }
  /// Name of the k-th tensor of the snapshot.
  const std::string &name(size_t k) const { return spec_.state[idx_[k]].name; }
  /// Sets the snapshot from tensors keyed by state name (a resumed run's best state).
  /// Throws DataError naming `file` if one is missing or of the wrong size.
  void set(const std::map<std::string, HostTensor> &from, const std::string &file) {
    for (size_t k = 0; k < idx_.size(); ++k) {
      auto it = from.find(name(k));
      if (it == from.end() || it->second.bytes.size() != bytes_[k].size() ||
          it->second.dtype != storageType(spec_.state[idx_[k]], be_.floatType()))
        throw DataError(file + ": early stopping's best state lacks a matching tensor " + quoted(kBestPrefix + name(k)));
      if (!bytes_[k].empty()) std::memcpy(bytes_[k].data(), it->second.bytes.data(), bytes_[k].size());
    }
  }
  /// Name of the first tensor whose contents differ from the snapshot ("" if none).
  std::string firstDifference() {
    for (size_t k = 0; k < idx_.size(); ++k)
      if (!bytes_[k].empty() && std::memcmp(bytes_[k].data(), be_.stateData(idx_[k]), bytes_[k].size()) != 0)
        return spec_.state[idx_[k]].name;
    return "";
  }

private:
  const ModelSpec &spec_;
  Backend &be_;
  std::vector<size_t> idx_;
  std::vector<std::vector<unsigned char>> bytes_;
};

/// Output buffers for backend.predict, allocated once.
struct OutputBuffers {
  std::vector<int64_t> perSample; ///< Elements of one sample of each output.
  std::vector<std::vector<unsigned char>> bufs;
  std::vector<void *> ptrs;
  size_t elemSize = 4;
  OutputBuffers(const ModelSpec &spec, DType ft) : elemSize(dtypeSize(ft)) {
    for (const TensorSpec &t : spec.outputs) {
      perSample.push_back(sampleNumel(t.shape));
      bufs.emplace_back(static_cast<size_t>(perSample.back() * spec.batch) * elemSize, 0);
      ptrs.push_back(bufs.back().data());
    }
  }
  double value(size_t o, int64_t k) const {
    return elemSize == 4 ? static_cast<const float *>(ptrs[o])[k] : static_cast<const double *>(ptrs[o])[k];
  }
};

/// --predict: every sample of the data, in order; CSV on stdout or to options.out
/// (.safetensors, else CSV). Returns the exit code.
int predictAll(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &options);

/// Checks that --generate can run: the model has a step function and a vocabulary that fits
/// its logits, and every character of --prompt is in the vocabulary. Returns the prompt as
/// vocabulary indices. Throws DataError.
std::vector<int32_t> checkGenerate(const ModelSpec &spec, const DriverData &data, const DriverOptions &options);

/// --generate: feeds the prompt one character at a time through the step function, then
/// samples options.generate characters (softmax of logits / --temperature, Philox draws keyed
/// by `seed`; temperature 0 takes the most likely one) and prints the prompt and them on stdout.
int generateText(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &options, uint64_t seed);

/// --gradcheck on the first training batch (samples 0 .. B-1 in file order): one line per
/// parameter and the worst relative error on stdout; exit code 1 (message prefixed with
/// `exe`) above the tolerance.
int gradcheck(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &options, uint64_t seed,
              const std::string &exe);

} // namespace gradc::rt::detail
