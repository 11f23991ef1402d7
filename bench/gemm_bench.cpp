// gemm_bench.cpp: measures the runtime's gemm against single-threaded OpenBLAS and the machine's single-precision FMA peak on the matmul shapes of the LSTM benchmark models.
//
// usage: gemm_bench [--quick] [--threads N] [--peaks]
//   For each shape prints GFLOP/s (best of many short batches) of gradc::rt::gemm on 1
//   thread and on N threads (default 2), of cblas_sgemm with openblas_set_num_threads(1),
//   gradc's share of the peak measured by a register-only FMA loop on one thread, the
//   ratio gradc / OpenBLAS (both 1 thread), and, for the shapes whose B is the same at
//   every step of an LSTM's scan (h@W_hh, dG@W_hh^T), gradc::rt::gemmInvariantB on 1 thread
//   (B packed once, as the generated code does per scan; "-" for the other shapes).
//   --peaks prints only this machine's peaks, on 1 thread and on N: the FMA peak (the FMA
//   loop on every thread at once) and the GEMM peak, the best GFLOP/s of gradc's gemm and of
//   OpenBLAS (as many threads) on square products of 512 and 1024.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include <cblas.h>

#include "Gemm.h"

extern "C" void openblas_set_num_threads(int);
extern "C" char *openblas_get_corename(void);

namespace {

using Clock = std::chrono::steady_clock;

/// Keeps the optimiser from discarding a result.
volatile float gSink;

/// Best time (seconds) of one call of f over `batches` batches each lasting ≥ minBatch s.
template <class F> double bestTime(F &&f, double minBatch, int batches) {
  f(); // warm-up: grows buffers, faults pages in, wakes workers
  int reps = 1;
  for (;;) {
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) f();
    double t = std::chrono::duration<double>(Clock::now() - t0).count();
    if (t >= minBatch) break;
    reps = t <= 0 ? reps * 10 : std::max(reps + 1, static_cast<int>(reps * 1.2 * minBatch / t));
  }
  double best = 1e300;
  for (int b = 0; b < batches; ++b) {
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count() / reps);
  }
  return best;
}

/// Single-precision FMA peak of one core: independent FMA chains held in registers.
double peakGflops(double minBatch) {
  constexpr int64_t kIters = 1 << 20;
#if defined(__AVX512F__)
  constexpr int kChains = 12, kLanes = 16;
  auto body = [&] {
    __m512 acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
    const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < kIters; ++it) {
      for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
      __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]),
                       "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
    }
    __m512 s = acc[0];
    for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
    gSink = _mm512_reduce_add_ps(s);
  };
#elif defined(__AVX2__) && defined(__FMA__)
  constexpr int kChains = 12, kLanes = 8;
  auto body = [&] {
    __m256 acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
    const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < kIters; ++it) {
      for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
      __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]), "+x"(acc[5]),
                       "+x"(acc[6]), "+x"(acc[7]), "+x"(acc[8]), "+x"(acc[9]), "+x"(acc[10]), "+x"(acc[11]));
    }
    float s = 0, lanes[8];
    for (int i = 0; i < kChains; ++i) {
      _mm256_storeu_ps(lanes, acc[i]);
      for (float x : lanes) s += x;
    }
    gSink = s;
  };
#else
  constexpr int kChains = 8, kLanes = 1;
  auto body = [&] {
    float acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = static_cast<float>(i);
    for (int64_t it = 0; it < kIters; ++it)
      for (int i = 0; i < kChains; ++i) acc[i] = std::fma(acc[i], 0.999999f, 1e-7f);
    float s = 0;
    for (float x : acc) s += x;
    gSink = s;
  };
#endif
  double t = bestTime(body, minBatch, 5);
  return 2.0 * kIters * kChains * kLanes / t * 1e-9;
}

/// The FMA peak of `threads` threads running the FMA loop at the same time (their sum).
double peakGflopsThreads(int threads, double minBatch) {
  if (threads <= 1) return peakGflops(minBatch);
  std::vector<double> each(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { each[static_cast<size_t>(t)] = peakGflops(minBatch); });
  for (std::thread &t : pool) t.join();
  double sum = 0;
  for (double g : each) sum += g;
  return sum;
}

/// The GEMM peak on `threads` threads: the best GFLOP/s of gradc's gemm and OpenBLAS's
/// sgemm on square row-major products (512 and 1024; NN).
double gemmPeak(int threads, double minBatch, int batches) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  double best = 0;
  openblas_set_num_threads(threads);
  for (int64_t n : {512, 1024}) {
    std::vector<float> A(static_cast<size_t>(n * n)), B(A.size()), C(A.size());
    for (float &x : A) x = dist(rng);
    for (float &x : B) x = dist(rng);
    const double flops = 2.0 * n * n * n;
    double tg = bestTime([&] { gradc::rt::gemm(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n, threads); },
                         minBatch, batches);
    const int ni = static_cast<int>(n);
    double to = bestTime([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.f, A.data(), ni, B.data(), ni, 0.f, C.data(), ni);
    }, minBatch, batches);
    best = std::max({best, flops / tg * 1e-9, flops / to * 1e-9});
  }
  openblas_set_num_threads(1);
  return best;
}

struct Shape {
  std::string name;
  bool ta, tb;
  int64_t M, N, K;
  float beta;
  bool invariantB = false; ///< B is the same at every step of the scan (gemmInvariantB applies).
};

