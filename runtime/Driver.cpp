// Driver.cpp: implements runMain, the training driver shared by generated executables, the interpreter and the JIT: it parses the flags (Flags.cpp), loads the data (DriverData.cpp) and the state (Checkpoint.cpp), then trains (Trainer.cpp), predicts (Predict.cpp) or checks gradients (Gradcheck.cpp); and the worker-thread setting.
#include "Driver.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <new>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "DriverInternal.h"
#include "GemmBf16.h"
#include "Mpi.h"

namespace gradc::rt {

using namespace detail;

namespace {
std::atomic<int> gThreads{0};
} // namespace

int detail::defaultThreads() {
  unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : static_cast<int>(std::min<unsigned>(h, 1u << 16));
}

int threads() {
  int t = gThreads.load();
  return t > 0 ? t : defaultThreads();
}

void setThreads(int n) { gThreads.store(n < 1 ? 1 : n); }

namespace {

/// The program name for messages: the last component of argv[0]; under mpirun with more
/// than one rank, followed by the rank ("seed (rank 1)").
std::string exeName(int argc, char **argv, const ModelSpec &spec) {
  std::string name;
  if (argc < 1 || !argv || !argv[0] || !*argv[0]) {
    name = spec.name.empty() ? "gradc-model" : spec.name;
  } else {
    name = argv[0];
    size_t slash = name.find_last_of('/');
    if (slash != std::string::npos) name = name.substr(slash + 1);
  }
  if (mpi::size() > 1) name += " (rank " + std::to_string(mpi::rank()) + ")";
  return name;
}

/// Checks that this run has the ranks the step is compiled for: the compiled local batch
/// is the global batch's share of one of spec.ranks ranks.
void checkRanks(const ModelSpec &spec) {
  const int n = mpi::size();
  if (spec.ranks == n) return;
  const int64_t global = spec.batch * spec.ranks;
  if (spec.ranks == 1)
    throw DataError(fmt::format("this executable is compiled for one process, and mpirun started {} ranks; compile it with "
                                "gradc --ranks {} (the batch {} must be divisible by it) to train on {}",
                                n, n, global, n));
  throw DataError(fmt::format("this executable is compiled for {} ranks (gradc --ranks {}: {} of the batch of {} each), and {}; "
                              "start it with mpirun -np {}, or compile it for {}",
                              spec.ranks, spec.ranks, spec.batch, global,
                              mpi::active() ? fmt::format("mpirun started {}", n) : std::string("it was started without mpirun"),
                              spec.ranks, n == 1 ? std::string("one process (no --ranks)") : fmt::format("--ranks {}", n)));
}

/// Sets the float matrix multiplies' precision for this run: --precision, else the train
/// block's. bf16 needs AVX512-BF16 in this CPU and runtime build; without it a notice says that
/// the run multiplies in f32. --gradcheck always runs at full precision.
void setPrecision(const ModelSpec &spec, const DriverOptions &o, const std::string &exe) {
  const std::string &p = o.precision.empty() ? spec.train.precision : o.precision;
  bool bf16 = p == "bf16" && !o.gradcheck;
  if (bf16 && !bf16Supported()) {
    if (mpi::rank() == 0)
      fmt::print(stderr, "{}: notice: precision bf16 needs a CPU with AVX512-BF16 (and a runtime built on one); this "
                         "run multiplies in f32\n", exe);
    bf16 = false;
  }
  setMatmulBf16(bf16);
}

/// runMain without its error reporting: parses the flags, loads the data and the state, then
/// trains, predicts or checks gradients. Returns the exit code; throws for errors.
int runMainImpl(const ModelSpec &spec, Backend &backend, int argc, char **argv, Backend *precise,
                const std::string &exe) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i] ? argv[i] : "");
  DriverOptions o = parseArgs(args); // UsageError: one line and a pointer to --help (runMain)
  if (o.help) {
    std::fputs(usageText(exe, spec).c_str(), stdout);
    std::fflush(stdout);
    return 0;
  }
  setThreads(o.threads.value_or(defaultThreads()));
  setPrecision(spec, o, exe);
  uint64_t seed = static_cast<uint64_t>(o.seed.value_or(spec.train.seed));
  Backend &be = o.gradcheck && precise ? *precise : backend;
  checkBackend(be);
  checkSpec(spec);
  checkRanks(spec);
  if (mpi::size() > 1 && o.gradcheck)
    throw DataError("--gradcheck compares one process's gradients with finite differences; run it without mpirun on the "
                    "executable compiled without --ranks");
  if (o.lr && !(spec.train.lr > 0))
    throw DataError(fmt::format("--lr: the model's compiled learning rate is {:g}, so it cannot be rescaled", spec.train.lr));

  if (o.lr && spec.train.schedule.kind == "onecycle" && !o.predict && !o.gradcheck)
    throw UsageError("option '--lr' cannot set the learning rate of a onecycle() schedule, which runs from max_lr / 25 "
                     "to max_lr and down; change max_lr in the model");
  // The checkpoints are read (once) before the data: their scaling or vocabulary is used
  // for the data, never refitted.
  std::optional<CheckpointFile> loadFile, resumeFile;
  if (!o.load.empty()) loadFile = readCheckpoint(o.load);
  if (!o.resume.empty()) resumeFile = readCheckpoint(o.resume);
  const CheckpointFile *dataFrom = resumeFile ? &*resumeFile : loadFile ? &*loadFile : nullptr;
  std::optional<DataMeta> ckMeta;
  if (dataFrom) ckMeta = decodeDataMeta(dataFrom->meta, dataFrom->path);
  DriverData data = loadDriverData(spec, o.data, o.predict, ckMeta ? &*ckMeta : nullptr, dataFrom ? dataFrom->path : "");
  initState(spec, be, seed);
  if (loadFile) loadCheckpoint(*loadFile, spec, be);
  loadFile.reset();
  std::optional<ResumeInput> resume;
  if (resumeFile) {
    // The run continues with the seed, shuffling and learning rate of the one it resumes.
    resume = loadResumeCheckpoint(*resumeFile, spec, be);
    resumeFile.reset();
    const ResumeState &r = resume->state;
    if (o.seed && static_cast<uint64_t>(*o.seed) != r.seed)
      throw DataError(o.resume + ": the checkpoint's run used seed " + std::to_string(static_cast<int64_t>(r.seed)) +
                      ", not " + std::to_string(*o.seed) + " (omit --seed when resuming)");
    if (o.noShuffle && r.shuffle)
      throw DataError(o.resume + ": the checkpoint's run shuffled its batches (omit --no-shuffle when resuming)");
    seed = r.seed;
    o.noShuffle = !r.shuffle;
    if (!o.lr && r.lr != spec.train.lr) o.lr = r.lr;
  }
  if (o.lr) be.setLearningRateScale(*o.lr / spec.train.lr);

  if (o.generate) (void)checkGenerate(spec, data, o); // before training, not after it
  int rc = 0;
  if (o.gradcheck) rc = gradcheck(spec, be, data, o, seed, exe);
  else if (o.predict) rc = mpi::rank() == 0 ? predictAll(spec, be, data, o) : 0; // inference: rank 0 alone
  else if (o.generate && !o.load.empty()) rc = mpi::rank() == 0 ? generateText(spec, be, data, o, seed) : 0;
  else {
    rc = runTraining(spec, be, data, o, seed, exe, resume ? &*resume : nullptr); // saves --save itself
    if (rc == 0 && o.generate && mpi::rank() == 0) rc = generateText(spec, be, data, o, seed);
    return rc;
  }
  if (rc == 0 && !o.save.empty() && mpi::rank() == 0) saveCheckpoint(o.save, spec, be, nullptr, {}, &data.meta);
  return rc;
}

} // namespace

