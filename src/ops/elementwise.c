/* elementwise.c: add and mul (b's shape equal to a's or a suffix of it: b is repeated over a's
 * leading axes), relu, gelu (exact, with erf), dropout (inverted: kept values scaled 1/(1-p)). */
#include <math.h>
#include <string.h>
#include "../../runtime/rng.h"
#include "rules.h"

static int binary_shape(ShapeCtx *c, Node *n) {
  const Node *a = ir_in(c->g, n, 0), *b = ir_in(c->g, n, 1);
  if (!shape_want_dtype(c, n, 0, DT_F32) || !shape_want_dtype(c, n, 1, DT_F32)) return 0;
  int lead = a->shape.rank - b->shape.rank;
  int ok = lead >= 0;
  for (int i = 0; ok && i < b->shape.rank; i++) ok = a->shape.d[lead + i] == b->shape.d[i];
  if (!ok) return shape_mismatch(c, n, "the second shape must equal the first or a suffix of it", a, b);
  return shape_set(c, n, DT_F32, a->shape);
}
int add_shape(ShapeCtx *c, Node *n) { return binary_shape(c, n); }
int mul_shape(ShapeCtx *c, Node *n) { return binary_shape(c, n); }

void add_grad(GradCtx *c, const Node *n, int dy) {
  grad_accum(c, n->in[0], dy);
  if (grad_needed(c, n->in[1])) grad_accum(c, n->in[1], grad_unbroadcast(c, n, dy, n->in[1]));
}

void mul_grad(GradCtx *c, const Node *n, int dy) {
  if (grad_needed(c, n->in[0])) grad_accum(c, n->in[0], grad_finish(c, GRAD_OP(c, n, OP_mul, dy, n->in[1])));
  if (grad_needed(c, n->in[1])) {
    int g = grad_finish(c, GRAD_OP(c, n, OP_mul, dy, n->in[0]));
    grad_accum(c, n->in[1], grad_unbroadcast(c, n, g, n->in[1]));
  }
}

int add_ref(RefCtx *c, const Node *n) {
  const Tensor *a = REF_IN(c, n, 0), *b = REF_IN(c, n, 1);
  Tensor *y = REF_OUT(c, n);
  for (int64_t i = 0; i < y->n; i++) y->f[i] = a->f[i] + b->f[i % b->n];
  return 1;
}
int mul_ref(RefCtx *c, const Node *n) {
  const Tensor *a = REF_IN(c, n, 0), *b = REF_IN(c, n, 1);
  Tensor *y = REF_OUT(c, n);
  for (int64_t i = 0; i < y->n; i++) y->f[i] = a->f[i] * b->f[i % b->n];
  return 1;
}

static int unary_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_dtype(c, n, 0, DT_F32)) return 0;
  return shape_set(c, n, DT_F32, ir_in(c->g, n, 0)->shape);
}
int relu_shape(ShapeCtx *c, Node *n) { return unary_shape(c, n); }
int gelu_shape(ShapeCtx *c, Node *n) { return unary_shape(c, n); }
int dropout_shape(ShapeCtx *c, Node *n) { return unary_shape(c, n); }
int relu_grad_shape(ShapeCtx *c, Node *n) { return unary_shape(c, n); }
int gelu_grad_shape(ShapeCtx *c, Node *n) { return unary_shape(c, n); }
int dropout_grad_shape(ShapeCtx *c, Node *n) { return unary_shape(c, n); }

static void unary_grad(GradCtx *c, const Node *n, int dy, OpCode gop) {
  if (grad_needed(c, n->in[0])) grad_accum(c, n->in[0], grad_finish(c, GRAD_OP(c, n, gop, dy, n->in[0])));
}
void relu_grad(GradCtx *c, const Node *n, int dy) { unary_grad(c, n, dy, OP_relu_grad); }
void gelu_grad(GradCtx *c, const Node *n, int dy) { unary_grad(c, n, dy, OP_gelu_grad); }

int relu_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *y = REF_OUT(c, n);
  for (int64_t i = 0; i < y->n; i++) y->f[i] = nm_relu(x->f[i]);
  return 1;
}
int relu_grad_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  Tensor *dx = REF_OUT(c, n);
  for (int64_t i = 0; i < dx->n; i++) dx->f[i] = nm_relu_grad(dy->f[i], x->f[i]);
  return 1;
}

int gelu_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *y = REF_OUT(c, n);
  for (int64_t i = 0; i < y->n; i++) {
    double v = x->f[i];
    y->f[i] = (float)(0.5 * v * (1.0 + erf(v * 0.70710678118654752)));
  }
  return 1;
}
int gelu_grad_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  Tensor *dx = REF_OUT(c, n);
  for (int64_t i = 0; i < dx->n; i++) {
    double v = x->f[i];
    double cdf = 0.5 * (1.0 + erf(v * 0.70710678118654752)), pdf = exp(-0.5 * v * v) * 0.3989422804014327;
    dx->f[i] = (float)(dy->f[i] * (cdf + v * pdf));
  }
  return 1;
}

/* The keep decision of element i: a pure function of (seed, stream, step, i), so the backward
 * pass recomputes the forward mask instead of storing it. */
static int dropout_keep(const RefCtx *c, const Node *n, int64_t i) {
  return rng_uniform(c->seed, (uint64_t)ir_int(n, "stream"), c->step, (uint64_t)i) >= (float)ir_num(n, "p");
}

void dropout_grad(GradCtx *c, const Node *n, int dy) {
  if (!grad_needed(c, n->in[0])) return;
  Node *g = GRAD_OP(c, n, OP_dropout_grad, dy);
  ir_copy_attrs(g, n);
  grad_accum(c, n->in[0], grad_finish(c, g));
}

static void dropout_apply(const RefCtx *c, const Node *n, const float *x, float *y, int64_t count) {
  if (!c->training) {
    memcpy(y, x, sizeof(float) * (size_t)count);
    return;
  }
  float scale = 1.0f / (1.0f - (float)ir_num(n, "p"));
  for (int64_t i = 0; i < count; i++) y[i] = dropout_keep(c, n, i) ? x[i] * scale : 0.0f;
}
int dropout_ref(RefCtx *c, const Node *n) {
  dropout_apply(c, n, REF_IN(c, n, 0)->f, REF_OUT(c, n)->f, REF_OUT(c, n)->n);
  return 1;
}
int dropout_grad_ref(RefCtx *c, const Node *n) {
  dropout_apply(c, n, REF_IN(c, n, 0)->f, REF_OUT(c, n)->f, REF_OUT(c, n)->n);
  return 1;
}
