// DeployRuntime.cpp: the runtime of a `gradc --emit=lib` library: gradc_deploy_predict (batches of B, the last one padded, per-thread arenas) and the gradc_rt_* entry points the emitted inference code calls, over the runtime's GEMM.
#include "DeployRuntime.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "../CompiledBackend.h"
#include "../Gemm.h"

namespace {

/// One thread's buffers for one model: planned once (the model's arena size), reused by every call.
struct ThreadBuffers {
  const GradcDeployModel *model = nullptr;
  float *arena = nullptr;
  unsigned char *x = nullptr; ///< One padded input batch.
  float *out = nullptr;       ///< One padded output batch.
  ~ThreadBuffers() {
    std::free(arena);
    std::free(x);
    std::free(out);
  }
};

/// The calling thread's buffers for `m` (allocated on its first call), or null when out of memory.
ThreadBuffers *buffersFor(const GradcDeployModel *m) {
  thread_local std::vector<std::unique_ptr<ThreadBuffers>> perThread;
  for (auto &b : perThread)
    if (b->model == m)
      return b.get();
  auto b = std::make_unique<ThreadBuffers>();
  b->model = m;
  auto alloc = [](size_t bytes) { return std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64); };
  b->arena = static_cast<float *>(alloc(static_cast<size_t>(m->arenaElements) * sizeof(float)));
  b->x = static_cast<unsigned char *>(alloc(static_cast<size_t>(m->batch * m->inputElements * m->inputBytes)));
  b->out = static_cast<float *>(alloc(static_cast<size_t>(m->batch * m->outputElements) * sizeof(float)));
  if (!b->arena || !b->x || !b->out)
    return nullptr;
  std::memset(b->arena, 0, static_cast<size_t>(m->arenaElements) * sizeof(float));
  perThread.push_back(std::move(b));
  return perThread.back().get();
}

} // namespace

extern "C" int gradc_deploy_predict(const GradcDeployModel *m, const void *x, float *out, int64_t n) {
  if (!m || !x || !out || n < 1)
    return 1;
  ThreadBuffers *tb = buffersFor(m);
  if (!tb)
    return 2;
  const int64_t B = m->batch, inBatch = B * m->inputElements * m->inputBytes;
  const unsigned char *xs = static_cast<const unsigned char *>(x);
  for (int64_t first = 0; first < n; first += B) {
    const int64_t count = n - first < B ? n - first : B;
    const void *in = xs + first * m->inputElements * m->inputBytes;
    float *dst = out + first * m->outputElements;
    if (count < B) {
      std::memset(tb->x, 0, static_cast<size_t>(inBatch));
      std::memcpy(tb->x, in, static_cast<size_t>(count * m->inputElements * m->inputBytes));
      in = tb->x;
      dst = tb->out;
    }
    const void *batch[1] = {in};
    void *outputs[1] = {dst};
    m->infer(tb->arena, m->state, batch, outputs, 0.0, nullptr);
    if (count < B)
      std::memcpy(out + first * m->outputElements, tb->out, static_cast<size_t>(count * m->outputElements) * sizeof(float));
  }
  return 0;
}

// The entry points emitted code calls. A library call runs on the caller's thread only
// (gradc_rt_threads is 1), so callers' threads never share the GEMM's thread pool; the
// pre-packed B slots are per thread.
extern "C" {

void gradc_rt_sgemm(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int32_t threads) {
  gradc::rt::gemm(transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void gradc_rt_sgemm_invariant(int64_t slot, int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha,
                              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                              int32_t threads) {
  gradc::rt::gemmInvariantB(slot, transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

void gradc_rt_gemm_invariant_reset(int64_t first, int64_t count) { gradc::rt::gemmInvariantReset(first, count); }

int32_t gradc_rt_threads(void) { return 1; }

} // extern "C"
