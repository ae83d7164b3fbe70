/* verify.c: checks ids, unique names, arities, topological order, roles, and (when shapes are
 * known) re-runs every shape rule on a copy of the node and compares the result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../ops/rules.h"
#include "verify.h"

static int fail(char **err, const Node *n, const char *what) {
  *err = n ? xasprintf("node %%%s: %s", n->name, what) : xstrdup(what);
  return 0;
}

static int check_type(Graph *g, Node *n, char **err) {
  for (int i = 0; i < n->nin; i++)
    if (!ir_in(g, n, i)->shaped) return fail(err, n, "input has no type");
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  if (!mem) SQ_INTERNAL("open_memstream failed");
  Diag d;
  diag_init(&d, "verify", NULL, 0, mem);
  ShapeCtx c = {g, &d};
  Node copy = *n;
  copy.shaped = 0;
  int ok = op_info[n->op].shape(&c, &copy);
  fclose(mem);
  if (!ok) {
    *err = xasprintf("node %%%s: shape rule fails: %s", n->name, text);
    free(text);
    return 0;
  }
  free(text);
  if (copy.dtype != n->dtype || !shape_eq(&copy.shape, &n->shape)) return fail(err, n, "type differs from its shape rule");
  return 1;
}

int ir_verify(Graph *g, int want_shapes, char **err) {
  for (int id = 0; id < g->nodes.n; id++) {
    Node *n = g->nodes.v[id];
    if (n->id != id) return fail(err, n, "id does not match its position");
    if (ir_find(g, n->name) != id) return fail(err, n, "name is not unique");
    if (want_shapes && !n->shaped) return fail(err, n, "has no type");
    if (n->arena >= 0 && (n->kind != NK_OP || !n->shaped || n->arena + ir_tensor_bytes(n) > g->arena_bytes))
      return fail(err, n, "its place in the arena is outside it");
    if (n->kind != NK_OP) {
      if (n->nin) return fail(err, n, "a leaf has inputs");
      if (n->role != ROLE_FWD) return fail(err, n, "a leaf must have the forward role");
      continue;
    }
    if (n->op >= OP_COUNT) return fail(err, n, "invalid op");
    const OpInfo *oi = &op_info[n->op];
    for (int a = 0; a < oi->nattr; a++)
      if (!n->attr[a].set) return fail(err, n, "required attribute is missing");
    if (n->nin != ir_nin(n)) return fail(err, n, "wrong number of inputs");
    int is_update = n->op == OP_sgd_update || n->op == OP_adam_update;
    if (is_update != (n->role == ROLE_UPD)) return fail(err, n, "optimizer updates and only they have the upd role");
    for (int i = 0; i < n->nin; i++) {
      if (n->in[i] < 0 || n->in[i] >= id) return fail(err, n, "input is not an earlier node");
      const Node *in = ir_in(g, n, i);
      if (in->shaped && in->dtype == DT_VOID) return fail(err, n, "input has no value");
      if (in->role > n->role) return fail(err, n, "depends on a later phase");
    }
    if (is_update && ir_in(g, n, 0)->kind != NK_PARAM) return fail(err, n, "updates a non-parameter");
    if (n->shaped && !check_type(g, n, err)) return 0;
  }
  if (g->loss >= g->nodes.n) return fail(err, NULL, "loss is not a node");
  if (g->loss >= 0) {
    const Node *l = ir_node(g, g->loss);
    if (l->shaped && (l->dtype != DT_F32 || l->shape.rank != 0)) return fail(err, l, "loss must be a scalar f32");
  }
  for (int i = 0; i < g->outputs.n; i++)
    if (g->outputs.v[i].node < 0 || g->outputs.v[i].node >= g->nodes.n) return fail(err, NULL, "output is not a node");
  *err = NULL;
  return 1;
}
