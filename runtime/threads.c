/* threads.c: rt_parallel on a pool of POSIX threads started once and kept: a training step
 * runs a hundred or so parallel phases of a few hundred microseconds, so starting threads per
 * call would cost more than the work. Workers spin for the next job (relax: a few milliseconds
 * in all), then sleep on a condition variable; the caller spins for the workers to finish.
 * The threads take the blocks in order from a shared counter, so a thread slowed down by the
 * machine takes fewer of them; which thread runs a block never changes what the block
 * computes. One job at a time (a mutex); blocks that no worker takes (one that could not be
 * started) are left to the caller, so the work is always done. Unloading the library stops
 * and joins the workers (stop_pool). */
#include "threads.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

enum { MAX_THREADS = 64, SPINS = 200000, YIELD_EVERY = 256 };

/* One round of a spin-wait: a pause hint, and every YIELD_EVERY rounds the core offered to any
 * other runnable thread (more threads than cores: a spinning thread would otherwise hold the
 * core its job's other parts wait for). A round is tens of nanoseconds where a sched_yield
 * alone costs microseconds in a virtual machine: the waiter sees the change sooner. */
static inline void relax(int spins) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
  if (spins % YIELD_EVERY == YIELD_EVERY - 1) sched_yield();
}

static struct {
  pthread_mutex_t call;          /* one rt_parallel at a time */
  pthread_mutex_t mu;
  pthread_cond_t wake;
  atomic_uint_fast64_t gen;      /* bumped for every job */
  atomic_int remaining;          /* workers that have not finished the current job (all of them
                                    take part, idle or not, so none can lag into the next one) */
  int started;                   /* workers 1..started exist */
  atomic_int_fast64_t next;      /* the next block to take */
  rt_block_fn fn;
  void *ctx;
  int64_t nblocks;
  int stride;                    /* the workers with id < stride take part */
  atomic_int quit;               /* the library is being unloaded: workers return */
  pthread_t tid[MAX_THREADS];
} pool = {.call = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void run_blocks(void) {
  for (int64_t b; (b = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed)) < pool.nblocks;) pool.fn(pool.ctx, b);
}

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg;
  uint_fast64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&pool.gen, memory_order_acquire) == seen && spins < SPINS) relax(spins++);
    if (atomic_load_explicit(&pool.gen, memory_order_acquire) == seen) {
      pthread_mutex_lock(&pool.mu);
      while (atomic_load_explicit(&pool.gen, memory_order_acquire) == seen) pthread_cond_wait(&pool.wake, &pool.mu);
      pthread_mutex_unlock(&pool.mu);
    }
    seen = atomic_load_explicit(&pool.gen, memory_order_acquire);
    if (atomic_load_explicit(&pool.quit, memory_order_acquire)) return NULL;
    if (id < pool.stride) run_blocks();
    atomic_fetch_sub_explicit(&pool.remaining, 1, memory_order_acq_rel);
  }
  return NULL;
}

/* A forked child has none of the parent's workers: it starts its own pool. (A fork while
 * another thread is inside rt_parallel is not supported, as for any pool.) */
static void forget_pool(void) {
  pthread_mutex_init(&pool.call, NULL);
  pthread_mutex_init(&pool.mu, NULL);
  pthread_cond_init(&pool.wake, NULL);
  pool.started = 0;
}

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, forget_pool); }

/* When the library is unloaded (dlclose) or the process exits, the workers leave and are
 * joined first: a worker still spinning in this library's code when dlclose unmaps it would
 * crash the process. */
__attribute__((destructor)) static void stop_pool(void) {
  if (pool.started == 0) return;
  pthread_mutex_lock(&pool.call);
  atomic_store_explicit(&pool.quit, 1, memory_order_release);
  pthread_mutex_lock(&pool.mu);
  atomic_fetch_add_explicit(&pool.gen, 1, memory_order_acq_rel);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.mu);
  for (int i = 0; i < pool.started; i++) pthread_join(pool.tid[i], NULL);
  pool.started = 0;
  atomic_store_explicit(&pool.quit, 0, memory_order_release);
  pthread_mutex_unlock(&pool.call);
}

void rt_parallel(int threads, int64_t nblocks, rt_block_fn fn, void *ctx) {
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if (threads > nblocks) threads = (int)nblocks;
  if (threads <= 1) {
    for (int64_t b = 0; b < nblocks; b++) fn(ctx, b);
    return;
  }
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, register_fork_handler);
  pthread_mutex_lock(&pool.call);
  while (pool.started < threads - 1) {
    if (pthread_create(&pool.tid[pool.started], NULL, worker, (void *)(intptr_t)(pool.started + 1)) != 0) break;
    pool.started++;
  }
  pool.fn = fn, pool.ctx = ctx, pool.nblocks = nblocks, pool.stride = threads;
  atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
  atomic_store_explicit(&pool.remaining, pool.started, memory_order_release);
  pthread_mutex_lock(&pool.mu);
  atomic_fetch_add_explicit(&pool.gen, 1, memory_order_acq_rel);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.mu);
  run_blocks();
  for (int spins = 0; atomic_load_explicit(&pool.remaining, memory_order_acquire) > 0;) relax(spins++);
  pthread_mutex_unlock(&pool.call);
}
