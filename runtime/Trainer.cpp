// Trainer.cpp: the training loop behind runTraining: epochs of shuffled batches, validation and early stopping, the learning-rate schedule, the --metrics file, the NaN/Inf checks, periodic and interrupt checkpoints, resuming a run where its checkpoint left it, and under mpirun each rank's share of every batch (docs/distributed.md).
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>

#include <unistd.h>

#include <fmt/format.h>

#include "DataSources.h"
#include "Driver.h"
#include "DriverInternal.h"
#include "FiniteCheck.h"
#include "Interrupt.h"
#include "Metrics.h"
#include "Mpi.h"
#include "Progress.h"
#include "Resume.h"
#include "Schedule.h"
#include "ThreadTuner.h"

// The random transforms must round identically everywhere: no a*b+c fused into one FMA.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace gradc::rt {

namespace {

/// This process's peak resident set in MiB: VmHWM of /proc/self/status, which (unlike
/// getrusage's ru_maxrss) does not include what the parent process had resident when it
/// forked this one; NaN where it cannot be read.
double peakRssMiB() {
  std::FILE *f = std::fopen("/proc/self/status", "r");
  if (!f)
    return NAN;
  char line[256];
  double kib = NAN;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "VmHWM:", 6) == 0)
      kib = std::strtod(line + 6, nullptr);
  std::fclose(f);
  return kib / 1024.0;
}

using namespace detail;

/// The training run: epochs, validation, early stopping.
class Trainer {
public:
  Trainer(const ModelSpec &spec, Backend &be, const DriverData &data, const DriverOptions &o, uint64_t seed,
          const std::string &exe, const ResumeInput *resume)
      : spec_(spec), be_(be), data_(data), o_(o), seed_(seed), exe_(exe), resume_(resume), batcher_(spec, data),
        outs_(spec, be.floatType()), ranks_(spec.ranks), global_(spec.batch * spec.ranks),
        sched_(spec.train.schedule, o.lr.value_or(spec.train.lr)) {}

