// Resume.h: resumable training checkpoints: the position of a run (epoch, step, data order, seed, loss sums, early-stopping and learning-rate schedule state) stored in a safetensors checkpoint's metadata, the checkpoint checksum (crc32; the gradc-hash64 one of earlier versions is still verified), and cleanup after killed writers.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "Model.h"
#include "Safetensors.h"
#include "Tensor.h"

namespace gradc::rt {

struct DriverData;

/// Where a training run stands, as stored in a checkpoint's "__metadata__" under keys
/// "gradc.*" (decimal integers; doubles as C99 hexadecimal floats, exact). The random
/// state is the seed alone: every random stream is a pure function of (seed, stream,
/// index) (see Driver.h), so the data order of epoch E is epochOrder(seed, E - 1) and is
/// regenerated on resume; its hash is stored to check that.
struct ResumeState {
  std::string model;            ///< gradc.model: ModelSpec::name.
  uint64_t seed = 0;            ///< gradc.seed.
  bool shuffle = true;          ///< gradc.shuffle: 1 or 0 (--no-shuffle).
  double lr = 0;                ///< gradc.lr: the learning rate in use (after --lr).
  int64_t batch = 0;            ///< gradc.batch.
  int64_t trainCount = 0;       ///< gradc.train_samples.
  uint64_t dataHash = 0;        ///< gradc.data_hash: hashData of the run's data.
  int64_t epoch = 1;            ///< gradc.epoch: the epoch in progress (1-based).
  int64_t epochStep = 0;        ///< gradc.epoch_step: steps of that epoch already taken.
  int64_t step = 0;             ///< gradc.step: steps taken in total.
  uint64_t orderHash = 0;       ///< gradc.order_hash: hash of epoch `epoch`'s sample order.
  double epochLossSum = 0;      ///< gradc.epoch_loss_sum: sum of that epoch's step losses.
  bool ran = false;             ///< gradc.ran: some epoch has completed.
  double finalLoss = 0;         ///< gradc.final_loss: the last completed epoch's loss.
  double finalVal = 0;          ///< gradc.final_val: the last validation loss of an epoch line.
  double lastEval = 0;          ///< gradc.last_eval: the last validation loss computed.
  int64_t lastEvalStep = -1;    ///< gradc.last_eval_step: the step it was computed at.
  double bestVal = 0;           ///< gradc.best_val: early stopping's best validation loss.
  int64_t bestEpoch = 0;        ///< gradc.best_epoch (0: none yet).
  int64_t bad = 0;              ///< gradc.bad: evaluations without improvement.
  bool hasBest = false;         ///< gradc.has_best: tensors kBestPrefix + name hold the best state.
  /// gradc.schedule: the learning-rate schedule's kind; "" (no schedule) writes none of the
  /// gradc.schedule* keys, so checkpoints of constant-rate runs are as they were.
  std::string schedule;
  double scheduleLr = 0;        ///< gradc.schedule_lr: the learning rate in force.
  int64_t scheduleCount = 0;    ///< gradc.schedule_count: schedule steps taken (torch's last_epoch).
  double scheduleBest = 0;      ///< gradc.schedule_best: plateau's best validation loss.
  int64_t scheduleBad = 0;      ///< gradc.schedule_bad: plateau's validations without improvement.
};

/// Prefix of the early-stopping snapshot tensors in a resumable checkpoint ("optimizer."
/// so that code which sets optimizer state aside before load_state_dict skips them too).
inline constexpr const char *kBestPrefix = "optimizer.best.";

/// Metadata key of the checkpoint checksum: 8 lower-case hex digits of checksumTensors
/// (zlib's crc32; docs/robustness.md says which bytes it covers).
inline constexpr const char *kChecksumKey = "gradc.crc32";

/// Metadata key of the checksum of checkpoints written by earlier versions: 16 lower-case
/// hex digits of legacyChecksumTensors (gradc-hash64). Still verified when present; never
/// written.
inline constexpr const char *kLegacyChecksumKey = "gradc.checksum";

/// Adds the "gradc.*" keys of `r` to `meta`.
void encodeResume(const ResumeState &r, SafetensorsMetadata &meta);

/// Reads the "gradc.*" keys of a checkpoint written by encodeResume. Returns false if the
/// checkpoint has no resume information (gradc.epoch absent); throws DataError naming
/// `path` for a malformed value.
bool decodeResume(const SafetensorsMetadata &meta, const std::string &path, ResumeState &r);

/// zlib's crc32 over each tensor's name, dtype, shape and bytes, in name order (so it does
/// not depend on the order of the file's entries). Per tensor, in ascending byte order of
/// the names, the bytes are: u64 len(name), name (UTF-8), u64 len(dtype), the safetensors
/// dtype ("F32", "I64", ...), u64 rank, u64 each dimension, u64 len(data), the data bytes
/// as stored in the file; every u64 is 8 bytes little-endian.
uint32_t checksumTensors(const std::vector<std::pair<std::string, const HostTensor *>> &tensors);

/// The checksum of earlier versions (kLegacyChecksumKey): a 64-bit hash (gradc-hash64:
/// 8-byte little-endian words, multiply-xor mixing) over each tensor's name, dtype, shape
/// and bytes, in name order.
uint64_t legacyChecksumTensors(const std::vector<std::pair<std::string, const HostTensor *>> &tensors);

/// Continues gradc-hash64 state `h` over `n` bytes.
uint64_t hashBytes(uint64_t h, const void *data, size_t n);

/// gradc-hash64 of the training part of the data (every present tensor's first trainCount
/// samples), so that resuming on different data is noticed.
uint64_t hashData(const DriverData &data);

/// gradc-hash64 of a sample order.
uint64_t hashOrder(const std::vector<int64_t> &perm);

/// Throws DataError naming `path` if `meta` holds a checksum (kChecksumKey, or
/// kLegacyChecksumKey of an earlier version; each one present is checked) that does not
/// match `tensors` (a damaged or hand-edited checkpoint). A checkpoint without checksum
/// passes.
void verifyChecksum(const std::string &path, const SafetensorsMetadata &meta,
                    const std::vector<std::pair<std::string, const HostTensor *>> &tensors);

/// Removes temporary files "PATH.tmp.<pid>" left in PATH's directory by writers of `path`
/// that no longer run (a process killed while saving). Best effort; never throws.
void removeStaleTemporaries(const std::string &path);

} // namespace gradc::rt
