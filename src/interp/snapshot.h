/* snapshot.h: checkpoints of the reference executor: every parameter and state tensor (master
 * weights, optimizer state, running statistics) plus metadata (model name, hash of the compiled
 * graph, bits, step, seed) in a safetensors file (runtime/checkpoint.c). */
#ifndef SQ_INTERP_SNAPSHOT_H
#define SQ_INTERP_SNAPSHOT_H
#include "interp.h"

/* Hex FNV-1a hash of the graph's printed IR: two graphs with the same hash train the same way. */
void ir_hash_text(const Graph *g, char out[17]);

/* extra: NULL or more metadata (key/value pairs) to store, e.g. the trainer's epoch. */
int interp_save(Interp *it, const char *path, const char *const *extra_kv, int nextra, char **err);
/* Restores tensors, step and seed; the file must be of this graph (same hash). extra_keys get their
 * values (malloc'd, NULL when absent) in extra_values. Nothing changes unless it succeeds.
 * Returns 0 or a CK_E* code (runtime/checkpoint.h) with a malloc'd message in *err. */
int interp_load(Interp *it, const char *path, const char *const *extra_keys, char **extra_values, int nextra,
                char **err);
#endif
