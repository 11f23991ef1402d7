// ScheduleTest.cpp: unit tests of the learning-rate schedules (runtime/Schedule.h): the rates
// PyTorch's schedulers give at their turning points, plateau's improvement threshold and
// patience, and a schedule continued from its saved state.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "Schedule.h"

namespace gradc::rt {
namespace {

ScheduleSpec spec(const char *kind) {
  ScheduleSpec s;
  s.kind = kind;
  return s;
}

TEST(Schedule, NoneIsConstant) {
  LrSchedule s(spec(""), 0.3);
  EXPECT_FALSE(s.active());
  s.epochEnd();
  s.stepEnd();
  s.validated(1.0);
  EXPECT_EQ(s.lr(), 0.3);
}

TEST(Schedule, StepDecaysEveryStepSizeEpochs) {
  ScheduleSpec sp = spec("step");
  sp.stepSize = 2;
  sp.gamma = 0.5;
  LrSchedule s(sp, 0.1);
  std::vector<double> lrs;
  for (int e = 0; e < 6; ++e) {
    lrs.push_back(s.lr());
    s.stepEnd();      // per-step and per-validation calls do not move a per-epoch schedule
    s.validated(1.0);
    s.epochEnd();
  }
  EXPECT_EQ(lrs, (std::vector<double>{0.1, 0.1, 0.05, 0.05, 0.025, 0.025}));
}

TEST(Schedule, CosineReachesEtaMinAndComesBack) {
  ScheduleSpec sp = spec("cosine");
  sp.tMax = 4;
  sp.etaMin = 0.01;
  LrSchedule s(sp, 0.1);
  std::vector<double> lrs;
  for (int e = 0; e <= 8; ++e) {
    lrs.push_back(s.lr());
    s.epochEnd();
  }
  // The closed form eta_min + (lr - eta_min) (1 + cos(pi e / T)) / 2, to rounding.
  for (int e = 0; e <= 8; ++e)
    EXPECT_NEAR(lrs[e], 0.01 + 0.09 * (1 + std::cos(3.141592653589793 * e / 4)) / 2, 1e-15) << e;
  EXPECT_NEAR(lrs[4], 0.01, 1e-15);
  EXPECT_NEAR(lrs[8], 0.1, 1e-15);
}

TEST(Schedule, OneCycleTurningPoints) {
  ScheduleSpec sp = spec("onecycle");
  sp.maxLr = 0.5;
  sp.totalSteps = 101;
  sp.pctStart = 0.3;
  LrSchedule s(sp, 123.0); // the optimizer's rate is not used
  // end + (start - end) / 2 * (cos(0) + 1), as PyTorch computes it: max_lr / 25 to rounding.
  EXPECT_NEAR(s.lr(), 0.5 / 25, 1e-16);
  EXPECT_EQ(LrSchedule::oneCycleLr(sp, 0), s.lr());
  // The warm-up ends at step pct_start * total_steps - 1 = 29.3: the peak lies between 29 and 30.
  EXPECT_LT(LrSchedule::oneCycleLr(sp, 29), 0.5);
  EXPECT_GT(LrSchedule::oneCycleLr(sp, 29), LrSchedule::oneCycleLr(sp, 28));
  EXPECT_GT(LrSchedule::oneCycleLr(sp, 29), LrSchedule::oneCycleLr(sp, 31));
  EXPECT_NEAR(LrSchedule::oneCycleLr(sp, 100), 0.02 / 1e4, 1e-20);
  for (int i = 0; i < 101; ++i) s.stepEnd(); // step 101 = total_steps: allowed, as in PyTorch
  EXPECT_THROW(s.stepEnd(), DataError);
}

TEST(Schedule, PlateauThresholdAndPatience) {
  ScheduleSpec sp = spec("plateau");
  sp.factor = 0.5;
  sp.patience = 1;
  LrSchedule s(sp, 0.4);
  std::vector<double> lrs;
  // 0.89995 is not an improvement on 0.9: it must be below 0.9 * (1 - 1e-4).
  for (double v : {1.0, 0.9, 0.89995, 0.95, 0.5, 0.6, 0.6, 0.6}) {
    s.validated(v);
    lrs.push_back(s.lr());
  }
  EXPECT_EQ(lrs, (std::vector<double>{0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.1, 0.1}));
  EXPECT_EQ(s.state().best, 0.5);
  EXPECT_EQ(s.state().count, 8);
}

TEST(Schedule, ContinuesFromItsState) {
  ScheduleSpec sp = spec("cosine");
  sp.tMax = 5;
  LrSchedule a(sp, 0.1), b(sp, 0.1);
  for (int e = 0; e < 3; ++e) a.epochEnd();
  b.setState(a.state());
  for (int e = 0; e < 4; ++e) {
    a.epochEnd();
    b.epochEnd();
    EXPECT_EQ(a.lr(), b.lr());
  }
}

} // namespace
} // namespace gradc::rt
