// Checkpoint.cpp: the state of a run: initialisation from the seed, checkpoint save, --load and --resume (one read of the file), the interrupted-run path.
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "Driver.h"
#include "DriverInternal.h"
#include "FiniteCheck.h"
#include "Safetensors.h"

// Initial values must round identically everywhere: no a*b+c fused into one FMA.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace gradc::rt {

using namespace detail;

namespace {

/// Writes value v (a double) as element k of storage `p` of type `t`.
void storeValue(void *p, DType t, int64_t k, double v) {
  switch (t) {
  case DType::F32: static_cast<float *>(p)[k] = static_cast<float>(v); break;
  case DType::F64: static_cast<double *>(p)[k] = v; break;
  case DType::I64: {
    double f = std::floor(v);
    int64_t i = 0;
    if (f >= 9.2233720368547758e18) i = std::numeric_limits<int64_t>::max();
    else if (f < -9.2233720368547758e18 || std::isnan(f)) i = std::numeric_limits<int64_t>::min();
    else i = static_cast<int64_t>(f);
    static_cast<int64_t *>(p)[k] = i;
    break;
  }
  case DType::I32: static_cast<int32_t *>(p)[k] = static_cast<int32_t>(v); break;
  }
}

} // namespace

void initState(const ModelSpec &spec, Backend &backend, uint64_t seed) {
  checkBackend(backend);
  const DType ft = backend.floatType();
  for (size_t i = 0; i < spec.state.size(); ++i) {
    const StateSpec &s = spec.state[i];
    const DType st = storageType(s, ft);
    const int64_t n = numelOf(s.shape);
    void *p = backend.stateData(i);
    if (n > 0 && !p) throw std::runtime_error("backend has no storage for state tensor '" + s.name + "'");
    Rng rng(streamSeed(seed, "init:" + s.name));
    for (int64_t k = 0; k < n; ++k) {
      double v = 0;
      switch (s.init) {
      case StateSpec::Zeros: v = 0; break;
      case StateSpec::Ones: v = 1; break;
      case StateSpec::Full: v = s.a; break;
      case StateSpec::Uniform: v = rng.uniform(s.a, s.b); break;
      case StateSpec::Normal: v = s.a + s.b * rng.normal(); break;
      }
      if (s.zeroRow >= 0 && !s.shape.empty() && k / (n / s.shape[0]) == s.zeroRow) v = 0; // drawn, then zeroed
      storeValue(p, st, k, v);
    }
  }
}

CheckpointFile readCheckpoint(const std::string &path) {
  CheckpointFile f;
  f.path = path;
  f.tensors = readSafetensors(path, &f.meta);
  std::vector<std::pair<std::string, const HostTensor *>> all;
  for (const auto &kv : f.tensors) all.emplace_back(kv.first, &kv.second);
  verifyChecksum(path, f.meta, all);
  return f;
}

namespace {

/// Copies the state tensors of checkpoint `file` (read from `path`) into `backend`; with
/// `requireAll` optimizer state must be present too. Checks everything before it changes
/// anything, so that a bad checkpoint leaves the state as it was.
void applyCheckpoint(const std::string &path, const std::map<std::string, HostTensor> &file, const ModelSpec &spec,
                     Backend &backend, bool requireAll) {
  checkBackend(backend);
  const DType ft = backend.floatType();
  std::vector<const HostTensor *> found(spec.state.size(), nullptr);
  for (size_t i = 0; i < spec.state.size(); ++i) {
    const StateSpec &s = spec.state[i];
    const bool isFloat = storageType(s, ft) != DType::I64;
    const char *kind = s.kind == StateSpec::Param ? "parameter" : s.kind == StateSpec::Buffer ? "buffer" : "optimizer state";
    std::string want = std::string(isFloat ? "F32" : "I64") + shapeString(s.shape);
    auto it = file.find(s.name);
    if (it == file.end()) {
      if (s.kind == StateSpec::OptState && !requireAll) continue;
      if (requireAll)
        throw DataError(path + ": missing tensor " + quoted(s.name) + " (" + kind + ", expected " + want +
                        "), which resuming needs");
      throw DataError(path + ": missing tensor " + quoted(s.name) + " (" + kind + ", expected " + want + ")");
    }
    const HostTensor &t = it->second;
    const bool dtypeOk = isFloat ? (t.dtype == DType::F32 || t.dtype == DType::F64)
                                 : (t.dtype == DType::I64 || t.dtype == DType::I32);
    if (!dtypeOk || t.shape != s.shape)
      throw DataError(path + ": tensor " + quoted(s.name) + " (" + kind + "): expected " + want +
                      (isFloat ? " (or F64)" : " (or I32)") + ", found " + t.typeString());
    found[i] = &t;
  }
  for (size_t i = 0; i < spec.state.size(); ++i) {
    if (!found[i]) continue;
    const HostTensor &t = *found[i];
    const DType st = storageType(spec.state[i], ft);
    const int64_t n = t.numel();
    void *p = backend.stateData(i);
    if (n > 0 && !p) throw std::runtime_error("backend has no storage for state tensor '" + spec.state[i].name + "'");
    if (t.dtype == st) {
      if (n > 0) std::memcpy(p, t.bytes.data(), t.bytes.size());
      continue;
    }
    for (int64_t k = 0; k < n; ++k) {
      switch (t.dtype) {
      case DType::F32: storeValue(p, st, k, t.f32()[k]); break;
      case DType::F64: storeValue(p, st, k, t.f64()[k]); break;
      case DType::I32: static_cast<int64_t *>(p)[k] = t.i32()[k]; break;
      case DType::I64: static_cast<int64_t *>(p)[k] = t.i64()[k]; break;
      }
    }
  }
}

} // namespace

