/* l1norm: the normalization forms that train. Under --norm l1 (the default) batchnorm ->
 * l1_batchnorm and layernorm -> l1_layernorm; under --norm l2, batchnorm -> l2_batchnorm and
 * layernorm stays.
 * Expects: a typed forward graph (it runs before autodiff, so the new ops' own gradient rules
 * build the backward graph). Guarantees: no batchnorm remains, and no layernorm under norm=l1;
 * every l1_/l2_batchnorm reads its batch statistics from a batchnorm_stats node (input 5); an
 * L1 batchnorm's running variance becomes the running mean absolute deviation ("running_mad"). */
#include "../ops/rules.h"
#include "passes.h"

static int batch_stats(Graph *g, const Node *bn, int l2) {
  char *name = xasprintf("%s.stats", bn->name);
  Node *s = ir_add_op(g, OP_batchnorm_stats, name, 1, (int[]){bn->in[0]}, bn->loc);
  free(name);
  ir_set_num(s, "eps", ir_num(bn, "eps"));
  ir_set_num(s, "l2", l2);
  ShapeCtx sc = {g, NULL};
  op_info[OP_batchnorm_stats].shape(&sc, s);
  return s->id;
}

int pass_l1norm(Graph *g, PassCtx *c) {
  (void)c;
  int l1 = g->quant.norm == NORM_L1, changed = 0;
  for (int id = 0, n0 = g->nodes.n; id < n0; id++) {
    Node *n = ir_node(g, id);
    if (n->kind != NK_OP || (n->op != OP_batchnorm && !(l1 && n->op == OP_layernorm))) continue;
    Node old = *n;
    n->op = n->op == OP_layernorm ? OP_l1_layernorm : l1 ? OP_l1_batchnorm : OP_l2_batchnorm;
    ir_attr_defaults(n);
    ir_copy_attrs(n, &old);
    if (n->op == OP_l1_layernorm) continue;
    if (l1) {
      char *name = xasprintf("%s.running_mad", n->name);
      ir_rename(g, n->in[4], name);
      free(name);
    }
    n->in[n->nin++] = batch_stats(g, n, !l1);
    changed = 1;
  }
  if (changed) ir_toposort(g); /* the statistics nodes went to the end */
  return 1;
}
