// TrainBlock.cpp: checks the train block (optimizer, learning-rate schedule, epochs, data
// source, clipping, early stopping) against the language's rules (docs/language.md, Train block) and fills the
// module's TrainConfig.
#include <cmath>
#include <filesystem>
#include <limits>

#include <fmt/format.h>

#include "elaborate/ElaborateImpl.h"

namespace gradc {

namespace {

/// A call like adam(lr = 0.001) matched against its parameter names.
struct CallArgs {
  std::string fn;
  SrcLoc loc;
  std::map<std::string, std::pair<Val, SrcLoc>> values;

  const std::pair<Val, SrcLoc> *get(const std::string &k) const {
    auto it = values.find(k);
    return it == values.end() ? nullptr : &it->second;
  }
};

CallArgs matchCall(Elaborator &el, Diagnostics &diag, const Expr &e, Scope &scope, const char *setting,
                   const std::map<std::string, std::vector<std::string>> &functions) {
  if (e.kind != ExprKind::Call || e.operands[0]->kind != ExprKind::NameRef || !e.operands[0]->name.isPlain()) {
    std::vector<std::string> names;
    for (auto &[k, v] : functions)
      names.push_back(k + "(...)");
    diag.error(e.loc, "'{}' expects {}", setting, fmt::join(names, " or "));
  }
  CallArgs c;
  c.fn = e.operands[0]->name.plain();
  c.loc = e.loc;
  auto it = functions.find(c.fn);
  if (it == functions.end()) {
    std::vector<std::string> names;
    for (auto &[k, v] : functions)
      names.push_back(k);
    diag.error(e.operands[0]->loc, "unknown {} '{}'; expected {}", setting, c.fn, fmt::join(names, ", "));
  }
  const std::vector<std::string> &params = it->second;
  size_t pos = 0;
  for (const Arg &a : e.args) {
    std::string key = a.keyword;
    if (key.empty()) {
      if (pos >= params.size())
        diag.error(a.loc, "{}() takes at most {} arguments", c.fn, params.size());
      key = params[pos++];
    } else if (std::find(params.begin(), params.end(), key) == params.end()) {
      diag.error(a.loc, "{}() has no argument '{}'; it takes {}", c.fn, key, fmt::join(params, ", "));
    }
    if (c.values.count(key))
      diag.error(a.loc, "argument '{}' given twice", key);
    c.values[key] = {el.eval(*a.value, scope), a.loc};
  }
  return c;
}

} // namespace

void Elaborator::schedule(const Expr &e, Scope &scope) {
  CallArgs c = matchCall(*this, diag_, e, scope, "schedule",
                         {{"step", {"step_size", "gamma"}},
                          {"cosine", {"t_max", "eta_min"}},
                          {"onecycle", {"max_lr", "total_steps", "pct_start"}},
                          {"plateau", {"factor", "patience"}}});
  TrainConfig::Schedule &sc = m_->train.schedule;
  sc.kind = c.fn;
  auto need = [&](const char *k) {
    const auto *v = c.get(k);
    if (!v)
      diag_.error(c.loc, "{}() needs '{}'", c.fn, k);
    return v;
  };
  auto integer = [&](const std::pair<Val, SrcLoc> &v, const char *what, int64_t lo) {
    int64_t x = constInt(v.first, v.second, what);
    if (x < lo)
      diag_.error(v.second, "{} must be {}, got {}", what, lo > 0 ? "a positive integer" : "a non-negative integer", x);
    return x;
  };
  auto number = [&](const std::pair<Val, SrcLoc> &v, const char *what, double lo, double hi, bool openLo, bool openHi) {
    double x = constNum(v.first, v.second, what);
    if (!std::isfinite(x) || (openLo ? x <= lo : x < lo) || (openHi ? x >= hi : x > hi))
      diag_.error(v.second, "{} must be in {}{}, {}{}, got {}", what, openLo ? "(" : "[", lo,
                  std::isinf(hi) ? std::string("inf") : fmt::format("{}", hi), openHi ? ")" : "]", x);
    return x;
  };
  const double inf = std::numeric_limits<double>::infinity();
  if (c.fn == "step") {
    sc.stepSize = integer(*need("step_size"), "step_size", 1);
    if (const auto *v = c.get("gamma"))
      sc.gamma = number(*v, "gamma", 0, inf, true, true);
  } else if (c.fn == "cosine") {
    sc.tMax = integer(*need("t_max"), "t_max", 1);
    if (const auto *v = c.get("eta_min"))
      sc.etaMin = number(*v, "eta_min", 0, inf, false, true);
  } else if (c.fn == "onecycle") {
    sc.maxLr = number(*need("max_lr"), "max_lr", 0, inf, true, true);
    sc.totalSteps = integer(*need("total_steps"), "total_steps", 1);
    const auto *pct = c.get("pct_start");
    if (pct)
      sc.pctStart = number(*pct, "pct_start", 0, 1, true, true);
    // OneCycleLR divides by the lengths of its two phases: both must be positive.
    if (!(sc.pctStart * static_cast<double>(sc.totalSteps) - 1 > 0))
      diag_.error(pct ? pct->second : c.loc,
                  "onecycle() warms up for pct_start * total_steps - 1 = {} steps; it needs more than 0 "
                  "(raise total_steps or pct_start)",
                  sc.pctStart * static_cast<double>(sc.totalSteps) - 1);
  } else {
    if (const auto *v = c.get("factor"))
      sc.factor = number(*v, "factor", 0, 1, true, true);
    if (const auto *v = c.get("patience"))
      sc.patience = integer(*v, "patience", 0);
  }
}

void Elaborator::checkFilled(SrcLoc loc, const char *source, const char *kind, const char *name, DType dtype,
                             const std::vector<int64_t> &rest) {
  const std::vector<TensorDecl> &list = std::string(kind) == "input" ? m_->inputs : m_->targets;
  for (const TensorDecl &t : list)
    if (t.name == name) {
      std::vector<int64_t> got(t.type.shape.begin() + std::min<size_t>(1, t.type.shape.size()), t.type.shape.end());
      if (got != rest || t.type.dtype != dtype)
        diag_.error(loc, "{}() fills {} '{}' with {}[N,{}], but it is declared {}", source, kind, name,
                    dtype == DType::F32 ? "f32" : "i32", fmt::join(rest, ","), t.type.str());
      return;
    }
  diag_.error(loc, "{}() fills {} '{}', which the model does not declare", source, kind, name);
}

void Elaborator::trainBlock(const Decl &d, Scope &scope) {
  TrainConfig &tc = m_->train;
  tc.loc = d.loc;
  std::map<std::string, SrcLoc> seen;
  auto positive = [&](const std::pair<Val, SrcLoc> &v, const char *what) {
    double x = constNum(v.first, v.second, what);
    if (!(x > 0) || !std::isfinite(x))
      diag_.error(v.second, "{} must be positive, got {}", what, x);
    return x;
  };
  auto positiveInt = [&](const Val &v, SrcLoc loc, const char *what) {
    int64_t x = constInt(v, loc, what);
    if (x <= 0)
      diag_.error(loc, "{} must be a positive integer, got {}", what, x);
    return x;
  };
  auto str = [&](const std::pair<Val, SrcLoc> &v, const char *what) {
    if (v.first.kind != Val::Str)
      diag_.error(v.second, "{} must be a string, got {}", what, describe(v.first));
    return v.first.s;
  };
  std::filesystem::path base = std::filesystem::path(m_->path).parent_path();
  auto path = [&](const std::pair<Val, SrcLoc> &v, const char *what) {
    std::string p = str(v, what);
    if (p.empty())
      diag_.error(v.second, "{} is empty", what);
    return std::filesystem::path(p).is_absolute() ? p : std::filesystem::absolute(base / p).lexically_normal().string();
  };

  for (const TrainSetting &s : d.settings) {
    if (!seen.emplace(s.key, s.loc).second)
      diag_.error(s.loc, "train setting '{}' is given twice", s.key);
    if (s.key == "optimizer") {
      CallArgs c = matchCall(*this, diag_, *s.value, scope, "optimizer",
                             {{"sgd", {"lr", "momentum", "weight_decay", "nesterov"}},
                              {"adam", {"lr", "beta1", "beta2", "eps", "weight_decay"}},
                              {"adamw", {"lr", "beta1", "beta2", "eps", "weight_decay"}}});
      auto &o = tc.optimizer;
      o.kind = c.fn;
      if (o.kind == "adamw")
        o.weightDecay = 0.01; // torch.optim.AdamW's default
      const auto *lr = c.get("lr");
      if (!lr)
        diag_.error(c.loc, "{}() needs a learning rate: {}(lr = ...)", c.fn, c.fn);
      o.lr = positive(*lr, "the learning rate");
      auto num01 = [&](const char *k, double &field, bool closedTop) {
        if (const auto *v = c.get(k)) {
          field = constNum(v->first, v->second, k);
          if (field < 0 || (closedTop ? field > 1 : field >= 1))
            diag_.error(v->second, "{} must be in [0, 1{}, got {}", k, closedTop ? "]" : ")", field);
        }
      };
      num01("momentum", o.momentum, true);
      num01("beta1", o.beta1, false);
      num01("beta2", o.beta2, false);
      if (const auto *v = c.get("weight_decay")) {
        o.weightDecay = constNum(v->first, v->second, "weight_decay");
        if (o.weightDecay < 0)
          diag_.error(v->second, "weight_decay must not be negative");
      }
      if (const auto *v = c.get("eps"))
        o.eps = positive(*v, "eps");
      if (const auto *v = c.get("nesterov")) {
        o.nesterov = constBool(v->first, v->second, "nesterov");
        if (o.nesterov && o.momentum <= 0)
          diag_.error(v->second, "nesterov momentum needs momentum > 0");
      }
    } else if (s.key == "schedule") {
      schedule(*s.value, scope);
    } else if (s.key == "epochs") {
      tc.epochs = positiveInt(eval(*s.value, scope), s.value->loc, "epochs");
    } else if (s.key == "seed") {
      tc.seed = constInt(eval(*s.value, scope), s.value->loc, "seed");
      if (tc.seed < 0)
        diag_.error(s.value->loc, "seed must not be negative");
    } else if (s.key == "precision") {
      tc.precision = str({eval(*s.value, scope), s.value->loc}, "precision");
      if (tc.precision != "f32" && tc.precision != "bf16")
        diag_.error(s.value->loc, "precision must be \"f32\" or \"bf16\", got \"{}\"", tc.precision);
    } else if (s.key == "validate_every") {
      tc.validateEvery = positiveInt(eval(*s.value, scope), s.value->loc, "validate_every");
    } else if (s.key == "clip_grad_value" || s.key == "clip_grad_norm") {
      double v = positive({eval(*s.value, scope), s.value->loc}, s.key.c_str());
      (s.key == "clip_grad_value" ? tc.clipGradValue : tc.clipGradNorm) = v;
    } else if (s.key == "early_stopping") {
      CallArgs c = matchCall(*this, diag_, *s.value, scope, "early_stopping", {{"plateau", {"patience", "delta"}}});
      TrainConfig::EarlyStopping es;
      const auto *p = c.get("patience");
      if (!p)
        diag_.error(c.loc, "plateau() needs patience = N");
      es.patience = positiveInt(p->first, p->second, "patience");
      if (const auto *v = c.get("delta")) {
        es.delta = constNum(v->first, v->second, "delta");
        if (es.delta < 0)
          diag_.error(v->second, "delta must not be negative");
      }
      tc.earlyStopping = es;
    } else if (s.key == "data" || s.key == "validation") {
      bool val = s.key == "validation";
      CallArgs c = val ? matchCall(*this, diag_, *s.value, scope, "validation source",
                                   {{"idx", {"images", "labels"}}, {"tensors", {"path"}}})
                       : matchCall(*this, diag_, *s.value, scope, "data source",
                                   {{"windows", {"path", "column", "length", "horizon", "split", "scale", "columns",
                                                 "target"}},
                                    {"idx", {"images", "labels"}},
                                    {"tensors", {"path"}},
                                    {"text", {"path", "length", "split"}}});
      auto &dd = val ? tc.validation : tc.data;
      dd.kind = c.fn;
      auto need = [&](const char *k) {
        const auto *v = c.get(k);
        if (!v)
          diag_.error(c.loc, "{}() needs '{}'", c.fn, k);
        return v;
      };
      if (c.fn == "windows") {
        dd.path = path(*need("path"), "the data path");
        const auto *colv = c.get("column");
        const auto *colsv = c.get("columns");
        const auto *tgtv = c.get("target");
        if (colv && (colsv || tgtv))
          diag_.error(colv->second, "windows() takes either 'column' (one series) or 'columns' and 'target', not both");
        if (colsv || tgtv) {
          if (!colsv || !tgtv)
            diag_.error(c.loc, "windows() with several columns needs both 'columns = [...]' and 'target = NAME'");
          if (colsv->first.kind != Val::StrList || colsv->first.strs.empty())
            diag_.error(colsv->second, "columns must be a non-empty list of column names, got {}", describe(colsv->first));
          dd.columns = colsv->first.strs;
          for (size_t i = 0; i < dd.columns.size(); ++i)
            for (size_t j = 0; j < i; ++j)
              if (dd.columns[i] == dd.columns[j])
                diag_.error(colsv->second, "column \"{}\" is listed twice in columns", dd.columns[i]);
          dd.target = str(*tgtv, "target");
          dd.column = dd.target;
        } else {
          dd.column = str(*need("column"), "column");
        }
        const int64_t features = dd.columns.empty() ? 1 : static_cast<int64_t>(dd.columns.size());
        const auto *len = need("length");
        dd.length = positiveInt(len->first, len->second, "length");
        if (const auto *v = c.get("horizon"))
          dd.horizon = positiveInt(v->first, v->second, "horizon");
        if (const auto *v = c.get("split")) {
          dd.split = constNum(v->first, v->second, "split");
          if (!(dd.split > 0 && dd.split <= 1))
            diag_.error(v->second, "split must be in (0, 1], got {}", dd.split);
        }
        if (const auto *v = c.get("scale")) {
          dd.scale = str(*v, "scale");
          if (dd.scale != "minmax" && dd.scale != "standard" && dd.scale != "none")
            diag_.error(v->second, "scale must be \"minmax\", \"standard\" or \"none\", got \"{}\"", dd.scale);
        }
        // windows() fills x [N, length, features] and y [N, 1].
        checkFilled(c.loc, "windows", "input", "x", DType::F32, {dd.length, features});
        checkFilled(c.loc, "windows", "target", "y", DType::F32, {1});
      } else if (c.fn == "text") {
        dd.path = path(*need("path"), "the text path");
        const auto *len = need("length");
        dd.length = positiveInt(len->first, len->second, "length");
        dd.split = 0.9;
        if (const auto *v = c.get("split")) {
          dd.split = constNum(v->first, v->second, "split");
          if (!(dd.split > 0 && dd.split <= 1))
            diag_.error(v->second, "split must be in (0, 1], got {}", dd.split);
        }
        // text() fills x i32[N, length] and y i32[N, length] (y is x shifted by one character).
        checkFilled(c.loc, "text", "input", "x", DType::I32, {dd.length});
        checkFilled(c.loc, "text", "target", "y", DType::I32, {dd.length});
      } else if (c.fn == "idx") {
        dd.path = path(*need("images"), "the images path");
        dd.labels = path(*need("labels"), "the labels path");
      } else {
        dd.path = path(*need("path"), "the data path");
      }
    } else {
      diag_.error(s.loc, "unknown train setting '{}'; expected optimizer, schedule, epochs, seed, data, clip_grad_value, "
                         "clip_grad_norm, early_stopping, validate_every, validation or precision", s.key);
    }
  }
  if (tc.clipGradValue && tc.clipGradNorm)
    diag_.error(seen["clip_grad_norm"], "give clip_grad_value or clip_grad_norm, not both");
}

} // namespace gradc
