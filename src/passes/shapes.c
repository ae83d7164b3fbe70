/* shapes: infers and checks every node's dtype and shape with the op table's shape rules.
 * Expects: a graph from sema (leaves typed, parameters untyped). Guarantees on success: every
 * node is typed, parameters included (their owner's rule shapes them), and the loss is a
 * scalar f32. On failure every error is reported once: nodes downstream of a failed node are
 * skipped, not reported again. */
#include <stdlib.h>
#include "../ops/rules.h"
#include "passes.h"

int pass_shapes(Graph *g, PassCtx *c) {
  ShapeCtx sc = {g, c->diag};
  char *failed = xcalloc((size_t)g->nodes.n, 1);
  int ok = 1;
  for (int id = 0; id < g->nodes.n; id++) {
    Node *n = ir_node(g, id);
    if (n->kind != NK_OP || n->shaped) continue;
    int skip = 0;
    for (int i = 0; i < n->nin; i++) {
      const Node *in = ir_in(g, n, i);
      if (failed[in->id] || (!in->shaped && in->kind == NK_OP)) skip = 1;
    }
    if (skip || !op_info[n->op].shape(&sc, n)) failed[id] = 1, ok = 0;
  }
  free(failed);
  if (ok && g->loss >= 0) {
    const Node *l = ir_node(g, g->loss);
    if (l->dtype != DT_F32 || l->shape.rank != 0) {
      char *t = type_str(l->dtype, &l->shape);
      diag_error(c->diag, l->loc, "the loss must be a scalar f32, but '%s' is %s", l->name, t);
      free(t);
      ok = 0;
    }
  }
  return ok;
}
