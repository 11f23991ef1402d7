/* deploy_latency.c: times a gradc --emit=lib library: built with -include MODEL.h
   -DPREDICT=MODEL_predict -DIN_SIZE=... -DOUT_SIZE=...; usage: deploy_latency N REPS. Calls
   PREDICT on N samples (values in [-1, 1)) REPS times after one warm-up call and prints the median
   milliseconds per call as "ms_per_run X". */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  long n = atol(argv[1]), reps = atol(argv[2]);
  float *x = malloc(sizeof(float) * (size_t)(n * IN_SIZE)), *out = malloc(sizeof(float) * (size_t)(n * OUT_SIZE));
  double *ms = malloc(sizeof(double) * (size_t)reps);
  for (long i = 0; i < n * IN_SIZE; ++i) x[i] = (float)((i * 7919) % 2000) / 1000.0f - 1.0f;
  if (PREDICT(x, out, n) != 0) return 1;
  for (long r = 0; r < reps; ++r) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    PREDICT(x, out, n);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ms[r] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
  }
  qsort(ms, (size_t)reps, sizeof(double), cmp);
  printf("ms_per_run %.4f\n", ms[reps / 2]);
  return 0;
}
