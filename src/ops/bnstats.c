/* bnstats.c: batchnorm with saved statistics (DESIGN §4), the form every batchnorm trains in:
 * L1 (divide by kappa * mean|x - mean| + eps; running mean and mean absolute deviation) or L2
 * (divide by sqrt(variance + eps); running mean and unbiased variance). The batch statistics
 * are a node of their own (batchnorm_stats, input 5 of l1_/l2_batchnorm), computed once and
 * read by the gradients: batchnorm_dparams sums dgamma and dbeta in one pass, then
 * batchnorm_dx is one pass over dy and x. The arithmetic is runtime/numerics.c's nm_bn_*;
 * L1 statistics of s16 sums are integer sums (nm_bn_stats_s16) where nm_bn_int_stats allows. */
#include <string.h>
#include "../../runtime/numerics.h"
#include "rules.h"

static nm_chan bn_geo(const Tensor *x) {
  nm_chan g = {x->d[0], x->d[1], 1};
  for (int i = 2; i < x->rank; i++) g.inner *= x->d[i];
  return g;
}

/* ---- shapes ---- */
/* the statistics tensor of x: [NM_BN_STATS, channels]; the parameter gradients: [2, channels],
 * or [8, channels] with the classes' extremes (ops.def's extremes) */
static Shape stats_shape(const Node *x) { return shape_make(2, (int64_t[]){NM_BN_STATS, x->shape.d[1]}); }
static Shape dparams_shape(const Node *x, int extremes) {
  return shape_make(2, (int64_t[]){extremes ? NM_BN_DPARAMS_EXTREMES : NM_BN_DPARAMS, x->shape.d[1]});
}
/* dx's input 4: the dparams of its x, with extremes or without */
static Shape dx_dparams_shape(ShapeCtx *c, const Node *n) { return dparams_shape(ir_in(c->g, n, 1), ir_in(c->g, n, 4)->shape.d[0] > NM_BN_DPARAMS); }
static int want(ShapeCtx *c, const Node *n, int i, Shape s, const char *what) {
  const Node *t = ir_in(c->g, n, i);
  if (t->dtype == DT_F32 && shape_eq(&t->shape, &s)) return 1;
  return shape_fail(c, n, "%s wants %s", op_info[n->op].name, what);
}
#define WANT_STATS(c, n, x, i) want(c, n, i, stats_shape(ir_in((c)->g, n, x)), "the statistics of its input")

int batchnorm_stats_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_values(c, n, 0) || !shape_want_rank(c, n, 0, 2, 4)) return 0;
  return shape_set(c, n, DT_F32, stats_shape(ir_in(c->g, n, 0)));
}
int l1_batchnorm_shape(ShapeCtx *c, Node *n) { return batchnorm_shape(c, n) && WANT_STATS(c, n, 0, 5); }
int l2_batchnorm_shape(ShapeCtx *c, Node *n) { return batchnorm_shape(c, n) && WANT_STATS(c, n, 0, 5); }
int batchnorm_dparams_shape(ShapeCtx *c, Node *n) {
  return WANT_STATS(c, n, 1, 2) && shape_set(c, n, DT_F32, dparams_shape(ir_in(c->g, n, 1), (int)ir_int(n, "extremes")));
}
int batchnorm_pool_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 0);
  if (!shape_want_values(c, n, 0) || !shape_want_rank(c, n, 0, 4, 4) || !WANT_STATS(c, n, 0, 5)) return 0;
  return shape_set(c, n, DT_F32, maxpool_output_shape(n, &x->shape));
}
static int want_pool(ShapeCtx *c, const Node *n, int i) {
  const Node *p = ir_in(c->g, n, i);
  if (p->kind == NK_OP && p->op == OP_batchnorm_pool) return 1;
  return shape_fail(c, n, "%s wants the batchnorm_pool whose gradient it is", op_info[n->op].name);
}
int batchnorm_pool_dparams_shape(ShapeCtx *c, Node *n) {
  return WANT_STATS(c, n, 1, 2) && want_pool(c, n, 3) &&
         shape_set(c, n, DT_F32, dparams_shape(ir_in(c->g, n, 1), (int)ir_int(n, "extremes")));
}
/* dx, or with sq_bits its ShiftQuant (ops.def) */
static DType dx_dtype(const Node *n) { return ir_int(n, "sq_bits") ? DT_Q8 : DT_F32; }
int batchnorm_pool_dx_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 1);
  return WANT_STATS(c, n, 1, 3) && want(c, n, 4, dx_dparams_shape(c, n), "the parameters' gradients") && want_pool(c, n, 5) &&
         shape_set(c, n, dx_dtype(n), x->shape);
}
int batchnorm_dx_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 1);
  return WANT_STATS(c, n, 1, 3) && want(c, n, 4, dx_dparams_shape(c, n), "the parameters' gradients") &&
         shape_set(c, n, dx_dtype(n), x->shape);
}

