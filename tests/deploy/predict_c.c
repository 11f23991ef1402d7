/* predict_c.c: a C client of a gradc --emit=lib library. Built with -include MODEL.h and
   -DPREDICT=MODEL_predict -DIN_SIZE=... -DOUT_SIZE=...; usage: predict_c IN.f32 N OUT.f32 [THREADS].
   Reads N samples (raw float32) from IN.f32, calls PREDICT once for all N (and, with THREADS > 1,
   again from that many threads at once, each of which must give the same bits), checks that
   n = 0 and n = -1 return non-zero and leave the output untouched, and writes the N outputs
   (raw float32) to OUT.f32. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *g_x, *g_ref;
static int64_t g_n;

static void *worker(void *arg) {
  float *out = malloc(sizeof(float) * (size_t)(g_n * OUT_SIZE));
  int bad = 0;
  for (int rep = 0; rep < 5 && !bad; ++rep) {
    if (PREDICT(g_x, out, g_n) != 0 || memcmp(out, g_ref, sizeof(float) * (size_t)(g_n * OUT_SIZE)) != 0) bad = 1;
  }
  free(out);
  *(int *)arg = bad;
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: predict_c IN.f32 N OUT.f32 [THREADS]\n");
    return 2;
  }
  g_n = atoll(argv[2]);
  int threads = argc > 4 ? atoi(argv[4]) : 1;
  g_x = malloc(sizeof(float) * (size_t)(g_n * IN_SIZE));
  g_ref = malloc(sizeof(float) * (size_t)(g_n * OUT_SIZE));
  FILE *f = fopen(argv[1], "rb");
  if (!f || fread(g_x, sizeof(float), (size_t)(g_n * IN_SIZE), f) != (size_t)(g_n * IN_SIZE)) {
    fprintf(stderr, "predict_c: cannot read %lld samples from %s\n", (long long)g_n, argv[1]);
    return 2;
  }
  fclose(f);
  float sentinel[OUT_SIZE];
  for (int i = 0; i < OUT_SIZE; ++i) sentinel[i] = 12345.0f;
  if (PREDICT(g_x, sentinel, 0) == 0 || PREDICT(g_x, sentinel, -1) == 0) {
    fprintf(stderr, "predict_c: n < 1 returned 0\n");
    return 1;
  }
  for (int i = 0; i < OUT_SIZE; ++i)
    if (sentinel[i] != 12345.0f) {
      fprintf(stderr, "predict_c: n < 1 wrote to out\n");
      return 1;
    }
  printf("n < 1: non-zero, nothing written\n");
  int rc = PREDICT(g_x, g_ref, g_n);
  printf("n = %lld: returned %d\n", (long long)g_n, rc);
  if (rc != 0) return 1;
  if (threads > 1) {
    pthread_t t[16];
    int bad[16] = {0};
    for (int i = 0; i < threads && i < 16; ++i) pthread_create(&t[i], NULL, worker, &bad[i]);
    int any = 0;
    for (int i = 0; i < threads && i < 16; ++i) {
      pthread_join(t[i], NULL);
      any |= bad[i];
    }
    printf("%d threads at once: %s\n", threads, any ? "DIFFERENT" : "same bits");
    if (any) return 1;
  }
  f = fopen(argv[3], "wb");
  if (!f || fwrite(g_ref, sizeof(float), (size_t)(g_n * OUT_SIZE), f) != (size_t)(g_n * OUT_SIZE)) return 2;
  fclose(f);
  return 0;
}
