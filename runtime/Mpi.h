// Mpi.h: the training executable's view of an MPI run (Open MPI): whether it was started by mpirun, its rank and the number of ranks, and the few collectives the driver and the compiled step call; without mpirun no MPI function is ever called.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gradc::rt::mpi {

/// Starts MPI when mpirun started this process (Open MPI's OMPI_COMM_WORLD_SIZE is set);
/// otherwise does nothing and the process is rank 0 of 1. Idempotent.
void init(int *argc, char ***argv);
/// Ends MPI at a normal exit (after init started it; else nothing).
void finalize();
/// This process's rank, 0 without mpirun.
int rank();
/// The number of ranks, 1 without mpirun.
int size();
/// True when MPI was started (under mpirun, also with -np 1).
bool active();
/// Ends every rank of the job with exit code `code` (MPI_Abort); without MPI, std::exit.
[[noreturn]] void abortAll(int code);
/// Sums v[0..n) over the ranks, in place, identically on every rank (nothing on one rank).
void sumDoubles(double *v, int n);
/// The 64-bit value of every rank, by rank (just {value} on one rank).
std::vector<uint64_t> gatherAll(uint64_t value);
/// What the compiled step's all-reduces did since the last call (seconds in them, their
/// bytes, their number); resets all three (--timing, bench/mpi.py).
void takeAllreduceStats(double &seconds, double &bytes, double &calls);

/// Sums x[0..n) elementwise over the ranks, in place (the kernel IR's AllReduce).
void allreduceSum(float *x, int64_t n);
void allreduceSum(double *x, int64_t n);
/// Starts summing x[0..n) over the ranks in place without waiting (the kernel IR's
/// AllReduceStart: a gradient bucket while the backward pass goes on); x must not be touched
/// until allreduceWait(slot). Every rank starts the same slots in the same order.
void allreduceStart(float *x, int64_t n, int64_t slot);
void allreduceStart(double *x, int64_t n, int64_t slot);
/// Waits for the all-reduce started in `slot` (the kernel IR's AllReduceWait).
void allreduceWait(int64_t slot);
/// Lets the all-reduces in flight advance without waiting (MPI_Testall; the kernel IR's
/// AllReduceProgress, at each step of a scan that runs while they are in flight).
void allreduceProgress();

} // namespace gradc::rt::mpi

namespace gradc::rt {
using mpi::allreduceProgress;
using mpi::allreduceStart;
using mpi::allreduceSum;
using mpi::allreduceWait;
} // namespace gradc::rt

extern "C" {
/// The LLVM backend's and the JIT's entry points to mpi::allreduceSum.
void gradc_rt_allreduce_f32(float *x, int64_t n);
void gradc_rt_allreduce_f64(double *x, int64_t n);
/// ... to mpi::allreduceStart and mpi::allreduceWait.
void gradc_rt_allreduce_start_f32(float *x, int64_t n, int64_t slot);
void gradc_rt_allreduce_start_f64(double *x, int64_t n, int64_t slot);
void gradc_rt_allreduce_wait(int64_t slot);
void gradc_rt_allreduce_progress(void);
}
