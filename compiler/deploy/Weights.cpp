// Weights.cpp: the checkpoint reader behind --weights: the runtime's safetensors reader and checksum, then a check of every parameter and buffer against the model.
#include "deploy/Weights.h"

#include <fmt/format.h>

#include "Resume.h"
#include "Safetensors.h"

namespace gradc {

namespace {

std::string shapeText(const std::vector<int64_t> &shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

/// Converts tensor `t` into `w` (declared `decl`); returns false with `why` when its dtype or shape differs.
bool convert(const rt::HostTensor &t, const StateDecl &decl, WeightTensor &w, std::string &why) {
  const bool isFloat = decl.type.dtype == DType::F32;
  const bool dtypeOk = isFloat ? (t.dtype == rt::DType::F32 || t.dtype == rt::DType::F64)
                               : (t.dtype == rt::DType::I64 || t.dtype == rt::DType::I32);
  if (!dtypeOk || t.shape != decl.type.shape) {
    why = fmt::format("expected {}{} ({}), found {}{}", isFloat ? "F32" : "I64", shapeText(decl.type.shape),
                      isFloat ? "or F64" : "or I32", rt::dtypeName(t.dtype), shapeText(t.shape));
    return false;
  }
  w.dtype = isFloat ? DType::F32 : DType::I64;
  w.shape = decl.type.shape;
  const int64_t n = t.numel();
  if (isFloat)
    w.f32.resize(static_cast<size_t>(n));
  else
    w.i64.resize(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    switch (t.dtype) {
    case rt::DType::F32: w.f32[k] = t.f32()[k]; break;
    case rt::DType::F64: w.f32[k] = static_cast<float>(t.f64()[k]); break;
    case rt::DType::I32: w.i64[k] = t.i32()[k]; break;
    case rt::DType::I64: w.i64[k] = t.i64()[k]; break;
    }
  }
  return true;
}

} // namespace

bool readWeights(const Module &m, const std::string &path, Weights &out, std::string &error) {
  std::map<std::string, rt::HostTensor> file;
  rt::SafetensorsMetadata meta;
  try {
    file = rt::readSafetensors(path, &meta);
    std::vector<std::pair<std::string, const rt::HostTensor *>> all;
    for (const auto &kv : file)
      all.emplace_back(kv.first, &kv.second);
    rt::verifyChecksum(path, meta, all);
    rt::ResumeState resume;
    if (rt::decodeResume(meta, path, resume) && resume.model != m.name) {
      error = fmt::format("{}: the checkpoint is from model '{}', this is model '{}'", path, resume.model, m.name);
      return false;
    }
  } catch (const rt::DataError &e) {
    error = e.what();
    return false;
  }
  std::vector<const StateDecl *> state;
  for (const StateDecl &d : m.params)
    state.push_back(&d);
  for (const StateDecl &d : m.buffers)
    state.push_back(&d);
  size_t present = 0;
  for (const StateDecl *d : state)
    present += file.count(d->name);
  if (present == 0 && !state.empty()) {
    std::vector<std::string> some;
    for (const auto &kv : file) {
      if (some.size() == 3)
        break;
      some.push_back("'" + kv.first + "'");
    }
    error = fmt::format("{}: not a checkpoint of model '{}': none of its {} parameters and buffers is in the file "
                        "(expected '{}'; the file holds {})",
                        path, m.name, state.size(), state[0]->name, some.empty() ? "no tensors" : fmt::format("{}", fmt::join(some, ", ")));
    return false;
  }
  Weights w;
  for (const StateDecl *d : state) {
    const bool isParam = d >= m.params.data() && d < m.params.data() + m.params.size();
    auto it = file.find(d->name);
    if (it == file.end()) {
      error = fmt::format("{}: missing tensor '{}' ({}, expected {}{}), which the model '{}' needs", path, d->name,
                          isParam ? "parameter" : "buffer", d->type.dtype == DType::F32 ? "F32" : "I64",
                          shapeText(d->type.shape), m.name);
      return false;
    }
    std::string why;
    if (!convert(it->second, *d, w[d->name], why)) {
      error = fmt::format("{}: tensor '{}' ({}): {}", path, d->name, isParam ? "parameter" : "buffer", why);
      return false;
    }
  }
  out = std::move(w);
  return true;
}

} // namespace gradc
