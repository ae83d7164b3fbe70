/* clock.c: the core clock in GHz, measured by timing.h's chain of dependent adds (the fastest
 * of 5). Prints 0 where it cannot measure. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include "timing.h"

int main(void) {
#if defined(__x86_64__)
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double ghz = 1e-9 / cycle_seconds(50000000);
    best = ghz > best ? ghz : best;
  }
  printf("%.2f\n", best);
#else
  printf("0\n");
#endif
  return 0;
}
