// Schedule.h: the learning-rate schedules of the train block (step, cosine, onecycle,
// plateau), computed as torch.optim.lr_scheduler computes them, so that the learning rate
// of every step is the one PyTorch would use, to the bit.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include "Model.h"

namespace gradc::rt {

/// What a schedule needs to continue where it stopped (kept in resumable checkpoints).
struct ScheduleState {
  double lr = 0;        ///< The learning rate in force.
  int64_t count = 0;    ///< Steps of the schedule taken (torch's last_epoch).
  double best = std::numeric_limits<double>::infinity(); ///< plateau: the best validation loss.
  int64_t bad = 0;      ///< plateau: validations since it improved (num_bad_epochs).
};

/// A learning-rate schedule. step and cosine advance once per epoch (epochEnd), onecycle once
/// per training step (stepEnd), plateau once per validation (validated); the other calls
/// leave it unchanged. lr() is the rate the next training step uses.
class LrSchedule {
public:
  /// `baseLr` is the optimizer's learning rate (after --lr); onecycle starts at max_lr / 25.
  LrSchedule(const ScheduleSpec &spec, double baseLr);
  /// True if the learning rate changes during the run (a schedule is given).
  bool active() const { return !spec_.kind.empty(); }
  /// The learning rate of the next training step.
  double lr() const { return st_.lr; }
  /// After the last step of an epoch (StepLR, CosineAnnealingLR: scheduler.step()).
  void epochEnd();
  /// After each training step (OneCycleLR: scheduler.step()). Throws DataError past total_steps.
  void stepEnd();
  /// After each validation, with its loss (ReduceLROnPlateau: scheduler.step(val_loss)).
  void validated(double valLoss);
  /// The state to save, and the state of a resumed run.
  const ScheduleState &state() const { return st_; }
  void setState(const ScheduleState &s) { st_ = s; }

  /// OneCycleLR's learning rate at step `step` (0 .. total_steps).
  static double oneCycleLr(const ScheduleSpec &spec, int64_t step);

private:
  ScheduleSpec spec_;
  double base_;
  ScheduleState st_;
};

} // namespace gradc::rt