/* ---- gradients: dgamma and dbeta in one pass first, then dx reads both (its mean(gamma*g)
 * and mean(gamma*g*xhat) are gamma*dbeta/m and gamma*dgamma/m) ---- */
static int param_grad(GradCtx *c, const Node *n, int dparams, int row) {
  Node *r = GRAD_OP(c, n, OP_row, dparams);
  ir_set_num(r, "index", row);
  return grad_finish(c, r);
}
static void bn_grad(GradCtx *c, const Node *n, int dy, int l2) {
  GRAD_NOT_FUSED(n);
  int x = n->in[0], gamma = n->in[1], beta = n->in[2], stats = n->in[5];
  if (!grad_needed(c, x) && !grad_needed(c, gamma) && !grad_needed(c, beta)) return;
  int dp = grad_finish(c, GRAD_OP(c, n, OP_batchnorm_dparams, dy, x, stats));
  if (grad_needed(c, x)) {
    Node *dx = GRAD_OP(c, n, OP_batchnorm_dx, dy, x, gamma, stats, dp);
    ir_set_num(dx, "l2", l2);
    grad_accum(c, x, grad_finish(c, dx));
  }
  if (grad_needed(c, gamma)) grad_accum(c, gamma, param_grad(c, n, dp, 0));
  if (grad_needed(c, beta)) grad_accum(c, beta, param_grad(c, n, dp, 1));
}
void l1_batchnorm_grad(GradCtx *c, const Node *n, int dy) { bn_grad(c, n, dy, 0); }
void l2_batchnorm_grad(GradCtx *c, const Node *n, int dy) { bn_grad(c, n, dy, 1); }

/* ---- reference bodies ---- */
int batchnorm_stats_ref(RefCtx *c, const Node *n) {
  const Tensor *in = REF_IN(c, n, 0);
  nm_chan geo = bn_geo(in);
  int l2 = (int)ir_int(n, "l2");
  if (in->s16 && nm_bn_int_stats(l2, geo.outer * geo.inner, geo.inner)) { /* integer statistics */
    if (c->training) nm_bn_stats_s16(in->s16, in->scale, geo, (float)ir_num(n, "eps"), REF_OUT(c, n)->f, 1);
    return 1;
  }
  Tensor copy;
  const Tensor *x = ref_values(c, n, 0, &copy);
  if (c->training) nm_bn_stats(x->f, bn_geo(x), (float)ir_num(n, "eps"), l2, REF_OUT(c, n)->f, 1);
  ref_values_free(x, &copy);
  return 1; /* inference normalizes with the running statistics */
}

