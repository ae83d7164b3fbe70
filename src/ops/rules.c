/* rules.c: helpers shared by the op family files (diagnostics from shape rules, gradient
 * graph building, parameter creation, reference-body errors). */
#include "rules.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int shape_fail(ShapeCtx *c, const Node *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  if (!c->diag) SQ_INTERNAL("shape rule of '%s' failed: %s", n->name, msg);
  diag_error(c->diag, n->loc, "%s", msg);
  free(msg);
  return 0;
}

int shape_set(ShapeCtx *c, Node *n, DType dt, Shape s) {
  if (shape_numel(&s) < 0)
    return shape_fail(c, n, "tensor '%s' is too large: its size overflows 2^%d elements", n->name,
                      SQ_MAX_NUMEL_LOG2);
  for (int i = 0; i < s.rank; i++)
    if (s.d[i] <= 0) return shape_fail(c, n, "'%s' would have an empty dimension %d", n->name, i);
  n->dtype = dt;
  n->shape = s;
  n->shaped = 1;
  return 1;
}

int shape_define_input(ShapeCtx *c, Node *n, int i, Shape s, double bound) {
  Node *leaf = ir_in(c->g, n, i);
  if (leaf->shaped) {
    if (shape_eq(&leaf->shape, &s)) return 1;
    char *have = type_str(leaf->dtype, &leaf->shape), *want = type_str(DT_F32, &s);
    shape_fail(c, n, "'%s' is %s but '%s' needs %s", leaf->name, have, n->name, want);
    free(have);
    free(want);
    return 0;
  }
  if (leaf->init == INIT_UNIFORM) leaf->init_scale = bound;
  return shape_set(c, leaf, DT_F32, s);
}

int shape_want_rank(ShapeCtx *c, const Node *n, int i, int lo, int hi) {
  const Node *x = ir_in(c->g, n, i);
  if (x->shape.rank >= lo && x->shape.rank <= hi) return 1;
  char *t = type_str(x->dtype, &x->shape);
  int r = lo == hi ? shape_fail(c, n, "%s expects a rank-%d tensor, got %s", op_info[n->op].name, lo, t)
                   : shape_fail(c, n, "%s expects a tensor of rank %d to %d, got %s", op_info[n->op].name,
                                lo, hi, t);
  free(t);
  return r;
}

int shape_want_dtype(ShapeCtx *c, const Node *n, int i, DType dt) {
  const Node *x = ir_in(c->g, n, i);
  if (x->dtype == dt) return 1;
  char *t = type_str(x->dtype, &x->shape);
  shape_fail(c, n, "argument %d of %s must be %s, got %s", i + 1, op_info[n->op].name, dtype_name(dt), t);
  free(t);
  return 0;
}

const Node *quant_source(const Graph *g, int id) {
  const Node *n = ir_node(g, id);
  while (n->kind == NK_OP && n->op == OP_reshape) n = ir_in(g, n, 0);
  return n->kind == NK_OP && n->op == OP_quantize ? n : NULL;
}
int quant_max(const Graph *g, int id) {
  const Node *q = quant_source(g, id);
  if (!q) return 128; /* -128 is not excluded */
  int bits = (int)ir_int(q, "bits");
  return ir_int(q, "unsigned") ? nm_umax(bits) : nm_qmax(bits);
}

int shape_want_values(ShapeCtx *c, const Node *n, int i) {
  return ir_in(c->g, n, i)->dtype == DT_S16 || shape_want_dtype(c, n, i, DT_F32);
}

int shape_want_real(ShapeCtx *c, const Node *n, int i) {
  return dtype_is_quantized(ir_in(c->g, n, i)->dtype) || shape_want_dtype(c, n, i, DT_F32);
}

int shape_mismatch(ShapeCtx *c, const Node *n, const char *what, const Node *a, const Node *b) {
  char *ta = type_str(a->dtype, &a->shape), *tb = type_str(b->dtype, &b->shape);
  shape_fail(c, n, "shape mismatch in %s: %s and %s%s%s", op_info[n->op].name, ta, tb, what ? ": " : "",
             what ? what : "");
  free(ta);
  free(tb);
  return 0;
}

void init_leaf(InitCtx *c, const char *suffix, NodeKind kind, InitKind init) {
  char *name = xasprintf("%s.%s", c->owner, suffix);
  Node *leaf = ir_add(c->g, kind, name, c->loc);
  free(name);
  leaf->init = init;
  SQ_ASSERT(c->nin < SQ_MAX_IN);
  c->in[c->nin++] = leaf->id;
}

int grad_needed(const GradCtx *c, int id) { return c->needs[id] != 0; }

Node *grad_op(GradCtx *c, const Node *fwd, OpCode op, int nin, const int *in) {
  char *name = xasprintf("%s.%s", fwd->name, op_info[op].name);
  Node *n = ir_add_op(c->g, op, name, nin, in, fwd->loc);
  free(name);
  n->role = ROLE_BWD;
  return n;
}

int grad_finish(GradCtx *c, Node *n) {
  ShapeCtx sc = {c->g, NULL};
  op_info[n->op].shape(&sc, n);
  return n->id;
}

void grad_accum(GradCtx *c, int target, int g) {
  if (!grad_needed(c, target)) return;
  if (c->grad[target] < 0) {
    c->grad[target] = g;
    return;
  }
  const Node *t = ir_node(c->g, target);
  Node *sum = GRAD_OP(c, t, OP_add, c->grad[target], g);
  c->grad[target] = grad_finish(c, sum);
}

int grad_unbroadcast(GradCtx *c, const Node *fwd, int g, int target) {
  const Shape *gs = &ir_node(c->g, g)->shape, *ts = &ir_node(c->g, target)->shape;
  int lead = gs->rank - ts->rank;
  if (lead == 0) return g;
  int64_t axes[SQ_MAX_RANK];
  for (int i = 0; i < lead; i++) axes[i] = i;
  Node *r = GRAD_OP(c, fwd, OP_reduce_sum, g);
  ir_set_list(r, "axes", axes, lead);
  return grad_finish(c, r);
}

const Tensor *ref_values(RefCtx *c, const Node *n, int i, Tensor *copy) {
  const Tensor *x = REF_IN(c, n, i);
  if (!x->s16) return x;
  *copy = *x;
  copy->dtype = DT_F32, copy->s16 = NULL;
  copy->f = xmalloc(sizeof(float) * (size_t)(x->n ? x->n : 1));
  for (int64_t e = 0; e < x->n; e++) copy->f[e] = nm_s16_value(x->s16[e], x->scale);
  return copy;
}
void ref_values_free(const Tensor *values, Tensor *copy) {
  if (values == copy) free(copy->f);
}

int ref_fused_relu(const Node *n, Tensor *y) {
  if (ir_int(n, "relu"))
    for (int64_t i = 0; i < y->n; i++) y->f[i] = nm_relu(y->f[i]);
  return 1;
}

int ref_fail(RefCtx *c, const Node *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  free(c->err);
  c->err = xasprintf("%s: %s", n->name, msg);
  free(msg);
  return 0;
}
