/* rng.c: SplitMix64-based counter hash. Each key word is folded in through the SplitMix64
 * finaliser, which is a bijection with full avalanche, so neighbouring counters are independent. */
#include "rng.h"
#include <math.h>

static uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rng_bits(uint64_t seed, uint64_t stream, int64_t step, uint64_t index) {
  uint64_t h = mix(seed);
  h = mix(h ^ stream);
  h = mix(h ^ (uint64_t)step);
  return mix(h ^ index);
}

float rng_uniform(uint64_t seed, uint64_t stream, int64_t step, uint64_t index) {
  return (float)(rng_bits(seed, stream, step, index) >> 40) * 0x1p-24f;
}

float rng_uniform_halves(uint64_t seed, uint64_t stream, int64_t step, uint64_t index) {
  uint32_t word = (uint32_t)(rng_bits(seed, stream, step, index >> 1) >> (index & 1 ? 32 : 0));
  return (float)(word >> 8) * 0x1p-24f;
}

float rng_normal(uint64_t seed, uint64_t stream, int64_t step, uint64_t index) {
  double u1 = ((double)(rng_bits(seed, stream, step, 2 * index) >> 11) + 1.0) * 0x1p-53; /* (0,1] */
  double u2 = (double)(rng_bits(seed, stream, step, 2 * index + 1) >> 11) * 0x1p-53;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t rng_stream_of(const char *name) {
  uint64_t h = 1469598103934665603ull;
  for (; *name; name++) h = (h ^ (unsigned char)*name) * 1099511628211ull;
  return h;
}
