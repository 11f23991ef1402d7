// Mpi.cpp: implements Mpi.h over Open MPI: MPI is started only when mpirun started the process, errors of any rank end the whole job (MPI_Abort), and the compiled step's all-reduces are timed for bench/.
#include "Mpi.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <stdexcept>

#include <mpi.h>

namespace gradc::rt::mpi {

namespace {
bool gActive = false;
int gRank = 0, gSize = 1;
double gAllreduceSeconds = 0, gAllreduceBytes = 0, gAllreduceCalls = 0;

/// Throws with MPI's text for a failed call (MPI_ERRORS_RETURN is set on the communicator).
void check(int rc, const char *what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw std::runtime_error(std::string(what) + " failed on rank " + std::to_string(gRank) + ": " +
                           std::string(text, static_cast<size_t>(len)));
}
} // namespace

void init(int *argc, char ***argv) {
  if (gActive || !std::getenv("OMPI_COMM_WORLD_SIZE")) return;
  int started = 0;
  MPI_Initialized(&started);
  if (!started && MPI_Init(argc, argv) != MPI_SUCCESS) {
    std::fprintf(stderr, "error: MPI_Init failed\n");
    std::exit(1);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &gRank);
  MPI_Comm_size(MPI_COMM_WORLD, &gSize);
  gActive = true;
}

void finalize() {
  if (!gActive) return;
  gActive = false;
  MPI_Finalize();
}

int rank() { return gRank; }
int size() { return gSize; }
bool active() { return gActive; }

void abortAll(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (gActive) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

void sumDoubles(double *v, int n) {
  if (gSize == 1) return;
  check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
}

std::vector<uint64_t> gatherAll(uint64_t value) {
  std::vector<uint64_t> all(static_cast<size_t>(gSize), value);
  if (gSize > 1)
    check(MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD), "MPI_Allgather");
  return all;
}

void takeAllreduceStats(double &seconds, double &bytes, double &calls) {
  seconds = gAllreduceSeconds;
  bytes = gAllreduceBytes;
  calls = gAllreduceCalls;
  gAllreduceSeconds = gAllreduceBytes = gAllreduceCalls = 0;
}

namespace {
/// One in-place all-reduce of n elements of `type`, in chunks MPI's int count can hold.
template <typename T> void allreduce(T *x, int64_t n, MPI_Datatype type) {
  if (gSize == 1) return;
  const auto t0 = std::chrono::steady_clock::now();
  constexpr int64_t kChunk = int64_t(1) << 30;
  for (int64_t at = 0; at < n; at += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, n - at));
    check(MPI_Allreduce(MPI_IN_PLACE, x + at, count, type, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  }
  gAllreduceSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  gAllreduceBytes += static_cast<double>(n) * sizeof(T);
  gAllreduceCalls += 1;
}
} // namespace

void allreduceSum(float *x, int64_t n) { allreduce(x, n, MPI_FLOAT); }
void allreduceSum(double *x, int64_t n) { allreduce(x, n, MPI_DOUBLE); }

namespace {
/// The requests of the non-blocking all-reduces in flight, by the compiled step's slot.
std::vector<std::vector<MPI_Request>> gPending;

/// Starts the in-place all-reduce of x[0..n) in `slot` (MPI_Iallreduce, in chunks MPI's int
/// count can hold).
template <typename T> void allreduceStart(T *x, int64_t n, int64_t slot, MPI_Datatype type) {
  if (gSize == 1) return;
  const auto t0 = std::chrono::steady_clock::now();
  if (static_cast<size_t>(slot) >= gPending.size()) gPending.resize(static_cast<size_t>(slot) + 1);
  std::vector<MPI_Request> &req = gPending[static_cast<size_t>(slot)];
  if (!req.empty()) throw std::runtime_error("all-reduce slot " + std::to_string(slot) + " started twice");
  constexpr int64_t kChunk = int64_t(1) << 30;
  for (int64_t at = 0; at < n; at += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, n - at));
    req.emplace_back();
    check(MPI_Iallreduce(MPI_IN_PLACE, x + at, count, type, MPI_SUM, MPI_COMM_WORLD, &req.back()), "MPI_Iallreduce");
  }
  gAllreduceSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  gAllreduceBytes += static_cast<double>(n) * sizeof(T);
  gAllreduceCalls += 1;
}
} // namespace

void allreduceStart(float *x, int64_t n, int64_t slot) { allreduceStart(x, n, slot, MPI_FLOAT); }
void allreduceStart(double *x, int64_t n, int64_t slot) { allreduceStart(x, n, slot, MPI_DOUBLE); }

void allreduceProgress() {
  if (gSize == 1) return;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::vector<MPI_Request> &req : gPending) {
    if (req.empty()) continue;
    int done = 0; // completed requests become MPI_REQUEST_NULL, which the wait passes at once
    check(MPI_Testall(static_cast<int>(req.size()), req.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
  }
  gAllreduceSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void allreduceWait(int64_t slot) {
  if (gSize == 1) return;
  if (slot < 0 || static_cast<size_t>(slot) >= gPending.size() || gPending[static_cast<size_t>(slot)].empty())
    throw std::runtime_error("all-reduce slot " + std::to_string(slot) + " waited for but not started");
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<MPI_Request> &req = gPending[static_cast<size_t>(slot)];
  check(MPI_Waitall(static_cast<int>(req.size()), req.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  req.clear();
  gAllreduceSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace gradc::rt::mpi

void gradc_rt_allreduce_f32(float *x, int64_t n) { gradc::rt::mpi::allreduceSum(x, n); }
void gradc_rt_allreduce_f64(double *x, int64_t n) { gradc::rt::mpi::allreduceSum(x, n); }
void gradc_rt_allreduce_start_f32(float *x, int64_t n, int64_t slot) { gradc::rt::mpi::allreduceStart(x, n, slot); }
void gradc_rt_allreduce_start_f64(double *x, int64_t n, int64_t slot) { gradc::rt::mpi::allreduceStart(x, n, slot); }
void gradc_rt_allreduce_wait(int64_t slot) { gradc::rt::mpi::allreduceWait(slot); }
void gradc_rt_allreduce_progress(void) { gradc::rt::mpi::allreduceProgress(); }
