/* timing.h: what the bench programs share: a monotonic clock and medians. */
#ifndef SQ_BENCH_TIMING_H
#define SQ_BENCH_TIMING_H
#include <stdlib.h>
#include <time.h>

static inline double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* sorts v[0..n) and returns its median (the upper one of an even count) */
static inline double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}
#endif
