// DriverTest.cpp: unit tests of the training driver (runtime/Driver.cpp) with hand-written fake backends: a linear regression in double with a closed-form gradient and SGD, and a one-parameter "counter" whose validation loss falls and rises again (early stopping).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "DataSources.h"
#include "Driver.h"
#include "Model.h"
#include "Safetensors.h"

namespace gradc::rt {
namespace {

namespace fs = std::filesystem;

/// A fresh directory for one test's files, removed at the end of the test.
class TempDir {
public:
  explicit TempDir(const std::string &name)
      : dir_(fs::temp_directory_path() / ("gradc-driver-test-" + std::to_string(::getpid()) + "-" + name)) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  operator const fs::path &() const { return dir_; }
  fs::path operator/(const std::string &f) const { return dir_ / f; }

private:
  fs::path dir_;
};

/// The result of one runMain call.
struct RunResult {
  int code = 0;
  std::string out, err;
  std::vector<std::string> lines() const {
    std::vector<std::string> v;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  }
};

/// Calls runMain with argv = {"lin", args...}, capturing stdout and stderr.
RunResult run(const ModelSpec &spec, Backend &be, std::vector<std::string> args, Backend *precise = nullptr) {
  args.insert(args.begin(), "/some/dir/lin");
  std::vector<char *> argv;
  for (std::string &a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  RunResult r;
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  r.code = runMain(spec, be, static_cast<int>(args.size()), argv.data(), precise);
  r.out = testing::internal::GetCapturedStdout();
  r.err = testing::internal::GetCapturedStderr();
  return r;
}

// ---- the linear regression model: yhat = w . x + b, loss = mean (yhat - y)^2 ----

constexpr int64_t kD = 3;

ModelSpec linearSpec(int64_t batch, const std::string &dataPath) {
  ModelSpec s;
  s.name = "lin";
  s.batch = batch;
  s.inputs = {{"x", DType::F32, {batch, kD}}, {"y", DType::F32, {batch, 1}}};
  s.numInputs = 1;
  s.outputs = {{"yhat", DType::F32, {batch, 1}}};
  s.state = {
      {"lin.weight", StateSpec::Param, DType::F32, {1, kD}, StateSpec::Uniform, -0.5, 0.5},
      {"lin.bias", StateSpec::Param, DType::F32, {1}, StateSpec::Zeros, 0, 0},
      {"lin.num_batches_tracked", StateSpec::Buffer, DType::I64, {}, StateSpec::Zeros, 0, 0},
      {"optimizer.step", StateSpec::OptState, DType::F32, {}, StateSpec::Zeros, 0, 0},
  };
  s.train.optimizer = "sgd";
  s.train.lr = 0.2;
  s.train.epochs = 5;
  s.train.seed = 7;
  s.train.dataKind = "tensors";
  s.train.dataPath = dataPath;
  return s;
}

/// Linear regression with its closed-form gradient and plain SGD, storing its state as T.
template <class T> class FakeLinearT : public Backend {
public:
  explicit FakeLinearT(const ModelSpec &spec) : w(kD, T(0)), spec_(spec) {}

  DType floatType() const override { return sizeof(T) == 8 ? DType::F64 : DType::F32; }
  void *stateData(size_t i) override {
    switch (i) {
    case 0: return w.data();
    case 1: return &b;
    case 2: return &tracked;
    default: return &optStep;
    }
  }
  void setLearningRateScale(double f) override { scale = f; }

  double trainStep(const Batch &bt) override {
    const float *x = static_cast<const float *>(bt.data[0]);
    for (int64_t r = 0; r < spec_.batch; ++r) seen.push_back(std::lround(x[r * kD] * 1000.0));
    std::vector<double> gw;
    double gb = 0;
    const double l = forward(bt, &gw, &gb);
    const double lr = spec_.train.lr * scale;
    for (int64_t j = 0; j < kD; ++j) w[j] = static_cast<T>(w[j] - lr * gw[j]);
    b = static_cast<T>(b - lr * gb);
    ++tracked;
    optStep += 1;
    ++steps;
    return l;
  }
  double evalLoss(const Batch &bt) override { return forward(bt, nullptr, nullptr); }
  void predict(const Batch &bt, const std::vector<void *> &outs) override {
    const float *x = static_cast<const float *>(bt.data[0]);
    T *o = static_cast<T *>(outs[0]);
    for (int64_t r = 0; r < spec_.batch; ++r) {
      double p = b;
      for (int64_t j = 0; j < kD; ++j) p += w[j] * x[r * kD + j];
      o[r] = static_cast<T>(p);
    }
  }
  double lossAndGrads(const Batch &bt, std::vector<std::vector<double>> &grads) override {
    std::vector<double> gw;
    double gb = 0;
    const double l = forward(bt, &gw, &gb);
    if (wrongGradient) gw[1] *= 1.5;
    grads = {gw, {gb}};
    return l;
  }
  double loss(const Batch &bt) override { return forward(bt, nullptr, nullptr); }

  std::vector<T> w;
  T b = 0;
  int64_t tracked = 0;
  T optStep = 0;
  double scale = 1;
  bool wrongGradient = false;
  int64_t steps = 0;
  std::vector<long> seen; ///< Sample ids (x[0] * 1000) in the order trainStep saw them.

private:
  double forward(const Batch &bt, std::vector<double> *gw, double *gb) const {
    const float *x = static_cast<const float *>(bt.data[0]);
    const float *y = static_cast<const float *>(bt.data[1]);
    const int64_t B = spec_.batch;
    if (gw) gw->assign(kD, 0.0);
    double l = 0;
    for (int64_t r = 0; r < B; ++r) {
      double p = b;
      for (int64_t j = 0; j < kD; ++j) p += w[j] * x[r * kD + j];
      const double e = p - y[r];
      l += e * e;
      if (gw) {
        for (int64_t j = 0; j < kD; ++j) (*gw)[j] += 2 * e * x[r * kD + j] / static_cast<double>(B);
        *gb += 2 * e / static_cast<double>(B);
      }
    }
    return l / static_cast<double>(B);
  }

  const ModelSpec &spec_;
};

using FakeLinear = FakeLinearT<double>;


/// Writes n samples: x[i] = (i / 1000, sin i, cos 0.7 i), y = 0.3 x0 - 0.2 x1 + 0.5 x2 + 0.1.
std::string writeLinearData(const fs::path &dir, int64_t n, bool withTargets = true) {
  HostTensor x(DType::F32, {n, kD}), y(DType::F32, {n, 1});
  for (int64_t i = 0; i < n; ++i) {
    float *xi = x.f32() + i * kD;
    xi[0] = static_cast<float>(i) / 1000.0f;
    xi[1] = static_cast<float>(std::sin(static_cast<double>(i)));
    xi[2] = static_cast<float>(std::cos(0.7 * static_cast<double>(i)));
    y.f32()[i] = 0.3f * xi[0] - 0.2f * xi[1] + 0.5f * xi[2] + 0.1f;
  }
  std::string path = (dir / (withTargets ? "data.safetensors" : "inputs.safetensors")).string();
  std::vector<std::pair<std::string, const HostTensor *>> t = {{"x", &x}};
  if (withTargets) t.emplace_back("y", &y);
  writeSafetensors(path, t);
  return path;
}

/// The losses of the "epoch E loss L ..." lines.
std::vector<double> epochLosses(const RunResult &r) {
  std::vector<double> v;
  for (const std::string &l : r.lines())
    if (l.rfind("epoch ", 0) == 0) {
      std::istringstream in(l);
      std::string w1, w2;
      long e;
      double loss;
      in >> w1 >> e >> w2 >> loss;
      v.push_back(loss);
    }
  return v;
}

// ---- flags ----

TEST(DriverFlags, ParsesBothForms) {
  DriverOptions o = parseArgs({"--epochs", "3", "--lr=0.5", "--seed=-4", "--batch-limit", "10", "--data", "d.csv",
                               "--no-shuffle", "--load=a.safetensors", "--save", "b.safetensors", "--threads=2",
                               "--quiet"});
  EXPECT_EQ(*o.epochs, 3);
  EXPECT_EQ(*o.lr, 0.5);
  EXPECT_EQ(*o.seed, -4);
  EXPECT_EQ(*o.batchLimit, 10);
  EXPECT_EQ(o.data, "d.csv");
  EXPECT_TRUE(o.noShuffle);
  EXPECT_EQ(o.load, "a.safetensors");
  EXPECT_EQ(o.save, "b.safetensors");
  EXPECT_EQ(*o.threads, 2);
  EXPECT_TRUE(o.quiet);
  EXPECT_FALSE(o.predict);
  DriverOptions p = parseArgs({"--predict", "--out", "o.csv"});
  EXPECT_TRUE(p.predict);
  EXPECT_EQ(p.out, "o.csv");
  EXPECT_TRUE(parseArgs({"--gradcheck", "--gradcheck-tol=1e-3"}).gradcheckTol.has_value());
  EXPECT_TRUE(parseArgs({"--help"}).help);
  EXPECT_TRUE(parseArgs({"-h"}).help);
}

TEST(DriverFlags, RejectsBadInput) {
  auto bad = [](std::vector<std::string> a, const std::string &needle) {
    try {
      parseArgs(a);
      ADD_FAILURE() << "accepted " << a[0];
    } catch (const UsageError &e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  bad({"--epochs", "abc"}, "'--epochs' expects a non-negative integer, found 'abc'");
  bad({"--epochs", "-1"}, "'--epochs'");
  bad({"--epochs"}, "'--epochs' needs a value");
  bad({"--epochs=12x"}, "found '12x'");
  bad({"--lr", "nan"}, "'--lr' expects a non-negative number");
  bad({"--lr", "1e999"}, "'--lr'");
  bad({"--threads", "0"}, "'--threads'");
  bad({"--frobnicate"}, "unknown option '--frobnicate'");
  bad({"-x"}, "unknown option '-x'");
  bad({"model.csv"}, "unexpected argument 'model.csv'");
  bad({"--quiet=1"}, "takes no value");
  bad({"--out", "o.csv"}, "'--out' needs '--predict'");
  bad({"--predict", "--gradcheck"}, "cannot be combined");
  bad({"--data="}, "needs a file name");
  bad({"--generate", "5", "--prompt="}, "'--prompt' needs a text");
  bad({"--prompt", "ab"}, "'--prompt' needs '--generate'");
  bad({"--temperature", "1"}, "'--temperature' needs '--generate'");
  bad({"--generate", "0"}, "out of range");
  bad({"--generate", "3", "--gradcheck"}, "cannot be combined");
  bad({"--seed", "99999999999999999999"}, "out of range");
  bad({"--precision", "fp16"}, "expects f32 or bf16");
  bad({"--precision="}, "needs f32 or bf16");
}

// The flags of section 4 of the contract (and the testing flag), independent of the table.
TEST(DriverFlags, TableHasEveryFlagOfTheContract) {
  const std::vector<std::string> want = {
      "--epochs",  "--lr",     "--seed",          "--batch-limit", "--data",     "--no-shuffle",       "--load",
      "--save",    "--predict", "--out",          "--gradcheck",   "--gradcheck-tol", "--threads",       "--timing",
      "--resume",  "--checkpoint-every", "--check-finite", "--metrics", "--quiet", "--help", "--interrupt-after-steps",
      "--generate", "--prompt", "--temperature", // section 7
      "--precision"};                            // bf16 mixed precision
  std::vector<std::string> have;
  for (const FlagInfo &f : driverFlags()) {
    have.push_back(f.name);
    EXPECT_EQ(f.hidden, f.name == "--interrupt-after-steps") << f.name << ": only the testing flag is left out of --help";
  }
  EXPECT_EQ(std::set<std::string>(have.begin(), have.end()), std::set<std::string>(want.begin(), want.end()));
  EXPECT_EQ(have.size(), std::set<std::string>(have.begin(), have.end()).size()) << "a flag is listed twice";
}

// Every flag the parser accepts is on the --help page (with its value placeholder), in
// table order, except the hidden testing flags; and the page lists no flag the parser rejects.
TEST(DriverFlags, HelpListsExactlyTheParsersFlags) {
  ModelSpec spec;
  spec.name = "m";
  spec.batch = 4;
  const std::string help = usageText("exe", spec);
  size_t last = 0;
  for (const FlagInfo &f : driverFlags()) {
    // The parser accepts the flag (a switch alone, a value flag with a valid value).
    std::vector<std::string> args = {f.name};
    if (!f.arg.empty()) args.push_back(f.arg == "X" ? "0.5" : f.arg == "N" ? "3" : f.arg == "P" ? "bf16" : "f.safetensors");
    if (f.name == "--out" || f.name == "--gradcheck-tol") args.push_back(f.name == "--out" ? "--predict" : "--gradcheck");
    if (f.name == "--checkpoint-every") args.insert(args.end(), {"--save", "s.safetensors"});
    if (f.name == "--prompt" || f.name == "--temperature") args.insert(args.end(), {"--generate", "10"});
    EXPECT_NO_THROW(parseArgs(args)) << f.name;
    if (!f.alias.empty()) EXPECT_NO_THROW(parseArgs({f.alias})) << f.alias;
    const std::string entry = "\n  " + f.name + (f.arg.empty() ? " " : " " + f.arg);
    const size_t at = help.find(entry);
    if (f.hidden) {
      EXPECT_EQ(help.find(f.name), std::string::npos) << f.name << " is a testing flag";
      continue;
    }
    ASSERT_NE(at, std::string::npos) << f.name << " is missing from --help:\n" << help;
    EXPECT_GT(at, last) << f.name << " is out of table order";
    last = at;
  }
  // Conversely, every "--flag" at the start of a help line is one the parser knows.
  std::istringstream lines(help);
  for (std::string line; std::getline(lines, line);) {
    if (line.compare(0, 4, "  --") != 0) continue;
    const std::string name = line.substr(2, line.find(' ', 2) - 2);
    bool known = false;
    for (const FlagInfo &f : driverFlags()) known |= f.name == name;
    EXPECT_TRUE(known) << name;
  }
}

// ---- random numbers ----

TEST(DriverRandom, DetLogMatchesStdLog) {
  for (double x : {1e-300, 1e-10, 0.1, 0.5, 0.70710678, 0.9999999, 1.0, 1.0000001, 1.5, 2.0, 10.0, 12345.678, 1e300})
    EXPECT_NEAR(detLog(x), std::log(x), 2e-16 * std::max(1.0, std::fabs(std::log(x)))) << x;
  EXPECT_EQ(detLog(1.0), 0.0);
  EXPECT_TRUE(std::isinf(detLog(0.0)));
}

TEST(DriverRandom, StreamsAreDeterministicAndDistinct) {
  Rng a(streamSeed(42, "init:w")), b(streamSeed(42, "init:w")), c(streamSeed(42, "init:v")), d(streamSeed(43, "init:w"));
  uint64_t va = a.next();
  EXPECT_EQ(va, b.next());
  EXPECT_NE(va, c.next());
  EXPECT_NE(va, d.next());
  // std::mt19937_64 is fully specified: its 10000th output for the default seed is fixed.
  std::mt19937_64 ref;
  ref.discard(9999);
  EXPECT_EQ(ref(), 9981545732273789042ull);
}

TEST(DriverRandom, UniformAndNormalMoments) {
  Rng r(streamSeed(1, "test"));
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < n; ++i) {
    double u = r.uniform(-1, 3);
    ASSERT_GE(u, -1);
    ASSERT_LT(u, 3);
    su += u;
    double z = r.normal();
    sn += z;
    sn2 += z * z;
  }
  EXPECT_NEAR(su / n, 1.0, 0.02);
  EXPECT_NEAR(sn / n, 0.0, 0.01);
  EXPECT_NEAR(sn2 / n, 1.0, 0.02);
  std::vector<int> hist(7, 0);
  for (int i = 0; i < 70000; ++i) ++hist[r.below(7)];
  for (int h : hist) EXPECT_NEAR(h, 10000, 500);
}

TEST(DriverRandom, EpochOrderIsASeededPermutation) {
  std::vector<int64_t> p(50), q(50), s(50);
  epochOrder(p, 9, 0, true);
  epochOrder(q, 9, 0, true);
  EXPECT_EQ(p, q);
  epochOrder(q, 9, 1, true);
  EXPECT_NE(p, q);
  epochOrder(q, 10, 0, true);
  EXPECT_NE(p, q);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(sorted[i], i);
  epochOrder(s, 9, 0, false);
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(s[i], i);
}

TEST(DriverState, InitIsSeededAndInRange) {
  ModelSpec spec = linearSpec(4, "unused");
  spec.state.push_back({"n.weight", StateSpec::Param, DType::F32, {1, kD}, StateSpec::Normal, 2.0, 0.0});
  FakeLinear a(spec), b(spec);
  initState(spec, a, 5);
  initState(spec, b, 5);
  EXPECT_EQ(a.w, b.w);
  for (double v : a.w) {
    EXPECT_GE(v, -0.5);
    EXPECT_LT(v, 0.5);
  }
  initState(spec, b, 6);
  EXPECT_NE(a.w, b.w);
}

// ---- training ----

TEST(Driver, TrainingDecreasesTheLoss) {
  TempDir dir("train");
  ModelSpec spec = linearSpec(8, writeLinearData(dir, 100));
  FakeLinear be(spec);
  RunResult r = run(spec, be, {"--quiet", "--epochs", "20"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<double> losses = epochLosses(r);
  ASSERT_EQ(losses.size(), 20u);
  EXPECT_LT(losses.back(), losses.front() * 0.2);
  EXPECT_EQ(be.steps, 20 * (100 / 8)); // the partial batch (100 % 8 = 4 samples) is dropped
  // Quiet lines are exactly "epoch E loss L"; no validation here.
  std::regex epochLine(R"(epoch \d+ loss [-+0-9.e]+)");
  std::vector<std::string> lines = r.lines();
  for (size_t i = 0; i < 20; ++i) EXPECT_TRUE(std::regex_match(lines[i], epochLine)) << lines[i];
  ASSERT_EQ(lines.size(), 21u);
  EXPECT_TRUE(std::regex_match(lines[20], std::regex(R"(final loss [-+0-9.e]+)"))) << lines[20];
  // Not quiet: a time field, and no progress bar when stderr is not a terminal.
  FakeLinear be2(spec);
  RunResult r2 = run(spec, be2, {"--epochs", "2"});
  ASSERT_EQ(r2.code, 0) << r2.err;
  EXPECT_TRUE(std::regex_match(r2.lines()[0], std::regex(R"(epoch 1 loss [-+0-9.e]+ lr [-+0-9.e]+ time [0-9.]+s)"))) << r2.out;
  EXPECT_EQ(r2.err, "");
}

TEST(Driver, LrFlagRescales) {
  TempDir dir("lr");
  ModelSpec spec = linearSpec(8, writeLinearData(dir, 40));
  FakeLinear be(spec);
  ASSERT_EQ(run(spec, be, {"--quiet", "--epochs", "1", "--lr", "0.05"}).code, 0);
  EXPECT_DOUBLE_EQ(be.scale, 0.25);
}

TEST(Driver, BatchLimitStops) {
  TempDir dir("limit");
  ModelSpec spec = linearSpec(8, writeLinearData(dir, 100));
  FakeLinear be(spec);
  RunResult r = run(spec, be, {"--quiet", "--epochs", "10", "--batch-limit", "15"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(be.steps, 15);
  EXPECT_EQ(epochLosses(r).size(), 2u); // 12 steps in epoch 1, 3 in epoch 2
  FakeLinear be0(spec);
  RunResult r0 = run(spec, be0, {"--quiet", "--batch-limit=0"});
  EXPECT_EQ(r0.code, 0);
  EXPECT_EQ(be0.steps, 0);
  EXPECT_EQ(r0.out, "");
}

TEST(Driver, ShuffleOrder) {
  TempDir dir("shuffle");
  ModelSpec spec = linearSpec(5, writeLinearData(dir, 23));
  auto order = [&](std::vector<std::string> extra) {
    FakeLinear be(spec);
    extra.insert(extra.end(), {"--quiet", "--epochs", "2"});
    RunResult r = run(spec, be, extra);
    EXPECT_EQ(r.code, 0) << r.err;
    return be.seen;
  };
  std::vector<long> plain = order({"--no-shuffle"});
  ASSERT_EQ(plain.size(), 40u); // 4 batches of 5 per epoch
  for (size_t i = 0; i < 40; ++i) EXPECT_EQ(plain[i], static_cast<long>(i % 20));
  std::vector<long> s1 = order({"--seed", "1"}), s1b = order({"--seed=1"}), s2 = order({"--seed", "2"});
  EXPECT_EQ(s1, s1b);
  EXPECT_NE(s1, s2);
  EXPECT_NE(s1, plain);
  // Each epoch takes 20 distinct samples of the 23, and the two epochs differ.
  std::set<long> e1(s1.begin(), s1.begin() + 20), e2(s1.begin() + 20, s1.end());
  EXPECT_EQ(e1.size(), 20u);
  EXPECT_EQ(e2.size(), 20u);
  EXPECT_NE(std::vector<long>(s1.begin(), s1.begin() + 20), std::vector<long>(s1.begin() + 20, s1.end()));
  for (long v : s1) EXPECT_LT(v, 23);
}

TEST(Driver, SaveLoadRoundTrip) {
  TempDir dir("ckpt");
  ModelSpec spec = linearSpec(8, writeLinearData(dir, 64));
  std::string ck = (dir / "model.safetensors").string();
  FakeLinear a(spec);
  ASSERT_EQ(run(spec, a, {"--quiet", "--epochs", "3", "--save", ck}).code, 0);
  std::map<std::string, HostTensor> t = readSafetensors(ck);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t["lin.weight"].typeString(), "F64[1, 3]");
  EXPECT_EQ(t["lin.bias"].typeString(), "F64[1]");
  EXPECT_EQ(t["lin.num_batches_tracked"].typeString(), "I64[]");
  EXPECT_EQ(t["lin.num_batches_tracked"].i64()[0], 24);
  EXPECT_EQ(t["optimizer.step"].typeString(), "F64[]");
  EXPECT_EQ(t["lin.weight"].f64()[2], a.w[2]);

  FakeLinear b(spec);
  ASSERT_EQ(run(spec, b, {"--quiet", "--epochs", "0", "--load", ck}).code, 0);
  EXPECT_EQ(a.w, b.w);
  EXPECT_EQ(a.b, b.b);
  EXPECT_EQ(a.tracked, b.tracked);
  EXPECT_EQ(a.optStep, b.optStep);

  // F32 checkpoints convert; optimizer state may be absent (keeps its initial zeros).
  HostTensor w(DType::F32, {1, kD}), bias(DType::F32, {1}), n(DType::I64, {});
  w.f32()[0] = 1.5f;
  bias.f32()[0] = -2.0f;
  n.i64()[0] = 7;
  std::string f32ck = (dir / "f32.safetensors").string();
  writeSafetensors(f32ck, {{"lin.weight", &w}, {"lin.bias", &bias}, {"lin.num_batches_tracked", &n}});
  FakeLinear c(spec);
  ASSERT_EQ(run(spec, c, {"--quiet", "--epochs=0", "--load", f32ck}).code, 0);
  EXPECT_EQ(c.w[0], 1.5);
  EXPECT_EQ(c.b, -2.0);
  EXPECT_EQ(c.tracked, 7);
  EXPECT_EQ(c.optStep, 0.0);

  // A missing parameter and a wrong shape are errors naming the tensor.
  std::string missing = (dir / "missing.safetensors").string();
  writeSafetensors(missing, {{"lin.weight", &w}, {"lin.num_batches_tracked", &n}});
  FakeLinear d(spec);
  RunResult r = run(spec, d, {"--quiet", "--load", missing});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("lin: error: " + missing + ": missing tensor 'lin.bias' (parameter, expected F32[1])"),
            std::string::npos)
      << r.err;
  HostTensor wrong(DType::F32, {kD});
  std::string shape = (dir / "shape.safetensors").string();
  writeSafetensors(shape, {{"lin.weight", &wrong}, {"lin.bias", &bias}, {"lin.num_batches_tracked", &n}});
  r = run(spec, d, {"--quiet", "--load", shape});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("tensor 'lin.weight' (parameter): expected F32[1, 3] (or F64), found F32[3]"), std::string::npos)
      << r.err;
  r = run(spec, d, {"--quiet", "--load", (dir / "nonexistent.safetensors").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("nonexistent.safetensors"), std::string::npos) << r.err;
}

TEST(Driver, PredictPadsAndDropsThePadding) {
  TempDir dir("predict");
  ModelSpec spec = linearSpec(4, writeLinearData(dir, 10));
  std::string inputsOnly = writeLinearData(dir, 10, false);
  FakeLinear be(spec);
  be.w = {1, 2, 3};
  be.b = 0.5;
  HostTensor w(DType::F64, {1, kD}), bias(DType::F64, {1}), n(DType::I64, {});
  std::memcpy(w.bytes.data(), be.w.data(), sizeof(double) * kD);
  bias.f64()[0] = 0.5;
  std::string ck = (dir / "ck.safetensors").string();
  writeSafetensors(ck, {{"lin.weight", &w}, {"lin.bias", &bias}, {"lin.num_batches_tracked", &n}});
  RunResult r = run(spec, be, {"--predict", "--load", ck, "--data", inputsOnly});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = r.lines();
  ASSERT_EQ(lines.size(), 11u) << r.out;
  EXPECT_EQ(lines[0], "yhat");
  for (int i = 0; i < 10; ++i) {
    double want = 0.5 + 1.0 * (float(i) / 1000.0f) + 2.0 * float(std::sin(double(i))) + 3.0 * float(std::cos(0.7 * i));
    EXPECT_NEAR(std::stod(lines[i + 1]), want, 1e-12) << i;
  }
  EXPECT_EQ(be.steps, 0);
  // To a safetensors file and to a CSV file.
  std::string out = (dir / "out.safetensors").string();
  ASSERT_EQ(run(spec, be, {"--predict", "--load", ck, "--out", out}).code, 0);
  std::map<std::string, HostTensor> t = readSafetensors(out);
  EXPECT_EQ(t["yhat"].typeString(), "F64[10, 1]");
  EXPECT_EQ(std::to_string(t["yhat"].f64()[9]), std::to_string(std::stod(lines[10])));
  std::string csv = (dir / "out.csv").string();
  ASSERT_EQ(run(spec, be, {"--predict", "--load", ck, "--out", csv}).code, 0);
  std::ifstream in(csv);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), r.out);
}

TEST(Driver, PredictWideOutputColumns) {
  TempDir dir("wide");
  ModelSpec spec = linearSpec(4, writeLinearData(dir, 6));
  // Same backend, but declare the output as [B, 1] plus report a second, wider output.
  struct Wide : FakeLinear {
    using FakeLinear::FakeLinear;
    void predict(const Batch &bt, const std::vector<void *> &outs) override {
      FakeLinear::predict(bt, outs);
      double *o = static_cast<double *>(outs[1]);
      for (int k = 0; k < 4 * 2; ++k) o[k] = k % 2;
    }
  };
  spec.outputs.push_back({"probs", DType::F32, {4, 2}});
  Wide be(spec);
  RunResult r = run(spec, be, {"--predict"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = r.lines();
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(lines[0], "yhat,probs_0,probs_1");
  EXPECT_NE(lines[1].find(",0,1"), std::string::npos) << lines[1];
}

TEST(Driver, Gradcheck) {
  TempDir dir("gradcheck");
  ModelSpec spec = linearSpec(8, writeLinearData(dir, 40));
  FakeLinear good(spec);
  RunResult r = run(spec, good, {"--gradcheck"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("gradcheck lin.weight max_rel_err "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(3 of 3 elements)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gradcheck lin.bias max_rel_err "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gradcheck worst "), std::string::npos) << r.out;
  EXPECT_EQ(good.steps, 0);

  FakeLinear bad(spec);
  bad.wrongGradient = true;
  r = run(spec, bad, {"--gradcheck"});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.err.find("lin: error: gradcheck failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'lin.weight'"), std::string::npos) << r.err;

  // The precise backend is the one checked when given.
  FakeLinear main(spec), precise(spec);
  main.wrongGradient = true;
  EXPECT_EQ(run(spec, main, {"--gradcheck"}, &precise).code, 0);
  // A loose tolerance accepts the wrong gradient.
  FakeLinear bad2(spec);
  bad2.wrongGradient = true;
  EXPECT_EQ(run(spec, bad2, {"--gradcheck", "--gradcheck-tol", "10"}).code, 0);
}

TEST(Driver, BadFlagsAndDataGiveExit1) {
  TempDir dir("bad");
  ModelSpec spec = linearSpec(8, writeLinearData(dir, 40));
  FakeLinear be(spec);
  RunResult r = run(spec, be, {"--epochs", "abc"});
  EXPECT_EQ(r.code, 1);
  // One error line and a pointer to --help, not the help page.
  EXPECT_EQ(r.err, "lin: error: option '--epochs' expects a non-negative integer, found 'abc'\n"
                   "try 'lin --help' for the list of options\n");
  EXPECT_EQ(r.out, "");
  r = run(spec, be, {"--bogus"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "lin: error: unknown option '--bogus'\ntry 'lin --help' for the list of options\n");
  r = run(spec, be, {"--lr"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "lin: error: option '--lr' needs a value\ntry 'lin --help' for the list of options\n");
  r = run(spec, be, {"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--batch-limit N"), std::string::npos);

  // Data of the wrong shape or dtype, a missing tensor, too few samples, a bad extension.
  HostTensor x(DType::F32, {20, 4}), y(DType::F32, {20, 1}), yi(DType::F32, {19, 1});
  std::string p1 = (dir / "shape.safetensors").string();
  writeSafetensors(p1, {{"x", &x}, {"y", &y}});
  r = run(spec, be, {"--data", p1});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(p1 + ": tensor 'x': expected F32[*, 3] (input x: f32[8, 3]), found F32[20, 4]"),
            std::string::npos)
      << r.err;
  HostTensor x3(DType::F32, {20, 3}), xi(DType::I32, {20, 3});
  std::string p2 = (dir / "missing.safetensors").string();
  writeSafetensors(p2, {{"x", &x3}});
  r = run(spec, be, {"--data", p2});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no tensor named 'y' for target y: f32[8, 1]; the file has 'x'"), std::string::npos) << r.err;
  std::string p3 = (dir / "count.safetensors").string();
  writeSafetensors(p3, {{"x", &x3}, {"y", &yi}});
  r = run(spec, be, {"--data", p3});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("tensor 'y' has 19 samples but tensor 'x' has 20"), std::string::npos) << r.err;
  std::string p4 = (dir / "dtype.safetensors").string();
  writeSafetensors(p4, {{"x", &xi}, {"y", &y}});
  r = run(spec, be, {"--data", p4});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("found I32[20, 3]"), std::string::npos) << r.err;
  HostTensor xs(DType::F32, {5, 3}), ys(DType::F32, {5, 1});
  std::string p5 = (dir / "few.safetensors").string();
  writeSafetensors(p5, {{"x", &xs}, {"y", &ys}});
  r = run(spec, be, {"--data", p5});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the training split has 5 samples, fewer than the batch size 8"), std::string::npos) << r.err;
  r = run(spec, be, {"--data", (dir / "data.bin").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--data expects a .safetensors file"), std::string::npos) << r.err;
  // A .txt file is read as text, which needs an i32 input.
  r = run(spec, be, {"--data", (dir / "data.txt").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("a text file is read as character windows, which feed an input i32[B, T]"), std::string::npos)
      << r.err;
  std::ofstream(dir / "garbage.safetensors") << "not a safetensors file";
  r = run(spec, be, {"--data", (dir / "garbage.safetensors").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("garbage.safetensors: byte"), std::string::npos) << r.err;
  // F64 data converts to the F32 the spec asks for.
  HostTensor xd(DType::F64, {20, 3}), yd(DType::F64, {20, 1});
  std::string p6 = (dir / "f64.safetensors").string();
  writeSafetensors(p6, {{"x", &xd}, {"y", &yd}});
  EXPECT_EQ(run(spec, be, {"--quiet", "--epochs=1", "--data", p6}).code, 0);
}

TEST(Driver, BackendExceptionIsInternalError) {
  TempDir dir("internal");
  ModelSpec spec = linearSpec(8, writeLinearData(dir, 40));
  struct Throwing : FakeLinear {
    using FakeLinear::FakeLinear;
    double trainStep(const Batch &) override { throw std::logic_error("boom"); }
  };
  Throwing be(spec);
  RunResult r = run(spec, be, {"--quiet"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "lin: error: internal error: boom\n");
}

TEST(Driver, FloatBackend) {
  TempDir dir("float");
  ModelSpec spec = linearSpec(8, writeLinearData(dir, 64));
  std::string ck = (dir / "f.safetensors").string();
  FakeLinearT<float> a(spec);
  RunResult r = run(spec, a, {"--quiet", "--epochs", "4", "--save", ck});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<double> losses = epochLosses(r);
  EXPECT_LT(losses.back(), losses.front());
  std::map<std::string, HostTensor> t = readSafetensors(ck);
  EXPECT_EQ(t["lin.weight"].typeString(), "F32[1, 3]");
  EXPECT_EQ(t["optimizer.step"].typeString(), "F32[]");
  EXPECT_EQ(t["lin.num_batches_tracked"].typeString(), "I64[]");
  EXPECT_EQ(t["lin.weight"].f32()[1], a.w[1]);
  // Into a double backend and back.
  FakeLinear d(spec);
  ASSERT_EQ(run(spec, d, {"--quiet", "--epochs=0", "--load", ck}).code, 0);
  EXPECT_EQ(d.w[1], static_cast<double>(a.w[1]));
  // Float gradcheck: step 1e-3, tolerance 1e-2.
  FakeLinearT<float> g(spec);
  r = run(spec, g, {"--gradcheck", "--load", ck});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  FakeLinearT<float> bad(spec);
  bad.wrongGradient = true;
  EXPECT_EQ(run(spec, bad, {"--gradcheck"}).code, 1);
  // Predictions are written with float precision.
  r = run(spec, g, {"--predict", "--load", ck});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.lines().size(), 65u);
}

TEST(Driver, EarlyStoppingWithoutValidationWarns) {
  TempDir dir("novalidation");
  ModelSpec spec = linearSpec(8, writeLinearData(dir, 40));
  spec.train.earlyStopping = true;
  spec.train.patience = 1;
  FakeLinear be(spec);
  RunResult r = run(spec, be, {"--quiet", "--epochs", "3"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(epochLosses(r).size(), 3u);
  EXPECT_NE(r.err.find("lin: warning: early stopping needs a validation split"), std::string::npos) << r.err;
}

// ---- early stopping with a windows data set ----

/// One parameter p (starts at 0, +1 per step); training and validation loss (p - 3)^2.
class FakeCounter : public Backend {
public:
  DType floatType() const override { return DType::F64; }
  void *stateData(size_t) override { return &p; }
  void setLearningRateScale(double) override {}
  double trainStep(const Batch &) override {
    const double l = (p - 3) * (p - 3);
    p += 1;
    return l;
  }
  double evalLoss(const Batch &) override { return (p - 3) * (p - 3); }
  void predict(const Batch &, const std::vector<void *> &) override {}
  double lossAndGrads(const Batch &, std::vector<std::vector<double>> &g) override {
    g = {{2 * (p - 3)}};
    return (p - 3) * (p - 3);
  }
  double loss(const Batch &) override { return (p - 3) * (p - 3); }
  double p = 0;
};

ModelSpec counterSpec(const std::string &csv) {
  ModelSpec s;
  s.name = "counter";
  s.batch = 14;
  s.inputs = {{"x", DType::F32, {14, 2, 1}}, {"y", DType::F32, {14, 1}}};
  s.numInputs = 1;
  s.outputs = {{"yhat", DType::F32, {14, 1}}};
  s.state = {{"p", StateSpec::Param, DType::F32, {1}, StateSpec::Zeros, 0, 0}};
  s.train.lr = 1;
  s.train.epochs = 20;
  s.train.dataKind = "windows";
  s.train.dataPath = csv;
  s.train.column = "value";
  s.train.length = 2;
  s.train.horizon = 1;
  s.train.split = 0.8;
  s.train.scale = "none";
  s.train.earlyStopping = true;
  s.train.patience = 2;
  s.train.delta = 0;
  return s;
}

std::string writeSeries(const fs::path &dir, int n) {
  std::string path = (dir / "series.csv").string();
  std::ofstream f(path);
  f << "t,value\n";
  for (int i = 0; i < n; ++i) f << i << "," << 0.5 * i << "\n";
  return path;
}

TEST(Driver, EarlyStoppingRestoresTheBestState) {
  TempDir dir("early");
  // 20 values, length 2: 18 windows, 14 for training (one batch: one step per epoch), 4 for validation.
  ModelSpec spec = counterSpec(writeSeries(dir, 20));
  FakeCounter be;
  std::string ck = (dir / "best.safetensors").string();
  RunResult r = run(spec, be, {"--quiet", "--save", ck});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = r.lines();
  ASSERT_EQ(lines.size(), 8u) << r.out;
  EXPECT_EQ(lines[0], "epoch 1 loss 9 val_loss 4");
  EXPECT_EQ(lines[2], "epoch 3 loss 1 val_loss 0");
  EXPECT_EQ(lines[4], "epoch 5 loss 1 val_loss 4");
  EXPECT_EQ(lines[5], "early stopping at epoch 5 (best val_loss 0 at epoch 3)");
  EXPECT_EQ(lines[6], "final loss 1");
  EXPECT_EQ(lines[7], "final val_loss 0");
  EXPECT_EQ(be.p, 3.0);
  EXPECT_EQ(readSafetensors(ck)["p"].f64()[0], 3.0);

  // validate_every: evaluations after every step also count, and are printed.
  ModelSpec every = spec;
  every.train.validateEvery = 1;
  every.train.patience = 1;
  FakeCounter be2;
  r = run(every, be2, {"--quiet"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("step 4 val_loss 1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("early stopping at epoch 4 (best val_loss 0 at epoch 3)"), std::string::npos) << r.out;
  EXPECT_EQ(be2.p, 3.0);

  // Without early stopping: all epochs, the last state.
  ModelSpec plain = spec;
  plain.train.earlyStopping = false;
  FakeCounter be3;
  r = run(plain, be3, {"--quiet", "--epochs", "6"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(be3.p, 6.0);
  EXPECT_NE(r.out.find("final val_loss 9\n"), std::string::npos) << r.out;
}

TEST(Driver, WindowsCsvViaDataFlag) {
  TempDir dir("windows");
  ModelSpec spec = counterSpec(writeSeries(dir, 20));
  spec.train.dataKind = "";
  spec.train.earlyStopping = false;
  FakeCounter be;
  // Inferred windows parameters: length from x f32[B, 2, 1], horizon 1, split 0.8.
  RunResult r = run(spec, be, {"--quiet", "--epochs", "1", "--data", (dir / "series.csv").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.lines()[0], "epoch 1 loss 9 val_loss 4");
  std::ofstream(dir / "bad.csv") << "t,value\n0,1\n1,abc\n";
  r = run(spec, be, {"--data", (dir / "bad.csv").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("bad.csv:3:"), std::string::npos) << r.err;
}

// ---- classification: val_acc ----

TEST(Driver, ClassificationReportsValidationAccuracy) {
  TempDir dir("classify");
  // 20 windows of a series; labels unused by the data source, so feed tensors instead.
  const int64_t B = 4, N = 12;
  HostTensor x(DType::F32, {N, 1}), y(DType::I32, {N});
  for (int64_t i = 0; i < N; ++i) {
    x.f32()[i] = static_cast<float>(i);
    y.i32()[i] = static_cast<int32_t>(i % 3 == 0 ? 1 : 0);
  }
  std::string path = (dir / "cls.safetensors").string();
  writeSafetensors(path, {{"x", &x}, {"y", &y}});
  ModelSpec spec;
  spec.name = "cls";
  spec.batch = B;
  spec.inputs = {{"x", DType::F32, {B, 1}}, {"y", DType::I32, {B}}};
  spec.numInputs = 1;
  spec.outputs = {{"logits", DType::F32, {B, 2}}};
  spec.train.dataKind = "tensors";
  spec.train.dataPath = path;
  size_t o = 9, t = 9;
  ASSERT_TRUE(findClassification(spec, o, t));
  EXPECT_EQ(o, 0u);
  EXPECT_EQ(t, 1u);
  // Tensors data has no validation split, so no val_acc; i32 labels reach the backend as int32.
  struct Cls : FakeCounter {
    double trainStep(const Batch &b) override {
      const int32_t *lab = static_cast<const int32_t *>(b.data[1]);
      for (int r = 0; r < 4; ++r) labels.push_back(lab[r]);
      return 0.5;
    }
    double evalLoss(const Batch &) override { return 0.5; }
    /// Class 1 when x >= 6, else class 0.
    void predict(const Batch &b, const std::vector<void *> &outs) override {
      const float *x = static_cast<const float *>(b.data[0]);
      double *o = static_cast<double *>(outs[0]);
      for (int r = 0; r < 4; ++r) {
        o[2 * r] = x[r] >= 6 ? 0 : 1;
        o[2 * r + 1] = x[r] >= 6 ? 1 : 0;
      }
    }
    std::vector<int> labels;
  };
  spec.state = {{"p", StateSpec::Param, DType::F32, {1}, StateSpec::Zeros, 0, 0}};
  Cls be;
  RunResult r = run(spec, be, {"--epochs", "1", "--no-shuffle"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(be.labels, (std::vector<int>{1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0}));
  EXPECT_EQ(r.out.find("val_acc"), std::string::npos);

  // With a validation split (samples 9, 10, 11: predicted 1, 1, 1; labels 1, 0, 0).
  DriverData d;
  d.source = path;
  d.tensors = {x, y};
  d.present = {true, true};
  d.n = N;
  d.trainCount = 9;
  DriverOptions opts;
  opts.epochs = 1;
  testing::internal::CaptureStdout();
  EXPECT_EQ(runTraining(spec, be, d, opts, 0, "cls"), 0);
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(^epoch 1 loss 0.5 val_loss 0.5 val_acc 0.3333 lr [-+0-9.e]+ time [0-9.]+s\n)"))) << out;
  EXPECT_NE(out.find("final val_loss 0.5\n"), std::string::npos) << out;
  opts.quiet = true;
  testing::internal::CaptureStdout();
  EXPECT_EQ(runTraining(spec, be, d, opts, 0, "cls"), 0);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "epoch 1 loss 0.5 val_loss 0.5\nfinal loss 0.5\nfinal val_loss 0.5\n");

  // --metrics has the val_acc column even on --quiet runs (whose lines do not show it).
  opts.metrics = path + ".metrics.csv";
  testing::internal::CaptureStdout();
  EXPECT_EQ(runTraining(spec, be, d, opts, 0, "cls"), 0);
  testing::internal::GetCapturedStdout();
  std::ifstream in(opts.metrics);
  std::string header, row, rest;
  std::getline(in, header);
  std::getline(in, row);
  EXPECT_EQ(header, "epoch,step,loss,val_loss,val_acc,lr,seconds");
  EXPECT_TRUE(std::regex_match(row, std::regex(R"(1,2,0\.5,0\.5,0\.3333333333333333,[-+0-9.e]+,[0-9]+\.[0-9]{3})"))) << row;
  EXPECT_FALSE(std::getline(in, rest));
}

} // namespace
} // namespace gradc::rt
