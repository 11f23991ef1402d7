// gradc_step.cpp: a developer tool for the PyTorch comparison tests: compiles a model, runs
// one training step with the double-precision interpreter from a given state and batch, and
// writes the loss, every parameter's gradient and every updated state tensor.
//   gradc-step MODEL STATE.safetensors BATCH.safetensors OUT.safetensors
// STATE holds parameters and buffers by name (optimizer state may be absent: zeros).
// OUT holds "loss", "grad.<param>" and "<state>" after the step (all F64; integer buffers I64).
#include <cstdio>
#include <iostream>

#include "Safetensors.h"
#include "interp/Interpreter.h"
#include "driver/Pipeline.h"

using namespace gradc;

static DTensor toD(const rt::HostTensor &h, const std::string &name, const TensorType &want) {
  if (h.shape != want.shape)
    throw rt::DataError(name + ": shape " + rt::shapeString(h.shape) + ", expected " + want.str());
  DTensor d(h.shape);
  for (int64_t i = 0; i < d.numel(); ++i) {
    switch (h.dtype) {
    case rt::DType::F32: d.data[i] = h.f32()[i]; break;
    case rt::DType::F64: d.data[i] = h.f64()[i]; break;
    case rt::DType::I32: d.data[i] = h.i32()[i]; break;
    case rt::DType::I64: d.data[i] = static_cast<double>(h.i64()[i]); break;
    }
  }
  return d;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: gradc-step MODEL STATE.safetensors BATCH.safetensors OUT.safetensors\n");
    return 1;
  }
  SourceManager sm;
  Diagnostics diag(sm, std::cerr);
  try {
    uint32_t id;
    std::string err;
    if (!sm.load(argv[1], id, err)) {
      std::fprintf(stderr, "gradc-step: %s\n", err.c_str());
      return 1;
    }
    std::unique_ptr<Module> m = compileModule(sm, diag, id);
    auto stateIn = rt::readSafetensors(argv[2]);
    auto batch = rt::readSafetensors(argv[3]);
    TensorMap state, feeds;
    for (const auto *list : {&m->params, &m->buffers, &m->optState})
      for (const StateDecl &s : *list) {
        auto it = stateIn.find(s.name);
        if (it != stateIn.end())
          state[s.name] = toD(it->second, s.name, s.type);
        else if (list == &m->optState)
          state[s.name] = DTensor(s.type.shape, 0.0);
        else
          throw rt::DataError("state has no tensor '" + s.name + "'");
      }
    for (const auto *list : {&m->inputs, &m->targets})
      for (const TensorDecl &t : *list) {
        auto it = batch.find(t.name);
        if (it == batch.end())
          throw rt::DataError("batch has no tensor '" + t.name + "'");
        feeds[t.name] = toD(it->second, t.name, t.type);
      }
    RunResult r = interpret(*m->trainGraph, feeds, state, {{"lr", m->train.optimizer.lr}});
    std::vector<std::pair<std::string, rt::HostTensor>> out;
    auto put = [&](const std::string &name, const DTensor &d, bool integer) {
      rt::HostTensor h(integer ? rt::DType::I64 : rt::DType::F64, d.shape);
      for (int64_t i = 0; i < d.numel(); ++i) {
        if (integer)
          h.i64()[i] = static_cast<int64_t>(d.data[i]);
        else
          h.f64()[i] = d.data[i];
      }
      out.emplace_back(name, std::move(h));
    };
    put("loss", DTensor({}, r.loss), false);
    for (const auto &[name, g] : r.grads)
      put("grad." + name, g, false);
    for (const auto *list : {&m->params, &m->buffers, &m->optState})
      for (const StateDecl &s : *list) {
        auto it = r.updates.find(s.name);
        put(s.name, it != r.updates.end() ? it->second : state.at(s.name), s.type.dtype != DType::F32);
      }
    std::vector<std::pair<std::string, const rt::HostTensor *>> refs;
    for (const auto &[n, h] : out)
      refs.emplace_back(n, &h);
    rt::writeSafetensors(argv[4], refs);
    return 0;
  } catch (const CompileError &) {
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "gradc-step: %s\n", e.what());
    return 1;
  }
}
