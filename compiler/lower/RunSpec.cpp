// RunSpec.cpp: builds the runtime's ModelSpec from a compiled module.
#include "lower/RunSpec.h"

namespace gradc {

namespace {

rt::DType rtType(DType t) {
  switch (t) {
  case DType::F32: return rt::DType::F32;
  case DType::I32: return rt::DType::I32;
  case DType::I64: return rt::DType::I64;
  }
  return rt::DType::F32;
}

rt::StateSpec stateSpec(const StateDecl &d, rt::StateSpec::Kind kind) {
  rt::StateSpec s;
  s.name = d.name;
  s.kind = kind;
  s.dtype = rtType(d.type.dtype);
  s.shape = d.type.shape;
  s.init = static_cast<rt::StateSpec::Init>(d.init.kind);
  s.a = d.init.a;
  s.b = d.init.b;
  s.zeroRow = d.init.zeroRow;
  return s;
}

} // namespace

rt::ModelSpec makeModelSpec(const Module &m) {
  rt::ModelSpec s;
  s.name = m.name;
  for (const auto *list : {&m.inputs, &m.targets})
    for (const TensorDecl &d : *list)
      s.inputs.push_back({d.name, rtType(d.type.dtype), d.type.shape});
  s.numInputs = m.inputs.size();
  for (rt::TensorSpec &t : s.inputs) {
    auto b = m.indexBounds.find(t.name);
    if (b == m.indexBounds.end())
      continue;
    t.bound = b->second.first;
    const std::string top = b->second.second.substr(0, b->second.second.find('.'));
    auto w = m.layerWhere.find(top);
    t.boundWhere = w == m.layerWhere.end() ? "" : "layer " + top + ", " + w->second;
  }
  s.ranks = m.ranks;
  s.batch = s.inputs.empty() || s.inputs[0].shape.empty() ? 1 : s.inputs[0].shape[0];
  if (m.inferGraph)
    for (const auto &n : m.inferGraph->nodes)
      if (n->op == Op::Output)
        s.outputs.push_back({n->getStr("name"), rtType(n->operands[0]->type.dtype), n->operands[0]->type.shape});
  s.stepWhy = m.stepWhy;
  for (const TensorDecl &d : m.stepInputs)
    s.stepInputs.push_back({d.name, rtType(d.type.dtype), d.type.shape});
  if (m.stepGraph)
    for (const auto &n : m.stepGraph->nodes)
      if (n->op == Op::Output)
        s.stepOutputs.push_back({n->getStr("name"), rtType(n->operands[0]->type.dtype), n->operands[0]->type.shape});
  for (const StateDecl &d : m.params)
    s.state.push_back(stateSpec(d, rt::StateSpec::Param));
  for (const StateDecl &d : m.buffers)
    s.state.push_back(stateSpec(d, rt::StateSpec::Buffer));
  for (const StateDecl &d : m.optState)
    s.state.push_back(stateSpec(d, rt::StateSpec::OptState));
  const TrainConfig &tc = m.train;
  rt::TrainSpec &t = s.train;
  t.optimizer = tc.optimizer.kind;
  t.lr = tc.optimizer.lr;
  t.epochs = tc.epochs;
  t.seed = tc.seed;
  t.dataKind = tc.data.kind;
  t.dataPath = tc.data.path;
  t.dataLabels = tc.data.labels;
  t.column = tc.data.column;
  t.columns = tc.data.columns;
  t.scale = tc.data.scale;
  t.length = tc.data.length;
  t.horizon = tc.data.horizon;
  t.split = tc.data.split;
  t.valKind = tc.validation.kind;
  t.valPath = tc.validation.path;
  t.valLabels = tc.validation.labels;
  if (tc.earlyStopping) {
    t.earlyStopping = true;
    t.patience = tc.earlyStopping->patience;
    t.delta = tc.earlyStopping->delta;
  }
  t.validateEvery = tc.validateEvery;
  t.precision = tc.precision;
  const TrainConfig::Schedule &sc = tc.schedule;
  t.schedule = {sc.kind, sc.stepSize, sc.gamma, sc.tMax, sc.etaMin, sc.maxLr, sc.totalSteps, sc.pctStart, sc.factor,
                sc.patience};
  // Source lines for run-time messages: a state tensor's is that of the first component of
  // its name that is a top-level layer ("head" in "head.weight", "optimizer.exp_avg.head.weight").
  s.lossWhere = m.lossWhere;
  for (rt::StateSpec &st : s.state) {
    size_t b = 0;
    while (b <= st.name.size() && st.where.empty()) {
      size_t e = st.name.find('.', b);
      if (e == std::string::npos)
        e = st.name.size();
      auto it = m.layerWhere.find(st.name.substr(b, e - b));
      if (it != m.layerWhere.end())
        st.where = "layer " + it->first + ", " + it->second;
      b = e + 1;
    }
  }
  return s;
}

} // namespace gradc
