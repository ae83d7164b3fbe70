/* rng.h: counter-based random numbers. A value is a pure function of
 * (seed, stream, step, index), so results never depend on thread count, order or backend. */
#ifndef SQ_RUNTIME_RNG_H
#define SQ_RUNTIME_RNG_H
#include <stdint.h>

enum { RNG_STEP_INIT = -1 }; /* the step used for parameter initialisation */

uint64_t rng_bits(uint64_t seed, uint64_t stream, int64_t step, uint64_t index);
/* float32 in [0, 1): the top 24 bits of rng_bits, times 2^-24 (exact). */
float rng_uniform(uint64_t seed, uint64_t stream, int64_t step, uint64_t index);
/* float32 in [0, 1), two draws from each rng_bits value: draw `index` is the top 24 bits of the
 * low (even index) or high (odd index) 32-bit word of rng_bits(..., index / 2), times 2^-24.
 * Stochastic rounding draws one per gradient element, and hashing was two thirds of its time. */
float rng_uniform_halves(uint64_t seed, uint64_t stream, int64_t step, uint64_t index);
/* standard normal by Box-Muller from the pair of uniforms at 2*index and 2*index+1 */
float rng_normal(uint64_t seed, uint64_t stream, int64_t step, uint64_t index);
/* a stable stream id for a named tensor (FNV-1a of the name) */
uint64_t rng_stream_of(const char *name);
#endif