  int run() {
    const int64_t B = global_; // the global batch; this rank computes its rows [rank·b, (rank+1)·b)
    if (data_.trainCount < B)
      throw DataError(data_.source + ": the training split has " + std::to_string(data_.trainCount) +
                      " samples, fewer than the batch size " + std::to_string(B));
    const int64_t epochs = o_.epochs.value_or(spec_.train.epochs);
    const int64_t perEpoch = data_.trainCount / B;
    const int64_t limit = o_.batchLimit.value_or(std::numeric_limits<int64_t>::max());
    const int64_t total = std::min(limit, epochs > std::numeric_limits<int64_t>::max() / perEpoch
                                              ? std::numeric_limits<int64_t>::max()
                                              : epochs * perEpoch);
    const bool hasVal = data_.validationCount() > 0;
    const int64_t every = spec_.train.validateEvery;
    text_ = spec_.train.dataKind == "text";
    classifier_ = hasVal && findClassification(spec_, accOut_, accTarget_) && data_.present[accTarget_];
    if (!o_.metrics.empty() && mpi::rank() == 0) metrics_.emplace(o_.metrics, hasVal, classifier_, text_); // rank 0 writes files
    const bool early = spec_.train.earlyStopping && hasVal;
    if (spec_.train.earlyStopping && !hasVal) {
      std::fflush(stdout);
      fmt::print(stderr, "{}: warning: early stopping needs a validation split and {} has none; it is off\n", exe_,
                 data_.source);
    }

    std::vector<int64_t> perm(static_cast<size_t>(data_.trainCount));
    valIdx_.resize(static_cast<size_t>(data_.validationCount()));
    for (size_t k = 0; k < valIdx_.size(); ++k) valIdx_[k] = data_.trainCount + static_cast<int64_t>(k);
    if (early) best_.emplace(spec_, be_, StateSnapshot::ParamsAndBuffers);

    // The run's position: what a resumable checkpoint records.
    st_ = ResumeState{};
    st_.model = spec_.name;
    st_.seed = seed_;
    st_.shuffle = !o_.noShuffle;
    st_.lr = o_.lr.value_or(spec_.train.lr);
    st_.batch = B;
    st_.trainCount = data_.trainCount;
    st_.bestVal = std::numeric_limits<double>::infinity();
    if (resume_) startFrom(*resume_, perEpoch, early);
    if (metrics_ && resume_) metrics_->keepRowsBefore(st_.epoch);
    checkSchedule(total, hasVal);
    const int64_t startStep = st_.step;
    lastSaveStep_ = st_.step;

    Progress progress(!o_.quiet && isatty(STDERR_FILENO), total - startStep, B);
    InterruptGuard interrupts;

    int64_t stoppedAt = 0;
    // --timing: steps after the first kWarmupSteps of this run, and after the thread tuner's
    // measurement, are timed (validation excluded).
    constexpr int64_t kWarmupSteps = 3;
    ThreadTuner tuner(!o_.threads, defaultThreads());
    Clock::time_point firstStepStart, firstStepEnd;
    int64_t timedSteps = 0;
    double timedSeconds = 0, allreduceSeconds = 0, allreduceBytes = 0, allreduceCalls = 0; // the compiled all-reduces (MPI)
    bool stop = false;
    std::optional<StateSnapshot> before; // the state before a checked step

    for (int64_t epoch = st_.epoch; epoch <= epochs && st_.step < total && !stop; ++epoch) {
      const Clock::time_point t0 = Clock::now();
      epochOrder(perm, seed_, epoch - 1, st_.shuffle);
      const uint64_t orderHash = hashOrder(perm);
      if (epoch == st_.epoch && st_.epochStep > 0) {
        if (orderHash != st_.orderHash)
          throw DataError(resume_->path + ": the sample order of epoch " + std::to_string(epoch) +
                          " differs from the one the checkpoint's run used (different data?)");
      } else {
        st_.epochStep = 0;
        st_.epochLossSum = 0;
      }
      st_.epoch = epoch;
      st_.orderHash = orderHash;
      for (int64_t s = st_.epochStep; s < perEpoch && st_.step < total; ++s) {
        if (st_.step == startStep) firstStepStart = Clock::now();
        // Under mpirun each rank draws its own dropout masks: its rank in the step word's top
        // bits (rank 0, and a single process, keep the plain step). docs/distributed.md.
        batcher_.setRandomKey(seed_, static_cast<uint64_t>(st_.step) | (static_cast<uint64_t>(mpi::rank()) << 48));
        const Batch &batch = batcher_.gather(perm.data() + s * B + mpi::rank() * spec_.batch, spec_.batch);
        const bool check = o_.checkFinite || st_.step - startStep < kAlwaysCheckedSteps;
        if (check) {
          if (!before) before.emplace(spec_, be_, StateSnapshot::All);
          before->take();
        }
        if (sched_.active() && sched_.lr() != backendLr_) {
          backendLr_ = sched_.lr();
          be_.setLearningRateScale(backendLr_ / spec_.train.lr);
        }
        const bool settled = tuner.settled();
        tuner.beforeStep(st_.step - startStep);
        const Clock::time_point s0 = Clock::now();
        double loss = be_.trainStep(batch);
        if (ranks_ > 1) loss = globalLoss(loss);
        const Clock::time_point s1 = Clock::now();
        tuner.afterStep(st_.step - startStep, std::chrono::duration<double>(s1 - s0).count());
        if (check) {
          std::optional<NonFiniteValue> bad;
          if (!std::isfinite(loss) || (bad = firstNonFiniteState(spec_, be_, ~0u)))
            return nonFinite(*before, batch, loss, bad, perEpoch, progress);
        }
        if (st_.step == startStep) firstStepEnd = s1;
        double arSec = 0, arBytes = 0, arCalls = 0;
        if (ranks_ > 1) mpi::takeAllreduceStats(arSec, arBytes, arCalls);
        if (st_.step != startStep && st_.step - startStep >= kWarmupSteps && settled) {
          timedSteps += 1;
          timedSeconds += std::chrono::duration<double>(s1 - s0).count();
          allreduceSeconds += arSec;
          allreduceBytes += arBytes;
          allreduceCalls += arCalls;
        }
        st_.epochLossSum += loss;
        ++st_.epochStep;
        ++st_.step;
        epochLr_ = sched_.lr();
        sched_.stepEnd();
        progress.update(st_.step - startStep, epoch, epochs, st_.epochLossSum / static_cast<double>(st_.epochStep));
        if (o_.interruptAfter && st_.step == *o_.interruptAfter) std::raise(SIGINT);
        if (hasVal && every > 0 && st_.step % every == 0) {
          st_.lastEval = validationLoss();
          st_.lastEvalStep = st_.step;
          printLine(&progress, "step " + std::to_string(st_.step) + " val_loss " + g6(st_.lastEval));
          sched_.validated(st_.lastEval);
          if (early && observe(st_.lastEval, epoch)) {
            stop = true;
            break;
          }
        }
        if (st_.epochStep < perEpoch && st_.step < total)
          if (int rc = safePoint(progress, perEpoch); rc >= 0) return rc;
      }
      const double trainLoss = st_.epochLossSum / static_cast<double>(st_.epochStep);
      if (endEpoch(epoch, trainLoss, t0, hasVal, early && !stop, progress)) stop = true;
      checkSameState("epoch " + std::to_string(epoch));
      st_.finalLoss = trainLoss;
      st_.ran = true;
      if (stop) stoppedAt = epoch;
      if (st_.epochStep == perEpoch) { // the epoch is complete: the position is the next one's start
        sched_.epochEnd();
        st_.epoch = epoch + 1;
        st_.epochStep = 0;
        st_.epochLossSum = 0;
        st_.orderHash = 0;
      }
      if (!stop && epoch < epochs && st_.step < total)
        if (int rc = safePoint(progress, perEpoch); rc >= 0) return rc;
    }
    progress.clear();
    if (o_.timing && st_.step > startStep) {
      std::fflush(stdout);
      fmt::print(stderr,
                 "timing first_step_s {:.6f} steps {} ms_per_step {:.6f} ready_s {:.6f} peak_rss_mib {:.1f} threads {}\n",
                 std::chrono::duration<double>(firstStepEnd - gProcessStart).count(), timedSteps,
                 timedSteps > 0 ? 1000.0 * timedSeconds / static_cast<double>(timedSteps) : NAN,
                 std::chrono::duration<double>(firstStepStart - gProcessStart).count(), peakRssMiB(), threads());
      if (ranks_ > 1 && timedSteps > 0)
        fmt::print(stderr,
                   "timing ranks {} allreduce_ms_per_step {:.6f} allreduce_share {:.4f} allreduce_bytes_per_step {:.0f} "
                   "allreduce_calls_per_step {:.0f}\n",
                   ranks_, 1000.0 * allreduceSeconds / static_cast<double>(timedSteps), allreduceSeconds / timedSeconds,
                   allreduceBytes / static_cast<double>(timedSteps), allreduceCalls / static_cast<double>(timedSteps));
    }
    bool restored = false;
    if (early && st_.bestEpoch > 0) {
      best_->restore();
      st_.finalVal = st_.bestVal;
      restored = true;
    }
    if (stop)
      printLine(nullptr, "early stopping at epoch " + std::to_string(stoppedAt) +
                             (st_.bestEpoch > 0 ? " (best val_loss " + g6(st_.bestVal) + " at epoch " +
                                                      std::to_string(st_.bestEpoch) + ")"
                                                : std::string(" (val_loss never improved)")));
    if (st_.ran) {
      printLine(nullptr, "final loss " + g6(st_.finalLoss));
      if (hasVal) printLine(nullptr, "final val_loss " + g6(st_.finalVal));
    }
    // The best state early stopping restored is not where the run stands: not resumable.
    if (!o_.save.empty()) saveState(o_.save, !restored);
    return 0;
  }

private:
  /// Takes over the position of a resumed run, checking it fits this model and data.
  void startFrom(const ResumeInput &in, int64_t perEpoch, bool early) {
    const ResumeState &r = in.state;
    if (r.batch != global_ || r.trainCount != data_.trainCount)
      throw DataError(in.path + ": the checkpoint's run had " + std::to_string(r.trainCount) +
                      " training samples in batches of " + std::to_string(r.batch) + "; this one has " +
                      std::to_string(data_.trainCount) + " in batches of " + std::to_string(global_) +
                      ", so its position cannot be continued (use --load to start a new run from it)");
    if (r.epochStep >= perEpoch)
      throw DataError(in.path + ": the checkpoint's position (step " + std::to_string(r.epochStep) + " of epoch " +
                      std::to_string(r.epoch) + ") is past the end of an epoch of " + std::to_string(perEpoch) +
                      " steps");
    st_.dataHash = hashData(data_);
    haveDataHash_ = true;
    if (st_.dataHash != r.dataHash) {
      std::fflush(stdout);
      fmt::print(stderr,
                 "{}: warning: the training data differ from those of the run that wrote {}; continuing from its "
                 "position anyway\n",
                 exe_, in.path);
    }
    st_.epoch = r.epoch;
    st_.epochStep = r.epochStep;
    st_.step = r.step;
    st_.orderHash = r.orderHash;
    st_.epochLossSum = r.epochLossSum;
    st_.ran = r.ran;
    st_.finalLoss = r.finalLoss;
    st_.finalVal = r.finalVal;
    st_.lastEval = r.lastEval;
    st_.lastEvalStep = r.lastEvalStep;
    const std::string &kind = spec_.train.schedule.kind;
    if (r.schedule != kind)
      throw DataError(in.path + ": the checkpoint's run had " +
                      (r.schedule.empty() ? std::string("no learning-rate schedule") : "schedule " + r.schedule + "()") +
                      "; this model has " + (kind.empty() ? std::string("none") : kind + "()"));
    if (!kind.empty()) sched_.setState({r.scheduleLr, r.scheduleCount, r.scheduleBest, r.scheduleBad});
    if (early) {
      st_.bestVal = r.bestVal;
      st_.bestEpoch = r.bestEpoch;
      st_.bad = r.bad;
      if (r.bestEpoch > 0) {
        if (!r.hasBest) throw DataError(in.path + ": the checkpoint lacks early stopping's best state");
        best_->set(in.best, in.path);
      }
    }
  }

