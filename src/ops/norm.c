/* norm.c: batchnorm (per channel, axis 1 of [N,C] or [N,C,H,W]) and layernorm (per row, over
 * the last axis) as written, in their L2 forms, and layernorm's gradients. Statistics are summed
 * in double in a fixed order. (The norms pass turns batchnorm into bnstats.c's forms.) */
#include <math.h>
#include <string.h>
#include "rules.h"

void batchnorm_init(InitCtx *c, Node *n) {
  (void)n;
  init_leaf(c, "weight", NK_PARAM, INIT_ONES);
  init_leaf(c, "bias", NK_PARAM, INIT_ZEROS);
  init_leaf(c, "running_mean", NK_STATE, INIT_ZEROS);
  init_leaf(c, "running_var", NK_STATE, INIT_ONES);
}

int batchnorm_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_values(c, n, 0) || !shape_want_rank(c, n, 0, 2, 4)) return 0;
  const Node *x = ir_in(c->g, n, 0);
  Shape s = shape_make(1, &x->shape.d[1]);
  for (int i = 1; i < 5; i++)
    if (!shape_define_input(c, n, i, s, 0)) return 0;
  return shape_set(c, n, DT_F32, x->shape);
}

/* dbeta = dy summed over every axis but the last (a reduce_sum node) */
static int norm_dbeta(GradCtx *c, const Node *n, int dy) {
  int rank = ir_in(c->g, n, 0)->shape.rank, naxes = 0;
  int64_t axes[SQ_MAX_RANK];
  for (int i = 0; i < rank - 1; i++) axes[naxes++] = i;
  Node *db = GRAD_OP(c, n, OP_reduce_sum, dy);
  ir_set_list(db, "axes", axes, naxes);
  return grad_finish(c, db);
}

void norm_grads(GradCtx *c, const Node *n, int dy, OpCode dx_op, OpCode dg_op) {
  if (grad_needed(c, n->in[0])) {
    Node *dx = GRAD_OP(c, n, dx_op, dy, n->in[0], n->in[1]);
    ir_copy_attrs(dx, n);
    grad_accum(c, n->in[0], grad_finish(c, dx));
  }
  if (grad_needed(c, n->in[1])) {
    Node *dg = GRAD_OP(c, n, dg_op, dy, n->in[0]);
    ir_copy_attrs(dg, n);
    grad_accum(c, n->in[1], grad_finish(c, dg));
  }
  if (grad_needed(c, n->in[2])) grad_accum(c, n->in[2], norm_dbeta(c, n, dy));
}

/* As written, before the l1norm pass: l2_batchnorm's arithmetic (bnstats.c), with the batch
 * statistics that l2_batchnorm reads from a node of its own computed here. */
int batchnorm_ref(RefCtx *c, const Node *n) { return bn_forward_ref(c, n, NULL, 1, REF_OUT(c, n)); }

/* ---- layernorm over the last axis (D); rows are all leading elements ---- */
void layernorm_init(InitCtx *c, Node *n) {
  (void)n;
  init_leaf(c, "weight", NK_PARAM, INIT_ONES);
  init_leaf(c, "bias", NK_PARAM, INIT_ZEROS);
}

int layernorm_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_dtype(c, n, 0, DT_F32) || !shape_want_rank(c, n, 0, 1, SQ_MAX_RANK)) return 0;
  const Node *x = ir_in(c->g, n, 0);
  Shape s = shape_make(1, &x->shape.d[x->shape.rank - 1]);
  if (!shape_define_input(c, n, 1, s, 0) || !shape_define_input(c, n, 2, s, 0)) return 0;
  return shape_set(c, n, DT_F32, x->shape);
}

void layernorm_grad(GradCtx *c, const Node *n, int dy) { norm_grads(c, n, dy, OP_layernorm_dx, OP_layernorm_dgamma); }

static void row_stats(const float *x, int64_t D, double *mean, double *var) {
  double s = 0, ss = 0;
  for (int64_t j = 0; j < D; j++) s += x[j];
  *mean = s / (double)D;
  for (int64_t j = 0; j < D; j++) ss += (x[j] - *mean) * (x[j] - *mean);
  *var = ss / (double)D;
}

int layernorm_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0), *gam = REF_IN(c, n, 1), *bet = REF_IN(c, n, 2);
  Tensor *y = REF_OUT(c, n);
  int64_t D = x->d[x->rank - 1];
  double eps = ir_num(n, "eps");
  for (int64_t r = 0; r < x->n / D; r++) {
    const float *xr = x->f + r * D;
    double mean, var;
    row_stats(xr, D, &mean, &var);
    double inv = 1.0 / sqrt(var + eps);
    for (int64_t j = 0; j < D; j++) y->f[r * D + j] = (float)(gam->f[j] * (xr[j] - mean) * inv + bet->f[j]);
  }
  return 1;
}

int layernorm_dx_shape(ShapeCtx *c, Node *n) { return shape_set(c, n, DT_F32, ir_in(c->g, n, 1)->shape); }
int layernorm_dgamma_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 1);
  return shape_set(c, n, DT_F32, shape_make(1, &x->shape.d[x->shape.rank - 1]));
}

/* dx = inv * (g - mean(g) - xhat * mean(g * xhat)) with g = gamma * dy, per row. */
int layernorm_dx_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1), *gam = REF_IN(c, n, 2);
  Tensor *dx = REF_OUT(c, n);
  int64_t D = x->d[x->rank - 1];
  double eps = ir_num(n, "eps");
  for (int64_t r = 0; r < x->n / D; r++) {
    const float *xr = x->f + r * D, *dyr = dy->f + r * D;
    double mean, var, sg = 0, sgx = 0;
    row_stats(xr, D, &mean, &var);
    double inv = 1.0 / sqrt(var + eps);
    for (int64_t j = 0; j < D; j++) {
      double gj = gam->f[j] * dyr[j];
      sg += gj;
      sgx += gj * (xr[j] - mean) * inv;
    }
    for (int64_t j = 0; j < D; j++) {
      double xh = (xr[j] - mean) * inv;
      dx->f[r * D + j] = (float)(inv * (gam->f[j] * dyr[j] - sg / (double)D - xh * sgx / (double)D));
    }
  }
  return 1;
}

int layernorm_dgamma_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  Tensor *dg = REF_OUT(c, n);
  int64_t D = x->d[x->rank - 1];
  double eps = ir_num(n, "eps");
  memset(dg->f, 0, sizeof(float) * (size_t)D);
  for (int64_t r = 0; r < x->n / D; r++) {
    const float *xr = x->f + r * D;
    double mean, var;
    row_stats(xr, D, &mean, &var);
    double inv = 1.0 / sqrt(var + eps);
    for (int64_t j = 0; j < D; j++) dg->f[j] += (float)(dy->f[r * D + j] * (xr[j] - mean) * inv);
  }
  return 1;
}
