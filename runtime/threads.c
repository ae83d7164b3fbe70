/* threads.c: rt_parallel with POSIX threads; a thread that cannot be started leaves its blocks
 * to the caller, so the work is always done (only slower). */
#include "threads.h"
#include <pthread.h>

enum { MAX_THREADS = 64 };

typedef struct {
  rt_block_fn fn;
  void *ctx;
  int64_t nblocks;
  int stride, first;
} Worker;

static void *run_worker(void *arg) {
  Worker *w = arg;
  for (int64_t b = w->first; b < w->nblocks; b += w->stride) w->fn(w->ctx, b);
  return NULL;
}

void rt_parallel(int threads, int64_t nblocks, rt_block_fn fn, void *ctx) {
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if (threads > nblocks) threads = (int)nblocks;
  if (threads <= 1) {
    for (int64_t b = 0; b < nblocks; b++) fn(ctx, b);
    return;
  }
  pthread_t tid[MAX_THREADS];
  Worker w[MAX_THREADS];
  int started[MAX_THREADS] = {0};
  for (int t = 0; t < threads; t++) {
    w[t] = (Worker){fn, ctx, nblocks, threads, t};
    if (t > 0) started[t] = pthread_create(&tid[t], NULL, run_worker, &w[t]) == 0;
  }
  run_worker(&w[0]);
  for (int t = 1; t < threads; t++) {
    if (started[t]) pthread_join(tid[t], NULL);
    else run_worker(&w[t]);
  }
}
