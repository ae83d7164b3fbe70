/* interp.h: the reference executor. It runs any typed graph in float32 (int32 for ids and
 * labels) with the scalar reference body of each op, deterministically from a seed; it is the
 * definition of what a .sq program means, and every backend is tested against it. */
#ifndef SQ_INTERP_H
#define SQ_INTERP_H
#include <stdint.h>
#include "../ir/graph.h"
#include "../../runtime/tensor.h"

typedef struct Interp Interp;

/* A generated kernel: in holds its inputs' data pointers, scales the scales of q8 inputs, lr is
 * the step's learning rate (read by optimizer updates). It computes part `part` of `nparts`
 * fixed shares of its outputs; all parts together give the same bits for any nparts. */
typedef void (*InterpKernel)(void *const *in, void *out, const float *scales, float lr, int64_t part, int64_t nparts);
/* Threads for generated kernels (results do not depend on it). */
void interp_set_threads(Interp *it, int threads);
/* Nodes with a kernel in table[0..n) run it instead of their reference body. */
void interp_set_kernels(Interp *it, InterpKernel const *table, int64_t n);

/* Allocates one tensor per node and initialises parameters and state from the seed. */
Interp *interp_new(const Graph *g, uint64_t seed);
void interp_free(Interp *it);

Tensor *interp_tensor(Interp *it, int node);
const Graph *interp_graph(const Interp *it);
int64_t interp_step(const Interp *it);
void interp_set_step(Interp *it, int64_t step); /* for resuming from a checkpoint */
uint64_t interp_seed(const Interp *it);
void interp_set_seed(Interp *it, uint64_t seed); /* the random streams' key; parameters keep their values */
const char *interp_error(const Interp *it); /* message of the last failure */

/* One training step: forward (training mode), backward, then the optimizer updates, with the
 * inputs and labels already written into their tensors. Fails without touching parameters
 * when the forward or backward pass fails or the loss is not finite. Returns 1 on success. */
int interp_train_step(Interp *it, float lr, float *loss);
/* Forward and backward in training mode, no update: every gradient node is computed. */
int interp_gradients(Interp *it);
/* Forward only. training=0: inference mode (running statistics, no dropout), computing only
 * the nodes the graph's outputs need. training=1: every forward node, as in a training step. */
int interp_forward(Interp *it, int training);
#endif
