/* l1norm.c: L1 batchnorm and layernorm (DESIGN §4): divide by kappa * mean|x - mean| + eps
 * instead of the standard deviation. Statistics and gradients come from runtime/numerics.c;
 * this file only maps tensors onto its [outer, channels, inner] view. Batchnorm keeps running
 * mean and mean absolute deviation (inputs 3 and 4) for inference; its batch statistics are a
 * node of their own (l1_batchnorm_stats, input 5), computed once and read by the gradients. */
#include "../../runtime/numerics.h"
#include "rules.h"

static nm_chan bn_geo(const Tensor *x) {
  nm_chan g = {x->d[0], x->d[1], 1};
  for (int i = 2; i < x->rank; i++) g.inner *= x->d[i];
  return g;
}
static nm_chan ln_geo(const Tensor *x) { return (nm_chan){1, x->n / x->d[x->rank - 1], x->d[x->rank - 1]}; }

/* the statistics tensor of x: [NM_BN_STATS, channels] */
static Shape stats_shape(const Node *x) { return shape_make(2, (int64_t[]){NM_BN_STATS, x->shape.d[1]}); }

int l1_batchnorm_stats_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_dtype(c, n, 0, DT_F32) || !shape_want_rank(c, n, 0, 2, 4)) return 0;
  return shape_set(c, n, DT_F32, stats_shape(ir_in(c->g, n, 0)));
}
static int want_stats(ShapeCtx *c, const Node *n, int x, int stats) {
  const Node *s = ir_in(c->g, n, stats);
  Shape want = stats_shape(ir_in(c->g, n, x));
  if (s->dtype == DT_F32 && shape_eq(&s->shape, &want)) return 1;
  return shape_fail(c, n, "%s wants the statistics of its input", op_info[n->op].name);
}
int l1_batchnorm_shape(ShapeCtx *c, Node *n) { return batchnorm_shape(c, n) && want_stats(c, n, 0, 5); }
int l1_layernorm_shape(ShapeCtx *c, Node *n) { return layernorm_shape(c, n); }
/* [dgamma; dbeta] of x's channels */
static Shape dparams_shape(const Node *x) { return shape_make(2, (int64_t[]){2, x->shape.d[1]}); }
int l1_batchnorm_dparams_shape(ShapeCtx *c, Node *n) {
  return want_stats(c, n, 1, 2) && shape_set(c, n, DT_F32, dparams_shape(ir_in(c->g, n, 1)));
}
int l1_batchnorm_dx_shape(ShapeCtx *c, Node *n) {
  const Node *dp = ir_in(c->g, n, 4);
  Shape want = dparams_shape(ir_in(c->g, n, 1));
  if (dp->dtype != DT_F32 || !shape_eq(&dp->shape, &want)) return shape_fail(c, n, "l1_batchnorm_dx wants the parameters' gradients");
  return batchnorm_dx_shape(c, n) && want_stats(c, n, 1, 3);
}
int l1_layernorm_dx_shape(ShapeCtx *c, Node *n) { return layernorm_dx_shape(c, n); }
int l1_layernorm_dgamma_shape(ShapeCtx *c, Node *n) { return layernorm_dgamma_shape(c, n); }

/* From the saved statistics: dgamma = sum g * xhat and dbeta = sum g in one pass first, then
 * dx reads both (its mean(gamma*g) and mean(gamma*g*xhat) are gamma*dbeta/m and gamma*dgamma/m). */
