/* autodiff: appends the backward graph and the optimizer updates.
 * Expects: a typed graph with a scalar loss. Guarantees: for every parameter that the loss
 * depends on, its gradient (role bwd) built by the ops' gradient rules in reverse order,
 * multiple uses summed with add; then one update node per such parameter (role upd), with the
 * optimizer's state leaves "<param>.momentum" or "<param>.adam_m"/".adam_v". Forward nodes are
 * unchanged, so inference runs the forward part alone. */
#include <stdlib.h>
#include "../ops/rules.h"
#include "passes.h"

static void add_update(Graph *g, int param, int grad) {
  const Node *p = ir_node(g, param);
  int in[SQ_MAX_IN] = {param, grad};
  int nin = 2;
  static const char *const sgd_state[] = {"momentum"}, *const adam_state[] = {"adam_m", "adam_v"};
  int adam = g->optimizer.op == OP_adam_update;
  for (int k = 0; k < (adam ? 2 : 1); k++) {
    char *name = xasprintf("%s.%s", p->name, adam ? adam_state[k] : sgd_state[k]);
    Node *st = ir_add(g, NK_STATE, name, p->loc);
    free(name);
    st->init = INIT_ZEROS;
    in[nin++] = st->id;
  }
  char *name = xasprintf("%s.update", ir_node(g, param)->name);
  Node *u = ir_add_op(g, g->optimizer.op, name, nin, in, ir_node(g, param)->loc);
  free(name);
  ir_copy_attrs(u, &g->optimizer);
  u->role = ROLE_UPD;
  ShapeCtx sc = {g, NULL};
  op_info[u->op].shape(&sc, u);
}

int pass_autodiff(Graph *g, PassCtx *c) {
  (void)c;
  if (g->loss < 0) return 1;
  int nfwd = g->nodes.n;
  char *needs = xcalloc((size_t)nfwd, 1), *reach = xcalloc((size_t)nfwd, 1);
  int *grad = xmalloc(sizeof(int) * (size_t)nfwd);
  reach[g->loss] = 1;
  for (int id = nfwd - 1; id >= 0; id--) {
    const Node *n = ir_node(g, id);
    grad[id] = -1;
    if (reach[id])
      for (int i = 0; i < n->nin; i++) reach[n->in[i]] = 1;
  }
  for (int id = 0; id < nfwd; id++) {
    const Node *n = ir_node(g, id);
    int req = n->kind == NK_PARAM;
    for (int i = 0; i < n->nin; i++) req |= needs[n->in[i]];
    needs[id] = (char)(req && reach[id]);
  }
  GradCtx gc = {g, grad, needs};
  if (needs[g->loss]) {
    const Node *loss = ir_node(g, g->loss);
    char *name = xasprintf("%s.grad", loss->name);
    Node *seed = ir_add_op(g, OP_fill, name, 0, NULL, loss->loc);
    free(name);
    seed->role = ROLE_BWD;
    ir_set_num(seed, "value", 1.0);
    ir_set_list(seed, "shape", NULL, 0);
    grad[g->loss] = grad_finish(&gc, seed);
  }
  for (int id = g->loss; id >= 0; id--) {
    const Node *n = ir_node(g, id);
    if (n->kind != NK_OP || !needs[id] || grad[id] < 0) continue;
    if (!op_info[n->op].grad) SQ_INTERNAL("op %s has no gradient rule but '%s' needs one", op_info[n->op].name, n->name);
    op_info[n->op].grad(&gc, n, grad[id]);
  }
  for (int id = 0; id < nfwd; id++)
    if (ir_node(g, id)->kind == NK_PARAM && grad[id] >= 0) add_update(g, id, grad[id]);
  free(needs);
  free(reach);
  free(grad);
  return 1;
}
