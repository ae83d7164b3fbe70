/* fuse: folds elementwise relus into the kernels next to them, so their tensors are never
 * written out and read back and their kernels are gone:
 *  - a relu into the node that makes its input, when that node is a GEMM with a bias (linear,
 *    qlinear) or a batchnorm (L1 or L2) and nothing reads the input but the relu and the
 *    relu's gradient: the producer gets relu = 1 and applies it as its epilogue writes each
 *    output. relu_grad(dy, x) then reads the producer's output: relu(x) > 0 exactly when
 *    x > 0 (a NaN fails both), so no bit changes;
 *  - a relu_grad(g, x) into the maxpool2d_grad that makes g from the same x, when nothing
 *    else reads g: maxpool2d_grad gets relu = 1 and masks as it writes.
 * Expects: the backward graph (after autodiff: gradient rules never see a folded relu).
 * Guarantees: the graph computes the same values with fewer nodes. */
#include <stdlib.h>
#include "passes.h"

static int folds_relu(OpCode op) {
  return op == OP_linear || op == OP_qlinear || op == OP_l1_batchnorm || op == OP_l2_batchnorm;
}

/* the relu reading p, when every reader of p is that relu or a relu_grad of it */
static int sole_relu(const Graph *g, int p) {
  int relu = -1;
  for (int id = p + 1; id < g->nodes.n; id++) {
    const Node *n = ir_node(g, id);
    for (int i = 0; i < n->nin; i++) {
      if (n->in[i] != p) continue;
      if (n->op == OP_relu && relu < 0) relu = id;
      else if (!(n->op == OP_relu_grad && i == 1)) return -1;
    }
  }
  return relu;
}

static int is_output(const Graph *g, int id) {
  for (int i = 0; i < g->outputs.n; i++)
    if (g->outputs.v[i].node == id) return 1;
  return 0;
}

/* inputs, over all nodes, that are id */
static int readers(const Graph *g, int id) {
  int k = 0;
  for (int j = id + 1; j < g->nodes.n; j++)
    for (int i = 0; i < ir_node(g, j)->nin; i++) k += ir_node(g, j)->in[i] == id;
  return k;
}

int pass_fuse(Graph *g, PassCtx *c) {
  (void)c;
  int n = g->nodes.n;
  char *dead = xcalloc((size_t)(n ? n : 1), 1);
  int *to = xmalloc(sizeof(int) * (size_t)(n ? n : 1)); /* a folded relu's readers read its producer */
  for (int id = 0; id < n; id++) to[id] = id;
  for (int p = 0; p < n; p++) {
    Node *prod = ir_node(g, p);
    if (prod->kind != NK_OP || !folds_relu(prod->op) || ir_int(prod, "relu")) continue;
    int r = sole_relu(g, p);
    if (r < 0 || r == g->loss) continue;
    if (is_output(g, r) || is_output(g, p)) continue; /* an output keeps the value its name promises */
    ir_set_num(prod, "relu", 1);
    dead[r] = 1, to[r] = p;
  }
  for (int id = 0; id < n; id++) {
    Node *x = ir_node(g, id);
    for (int i = 0; i < x->nin; i++) x->in[i] = to[x->in[i]];
  }
  for (int r = 0; r < n; r++) { /* relu_grad(maxpool2d_grad(dy, x), x) */
    Node *rg = ir_node(g, r);
    if (rg->kind != NK_OP || rg->op != OP_relu_grad || r == g->loss) continue;
    Node *mp = ir_in(g, rg, 0);
    if (mp->kind != NK_OP || mp->op != OP_maxpool2d_grad || mp->in[1] != rg->in[1] || ir_int(mp, "relu")) continue;
    if (readers(g, mp->id) != 1 || is_output(g, r) || is_output(g, mp->id)) continue;
    ir_set_num(mp, "relu", 1);
    dead[r] = 1, to[r] = mp->id;
  }
  for (int id = 0; id < n; id++) {
    Node *x = ir_node(g, id);
    for (int i = 0; i < x->nin; i++) x->in[i] = to[x->in[i]];
  }
  ir_remove(g, dead);
  free(to);
  free(dead);
  return 1;
}
