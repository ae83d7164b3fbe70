/* l1norm.c: L1 layernorm (DESIGN §4): divide each row by kappa * mean|x - mean| + eps instead
 * of the standard deviation. Statistics and gradients come from runtime/numerics.c; this file
 * only maps tensors onto its [outer, channels, inner] view. (L1 batchnorm: bnstats.c.) */
#include "../../runtime/numerics.h"
#include "rules.h"

static nm_chan ln_geo(const Tensor *x) { return (nm_chan){1, x->n / x->d[x->rank - 1], x->d[x->rank - 1]}; }

int l1_layernorm_shape(ShapeCtx *c, Node *n) { return layernorm_shape(c, n); }
int l1_layernorm_dx_shape(ShapeCtx *c, Node *n) { return layernorm_dx_shape(c, n); }
int l1_layernorm_dgamma_shape(ShapeCtx *c, Node *n) { return layernorm_dgamma_shape(c, n); }

void l1_layernorm_grad(GradCtx *c, const Node *n, int dy) {
  norm_grads(c, n, dy, OP_l1_layernorm_dx, OP_l1_layernorm_dgamma);
}

int l1_layernorm_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0), *gam = REF_IN(c, n, 1), *bet = REF_IN(c, n, 2);
  nm_chan geo = ln_geo(x);
  float *mean = xmalloc(sizeof(float) * (size_t)geo.channels), *s1 = xmalloc(sizeof(float) * (size_t)geo.channels);
  nm_l1_stats(x->f, geo, mean, s1, 1);
  nm_l1_forward(x->f, geo, mean, s1, gam->f, bet->f, (float)ir_num(n, "eps"), REF_OUT(c, n)->f, 1);
  free(mean);
  free(s1);
  return 1;
}

int l1_layernorm_dx_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1), *gam = REF_IN(c, n, 2);
  nm_l1_backward(x->f, dy->f, ln_geo(x), gam->f, (float)ir_num(n, "eps"), REF_OUT(c, n)->f, NULL, 1);
  return 1;
}

int l1_layernorm_dgamma_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  nm_l1_backward(x->f, dy->f, ln_geo(x), NULL, (float)ir_num(n, "eps"), NULL, REF_OUT(c, n)->f, 1);
  return 1;
}