static int bn_forward_values(RefCtx *c, const Node *n, const Tensor *x, const float *stats, int l2, Tensor *y) {
  const Tensor *gam = REF_IN(c, n, 1), *bet = REF_IN(c, n, 2);
  Tensor *rm = REF_IN(c, n, 3), *rs = REF_IN(c, n, 4);
  nm_chan geo = bn_geo(x);
  int64_t C = geo.channels;
  float eps = (float)ir_num(n, "eps");
  if (!c->training) { /* the running statistics */
    float *inv = xmalloc(sizeof(float) * (size_t)C);
    for (int64_t ch = 0; ch < C; ch++) inv[ch] = l2 ? nm_l2_inv(rs->f[ch], eps) : nm_l1_inv(rs->f[ch], eps);
    nm_bn_forward(x->f, geo, rm->f, inv, gam->f, bet->f, y->f, 1);
    free(inv);
    return ref_fused_relu(n, y);
  }
  float *own = NULL;
  if (!stats) { /* the user op batchnorm, before the l1norm pass: its statistics here */
    stats = own = xmalloc(sizeof(float) * (size_t)(NM_BN_STATS * C));
    nm_bn_stats(x->f, geo, eps, l2, own, 1);
  }
  nm_bn_forward(x->f, geo, stats + NM_BN_MEAN * C, stats + NM_BN_INV * C, gam->f, bet->f, y->f, 1);
  /* (1 - mom) * running + mom * batch in float; L2 keeps the unbiased variance */
  float mom = (float)ir_num(n, "momentum");
  double m = (double)(geo.outer * geo.inner);
  for (int64_t ch = 0; ch < C; ch++) {
    float spread = stats[NM_BN_SPREAD * C + ch];
    if (l2 && m > 1) spread = (float)((double)spread * m / (m - 1));
    rm->f[ch] = (1 - mom) * rm->f[ch] + mom * stats[NM_BN_MEAN * C + ch];
    rs->f[ch] = (1 - mom) * rs->f[ch] + mom * spread;
  }
  free(own);
  return ref_fused_relu(n, y);
}
int bn_forward_ref(RefCtx *c, const Node *n, const float *stats, int l2, Tensor *y) {
  Tensor copy;
  const Tensor *x = ref_values(c, n, 0, &copy);
  int ok = bn_forward_values(c, n, x, stats, l2, y);
  ref_values_free(x, &copy);
  return ok;
}
int l1_batchnorm_ref(RefCtx *c, const Node *n) { return bn_forward_ref(c, n, REF_IN(c, n, 5)->f, 0, REF_OUT(c, n)); }
int l2_batchnorm_ref(RefCtx *c, const Node *n) { return bn_forward_ref(c, n, REF_IN(c, n, 5)->f, 1, REF_OUT(c, n)); }

int batchnorm_dparams_ref(RefCtx *c, const Node *n) {
  Tensor copy;
  const Tensor *dy = REF_IN(c, n, 0), *x = ref_values(c, n, 1, &copy);
  nm_bn_dparams(x->f, dy->f, bn_geo(x), REF_IN(c, n, 2)->f, REF_OUT(c, n)->f, 1);
  if (ir_int(n, "extremes")) nm_bn_class_extremes(x->f, dy->f, bn_geo(x), REF_IN(c, n, 2)->f, REF_OUT(c, n)->f, 1);
  ref_values_free(x, &copy);
  return 1;
}

void channel_ranges_ref(const Tensor *x, float *ranges) {
  nm_chan geo = bn_geo(x);
  for (int64_t ch = 0; ch < geo.channels; ch++) {
    uint32_t m = 0;
    for (int64_t o = 0; o < geo.outer; o++)
      for (int64_t i = 0; i < geo.inner; i++) {
        uint32_t u;
        memcpy(&u, &x->f[(o * geo.channels + ch) * geo.inner + i], sizeof u);
        m = (u & 0x7fffffffu) > m ? u & 0x7fffffffu : m;
      }
    memcpy(&ranges[ch], &m, sizeof m);
  }
}

