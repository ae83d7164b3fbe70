/* l1norm: batchnorm -> l1_batchnorm and layernorm -> l1_layernorm when the quant config asks
 * for L1 normalization (the default; --norm=l2 keeps the L2 layers).
 * Expects: a typed forward graph (it runs before autodiff, so the L1 ops' own gradient rules
 * build the backward graph). Guarantees: no batchnorm/layernorm op remains under norm=l1; the
 * batchnorm's running variance becomes the running mean absolute deviation ("running_mad"). */
#include "../ops/rules.h"
#include "passes.h"

int pass_l1norm(Graph *g, PassCtx *c) {
  (void)c;
  if (g->quant.norm != NORM_L1) return 1;
  for (int id = 0; id < g->nodes.n; id++) {
    Node *n = ir_node(g, id);
    if (n->kind != NK_OP || (n->op != OP_batchnorm && n->op != OP_layernorm)) continue;
    Node old = *n;
    n->op = n->op == OP_batchnorm ? OP_l1_batchnorm : OP_l1_layernorm;
    ir_attr_defaults(n);
    ir_copy_attrs(n, &old);
    if (n->op == OP_l1_batchnorm) {
      char *name = xasprintf("%s.running_mad", n->name);
      ir_rename(g, n->in[4], name);
      free(name);
    }
  }
  return 1;
}
