/* fuse: folds each relu into the node that makes its input when that node is a GEMM with a
 * bias (linear, qlinear) or a batchnorm (L1 or L2), and nothing reads the input but the relu
 * and the relu's gradient. The producer gets relu = 1 and applies it in its epilogue as it
 * writes each output, so the pre-activation tensor is never written out and read back, and
 * the relu kernel is gone. relu_grad(dy, x) then reads the producer's output: relu(x) > 0
 * exactly when x > 0 (a NaN fails both), so no bit changes. Expects: the backward graph
 * (after autodiff: gradient rules never see a folded relu). Guarantees: the graph computes
 * the same values with fewer nodes. */
#include <stdlib.h>
#include "passes.h"

static int folds_relu(OpCode op) {
  return op == OP_linear || op == OP_qlinear || op == OP_l1_batchnorm || op == OP_batchnorm;
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

int pass_fuse(Graph *g, PassCtx *c) {
  (void)c;
  int n = g->nodes.n;
  char *dead = calloc((size_t)(n ? n : 1), 1);
  int *to = malloc(sizeof(int) * (size_t)(n ? n : 1)); /* a folded relu's readers read its producer */
  for (int id = 0; id < n; id++) to[id] = id;
  for (int p = 0; p < n; p++) {
    Node *prod = ir_node(g, p);
    if (prod->kind != NK_OP || !folds_relu(prod->op) || ir_int(prod, "relu")) continue;
    int r = sole_relu(g, p);
    if (r < 0 || r == g->loss) continue;
    int is_output = 0;
    for (int i = 0; i < g->outputs.n; i++) is_output |= g->outputs.v[i].node == r || g->outputs.v[i].node == p;
    if (is_output) continue; /* an output keeps the value its name promises */
    ir_set_num(prod, "relu", 1);
    dead[r] = 1, to[r] = p;
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