/* where dx goes: the output, or with sq_bits a float copy that dx_finish ShiftQuants into it */
static Tensor dx_target(RefCtx *c, const Node *n) {
  Tensor t = *REF_OUT(c, n);
  if (ir_int(n, "sq_bits")) t.dtype = DT_F32, t.q = NULL, t.f = xmalloc(sizeof(float) * (size_t)t.n);
  return t;
}
/* dx written: with ranges = 1 its channels' ranges after it, or with sq_bits its ShiftQuant out */
static int dx_finish(RefCtx *c, const Node *n, Tensor *dx) {
  if (!ir_int(n, "sq_bits")) {
    if (ir_int(n, "ranges")) channel_ranges_ref(dx, channel_ranges_of(dx));
    return 1;
  }
  nm_sq_params p = {(int)ir_int(n, "sq_bits"), (int)ir_int(n, "sq_groups"), c->seed, (uint64_t)ir_int(n, "sq_stream"), c->step};
  int ok = shiftquant_ref_into(c, n, n->name, dx, 1, p, REF_OUT(c, n));
  free(dx->f);
  return ok;
}

int batchnorm_dx_ref(RefCtx *c, const Node *n) {
  Tensor copy, dx = dx_target(c, n);
  const Tensor *dy = REF_IN(c, n, 0), *x = ref_values(c, n, 1, &copy);
  nm_bn_dx(x->f, dy->f, bn_geo(x), REF_IN(c, n, 2)->f, REF_IN(c, n, 3)->f, REF_IN(c, n, 4)->f, (int)ir_int(n, "l2"), dx.f, 1);
  ref_values_free(x, &copy);
  return dx_finish(c, n, &dx);
}

/* ---- batchnorm_pool and its gradients: the unfused ops' arithmetic, in their order ---- */
static Tensor like(const Tensor *x) {
  Tensor t = *x;
  t.dtype = DT_F32, t.s16 = NULL;
  t.f = xmalloc(sizeof(float) * (size_t)x->n);
  return t;
}

int batchnorm_pool_ref(RefCtx *c, const Node *n) {
  Tensor y = like(REF_IN(c, n, 0)), *out = REF_OUT(c, n);
  bn_forward_ref(c, n, REF_IN(c, n, 5)->f, (int)ir_int(n, "l2"), &y);
  maxpool_ref(n, &y, out->f);
  maxpool_codes_ref(n, &y, (int)ir_int(n, "relu"), batchnorm_pool_codes(out));
  free(y.f);
  return 1;
}

/* g: dp routed by the forward pass's codes (input `pool`, the batchnorm_pool) to each window's
 * first maximum: what maxpool2d_grad, with the folded relu, makes of dp */
static float *pooled_gradient(const RefCtx *c, const Node *n, int pool) {
  const Tensor *x = REF_IN(c, n, 1);
  float *g = xmalloc(sizeof(float) * (size_t)x->n);
  maxpool_route_ref(n, REF_IN(c, n, 0)->f, batchnorm_pool_codes(REF_IN(c, n, pool)), x, g);
  return g;
}

int batchnorm_pool_dparams_ref(RefCtx *c, const Node *n) {
  Tensor copy;
  const Tensor *x = ref_values(c, n, 1, &copy);
  float *g = pooled_gradient(c, n, 3);
  nm_bn_dparams(x->f, g, bn_geo(x), REF_IN(c, n, 2)->f, REF_OUT(c, n)->f, 1);
  if (ir_int(n, "extremes")) nm_bn_class_extremes(x->f, g, bn_geo(x), REF_IN(c, n, 2)->f, REF_OUT(c, n)->f, 1);
  free(g);
  ref_values_free(x, &copy);
  return 1;
}

int batchnorm_pool_dx_ref(RefCtx *c, const Node *n) {
  Tensor copy, dx = dx_target(c, n);
  const Tensor *x = ref_values(c, n, 1, &copy);
  float *g = pooled_gradient(c, n, 5);
  nm_bn_dx(x->f, g, bn_geo(x), REF_IN(c, n, 2)->f, REF_IN(c, n, 3)->f, REF_IN(c, n, 4)->f, (int)ir_int(n, "l2"), dx.f, 1);
  free(g);
  ref_values_free(x, &copy);
  return dx_finish(c, n, &dx);
}
