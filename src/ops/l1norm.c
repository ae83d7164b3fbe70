/* l1norm.c: L1 batchnorm and layernorm (DESIGN §4): divide by kappa * mean|x - mean| + eps
 * instead of the standard deviation. Statistics and gradients come from runtime/numerics.c;
 * this file only maps tensors onto its [outer, channels, inner] view. Batchnorm keeps running
 * mean and mean absolute deviation (inputs 3 and 4) for inference. */
#include "../../runtime/numerics.h"
#include "rules.h"

static nm_chan bn_geo(const Tensor *x) {
  nm_chan g = {x->d[0], x->d[1], 1};
  for (int i = 2; i < x->rank; i++) g.inner *= x->d[i];
  return g;
}
static nm_chan ln_geo(const Tensor *x) { return (nm_chan){1, x->n / x->d[x->rank - 1], x->d[x->rank - 1]}; }

int l1_batchnorm_shape(ShapeCtx *c, Node *n) { return batchnorm_shape(c, n); }
int l1_layernorm_shape(ShapeCtx *c, Node *n) { return layernorm_shape(c, n); }
int l1_batchnorm_dx_shape(ShapeCtx *c, Node *n) { return batchnorm_dx_shape(c, n); }
int l1_batchnorm_dgamma_shape(ShapeCtx *c, Node *n) { return batchnorm_dgamma_shape(c, n); }
int l1_layernorm_dx_shape(ShapeCtx *c, Node *n) { return layernorm_dx_shape(c, n); }
int l1_layernorm_dgamma_shape(ShapeCtx *c, Node *n) { return layernorm_dgamma_shape(c, n); }

/* The gradient graph has the L2 form's structure with the L1 ops in it. */
void l1_batchnorm_grad(GradCtx *c, const Node *n, int dy) {
  GRAD_NOT_FUSED(n);
  norm_grads(c, n, dy, OP_l1_batchnorm_dx, OP_l1_batchnorm_dgamma, 1);
}
void l1_layernorm_grad(GradCtx *c, const Node *n, int dy) {
  norm_grads(c, n, dy, OP_l1_layernorm_dx, OP_l1_layernorm_dgamma, 0);
}

int l1_batchnorm_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0), *gam = REF_IN(c, n, 1), *bet = REF_IN(c, n, 2);
  Tensor *rm = REF_IN(c, n, 3), *rs = REF_IN(c, n, 4), *y = REF_OUT(c, n);
  nm_chan geo = bn_geo(x);
  float eps = (float)ir_num(n, "eps");
  if (!c->training) {
    nm_l1_forward(x->f, geo, rm->f, rs->f, gam->f, bet->f, NM_AFFINE_PER_CHANNEL, eps, y->f, 1);
    return ref_fused_relu(n, y);
  }
  float *mean = xmalloc(sizeof(float) * (size_t)geo.channels), *s1 = xmalloc(sizeof(float) * (size_t)geo.channels);
  nm_l1_stats(x->f, geo, mean, s1, 1);
  nm_l1_forward(x->f, geo, mean, s1, gam->f, bet->f, NM_AFFINE_PER_CHANNEL, eps, y->f, 1);
  float mom = (float)ir_num(n, "momentum");
  for (int64_t ch = 0; ch < geo.channels; ch++) {
    rm->f[ch] = (1 - mom) * rm->f[ch] + mom * mean[ch];
    rs->f[ch] = (1 - mom) * rs->f[ch] + mom * s1[ch];
  }
  free(mean);
  free(s1);
  return ref_fused_relu(n, y);
}

int l1_batchnorm_dx_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1), *gam = REF_IN(c, n, 2);
  nm_l1_backward(x->f, dy->f, bn_geo(x), gam->f, NM_AFFINE_PER_CHANNEL, (float)ir_num(n, "eps"), REF_OUT(c, n)->f, NULL, 1);
  return 1;
}

int l1_batchnorm_dgamma_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  nm_l1_backward(x->f, dy->f, bn_geo(x), NULL, NM_AFFINE_PER_CHANNEL, (float)ir_num(n, "eps"), NULL, REF_OUT(c, n)->f, 1);
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
