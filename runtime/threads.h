/* threads.h: a fixed-partition parallel loop. Work is split into blocks whose boundaries do not
 * depend on the thread count, and each block is computed by exactly one thread, so results are
 * the same bits for any number of threads as long as blocks are independent. */
#ifndef SQ_RUNTIME_THREADS_H
#define SQ_RUNTIME_THREADS_H
#include <stdint.h>

typedef void (*rt_block_fn)(void *ctx, int64_t block);

/* Calls fn(ctx, b) for b in [0, nblocks) on up to `threads` threads, each taking the next block
 * not yet taken. threads <= 1, or a failure to start a thread, runs them on the caller. */
void rt_parallel(int threads, int64_t nblocks, rt_block_fn fn, void *ctx);
#endif