std::vector<Shape> shapes() {
  struct Size {
    const char *name;
    int64_t B, F, H, T;
  };
  std::vector<Shape> s;
  for (Size z : {Size{"small", 32, 1, 64, 30}, Size{"medium", 64, 28, 128, 28}, Size{"large", 64, 64, 512, 50}}) {
    std::string p = std::string(z.name) + " ";
    const int64_t B = z.B, F = z.F, H = z.H, T = z.T, G = 4 * z.H;
    s.push_back({p + "fwd h@W_hh      [B,H]@[H,4H]", false, false, B, G, H, 0, true});
    s.push_back({p + "fwd x@W_ih      [BT,F]@[F,4H]", false, false, B * T, G, F, 0});
    s.push_back({p + "bwd dG@W_hh^T   [B,4H]@[4H,H]", false, true, B, H, G, 0, true});
    s.push_back({p + "bwd h^T@dG +=   [H,B]@[B,4H]", true, false, H, G, B, 1});
    s.push_back({p + "bwd x^T@dG      [F,BT]@[BT,4H]", true, false, F, G, B * T, 0});
    // The forms gradc emits outside the scans: weight gradients over all steps at once
    // (hoist-accumulations), and the input projection with the weight as stored.
    s.push_back({p + "bwd h^T@dG all  [H,BT]@[BT,4H]", true, false, H, G, B * T, 0});
    s.push_back({p + "fwd x@W_ih^T    [BT,F]@[F,4H]^T", false, true, B * T, G, F, 0});
    s.push_back({p + "head h@W_d      [B,H]@[H,1]", false, false, B, 1, H, 0});
    s.push_back({p + "head dY@W_d^T   [B,1]@[1,H]", false, true, B, H, 1, 0});
    s.push_back({p + "head h^T@dY +=  [H,B]@[B,1]", true, false, H, 1, B, 1});
  }
  s.push_back({"square 512^3", false, false, 512, 512, 512, 0});
  s.push_back({"square 1024^3", false, false, 1024, 1024, 1024, 0});
  s.push_back({"square 1024^3 TN", true, false, 1024, 1024, 1024, 0});
  s.push_back({"square 1024^3 NT", false, true, 1024, 1024, 1024, 0});
  return s;
}

} // namespace

int main(int argc, char **argv) {
  bool quick = false, peaks = false;
  int threads = 2;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--peaks")) peaks = true;
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--threads N] [--peaks]\n", argv[0]);
      return 2;
    }
  }
  // Short batches, best of many: on a shared machine a short batch is likely to run
  // undisturbed at least once.
  const double minBatch = quick ? 0.002 : 0.005;
  const int batches = quick ? 10 : 30;
  openblas_set_num_threads(1);
  if (peaks) {
    for (int t : {1, threads}) {
      std::printf("threads %d FMA peak %.1f GFLOP/s GEMM peak %.1f GFLOP/s\n", t, peakGflopsThreads(t, minBatch),
                  gemmPeak(t, minBatch, batches));
      std::fflush(stdout);
      if (threads == 1) break;
    }
    return 0;
  }
  const double peak = peakGflops(minBatch);
  std::printf("gemm_bench: gradc kernels %s, OpenBLAS core %s (1 thread), FMA peak %.1f GFLOP/s (1 thread)\n",
              gradc::rt::gemmIsa(), openblas_get_corename(), peak);
  std::printf("%-46s %6s %6s %6s | %8s %8s %8s | %6s %6s | %8s\n", "shape", "M", "N", "K", "gradc", "OpenBLAS",
              ("gradc" + std::to_string(threads) + "T").c_str(), "%peak", "ratio", "packedB");
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (const Shape &s : shapes()) {
    const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
    std::vector<float> A(static_cast<size_t>(s.M * s.K)), B(static_cast<size_t>(s.K * s.N)),
        C(static_cast<size_t>(s.M * s.N));
    for (float &x : A) x = dist(rng);
    for (float &x : B) x = dist(rng);
    for (float &x : C) x = dist(rng);
    const float alpha = 1.f, beta = s.beta;
    const double flops = 2.0 * s.M * s.N * s.K;
    auto ours = [&](int t) {
      return bestTime(
          [&] {
            gradc::rt::gemm(s.ta, s.tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc,
                            t);
          },
          minBatch, batches);
    };
    double t1 = ours(1);
    double tT = threads > 1 ? ours(threads) : t1;
    double tb = bestTime(
        [&] {
          cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                      static_cast<int>(s.M), static_cast<int>(s.N), static_cast<int>(s.K), alpha, A.data(),
                      static_cast<int>(lda), B.data(), static_cast<int>(ldb), beta, C.data(), static_cast<int>(ldc));
        },
        minBatch, batches);
    const double g1 = flops / t1 * 1e-9, gb = flops / tb * 1e-9, gT = flops / tT * 1e-9;
    std::string packed = "-";
    if (s.invariantB) { // one reset, then every call reuses the copy packed by the warm-up call
      gradc::rt::gemmInvariantReset(0, 1);
      const double tp = bestTime(
          [&] {
            gradc::rt::gemmInvariantB(0, s.ta, s.tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta,
                                      C.data(), ldc, 1);
          },
          minBatch, batches);
      char text[32];
      std::snprintf(text, sizeof text, "%.1f", flops / tp * 1e-9);
      packed = text;
    }
    std::printf("%-46s %6lld %6lld %6lld | %8.1f %8.1f %8.1f | %5.0f%% %6.2f | %8s\n", s.name.c_str(),
                static_cast<long long>(s.M), static_cast<long long>(s.N), static_cast<long long>(s.K), g1, gb, gT,
                100.0 * g1 / peak, g1 / gb, packed.c_str());
    std::fflush(stdout);
  }
  return 0;
}