void loadCheckpoint(const CheckpointFile &file, const ModelSpec &spec, Backend &backend) {
  checkBackend(backend);
  applyCheckpoint(file.path, file.tensors, spec, backend, false);
}

void loadCheckpoint(const std::string &path, const ModelSpec &spec, Backend &backend) {
  checkBackend(backend);
  loadCheckpoint(readCheckpoint(path), spec, backend);
}

ResumeInput loadResumeCheckpoint(const std::string &path, const ModelSpec &spec, Backend &backend) {
  checkBackend(backend);
  CheckpointFile file = readCheckpoint(path);
  return loadResumeCheckpoint(file, spec, backend);
}

ResumeInput loadResumeCheckpoint(CheckpointFile &file, const ModelSpec &spec, Backend &backend) {
  checkBackend(backend);
  const std::string &path = file.path;
  ResumeInput in;
  in.path = path;
  // One read of the file: the resume information is checked before the state changes.
  if (!decodeResume(file.meta, path, in.state))
    throw DataError(path + ": the checkpoint has no resume information (it was not written by a training run of "
                    "this version, or early stopping had restored its best state); use --load to start from it");
  if (in.state.model != spec.name)
    throw DataError(path + ": the checkpoint is from model " + quoted(in.state.model) + ", this is model " +
                    quoted(spec.name));
  applyCheckpoint(path, file.tensors, spec, backend, true);
  if (in.state.hasBest) {
    const std::string prefix = kBestPrefix;
    for (auto &kv : file.tensors)
      if (kv.first.compare(0, prefix.size(), prefix) == 0) in.best[kv.first.substr(prefix.size())] = std::move(kv.second);
  }
  return in;
}

std::string interruptedCheckpointPath(const ModelSpec &spec) {
  std::string name = spec.name.empty() ? std::string("model") : spec.name;
  for (char &c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) c = '_';
  return name + ".interrupted.safetensors";
}

void saveCheckpoint(const std::string &path, const ModelSpec &spec, Backend &backend, const ResumeState *resume,
                    const std::vector<std::pair<std::string, const HostTensor *>> &extra, const DataMeta *data) {
  checkBackend(backend);
  const DType ft = backend.floatType();
  if (auto bad = firstNonFiniteState(spec, backend, ~0u))
    throw DataError(path + ": not written: " + bad->tensor + (bad->where.empty() ? "" : " (" + bad->where + ")") +
                    " element " + (bad->index.empty() ? "" : bad->index + " ") + "is " + nonFiniteText(bad->value) +
                    " (the run diverged; use --check-finite to stop at the step "
                    "where it first appears); the file keeps its previous contents");
  removeStaleTemporaries(path);
  std::vector<HostTensor> tensors;
  tensors.reserve(spec.state.size());
  for (size_t i = 0; i < spec.state.size(); ++i) {
    const StateSpec &s = spec.state[i];
    tensors.emplace_back(storageType(s, ft), s.shape);
    HostTensor &t = tensors.back();
    if (!t.bytes.empty()) std::memcpy(t.bytes.data(), backend.stateData(i), t.bytes.size());
  }
  std::vector<std::pair<std::string, const HostTensor *>> named;
  for (size_t i = 0; i < spec.state.size(); ++i) named.emplace_back(spec.state[i].name, &tensors[i]);
  for (const auto &e : extra) named.push_back(e);
  SafetensorsMetadata meta{{"format", "pt"}};
  if (resume) encodeResume(*resume, meta);
  if (data) encodeDataMeta(*data, meta);
  meta[kChecksumKey] = fmt::format("{:08x}", checksumTensors(named));
  writeSafetensors(path, named, meta);
}

} // namespace gradc::rt
