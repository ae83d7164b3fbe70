/* train.c: training speed and peak memory of a model library through its ABI on synthetic
 * batches: prints "sqc LIB images_per_s peak_rss_kb", the median of REPS runs of STEPS steps
 * after a warm-up. Usage: train MODEL.so THREADS STEPS REPS */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include "timing.h"
#include "../include/sq/sq.h"

int main(int argc, char **argv) {
  if (argc < 5) return fprintf(stderr, "usage: train MODEL.so THREADS STEPS REPS\n"), 2;
  void *h = dlopen(argv[1], RTLD_NOW);
  if (!h) return fprintf(stderr, "train: %s\n", dlerror()), 1;
  sq_status (*create)(sq_model **, uint64_t);
  sq_status (*threads)(sq_model *, int);
  sq_status (*step)(sq_model *, const float *, const int32_t *, float, sq_step_stats *);
  const char *(*error)(const sq_model *);
  const sq_model_info *(*info)(void);
  *(void **)&create = dlsym(h, "sq_create"), *(void **)&threads = dlsym(h, "sq_set_threads");
  *(void **)&step = dlsym(h, "sq_train_step"), *(void **)&error = dlsym(h, "sq_last_error");
  *(void **)&info = dlsym(h, "sq_info");
  if (!create || !threads || !step || !error || !info) return fprintf(stderr, "train: not a model library\n"), 1;
  int nthreads = atoi(argv[2]), steps = atoi(argv[3]), reps = atoi(argv[4]);
  if (steps < 1 || reps < 1) return 2;
  const sq_model_info *in = info();
  int64_t B = in->batch, I = in->input_size;
  float *x = malloc(sizeof(float) * (size_t)(B * I));
  int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
  uint64_t s = 7;
  for (int64_t i = 0; i < B * I; i++) s ^= s << 13, s ^= s >> 7, s ^= s << 17, x[i] = (float)(s % 2001) / 1000.0f - 1.0f;
  for (int64_t i = 0; i < B; i++) y[i] = (int32_t)(i % in->output_size);
  sq_model *m;
  if (create(&m, 1) != SQ_OK || threads(m, nthreads) != SQ_OK) return fprintf(stderr, "train: cannot create the model\n"), 1;
  double *rate = malloc(sizeof(double) * (size_t)reps);
  for (int r = -1; r < reps; r++) {
    double t0 = now();
    for (int i = 0; i < (r < 0 ? 3 : steps); i++)
      if (step(m, x, y, 0.01f, NULL) != SQ_OK) return fprintf(stderr, "train: %s\n", error(m)), 1;
    if (r >= 0) rate[r] = (double)(steps * B) / (now() - t0);
  }
  double rate_median = median(rate, reps);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("sqc %s %.1f %ld\n", argv[1], rate_median, ru.ru_maxrss);
  return 0;
}