  /// One evaluation of early stopping; true when patience is exhausted.
  bool observe(double v, int64_t epoch) {
    if (v < st_.bestVal - spec_.train.delta) {
      st_.bestVal = v;
      st_.bestEpoch = epoch;
      st_.bad = 0;
      best_->take();
      return false;
    }
    return ++st_.bad >= spec_.train.patience;
  }

  /// After the steps of epoch `epoch` (begun at `t0`): validates unless its last step just
  /// did (early stopping observing it when `early`, the plateau schedule likewise), prints the
  /// epoch line and writes the --metrics row. True if early stopping ends the run.
  bool endEpoch(int64_t epoch, double trainLoss, Clock::time_point t0, bool hasVal, bool early, Progress &progress) {
    std::string line = "epoch " + std::to_string(epoch) + " loss " + g6(trainLoss);
    MetricsRow row;
    const double ln2 = std::log(2.0);
    row.bpc = trainLoss / ln2;
    bool stop = false;
    if (hasVal) {
      const bool fresh = st_.lastEvalStep != st_.step;
      const double v = fresh ? validationLoss() : st_.lastEval;
      st_.lastEval = v;
      st_.lastEvalStep = st_.step;
      if (early && fresh) stop = observe(v, epoch);
      if (fresh) sched_.validated(v);
      line += " val_loss " + g6(v);
      row.valLoss = v;
      row.valBpc = v / ln2;
      const bool onLine = classifier_ && !o_.quiet;
      // (accuracy() is collective under mpirun: every rank calls it, though only rank 0 writes metrics.)
      if (onLine || (!o_.metrics.empty() && classifier_)) row.valAcc = accuracy(accOut_, accTarget_);
      if (onLine) line += fmt::format(" val_acc {:.4f}", row.valAcc);
      st_.finalVal = v;
    }
    if (text_) line += " bpc " + g6(row.bpc) + (hasVal ? " val_bpc " + g6(row.valBpc) : "");
    // The learning rate of the epoch's last step; on --quiet lines only when a schedule varies it.
    if (!o_.quiet || sched_.active()) line += " lr " + g6(epochLr_);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!o_.quiet) line += fmt::format(" time {:.2f}s", seconds);
    printLine(&progress, line);
    if (metrics_) {
      row.epoch = epoch;
      row.step = st_.step;
      row.loss = trainLoss;
      row.lr = epochLr_;
      row.seconds = seconds;
      metrics_->add(row);
    }
    return stop;
  }

  /// Checks the schedule fits the run (`total` training steps; `hasVal`: a validation split).
  void checkSchedule(int64_t total, bool hasVal) {
    const ScheduleSpec &sc = spec_.train.schedule;
    if (sc.kind == "onecycle" && total > sc.totalSteps)
      throw DataError("the schedule onecycle(total_steps = " + std::to_string(sc.totalSteps) + ") is shorter than the run's " +
                      std::to_string(total) + " training steps (" + data_.source +
                      "); raise total_steps or lower --epochs / --batch-limit");
    if (sc.kind == "plateau" && !hasVal) {
      std::fflush(stdout);
      fmt::print(stderr,
                 "{}: warning: the plateau schedule needs a validation split and {} has none; the learning rate stays "
                 "{}\n",
                 exe_, data_.source, g6(sched_.lr()));
    }
  }

  /// Writes the state to `path`; with `resumable` also the position and early stopping's best state.
  void saveState(const std::string &path, bool resumable) {
    std::vector<HostTensor> bestTensors;
    std::vector<std::pair<std::string, const HostTensor *>> extra;
    st_.hasBest = resumable && best_ && st_.bestEpoch > 0;
    if (st_.hasBest) {
      bestTensors = best_->tensors();
      for (size_t k = 0; k < bestTensors.size(); ++k) extra.emplace_back(kBestPrefix + best_->name(k), &bestTensors[k]);
    }
    if (sched_.active()) {
      const ScheduleState &ss = sched_.state();
      st_.schedule = spec_.train.schedule.kind;
      st_.scheduleLr = ss.lr;
      st_.scheduleCount = ss.count;
      st_.scheduleBest = ss.best;
      st_.scheduleBad = ss.bad;
    }
    if (resumable && !haveDataHash_) {
      st_.dataHash = hashData(data_);
      haveDataHash_ = true;
    }
    checkSameState("step " + std::to_string(st_.step));
    if (mpi::rank() == 0) saveCheckpoint(path, spec_, be_, resumable ? &st_ : nullptr, extra, &data_.meta);
  }

  /// Under mpirun: the step's loss averaged over the ranks (each rank's loss is the mean over
  /// its equal share of the batch), the same on every rank.
  double globalLoss(double loss) {
    mpi::sumDoubles(&loss, 1);
    return loss / static_cast<double>(ranks_);
  }

  /// The pending interruption; under mpirun, whether any rank has one (the signal of those
  /// that do), agreed by all ranks so that every rank stops after the same step.
  int pendingSignal() {
    const int own = InterruptGuard::pending();
    if (ranks_ == 1) return own;
    double v[2] = {static_cast<double>(own), own ? 1.0 : 0.0};
    mpi::sumDoubles(v, 2);
    return v[1] > 0 ? static_cast<int>(std::lround(v[0] / v[1])) : 0;
  }

  /// Under mpirun: compares a checksum of every state tensor (parameters, buffers, optimizer
  /// state) across the ranks; a difference is an error naming the first rank whose state
  /// differs from rank 0's (`when`: "epoch 3", "step 120").
  void checkSameState(const std::string &when) {
    if (ranks_ == 1) return;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < spec_.state.size(); ++i)
      h = hashBytes(h, be_.stateData(i), stateBytes(spec_.state[i], be_.floatType()));
    const std::vector<uint64_t> all = mpi::gatherAll(h);
    for (size_t r = 1; r < all.size(); ++r)
      if (all[r] != all[0])
        throw DataError(fmt::format("after {}: the state of rank {} differs from rank 0's (checksum {:016x}, rank 0 {:016x}): "
                                    "the ranks no longer train the same model",
                                    when, r, all[r], all[0]));
  }

  /// Between steps: an interruption saves a resumable checkpoint and ends the run (returns
  /// 128 + the signal); --checkpoint-every saves one when due. Returns -1 to go on.
  int safePoint(Progress &progress, int64_t perEpoch) {
    if (int sig = pendingSignal()) {
      progress.clear();
      const std::string path = o_.save.empty() ? interruptedCheckpointPath(spec_) : o_.save;
      saveState(path, true);
      if (mpi::rank() != 0) return 128 + sig; // rank 0 reports for all
      std::fflush(stdout);
      fmt::print(stderr,
                 "{0}: interrupted by {1} after step {2} (epoch {3}, {4} of {5} steps done); saved a resumable "
                 "checkpoint to {6}\n{0}: note: continue with --resume {6} and the same other options\n",
                 exe_, signalName(sig), st_.step, st_.epoch, st_.epochStep, perEpoch, path);
      std::fflush(stderr);
      return 128 + sig;
    }
    if (o_.checkpointEvery && st_.step - lastSaveStep_ >= *o_.checkpointEvery) {
      saveState(o_.save, true);
      lastSaveStep_ = st_.step;
    }
    return -1;
  }

  /// A NaN or Inf after the step at the current position: undoes the step, reports where
  /// the value first appeared, keeps the last good state and returns the exit code 1.
  int nonFinite(StateSnapshot &before, const Batch &batch, double loss, const std::optional<NonFiniteValue> &after,
                int64_t perEpoch, Progress &progress) {
    progress.clear();
    before.restore();
    const NonFiniteValue v = locateNonFinite(spec_, be_, batch, loss, after);
    std::fflush(stdout);
    fmt::print(stderr, "{}: error: non-finite value at step {} (epoch {}, step {} of {}): {}{} is {}{}{}\n", exe_,
               st_.step + 1, st_.epoch, st_.epochStep + 1, perEpoch, v.tensor,
               v.index.empty() ? "" : " element " + v.index, nonFiniteText(v.value),
               v.beforeStep ? " before the step" : "", v.where.empty() ? "" : " (" + v.where + ")");
    fmt::print(stderr, "{}: note: {}\n", exe_, nonFiniteHint(v));
    if (o_.save.empty()) {
      fmt::print(stderr, "{}: note: training stopped; nothing was saved (no --save)\n", exe_);
    } else {
      try {
        saveState(o_.save, true);
        fmt::print(stderr,
                   "{}: note: training stopped; the last good state (before step {}) was saved to {} "
                   "(--resume {} repeats the step)\n",
                   exe_, st_.step + 1, o_.save, o_.save);
      } catch (const DataError &e) {
        fmt::print(stderr, "{}: note: training stopped; {}\n", exe_, e.what());
      }
    }
    std::fflush(stderr);
    return 1;
  }

  /// Mean per-sample validation loss over all validation samples. Full batches count
  /// B × evalLoss; a final partial batch of r samples is padded with its last sample, and
  /// the padding's share is removed with the loss of a batch made only of that sample:
  /// sum_r = B·L(padded) − (B − r)·L(last). Exact for losses that are a mean over the
  /// batch (mse, cross_entropy, bce_with_logits) in inference mode.
  /// Under mpirun the batches of the compiled (local) size are dealt to the ranks in turn
  /// (batch j to rank j mod N) and the sums added over the ranks.
  double validationLoss() {
    const int64_t B = spec_.batch, nv = static_cast<int64_t>(valIdx_.size());
    const int64_t full = nv / B, r = nv % B;
    const double dB = static_cast<double>(B);
    double sum = 0;
    for (int64_t j = mpi::rank(); j < full; j += ranks_) sum += dB * be_.evalLoss(batcher_.gather(valIdx_.data() + j * B, B));
    if (r > 0 && full % ranks_ == mpi::rank()) {
      const double padded = be_.evalLoss(batcher_.gather(valIdx_.data() + full * B, r));
      const double last = be_.evalLoss(batcher_.fillWith(valIdx_.back()));
      sum += dB * padded - static_cast<double>(B - r) * last;
    }
    mpi::sumDoubles(&sum, 1);
    return sum / static_cast<double>(nv);
  }

  /// Fraction of validation samples whose arg-max of output `o` equals target `t`.
  double accuracy(size_t o, size_t t) {
    const int64_t B = spec_.batch, nv = static_cast<int64_t>(valIdx_.size());
    const int64_t C = outs_.perSample[o];
    const int32_t *labels = data_.tensors[t].i32();
    int64_t correct = 0;
    for (int64_t start = mpi::rank() * B; start < nv; start += B * ranks_) { // under mpirun: batches dealt in turn
      const int64_t cnt = std::min(B, nv - start);
      be_.predict(batcher_.gather(valIdx_.data() + start, cnt), outs_.ptrs);
      for (int64_t r = 0; r < cnt; ++r) {
        int64_t arg = 0;
        double bestV = outs_.value(o, r * C);
        for (int64_t c = 1; c < C; ++c) {
          const double v = outs_.value(o, r * C + c);
          if (v > bestV || (std::isnan(v) && !std::isnan(bestV))) {
            bestV = v;
            arg = c;
          }
        }
        if (arg == labels[valIdx_[static_cast<size_t>(start + r)]]) ++correct;
      }
    }
    double total = static_cast<double>(correct);
    mpi::sumDoubles(&total, 1);
    return total / static_cast<double>(nv);
  }

  const ModelSpec &spec_;
  Backend &be_;
  const DriverData &data_;
  const DriverOptions &o_;
  uint64_t seed_;
  std::string exe_;
  const ResumeInput *resume_;
  Batcher batcher_;
  OutputBuffers outs_;
  std::vector<int64_t> valIdx_;
  ResumeState st_;                     ///< Where the run stands.
  std::optional<StateSnapshot> best_;  ///< Early stopping's best params and buffers.
  int64_t lastSaveStep_ = 0;           ///< The step of the last --checkpoint-every save.
  int64_t ranks_;                      ///< MPI ranks (spec.ranks, checked against mpirun's).
  int64_t global_;                     ///< The global batch: spec.batch (this rank's share) × ranks_.
  bool haveDataHash_ = false;          ///< st_.dataHash is computed.
  LrSchedule sched_;                   ///< The learning-rate schedule (inactive without one).
  double backendLr_ = -1;              ///< The learning rate last given to the backend by the schedule.
  double epochLr_ = 0;                 ///< The learning rate of the last step taken.
  /// A text model (a text() data source): bits per character, loss / ln 2, on epoch lines and in --metrics.
  bool text_ = false;
  bool classifier_ = false;            ///< The run validates a classifier: val_acc is reported.
  size_t accOut_ = 0, accTarget_ = 0;  ///< Its output and target (findClassification).
  std::optional<MetricsWriter> metrics_; ///< --metrics.
};

} // namespace

int runTraining(const ModelSpec &spec, Backend &backend, const DriverData &data, const DriverOptions &options,
                uint64_t seed, const std::string &exe, const ResumeInput *resume) {
  checkBackend(backend);
  checkSpec(spec);
  if (data.tensors.size() != spec.inputs.size() || data.present.size() != spec.inputs.size() ||
      data.trainCount < 0 || data.trainCount > data.n)
    throw std::runtime_error("runTraining: the data does not match the model");
  return Trainer(spec, backend, data, options, seed, exe, resume).run();
}

} // namespace gradc::rt
