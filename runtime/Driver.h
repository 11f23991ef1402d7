// Driver.h: the pieces of the training driver (runMain) exposed for unit tests: flag parsing, the deterministic random numbers, state initialisation, checkpoints, data loading and batching.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "DataMeta.h"
#include "Model.h"
#include "Resume.h"
#include "Tensor.h"

namespace gradc::rt {

// ---------------------------------------------------------------------------------------
// Flags

/// A bad command line (unknown flag, missing value, bad number, conflicting flags).
/// what() is the message without the "<exe>: error: " prefix.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The executable's flags (README.md lists them, usageText in Driver.cpp prints them) after parsing; unset optionals keep
/// the train block's values.
struct DriverOptions {
  bool help = false;                     ///< --help / -h.
  std::optional<int64_t> epochs;         ///< --epochs N (N >= 0).
  std::optional<double> lr;              ///< --lr X (finite, X >= 0).
  std::optional<int64_t> seed;           ///< --seed N (any 64-bit integer).
  std::optional<int64_t> batchLimit;     ///< --batch-limit N: at most N training steps in total.
  std::string data;                      ///< --data PATH ("" = the train block's data).
  bool noShuffle = false;                ///< --no-shuffle.
  std::string load, save;                ///< --load CKPT, --save CKPT.
  bool predict = false;                  ///< --predict.
  std::string out;                       ///< --out FILE (with --predict): .safetensors, else CSV.
  std::optional<int64_t> generate;       ///< --generate N: sample N characters from a text model.
  std::string prompt;                    ///< --prompt S (with --generate): the text to continue.
  std::optional<double> temperature;     ///< --temperature X (with --generate; 0: the most likely character).
  bool gradcheck = false;                ///< --gradcheck.
  std::optional<double> gradcheckTol;    ///< --gradcheck-tol X (X > 0).
  std::optional<int> threads;            ///< --threads N (N >= 1).
  std::string precision;                 ///< --precision f32|bf16 ("" = the train block's precision).
  bool quiet = false;                    ///< --quiet.
  bool timing = false;                   ///< --timing: step times on stderr at the end.
  std::string resume;                    ///< --resume CKPT: continue the run that wrote CKPT.
  bool checkFinite = false;              ///< --check-finite: stop at the first NaN/Inf of any step.
  std::optional<int64_t> checkpointEvery;///< --checkpoint-every N (N >= 1, needs --save).
  std::string metrics;                   ///< --metrics FILE.csv: one row per epoch (Metrics.h).
  std::optional<int64_t> interruptAfter; ///< --interrupt-after-steps N (testing): SIGINT to itself after step N.
};

/// Parses the arguments after the program name. Accepts `--flag value` and `--flag=value`;
/// a later occurrence of a flag overrides an earlier one. Throws UsageError.
DriverOptions parseArgs(const std::vector<std::string> &args);

/// The --help text for executable `exe` of model `spec` (ends with a newline).
std::string usageText(const std::string &exe, const ModelSpec &spec);

/// One entry of the flag table that parseArgs and usageText are generated from.
struct FlagInfo {
  std::string name;  ///< "--epochs".
  std::string alias; ///< Another spelling ("-h"), or "".
  std::string arg;   ///< Placeholder of its value in --help ("N"); "" for a switch.
  bool hidden;       ///< A testing flag, absent from --help.
};

/// Every flag parseArgs accepts, in --help order.
std::vector<FlagInfo> driverFlags();

// ---------------------------------------------------------------------------------------
// Deterministic random numbers
//
// Every random stream is a std::mt19937_64 (whose output sequence the C++ standard fixes)
// seeded with streamSeed(seed, stream, index) = s3, where
//   s1 = splitmix64(seed), s2 = splitmix64(s1 ^ fnv1a64(stream)), s3 = splitmix64(s2 ^ index)
// (splitmix64 as in Steele et al., fnv1a64 the 64-bit FNV-1a hash of the stream's bytes).
// Streams: "init:<tensor name>" (index 0) initialises that state tensor, so its values
// depend only on the seed and its name; "shuffle" (index = 0-based epoch) orders an epoch;
// "gradcheck:<parameter name>" chooses the checked elements.
// Transforms (no std:: distributions, whose algorithms are implementation-defined):
//   uniform01  = (next() >> 11) * 2^-53, in [0, 1);
//   uniform(a, b) = a + (b - a) * uniform01;
//   below(n)   = rejection sampling: r = next() until r >= (2^64 - n) mod n, then r mod n;
//   normal     = Marsaglia's polar method: u, v = 2 uniform01 - 1 until 0 < s = u²+v² < 1,
//                then u·f and v·f with f = sqrt(-2 log(s) / s) (the second value is kept
//                for the next call); log is detLog below, built from + - * / only.
// With IEEE double arithmetic (and no fused multiply-add contraction, which the driver
// disables for clang) the values are bit-identical on every platform.

/// The splitmix64 finaliser.
uint64_t splitmix64(uint64_t x);

/// The 64-bit FNV-1a hash of a string.
uint64_t fnv1a64(std::string_view s);

/// The seed of random stream (`stream`, `index`) under the run's seed (see above).
uint64_t streamSeed(uint64_t seed, std::string_view stream, uint64_t index = 0);

/// Natural logarithm of x > 0 computed with a fixed sequence of IEEE operations (frexp and
/// an atanh series), so it is the same on every platform; accurate to about 1 ulp.
double detLog(double x);

/// A deterministic random stream (see above).
class Rng {
public:
  /// A stream seeded with `seed` (usually streamSeed(...)).
  explicit Rng(uint64_t seed) : eng_(seed) {}
  /// The next raw 64-bit value.
  uint64_t next() { return eng_(); }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [a, b).
  double uniform(double a, double b) { return a + (b - a) * uniform01(); }
  /// Uniform integer in [0, n); n must be positive.
  uint64_t below(uint64_t n);
  /// Standard normal (mean 0, standard deviation 1).
  double normal();

private:
  std::mt19937_64 eng_;
  bool haveSpare_ = false;
  double spare_ = 0;
};

/// Fills `perm` with 0 .. perm.size()-1 and, unless `shuffle` is false, applies a
/// Fisher-Yates shuffle (for i from size-1 down to 1: swap perm[i] with perm[below(i+1)])
/// driven by stream ("shuffle", epoch) of `seed`. Allocates nothing.
void epochOrder(std::vector<int64_t> &perm, uint64_t seed, int64_t epoch, bool shuffle);

// ---------------------------------------------------------------------------------------
// State

/// Initialises every state tensor of `spec` in `backend` from its Init with the stream
/// ("init:<name>") of `seed`; F32 specs are written as backend.floatType(), I64 specs as
/// int64_t (Uniform/Normal values rounded toward negative infinity).
void initState(const ModelSpec &spec, Backend &backend, uint64_t seed);

/// A checkpoint file read once: its tensors and metadata, the checksum verified.
struct CheckpointFile {
  std::string path;
  std::map<std::string, HostTensor> tensors;
  SafetensorsMetadata meta;
};

/// Reads checkpoint `path` (once) and verifies its checksum; throws DataError.
CheckpointFile readCheckpoint(const std::string &path);

/// loadCheckpoint on a checkpoint already read.
void loadCheckpoint(const CheckpointFile &file, const ModelSpec &spec, Backend &backend);

/// Reads checkpoint `path` into `backend`: every Param and Buffer must be present with its
/// shape; OptState entries are optional. F32 and F64 tensors are accepted for float state
/// (converted to the backend's float type), I64 and I32 for I64 state. Other tensors in the
/// file are ignored. Throws DataError naming the file and the tensor.
/// A checkpoint's "gradc.checksum" metadata, when present, must match its tensors.
void loadCheckpoint(const std::string &path, const ModelSpec &spec, Backend &backend);

/// What --resume reads besides the state: the run's position and early stopping's best
/// state (tensors kBestPrefix + name, without the prefix).
struct ResumeInput {
  std::string path;
  ResumeState state;
  std::map<std::string, HostTensor> best;
};

/// Reads resumable checkpoint `path` into `backend` like loadCheckpoint, but every state
/// tensor (optimizer state included) must be present, and the file must carry resume
/// information (Resume.h). Throws DataError naming the file.
ResumeInput loadResumeCheckpoint(const std::string &path, const ModelSpec &spec, Backend &backend);

/// loadResumeCheckpoint on a checkpoint already read (its early-stopping tensors are moved out).
ResumeInput loadResumeCheckpoint(CheckpointFile &file, const ModelSpec &spec, Backend &backend);

/// Writes every state tensor (params, buffers, optimizer state) of `backend` to `path`,
/// atomically, under its name: float state as F32 or F64 (the backend's float type), I64
/// state as I64; then `extra` tensors. The metadata holds "format": "pt", the checksum
/// (kChecksumKey), the data source's scaling or vocabulary (`data`, DataMeta.h) and, when
/// `resume` is given, the run's position. Refuses (DataError,
/// `path` untouched) to write state that contains NaN or Inf, so a diverged run never
/// overwrites a good checkpoint. Removes temporary files of killed writers of `path`.
/// Throws DataError naming the file.
void saveCheckpoint(const std::string &path, const ModelSpec &spec, Backend &backend,
                    const ResumeState *resume = nullptr,
                    const std::vector<std::pair<std::string, const HostTensor *>> &extra = {},
                    const DataMeta *data = nullptr);

// ---------------------------------------------------------------------------------------
// Data

/// The data a run uses: one tensor per ModelSpec::inputs entry, shape [n, per-sample shape
/// of the spec], dtype of the spec. Samples [0, trainCount) are for training, the rest
/// for validation.
struct DriverData {
  std::string source;              ///< File named in messages (the CSV, the images, ...).
  std::vector<HostTensor> tensors; ///< Per ModelSpec::inputs entry; absent ones are empty.
  std::vector<bool> present;       ///< False for targets missing from --predict data.
  int64_t n = 0;                   ///< Samples.
  int64_t trainCount = 0;          ///< Training samples (the first ones).
  /// The windows scaling or text vocabulary in use (fitted, or a checkpoint's): saved with
  /// every checkpoint; --predict maps outputs back to the target's units with the scaling.
  DataMeta meta;
  /// Number of validation samples.
  int64_t validationCount() const { return n - trainCount; }
};

/// Loads `dataPath` (a .safetensors or .csv file; "" = the train block's data source) for
/// `spec` and checks every tensor against the spec: per-sample shape and dtype (F64 data is
/// converted to F32 and I64 to I32 when the spec asks for those; IDX images may also feed
/// an input of the same per-sample size, e.g. f32[B, 784]). With `targetsOptional`
/// (--predict) a .safetensors file need not contain the targets. A .csv file is read as
/// windows, a text file (.txt, or any but .safetensors for a model with a text source) as
/// text. `fromCheckpoint` (the DataMeta of the --load or --resume checkpoint `checkpointPath`)
/// supplies the windows scaling and the text vocabulary when it has them: they are checked
/// against the model and used, never refitted. Throws DataError.
DriverData loadDriverData(const ModelSpec &spec, const std::string &dataPath, bool targetsOptional,
                          const DataMeta *fromCheckpoint = nullptr, const std::string &checkpointPath = "");

/// Assembles static-size batches from DriverData into buffers allocated once.
class Batcher {
public:
  /// Buffers for spec.batch samples of every spec.inputs entry (absent entries stay zero).
  Batcher(const ModelSpec &spec, const DriverData &data);
  /// The batch of samples idx[0 .. count), count in [1, batch]; when count < batch the
  /// remaining rows repeat sample idx[count - 1]. Allocates nothing. Throws DataError naming
  /// the batch (counted from 1 over this Batcher's batches), the sample and the position of
  /// an index input's element outside [0, TensorSpec::bound).
  const Batch &gather(const int64_t *idx, int64_t count);
  /// The batch whose rows are all sample `i`.
  const Batch &fillWith(int64_t i);
  /// Sets the random key (Batch::rng) of the batches it gathers from now on.
  void setRandomKey(uint64_t seed, uint64_t step) {
    b_.rng[0] = seed;
    b_.rng[1] = step;
  }

private:
  /// Throws DataError if an element of entry e's sample s (row r of the batch) is outside [0, bound).
  void checkIndices(size_t e, int64_t s, int64_t r) const;

