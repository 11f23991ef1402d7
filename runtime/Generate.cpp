// Generate.cpp: --generate N [--prompt S] [--temperature X]: samples N characters from a text model, one character per call of its compiled step function (ModelSpec::stepInputs), carrying the recurrences' state from call to call.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "DataSources.h"
#include "Driver.h"
#include "DriverInternal.h"
#include "Philox.h"

namespace gradc::rt {

using namespace detail;

void Backend::generateStep(const std::vector<const void *> &, const std::vector<void *> &) {
  throw DataError("this build of the model has no step function for --generate");
}

namespace {

/// The stream of the sampling draws in the Philox generator (dropout uses streams from 0 up, per step).
constexpr int64_t kSampleStream = 0x67656e; // "gen"

/// "'a' (U+0061)", for messages about a character.
std::string describeChar(uint32_t cp) {
  std::string s;
  if (cp >= 0x20 && cp != 0x7f) appendUtf8(s, cp);
  return fmt::format("{}U+{:04X}", s.empty() ? std::string() : "'" + s + "' (", cp) + (s.empty() ? "" : ")");
}

/// The step function's state between calls: the inputs (the character, then the carries) and
/// the outputs (the logits, then the carries' next values) of one float type.
class Stepper {
public:
  Stepper(const ModelSpec &spec, Backend &be) : spec_(spec), be_(be), ft_(be.floatType()) {
    for (const TensorSpec &t : spec.stepInputs) {
      const size_t n = static_cast<size_t>(numelOf(t.shape));
      in_.emplace_back(n * 4, 0); // int32_t or float, zero: every carry starts at zero
    }
    for (const TensorSpec &t : spec.stepOutputs) out_.emplace_back(static_cast<size_t>(numelOf(t.shape)) * dtypeSize(ft_), 0);
    for (auto &b : in_) inPtrs_.push_back(b.data());
    for (auto &b : out_) outPtrs_.push_back(b.data());
  }

  /// Runs one step on character index `c`; the logits are then logit(0..).
  void step(int32_t c) {
    std::memcpy(in_[0].data(), &c, sizeof c);
    be_.generateStep(inPtrs_, outPtrs_);
    for (size_t k = 1; k < in_.size(); ++k) { // the next step starts from this one's final carries
      const size_t n = in_[k].size() / 4;
      for (size_t e = 0; e < n; ++e) {
        const double v = out(k, e);
        if (spec_.stepInputs[k].dtype == DType::I32) {
          const int32_t i = static_cast<int32_t>(std::llround(v));
          std::memcpy(in_[k].data() + 4 * e, &i, 4);
        } else {
          const float f = static_cast<float>(v);
          std::memcpy(in_[k].data() + 4 * e, &f, 4);
        }
      }
    }
  }
  double logit(size_t j) const { return out(0, j); }

private:
  double out(size_t k, size_t e) const {
    if (ft_ == DType::F32) {
      float f;
      std::memcpy(&f, out_[k].data() + 4 * e, 4);
      return f;
    }
    double d;
    std::memcpy(&d, out_[k].data() + 8 * e, 8);
    return d;
  }

  const ModelSpec &spec_;
  Backend &be_;
  DType ft_;
  std::vector<std::vector<unsigned char>> in_, out_;
  std::vector<const void *> inPtrs_;
  std::vector<void *> outPtrs_;
};

} // namespace

std::vector<int32_t> detail::checkGenerate(const ModelSpec &spec, const DriverData &data, const DriverOptions &o) {
  if (spec.train.dataKind != "text")
    throw DataError("--generate: model " + spec.name + " cannot generate text: --generate needs a model trained on " +
                    "text(...) data (this one reads " +
                    (spec.train.dataKind.empty() ? std::string("no data source") : spec.train.dataKind + "(...)") + ")");
  if (spec.stepInputs.empty())
    throw DataError("--generate: model " + spec.name + " cannot generate text: " +
                    (spec.stepWhy.empty() ? std::string("it has no step function") : spec.stepWhy));
  if (!data.meta.hasVocabulary) throw DataError("--generate: the model's data gave no vocabulary");
  const std::vector<uint32_t> &vocab = data.meta.vocabulary;
  const int64_t classes = spec.stepOutputs[0].shape.back();
  if (static_cast<int64_t>(vocab.size()) > classes)
    throw DataError(fmt::format("--generate: the vocabulary has {} characters, more than the model's {} logits",
                                vocab.size(), classes));
  std::vector<int32_t> prompt;
  const std::vector<uint32_t> cps =
      decodeUtf8(reinterpret_cast<const unsigned char *>(o.prompt.data()), o.prompt.size(), "--prompt");
  for (size_t i = 0; i < cps.size(); ++i) {
    auto it = std::lower_bound(vocab.begin(), vocab.end(), cps[i]);
    if (it == vocab.end() || *it != cps[i])
      throw DataError(fmt::format("--prompt: character {} at position {} is not in the model's vocabulary (the {} "
                                  "characters of its text)",
                                  describeChar(cps[i]), i + 1, vocab.size()));
    prompt.push_back(static_cast<int32_t>(it - vocab.begin()));
  }
  return prompt;
}

int detail::generateText(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &o, uint64_t seed) {
  const std::vector<int32_t> prompt = checkGenerate(spec, data, o);
  const std::vector<uint32_t> &vocab = data.meta.vocabulary;
  const double temperature = o.temperature.value_or(1.0);
  if (!o.threads) setThreads(1); // one row per step: more threads only add their start-up cost
  Stepper st(spec, be);
  std::string text;
  for (int32_t c : prompt) {
    st.step(c);
    appendUtf8(text, vocab[static_cast<size_t>(c)]);
  }
  // With no prompt, the first character is drawn from the logits of the zero state after the
  // vocabulary's first character (a newline in most texts).
  if (prompt.empty()) st.step(0);
  const uint64_t key[2] = {seed, 0};
  std::vector<double> p(vocab.size());
  for (int64_t n = 0; n < *o.generate; ++n) {
    size_t pick = 0;
    for (size_t j = 1; j < vocab.size(); ++j)
      if (st.logit(j) > st.logit(pick)) pick = j;
    if (temperature > 0) { // softmax(logits / temperature) over the vocabulary, then one draw
      const double top = st.logit(pick);
      double sum = 0;
      for (size_t j = 0; j < vocab.size(); ++j) sum += p[j] = std::exp((st.logit(j) - top) / temperature);
      const double u = (philox24(key, kSampleStream, n) + 0.5) / 16777216.0 * sum;
      double acc = 0;
      pick = vocab.size() - 1;
      for (size_t j = 0; j < vocab.size(); ++j)
        if ((acc += p[j]) > u) {
          pick = j;
          break;
        }
    }
    appendUtf8(text, vocab[pick]);
    if (n + 1 < *o.generate) st.step(static_cast<int32_t>(pick));
  }
  text += '\n';
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return 0;
}

} // namespace gradc::rt
