/* interp.h: the reference executor. It runs any typed graph in float32 (int32 for ids and
 * labels) with the scalar reference body of each op, deterministically from a seed; it is the
 * definition of what a .sq program means, and every backend is tested against it. */
#ifndef SQ_INTERP_H
#define SQ_INTERP_H
#include <stdint.h>
#include "../ir/graph.h"
#include "../../runtime/tensor.h"

typedef struct Interp Interp;

/* The arguments of a generated kernel (the layout is also built by src/backend/llvm/module.c). */
typedef struct {
  void *const *in;     /* the inputs' data */
  const float *scales; /* the inputs' scales (q8 inputs) */
  void *out;           /* the output's data */
  void *scratch;       /* the kernel's scratch space, kept from one phase to the next */
  uint64_t seed;       /* the random streams' key */
  int64_t step;        /* the training step (random streams, Adam's bias correction) */
  float lr;            /* the step's learning rate (optimizer updates) */
  int32_t training;    /* 1 in a training step, 0 in inference */
  int32_t failed;      /* set by a part that meets input its op rejects (a label out of range...) */
  float out_scale;     /* written by kernels with a q8 output */
  int32_t out_unsigned;
} KernelArgs;
/* Phase `phase` of a kernel, part `part` of `nparts` fixed shares of that phase's work; all
 * parts of all phases, phase after phase, give the same bits for any nparts. */
typedef void (*InterpKernelFn)(KernelArgs *a, int64_t phase, int64_t part, int64_t nparts);
typedef struct {
  InterpKernelFn fn; /* NULL: the node runs its reference body */
  int64_t phases;    /* run one after the other, each split in parts on threads */
  int64_t scratch;   /* bytes of scratch space */
} InterpKernel;
/* Threads for generated kernels (results do not depend on it). */
void interp_set_threads(Interp *it, int threads);
/* Nodes with a kernel in table[0..n) run it instead of their reference body. A kernel that
 * reports a failure is followed by its node's reference body, which says what was wrong. */
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
/* Runs one op node (its kernel, or its reference body) on the tensors as they are, in training
 * mode at the current step: for benchmarks of single kernels. Returns 1 on success. */
int interp_run_node(Interp *it, int node);
#endif