  std::vector<TensorSpec> inputs_; ///< The spec's inputs (their bounds).
  const DriverData &data_;
  int64_t batch_;
  int64_t batches_ = 0; ///< Batches gathered so far.
  std::vector<size_t> sampleBytes_;
  std::vector<std::vector<unsigned char>> bufs_;
  Batch b_;
};

/// The training loop on loaded data (what runMain does without --predict/--gradcheck, after
/// initialising or loading the state): epochs of shuffled full batches, the per-epoch lines
/// on stdout, validation on samples [trainCount, n), early stopping, the final lines.
/// `exe` prefixes warnings. With options.save the final state is written there (resumable
/// unless early stopping restored its best state); with options.checkpointEvery also every
/// N steps. SIGINT/SIGTERM stop the run between steps: a resumable checkpoint goes to
/// options.save (or interruptedCheckpointPath) and the exit code is 128 + the signal.
/// NaN/Inf (every step with options.checkFinite, else during the first kAlwaysCheckedSteps
/// steps) stops it with exit code 1, keeping the state before the bad step. `resume`
/// continues from a checkpoint's position. Returns the exit code; throws DataError for
/// unusable data.
int runTraining(const ModelSpec &spec, Backend &backend, const DriverData &data, const DriverOptions &options,
                uint64_t seed, const std::string &exe, const ResumeInput *resume = nullptr);

/// Steps of every run (resumed ones too) whose loss and state are checked for NaN and Inf
/// even without --check-finite.
inline constexpr int64_t kAlwaysCheckedSteps = 10;

/// Where an interrupted run without --save writes its checkpoint: "<model>.interrupted.safetensors".
std::string interruptedCheckpointPath(const ModelSpec &spec);

/// Index of the first output shaped [B, C] with C > 1 and of the first target shaped i32[B]
/// (a classification model: val_acc is reported); false if there is no such pair.
bool findClassification(const ModelSpec &spec, size_t &output, size_t &target);

} // namespace gradc::rt
