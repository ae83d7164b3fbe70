/* l1norm: batchnorm -> l1_batchnorm and layernorm -> l1_layernorm when the quant config asks
 * for L1 normalization (the default; --norm=l2 keeps the L2 layers).
 * Expects: a typed forward graph (it runs before autodiff, so the L1 ops' own gradient rules
 * build the backward graph). Guarantees: no batchnorm/layernorm op remains under norm=l1; the
 * batchnorm's running variance becomes the running mean absolute deviation ("running_mad");
 * each l1_batchnorm reads its batch statistics from an l1_batchnorm_stats node (input 5). */
#include "../ops/rules.h"
#include "passes.h"

static int batch_stats(Graph *g, const Node *bn) {
  char *name = xasprintf("%s.stats", bn->name);
  Node *s = ir_add_op(g, OP_l1_batchnorm_stats, name, 1, (int[]){bn->in[0]}, bn->loc);
  free(name);
  ir_set_num(s, "eps", ir_num(bn, "eps"));
  ShapeCtx sc = {g, NULL};
  op_info[OP_l1_batchnorm_stats].shape(&sc, s);
  return s->id;
}

int pass_l1norm(Graph *g, PassCtx *c) {
  (void)c;
  if (g->quant.norm != NORM_L1) return 1;
  int changed = 0;
  for (int id = 0, n0 = g->nodes.n; id < n0; id++) {
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
      n->in[n->nin++] = batch_stats(g, n);
      changed = 1;
    }
  }
  if (changed) ir_toposort(g); /* the statistics nodes went to the end */
  return 1;
}