int runMain(const ModelSpec &spec, Backend &backend, int argc, char **argv, Backend *precise) {
  std::string exe = "gradc-model";
  // Under mpirun an error on one rank ends every rank (the others may wait in a collective).
  auto report = [&](const char *what, const char *msg, int code) {
    std::fflush(stdout);
    fmt::print(stderr, "{}: error: {}{}\n", exe, what, msg);
    std::fflush(stderr);
    if (mpi::size() > 1) mpi::abortAll(code);
    mpi::finalize();
    return code;
  };
  try {
    mpi::init(&argc, &argv);
    exe = exeName(argc, argv, spec);
    // Only rank 0 prints: the other ranks' standard output goes nowhere (errors still show).
    if (mpi::rank() != 0 && !std::freopen("/dev/null", "w", stdout))
      throw DataError("cannot redirect standard output to /dev/null");
    const int rc = runMainImpl(spec, backend, argc, argv, precise, exe);
    mpi::finalize();
    return rc;
  } catch (const DataError &e) {
    return report("", e.what(), 1);
  } catch (const UsageError &e) {
    // A bad command line: the one error line, then where the flags are listed (not the page).
    report("", e.what(), 1);
    fmt::print(stderr, "try '{} --help' for the list of options\n", exe);
    std::fflush(stderr);
    return 1;
  } catch (const std::bad_alloc &) {
    return report("", "out of memory", 2);
  } catch (const std::exception &e) {
    return report("internal error: ", e.what(), 2);
  } catch (...) {
    return report("internal error: ", "unknown exception", 2);
  }
}

} // namespace gradc::rt