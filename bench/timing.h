/* timing.h: what the bench programs share: a monotonic clock, the core clock, and medians. */
#ifndef SQ_BENCH_TIMING_H
#define SQ_BENCH_TIMING_H
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#if defined(__x86_64__)
/* seconds of one core cycle: 8n dependent integer adds retire one a cycle (the TSC rate in
 * /proc/cpuinfo is not the core clock on this kind of machine) */
static inline double cycle_seconds(uint64_t n) {
  uint64_t x = 0;
  double t0 = now();
  for (uint64_t i = 0; i < n; i++)
    __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                     "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
  return (now() - t0) / (double)(8 * n);
}
#endif

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
