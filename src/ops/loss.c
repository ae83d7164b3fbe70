/* loss.c: softmax over the last axis, cross_entropy(logits[N,C], labels i32[N]) -> mean loss,
 * mse(a, b) -> mean squared difference, and their gradients. Sums run in double. */
#include <math.h>
#include "rules.h"

int softmax_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_dtype(c, n, 0, DT_F32) || !shape_want_rank(c, n, 0, 1, SQ_MAX_RANK)) return 0;
  return shape_set(c, n, DT_F32, ir_in(c->g, n, 0)->shape);
}

void softmax_grad(GradCtx *c, const Node *n, int dy) {
  if (grad_needed(c, n->in[0]))
    grad_accum(c, n->in[0], grad_finish(c, GRAD_OP(c, n, OP_softmax_grad, dy, n->id)));
}

static void softmax_row(const float *x, float *y, int64_t D) {
  float mx = x[0];
  for (int64_t j = 1; j < D; j++) mx = x[j] > mx ? x[j] : mx;
  double s = 0;
  for (int64_t j = 0; j < D; j++) s += exp((double)x[j] - mx);
  for (int64_t j = 0; j < D; j++) y[j] = (float)(exp((double)x[j] - mx) / s);
}

int softmax_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *y = REF_OUT(c, n);
  int64_t D = x->d[x->rank - 1];
  for (int64_t r = 0; r < x->n / D; r++) softmax_row(x->f + r * D, y->f + r * D, D);
  return 1;
}

/* softmax_grad(dy, y): dx = y * (dy - sum(dy * y)) per row. */
int softmax_grad_shape(ShapeCtx *c, Node *n) { return shape_set(c, n, DT_F32, ir_in(c->g, n, 1)->shape); }
int softmax_grad_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *y = REF_IN(c, n, 1);
  Tensor *dx = REF_OUT(c, n);
  int64_t D = y->d[y->rank - 1];
  for (int64_t r = 0; r < y->n / D; r++) {
    double s = 0;
    for (int64_t j = 0; j < D; j++) s += (double)dy->f[r * D + j] * y->f[r * D + j];
    for (int64_t j = 0; j < D; j++) dx->f[r * D + j] = (float)(y->f[r * D + j] * (dy->f[r * D + j] - s));
  }
  return 1;
}

int cross_entropy_shape(ShapeCtx *c, Node *n) {
  const Node *z = ir_in(c->g, n, 0), *y = ir_in(c->g, n, 1);
  if (!shape_want_dtype(c, n, 0, DT_F32) || !shape_want_rank(c, n, 0, 2, 2) || !shape_want_dtype(c, n, 1, DT_I32) ||
      !shape_want_rank(c, n, 1, 1, 1))
    return 0;
  if (z->shape.d[0] != y->shape.d[0]) return shape_mismatch(c, n, "one label per row of logits", z, y);
  return shape_set(c, n, DT_F32, (Shape){0});
}

void cross_entropy_grad(GradCtx *c, const Node *n, int dy) {
  if (grad_needed(c, n->in[0]))
    grad_accum(c, n->in[0], grad_finish(c, GRAD_OP(c, n, OP_cross_entropy_grad, dy, n->in[0], n->in[1])));
}

static int check_labels(RefCtx *c, const Node *n, const Tensor *y, int64_t C) {
  for (int64_t i = 0; i < y->n; i++)
    if (y->i[i] < 0 || y->i[i] >= C)
      return ref_fail(c, n, "label %d of sample %lld is outside 0..%lld", y->i[i], (long long)i, (long long)C - 1);
  return 1;
}

int cross_entropy_ref(RefCtx *c, const Node *n) {
  const Tensor *z = REF_IN(c, n, 0), *y = REF_IN(c, n, 1);
  int64_t N = z->d[0], C = z->d[1];
  if (!check_labels(c, n, y, C)) return 0;
  double total = 0;
  for (int64_t r = 0; r < N; r++) {
    const float *zr = z->f + r * C;
    float mx = zr[0];
    for (int64_t j = 1; j < C; j++) mx = zr[j] > mx ? zr[j] : mx;
    double s = 0;
    for (int64_t j = 0; j < C; j++) s += exp((double)zr[j] - mx);
    total += log(s) + mx - zr[y->i[r]];
  }
  REF_OUT(c, n)->f[0] = (float)(total / (double)N);
  return 1;
}

/* cross_entropy_grad(dl, z, y): (softmax(z) - onehot(y)) * dl / N. */
int cross_entropy_grad_shape(ShapeCtx *c, Node *n) { return shape_set(c, n, DT_F32, ir_in(c->g, n, 1)->shape); }
int cross_entropy_grad_ref(RefCtx *c, const Node *n) {
  const Tensor *dl = REF_IN(c, n, 0), *z = REF_IN(c, n, 1), *y = REF_IN(c, n, 2);
  Tensor *dz = REF_OUT(c, n);
  int64_t N = z->d[0], C = z->d[1];
  if (!check_labels(c, n, y, C)) return 0;
  float scale = dl->f[0] / (float)N;
  for (int64_t r = 0; r < N; r++) {
    softmax_row(z->f + r * C, dz->f + r * C, C);
    dz->f[r * C + y->i[r]] -= 1.0f;
    for (int64_t j = 0; j < C; j++) dz->f[r * C + j] *= scale;
  }
  return 1;
}

int mse_shape(ShapeCtx *c, Node *n) {
  const Node *a = ir_in(c->g, n, 0), *b = ir_in(c->g, n, 1);
  if (!shape_want_dtype(c, n, 0, DT_F32) || !shape_want_dtype(c, n, 1, DT_F32)) return 0;
  if (!shape_eq(&a->shape, &b->shape)) return shape_mismatch(c, n, NULL, a, b);
  return shape_set(c, n, DT_F32, (Shape){0});
}

void mse_grad(GradCtx *c, const Node *n, int dy) {
  for (int i = 0; i < 2; i++) {
    if (!grad_needed(c, n->in[i])) continue;
    Node *g = GRAD_OP(c, n, OP_mse_grad, dy, n->in[0], n->in[1]);
    ir_set_num(g, "sign", i == 0 ? 1 : -1);
    grad_accum(c, n->in[i], grad_finish(c, g));
  }
}

int mse_ref(RefCtx *c, const Node *n) {
  const Tensor *a = REF_IN(c, n, 0), *b = REF_IN(c, n, 1);
  double s = 0;
  for (int64_t i = 0; i < a->n; i++) s += ((double)a->f[i] - b->f[i]) * ((double)a->f[i] - b->f[i]);
  REF_OUT(c, n)->f[0] = (float)(s / (double)a->n);
  return 1;
}

/* mse_grad(dl, a, b): sign * 2 (a - b) / n * dl. */
int mse_grad_shape(ShapeCtx *c, Node *n) { return shape_set(c, n, DT_F32, ir_in(c->g, n, 1)->shape); }
int mse_grad_ref(RefCtx *c, const Node *n) {
  const Tensor *dl = REF_IN(c, n, 0), *a = REF_IN(c, n, 1), *b = REF_IN(c, n, 2);
  Tensor *d = REF_OUT(c, n);
  float k = (float)(ir_num(n, "sign") * 2.0 / (double)a->n) * dl->f[0];
  for (int64_t i = 0; i < a->n; i++) d->f[i] = k * (a->f[i] - b->f[i]);
  return 1;
}
