/* clock.c: the core clock in GHz, measured: a chain of dependent integer adds retires one add
 * per cycle, so adds per second is the clock while the core runs the chain (the TSC rate in
 * /proc/cpuinfo is not the core clock on this kind of machine). Prints 0 where it cannot measure. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include "timing.h"

int main(void) {
#if defined(__x86_64__)
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    uint64_t x = 0, n = 50000000;
    double t0 = now();
    for (uint64_t i = 0; i < n; i++)
      __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                       "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    double ghz = (double)(8 * n) / (now() - t0) / 1e9;
    best = ghz > best ? ghz : best;
  }
  printf("%.2f\n", best);
#else
  printf("0\n");
#endif
  return 0;
}