static int param_grad(GradCtx *c, const Node *n, int dparams, int row) {
  Node *r = GRAD_OP(c, n, OP_row, dparams);
  ir_set_num(r, "index", row);
  return grad_finish(c, r);
}
void l1_batchnorm_grad(GradCtx *c, const Node *n, int dy) {
  GRAD_NOT_FUSED(n);
  int x = n->in[0], gamma = n->in[1], beta = n->in[2], stats = n->in[5];
  if (!grad_needed(c, x) && !grad_needed(c, gamma) && !grad_needed(c, beta)) return;
  int dp = grad_finish(c, GRAD_OP(c, n, OP_l1_batchnorm_dparams, dy, x, stats));
  if (grad_needed(c, x)) grad_accum(c, x, grad_finish(c, GRAD_OP(c, n, OP_l1_batchnorm_dx, dy, x, gamma, stats, dp)));
  if (grad_needed(c, gamma)) grad_accum(c, gamma, param_grad(c, n, dp, 0));
  if (grad_needed(c, beta)) grad_accum(c, beta, param_grad(c, n, dp, 1));
}
void l1_layernorm_grad(GradCtx *c, const Node *n, int dy) {
  norm_grads(c, n, dy, OP_l1_layernorm_dx, OP_l1_layernorm_dgamma, 0);
}

int l1_batchnorm_stats_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  if (c->training) nm_l1_batch_stats(x->f, bn_geo(x), (float)ir_num(n, "eps"), REF_OUT(c, n)->f, 1);
  return 1; /* inference normalizes with the running statistics */
}

int l1_batchnorm_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0), *gam = REF_IN(c, n, 1), *bet = REF_IN(c, n, 2), *st = REF_IN(c, n, 5);
  Tensor *rm = REF_IN(c, n, 3), *rs = REF_IN(c, n, 4), *y = REF_OUT(c, n);
  nm_chan geo = bn_geo(x);
  float eps = (float)ir_num(n, "eps");
  if (!c->training) {
    nm_l1_forward(x->f, geo, rm->f, rs->f, gam->f, bet->f, NM_AFFINE_PER_CHANNEL, eps, y->f, 1);
    return ref_fused_relu(n, y);
  }
  const float *mean = st->f + NM_BN_MEAN * geo.channels, *s1 = st->f + NM_BN_SIGMA1 * geo.channels;
  nm_l1_forward(x->f, geo, mean, s1, gam->f, bet->f, NM_AFFINE_PER_CHANNEL, eps, y->f, 1);
  float mom = (float)ir_num(n, "momentum");
  for (int64_t ch = 0; ch < geo.channels; ch++) {
    rm->f[ch] = (1 - mom) * rm->f[ch] + mom * mean[ch];
    rs->f[ch] = (1 - mom) * rs->f[ch] + mom * s1[ch];
  }
  return ref_fused_relu(n, y);
}

int l1_batchnorm_dx_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  nm_l1_bn_dx(x->f, dy->f, bn_geo(x), REF_IN(c, n, 2)->f, REF_IN(c, n, 3)->f, REF_IN(c, n, 4)->f, REF_OUT(c, n)->f, 1);
  return 1;
}

int l1_batchnorm_dparams_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  nm_l1_bn_dparams(x->f, dy->f, bn_geo(x), REF_IN(c, n, 2)->f, REF_OUT(c, n)->f, 1);
  return 1;
}

int l1_layernorm_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0), *gam = REF_IN(c, n, 1), *bet = REF_IN(c, n, 2);
  nm_chan geo = ln_geo(x);
  float *mean = xmalloc(sizeof(float) * (size_t)geo.channels), *s1 = xmalloc(sizeof(float) * (size_t)geo.channels);
  nm_l1_stats(x->f, geo, mean, s1, 1);
  nm_l1_forward(x->f, geo, mean, s1, gam->f, bet->f, NM_AFFINE_PER_INNER, (float)ir_num(n, "eps"), REF_OUT(c, n)->f, 1);
  free(mean);
  free(s1);
  return 1;
}

int l1_layernorm_dx_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1), *gam = REF_IN(c, n, 2);
  nm_l1_backward(x->f, dy->f, ln_geo(x), gam->f, NM_AFFINE_PER_INNER, (float)ir_num(n, "eps"), REF_OUT(c, n)->f, NULL, 1);
  return 1;
}

int l1_layernorm_dgamma_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  nm_l1_backward(x->f, dy->f, ln_geo(x), NULL, NM_AFFINE_PER_INNER, (float)ir_num(n, "eps"), NULL, REF_OUT(c, n)->f, 1);
  return 1;
}
