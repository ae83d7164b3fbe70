/* kernels.c: times the generated kernels of one model, linked with the model's object (sqc
 * --emit=obj) and the runtime. After two training steps on synthetic data (so tensors hold
 * realistic values) each op node runs alone, REPS times; the median goes out as one line per node:
 *   gemm NAME ROLE M N K seconds      (GEMMs; convolutions as their GEMM: rows, columns, reduction)
 *   norm NAME OP seconds              (normalization layers)
 *   op NAME OP seconds                (every other node: where the rest of a step goes)
 *   step seconds                      (a whole training step, for the sum of the above)
 * Usage: kernels THREADS REPS [NODE]: with NODE, only that node runs (REPS times), e.g. to
 * profile one kernel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "timing.h"
#include "../src/interp/interp.h"
#include "../src/ir/print.h"
#include "../src/ops/ops.h"

extern const char sq__graph_ir[];
extern const InterpKernel sq__kernels[];
extern const int64_t sq__nkernels;

static void synthetic_batch(Interp *it, const Graph *g, int step) {
  uint64_t s = 99 + (uint64_t)step;
  int64_t classes = g->outputs.n ? ir_node(g, g->outputs.v[0].node)->shape.d[1] : 2;
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = ir_node(g, id);
    if (n->kind != NK_INPUT && n->kind != NK_LABEL) continue;
    Tensor *t = interp_tensor(it, id);
    for (int64_t i = 0; i < t->n; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      if (t->f) t->f[i] = (float)(s % 2001) / 1000.0f - 1.0f;
      else t->i[i] = (int32_t)(s % (uint64_t)classes);
    }
  }
}

/* rows, columns and reduction of a GEMM or convolution node; 0 for other nodes */
static int gemm_shape(const Graph *g, const Node *n, int64_t *M, int64_t *N, int64_t *K, const char **role) {
  const Node *a = n->nin ? ir_in(g, n, 0) : NULL;
  switch (n->op) {
  case OP_qlinear: case OP_linear:
    *K = a->shape.d[a->shape.rank - 1], *N = n->shape.d[n->shape.rank - 1], *M = shape_numel(&a->shape) / *K;
    *role = "fwd";
    return 1;
  case OP_qmatmul: case OP_matmul: {
    int ta = (int)ir_int(n, "trans_a");
    *M = n->shape.d[n->shape.rank - 2], *N = n->shape.d[n->shape.rank - 1];
    *K = a->shape.d[a->shape.rank - (ta ? 2 : 1)];
    *M *= shape_numel(&n->shape) / (*M * *N);
    *role = ta ? "dW" : "dX";
    return 1;
  }
  case OP_qconv2d: case OP_conv2d: case OP_qconv2d_dx: case OP_conv2d_dx: case OP_qconv2d_dw: case OP_conv2d_dw: {
    int fwd = n->op == OP_qconv2d || n->op == OP_conv2d, dx = n->op == OP_qconv2d_dx || n->op == OP_conv2d_dx;
    const Shape *x = &ir_in(g, n, fwd ? 0 : dx ? 2 : 1)->shape, *w = fwd || dx ? &ir_in(g, n, 1)->shape : &n->shape;
    const Shape *y = fwd ? &n->shape : &ir_in(g, n, 0)->shape;
    int64_t taps = w->d[2] * w->d[3], pix = y->d[0] * y->d[2] * y->d[3];
    if (fwd) *M = pix, *N = w->d[0], *K = w->d[1] * taps, *role = "fwd";
    else if (dx) *M = x->d[0] * x->d[2] * x->d[3], *N = x->d[1], *K = w->d[0] * taps, *role = "dX";
    else *M = w->d[0], *N = w->d[1] * taps, *K = pix, *role = ir_int(n, "dy_bits") ? "dW+q" : "dW"; /* +q: ShiftQuants dy too */
    return 1;
  }
  default: return 0;
  }
}

/* normalization layers, with the max pooling fused into a batchnorm (batchnorm_pool) */
static int is_norm(OpCode op) {
  return op == OP_batchnorm_stats || op == OP_l1_batchnorm || op == OP_l2_batchnorm || op == OP_batchnorm_dparams ||
         op == OP_batchnorm_dx || op == OP_batchnorm_pool || op == OP_batchnorm_pool_dparams || op == OP_batchnorm_pool_dx ||
         op == OP_l1_layernorm || op == OP_layernorm || op == OP_l1_layernorm_dx ||
         op == OP_layernorm_dx || op == OP_l1_layernorm_dgamma || op == OP_layernorm_dgamma;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 5;
  const char *only = argc > 3 ? argv[3] : NULL;
  char *err = NULL;
  Graph *g = ir_read(sq__graph_ir, &err);
  if (!g) return fprintf(stderr, "kernels: %s\n", err), 1;
  /* every tensor in its own buffer: a node timed alone after the steps then reads the values
   * its inputs had, not whatever later nodes left in shared arena bytes */
  for (int id = 0; id < g->nodes.n; id++) ir_node(g, id)->arena = -1;
  g->arena_bytes = 0;
  Interp *it = interp_new(g, 1);
  interp_set_kernels(it, sq__kernels, sq__nkernels);
  interp_set_threads(it, threads);
  for (int step = 0; step < 2; step++) {
    synthetic_batch(it, g, step);
    float loss;
    if (!interp_train_step(it, 0.01f, &loss)) return fprintf(stderr, "kernels: %s\n", interp_error(it)), 1;
  }
  double *t = malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1));
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = ir_node(g, id);
    int64_t M = 0, N = 0, K = 0;
    const char *role = "";
    if (n->kind != NK_OP || (only && strcmp(n->name, only))) continue;
    int gemm = gemm_shape(g, n, &M, &N, &K, &role), norm = is_norm(n->op);
    interp_run_node(it, id); /* warm */
    for (int r = 0; r < reps; r++) {
      double t0 = now();
      if (!interp_run_node(it, id)) return fprintf(stderr, "kernels: %s\n", interp_error(it)), 1;
      t[r] = now() - t0;
    }
    double med = median(t, reps);
    if (gemm) printf("gemm %s %s %lld %lld %lld %.9f\n", n->name, role, (long long)M, (long long)N, (long long)K, med);
    else printf("%s %s %s %.9f\n", norm ? "norm" : "op", n->name, op_info[n->op].name, med);
  }
  for (int r = 0; r < reps && !only; r++) { /* whole steps: what the nodes' times leave out (dispatch, cold caches) */
    double t0 = now();
    float loss;
    if (!interp_train_step(it, 0.01f, &loss)) return fprintf(stderr, "kernels: %s\n", interp_error(it)), 1;
    t[r] = now() - t0;
  }
  if (!only) printf("step %.9f\n", median(t, reps));
  free(t);
  interp_free(it);
  ir_free(g);
  return 0;
}
