/* peak.c: the int8 ceiling of one core, measured: the u8 x s8 multiply-adds per cycle that
 * independent 512-bit vpdpbusd instructions retire (16 accumulators, more than latency x
 * throughput needs), cycles counted by timing.h's chain of dependent adds run in turns with
 * it: the fastest of each, both at the core's highest clock. The GEMM table's "of peak"
 * compares with it: 64 on Zen 4 (one zmm vpdpbusd a cycle), 128 on Zen 5 (two). Prints 0
 * where the core has no AVX-512 VNNI (bench/run.sh then states the ISA's nominal ceiling). */
#include <stdint.h>
#include <stdio.h>
#include "timing.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

enum { ACCS = 16 };

/* one vpdpbusd into accumulator operand I (%0..%7) from a (%8) and b (%9) */
#define DP(i) "vpdpbusd %9, %8, %" #i "\n\t"

__attribute__((target("avx512f,avx512vnni"))) static double vnni_macs_per_cycle(void) {
  __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(-1);
  __m512i c0 = a, c1 = a, c2 = a, c3 = a, c4 = a, c5 = a, c6 = a, c7 = a;
  __m512i c8 = a, c9 = a, c10 = a, c11 = a, c12 = a, c13 = a, c14 = a, c15 = a;
  double cycle = 1e9, run = 1e9; /* the fastest of each: both at the core's highest clock */
  int64_t n = 20000000;
  for (int rep = 0; rep < 7; rep++) {
    double c = cycle_seconds(20000000), t0 = now();
    for (int64_t k = 0; k < n; k++) { /* asm: the compiler neither drops nor merges them */
      __asm__ volatile(DP(0) DP(1) DP(2) DP(3) DP(4) DP(5) DP(6) DP(7)
                       : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7) : "v"(a), "v"(b));
      __asm__ volatile(DP(0) DP(1) DP(2) DP(3) DP(4) DP(5) DP(6) DP(7)
                       : "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11), "+v"(c12), "+v"(c13), "+v"(c14), "+v"(c15) : "v"(a), "v"(b));
    }
    double t = now() - t0;
    cycle = c < cycle ? c : cycle;
    run = t < run ? t : run;
  }
  return (double)n * ACCS * 64 / (run / cycle);
}
#endif

int main(void) {
  double macs = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512vnni")) macs = vnni_macs_per_cycle();
#endif
  printf("%.1f\n", macs);
  return 0;
}
