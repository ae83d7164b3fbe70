/* target_match.c A.so B.so DIR STEPS [IDS]: trains two libraries of the same model (e.g. a generated
 * target and the reference) from the same seed on the same synthetic batches, with 1, 2 and 4
 * threads for B, then 4 threads with every kernel in parts (SQ_SERIAL_MAX=0: small kernels
 * otherwise run on one thread), and checks their checkpoints are byte-identical and so are
 * their predictions.
 * With IDS, the inputs are whole numbers in [0, IDS) (a model whose input is embedding ids); with
 * IDS = -1, the second half of each batch is the first half negated and every other run of 64
 * inputs is 0: a first convolution's sums then add up to 0 exactly in each channel, and the
 * zeros' windows sum to 0, the mean (an L1 batchnorm's third class of elements, x = mean). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../include/sq/sq.h"
#include "lib_check.h"

typedef struct {
  sq_status (*create)(sq_model **, uint64_t);
  void (*destroy)(sq_model *);
  sq_status (*train_step)(sq_model *, const float *, const int32_t *, float, sq_step_stats *);
  sq_status (*infer)(sq_model *, const float *, int64_t, float *);
  sq_status (*save)(const sq_model *, const char *);
  sq_status (*set_threads)(sq_model *, int);
  const char *(*last_error)(const sq_model *);
  const sq_model_info *(*info)(void);
} Lib;

static int open_lib(const char *path, Lib *l) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) return fprintf(stderr, "%s\n", dlerror()), 0;
  *(void **)&l->create = dlsym(h, "sq_create");
  *(void **)&l->destroy = dlsym(h, "sq_destroy");
  *(void **)&l->train_step = dlsym(h, "sq_train_step");
  *(void **)&l->infer = dlsym(h, "sq_infer");
  *(void **)&l->save = dlsym(h, "sq_save");
  *(void **)&l->set_threads = dlsym(h, "sq_set_threads");
  *(void **)&l->last_error = dlsym(h, "sq_last_error");
  *(void **)&l->info = dlsym(h, "sq_info");
  return l->create && l->info;
}

/* Trains, saves to path, and returns the predictions on the last batch. */
static long ids; /* inputs are ids in [0, ids) when > 0 */

static float *run(const Lib *l, int threads, int steps, const char *path) {
  const sq_model_info *in = l->info();
  int64_t B = in->batch, I = in->input_size, O = in->output_size;
  sq_model *m;
  if (l->create(&m, 11) != SQ_OK || l->set_threads(m, threads) != SQ_OK) return NULL;
  float *x = malloc(sizeof(float) * (size_t)(B * I)), *z = malloc(sizeof(float) * (size_t)(B * O));
  int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
  uint64_t s = 12345;
  for (int step = 0; step < steps; step++) {
    for (int64_t i = 0; i < B * I; i++) { /* xorshift: the same inputs for every library */
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      x[i] = ids > 0 ? (float)(s % (uint64_t)ids) : (float)(s % 2001) / 1000.0f - 1.0f;
      if (ids < 0) x[i] = i >= B / 2 * I ? -x[i - B / 2 * I] : i % I / 64 % 2 ? x[i] : 0.0f;
    }
    for (int64_t r = 0; r < B; r++) y[r] = (int32_t)((r + step) % O);
    if (l->train_step(m, x, y, 0.05f, NULL) != SQ_OK) {
      fprintf(stderr, "step %d: %s\n", step, l->last_error(m));
      l->destroy(m);
      free(x), free(y), free(z);
      return NULL;
    }
  }
  if (l->save(m, path) != SQ_OK || l->infer(m, x, B, z) != SQ_OK) return NULL;
  l->destroy(m);
  free(x), free(y);
  return z;
}

int main(int argc, char **argv) {
  if (argc < 5) return 2;
  Lib a, b;
  if (!open_lib(argv[1], &a) || !open_lib(argv[2], &b)) return 2;
  int steps = atoi(argv[4]);
  ids = argc > 5 ? atol(argv[5]) : 0;
  char pa[4096], pb[4096];
  snprintf(pa, sizeof pa, "%s/match-a.safetensors", argv[3]);
  float *za = run(&a, 1, steps, pa);
  const sq_model_info *ia = a.info();
  for (int round = 0; round < 4; round++) {
    int t = round < 3 ? 1 << round : 4;
    if (round == 3) setenv("SQ_SERIAL_MAX", "0", 1);
    snprintf(pb, sizeof pb, "%s/match-b%d.safetensors", argv[3], t);
    float *zb = run(&b, t, steps, pb);
    unsetenv("SQ_SERIAL_MAX");
    int ok = za && zb && same_file(pa, pb) && !memcmp(za, zb, sizeof(float) * (size_t)(ia->batch * ia->output_size));
    if (ok) passed++;
    else failed++, printf("FAIL: %s (%s) and %s (%s, %d threads%s) differ after %d steps\n", argv[1], ia->target, argv[2],
                          b.info()->target, t, round == 3 ? ", every kernel in parts" : "", steps);
    free(zb);
  }
  free(za);
  printf("match: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
