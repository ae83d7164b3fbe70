/* conv.c: conv2d (NCHW, square kernel, stride, zero padding, groups) and its two gradients.
 * Shape legend: x[N,C,H,W], w[O,C/groups,k,k], b[O], y[N,O,Ho,Wo], Ho = (H + 2p - k)/s + 1. */
#include <math.h>
#include <string.h>
#include "conv_geom.h"
#include "rules.h"

void conv2d_init(InitCtx *c, Node *n) {
  init_leaf(c, "weight", NK_PARAM, INIT_UNIFORM);
  if (ir_has_bias(n)) init_leaf(c, "bias", NK_PARAM, INIT_UNIFORM);
}

int conv2d_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_real(c, n, 0) || !shape_want_rank(c, n, 0, 4, 4)) return 0;
  const Node *x = ir_in(c->g, n, 0);
  ConvGeom q = conv_geom(n, &x->shape, ir_int(n, "out"));
  if (q.C % q.g || q.O % q.g)
    return shape_fail(c, n, "conv2d groups=%lld must divide both the %lld input and %lld output channels",
                      (long long)q.g, (long long)q.C, (long long)q.O);
  if (q.H + 2 * q.p < q.k || q.W + 2 * q.p < q.k)
    return shape_fail(c, n, "conv2d kernel %lld is larger than the padded input %lldx%lld", (long long)q.k,
                      (long long)(q.H + 2 * q.p), (long long)(q.W + 2 * q.p));
  int64_t fan_in = q.C / q.g * q.k * q.k;
  double bound = 1.0 / sqrt((double)fan_in);
  if (!shape_define_input(c, n, 1, shape_make(4, (int64_t[]){q.O, q.C / q.g, q.k, q.k}), bound) ||
      (ir_has_bias(n) && !shape_define_input(c, n, 2, shape_make(1, &q.O), bound)))
    return 0;
  return shape_set(c, n, DT_F32, shape_make(4, (int64_t[]){q.N, q.O, q.Ho, q.Wo}));
}

void conv_grads(GradCtx *c, const Node *n, int g, int dy, OpCode dx_op, OpCode dw_op) {
  if (grad_needed(c, n->in[0])) {
    Node *dx = GRAD_OP(c, n, dx_op, g, n->in[1], n->in[0]);
    ir_copy_attrs(dx, n);
    grad_accum(c, n->in[0], grad_finish(c, dx));
  }
  if (grad_needed(c, n->in[1])) {
    Node *dw = GRAD_OP(c, n, dw_op, g, n->in[0], n->in[1]);
    ir_copy_attrs(dw, n);
    grad_accum(c, n->in[1], grad_finish(c, dw));
  }
  if (ir_has_bias(n) && grad_needed(c, n->in[2])) {
    Node *db = GRAD_OP(c, n, OP_reduce_sum, dy);
    ir_set_list(db, "axes", (int64_t[]){0, 2, 3}, 3);
    grad_accum(c, n->in[2], grad_finish(c, db));
  }
}

void conv2d_grad(GradCtx *c, const Node *n, int dy) { conv_grads(c, n, dy, dy, OP_conv2d_dx, OP_conv2d_dw); }

int conv2d_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0), *w = REF_IN(c, n, 1), *b = ir_has_bias(n) ? REF_IN(c, n, 2) : NULL;
  Tensor *y = REF_OUT(c, n);
  ConvGeom q = conv_geom(n, &ir_in(c->g, n, 0)->shape, w->d[0]);
  memset(y->f, 0, sizeof(float) * (size_t)y->n);
  CONV_LOOP(q, y->f[yi] += x->f[xi] * w->f[wi]);
  if (b)
    for (int64_t i = 0; i < y->n; i++) y->f[i] += b->f[(i / (q.Ho * q.Wo)) % q.O];
  return 1;
}

/* conv2d_dx(dy, w, x): x is read only for its shape. */
int conv2d_dx_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 2);
  return shape_set(c, n, DT_F32, x->shape);
}

int conv2d_dx_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *w = REF_IN(c, n, 1);
  Tensor *dx = REF_OUT(c, n);
  ConvGeom q = conv_geom(n, &ir_in(c->g, n, 2)->shape, w->d[0]);
  memset(dx->f, 0, sizeof(float) * (size_t)dx->n);
  CONV_LOOP(q, dx->f[xi] += dy->f[yi] * w->f[wi]);
  return 1;
}

/* conv2d_dw(dy, x, w): w is read only for its shape. */
int conv2d_dw_shape(ShapeCtx *c, Node *n) {
  const Node *w = ir_in(c->g, n, 2);
  return shape_set(c, n, DT_F32, w->shape);
}

int conv2d_dw_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  Tensor *dw = REF_OUT(c, n);
  ConvGeom q = conv_geom(n, &ir_in(c->g, n, 1)->shape, dw->d[0]);
  memset(dw->f, 0, sizeof(float) * (size_t)dw->n);
  CONV_LOOP(q, dw->f[wi] += dy->f[yi] * x->f[xi]);
  return 1;
}
