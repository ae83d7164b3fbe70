/* pool.c: maxpool2d, avgpool2d (stride defaults to the kernel; avg counts padding, as PyTorch's
 * default does), global_avgpool (x[N,C,H,W] -> y[N,C]) and their gradients. */
#include <math.h>
#include <string.h>
#include "rules.h"

typedef struct { int64_t N, C, H, W, Ho, Wo, k, s, p; } PoolGeom;

static PoolGeom pool_geom(const Node *n, const Shape *x) {
  PoolGeom q;
  q.N = x->d[0], q.C = x->d[1], q.H = x->d[2], q.W = x->d[3];
  q.k = ir_int(n, "kernel"), q.s = ir_int(n, "stride"), q.p = ir_int(n, "padding");
  if (q.s == 0) q.s = q.k;
  q.Ho = (q.H + 2 * q.p - q.k) / q.s + 1;
  q.Wo = (q.W + 2 * q.p - q.k) / q.s + 1;
  return q;
}

static int pool_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_dtype(c, n, 0, DT_F32) || !shape_want_rank(c, n, 0, 4, 4)) return 0;
  if (ir_int(n, "stride") == 0) ir_set_num(n, "stride", (double)ir_int(n, "kernel")); /* the default: = kernel */
  PoolGeom q = pool_geom(n, &ir_in(c->g, n, 0)->shape);
  if (2 * q.p > q.k)
    return shape_fail(c, n, "%s padding %lld is more than half the kernel %lld", op_info[n->op].name,
                      (long long)q.p, (long long)q.k);
  if (q.H + 2 * q.p < q.k || q.W + 2 * q.p < q.k)
    return shape_fail(c, n, "%s kernel %lld is larger than the padded input %lldx%lld", op_info[n->op].name,
                      (long long)q.k, (long long)(q.H + 2 * q.p), (long long)(q.W + 2 * q.p));
  return shape_set(c, n, DT_F32, shape_make(4, (int64_t[]){q.N, q.C, q.Ho, q.Wo}));
}
int maxpool2d_shape(ShapeCtx *c, Node *n) { return pool_shape(c, n); }
int avgpool2d_shape(ShapeCtx *c, Node *n) { return pool_shape(c, n); }
int maxpool2d_grad_shape(ShapeCtx *c, Node *n) { return shape_set(c, n, DT_F32, ir_in(c->g, n, 1)->shape); }
int avgpool2d_grad_shape(ShapeCtx *c, Node *n) { return shape_set(c, n, DT_F32, ir_in(c->g, n, 1)->shape); }

static void pool_grad(GradCtx *c, const Node *n, int dy, OpCode gop) {
  if (!grad_needed(c, n->in[0])) return;
  Node *g = GRAD_OP(c, n, gop, dy, n->in[0]);
  ir_copy_attrs(g, n);
  grad_accum(c, n->in[0], grad_finish(c, g));
}
void maxpool2d_grad(GradCtx *c, const Node *n, int dy) { pool_grad(c, n, dy, OP_maxpool2d_grad); }
void avgpool2d_grad(GradCtx *c, const Node *n, int dy) { pool_grad(c, n, dy, OP_avgpool2d_grad); }

/* Flat index of the first maximum of window (plane, oh, ow), scanning rows then columns. */
static int64_t window_argmax(const PoolGeom *q, const float *x, int64_t plane, int64_t oh, int64_t ow) {
  int64_t best = -1;
  for (int64_t kh = 0; kh < q->k; kh++) {
    int64_t ih = oh * q->s - q->p + kh;
    if (ih < 0 || ih >= q->H) continue;
    for (int64_t kw = 0; kw < q->k; kw++) {
      int64_t iw = ow * q->s - q->p + kw;
      if (iw < 0 || iw >= q->W) continue;
      int64_t i = (plane * q->H + ih) * q->W + iw;
      if (best < 0 || x[i] > x[best]) best = i;
    }
  }
  return best;
}

Shape maxpool_output_shape(const Node *n, const Shape *x) {
  PoolGeom q = pool_geom(n, x);
  return shape_make(4, (int64_t[]){q.N, q.C, q.Ho, q.Wo});
}

static Shape shape_of(const Tensor *t) { return shape_make(t->rank, t->d); }

void maxpool_ref(const Node *n, const Tensor *x, float *y) {
  Shape xs = shape_of(x);
  PoolGeom q = pool_geom(n, &xs);
  for (int64_t pl = 0; pl < q.N * q.C; pl++)
    for (int64_t oh = 0; oh < q.Ho; oh++)
      for (int64_t ow = 0; ow < q.Wo; ow++) y[(pl * q.Ho + oh) * q.Wo + ow] = x->f[window_argmax(&q, x->f, pl, oh, ow)];
}

void maxpool_grad_ref(const Node *n, const float *dy, const Tensor *x, int relu, float *dx) {
  Shape xs = shape_of(x);
  PoolGeom q = pool_geom(n, &xs);
  memset(dx, 0, sizeof(float) * (size_t)x->n);
  for (int64_t pl = 0; pl < q.N * q.C; pl++)
    for (int64_t oh = 0; oh < q.Ho; oh++)
      for (int64_t ow = 0; ow < q.Wo; ow++) dx[window_argmax(&q, x->f, pl, oh, ow)] += dy[(pl * q.Ho + oh) * q.Wo + ow];
  if (relu) /* the relu_grad(dx, x) the fuse pass folded in */
    for (int64_t i = 0; i < x->n; i++) dx[i] = nm_relu_grad(dx[i], x->f[i]);
}

void maxpool_codes_ref(const Node *n, const Tensor *x, int relu, uint8_t *codes) {
  Shape xs = shape_of(x);
  PoolGeom q = pool_geom(n, &xs);
  for (int64_t pl = 0; pl < q.N * q.C; pl++)
    for (int64_t oh = 0; oh < q.Ho; oh++)
      for (int64_t ow = 0; ow < q.Wo; ow++) {
        int64_t best = window_argmax(&q, x->f, pl, oh, ow), ih = best / q.W % q.H, iw = best % q.W;
        int t = (int)((ih - (oh * q.s - q.p)) * q.k + iw - (ow * q.s - q.p));
        codes[(pl * q.Ho + oh) * q.Wo + ow] = (uint8_t)(t | (relu && !(x->f[best] > 0) ? POOL_CODE_MASKED : 0));
      }
}

void maxpool_route_ref(const Node *n, const float *dy, const uint8_t *codes, const Tensor *x, float *dx) {
  Shape xs = shape_of(x);
  PoolGeom q = pool_geom(n, &xs);
  memset(dx, 0, sizeof(float) * (size_t)x->n);
  for (int64_t pl = 0; pl < q.N * q.C; pl++)
    for (int64_t oh = 0; oh < q.Ho; oh++)
      for (int64_t ow = 0; ow < q.Wo; ow++) {
        int64_t w = (pl * q.Ho + oh) * q.Wo + ow, t = codes[w];
        if (t & POOL_CODE_MASKED) continue;
        int64_t ih = oh * q.s - q.p + t / q.k, iw = ow * q.s - q.p + t % q.k;
        dx[(pl * q.H + ih) * q.W + iw] += dy[w]; /* 0 + dy, as maxpool_grad_ref adds */
      }
}

int maxpool2d_ref(RefCtx *c, const Node *n) {
  maxpool_ref(n, REF_IN(c, n, 0), REF_OUT(c, n)->f);
  return 1;
}

int maxpool2d_grad_ref(RefCtx *c, const Node *n) {
  maxpool_grad_ref(n, REF_IN(c, n, 0)->f, REF_IN(c, n, 1), (int)ir_int(n, "relu"), REF_OUT(c, n)->f);
  return 1;
}

/* avg: every tap of the k*k window counts, padding included, so the divisor is k*k. */
int avgpool2d_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *y = REF_OUT(c, n);
  PoolGeom q = pool_geom(n, &ir_in(c->g, n, 0)->shape);
  float inv = 1.0f / (float)(q.k * q.k);
  for (int64_t pl = 0; pl < q.N * q.C; pl++)
    for (int64_t oh = 0; oh < q.Ho; oh++)
      for (int64_t ow = 0; ow < q.Wo; ow++) {
        float s = 0;
        for (int64_t kh = 0; kh < q.k; kh++)
          for (int64_t kw = 0; kw < q.k; kw++) {
            int64_t ih = oh * q.s - q.p + kh, iw = ow * q.s - q.p + kw;
            if (ih >= 0 && ih < q.H && iw >= 0 && iw < q.W) s += x->f[(pl * q.H + ih) * q.W + iw];
          }
        y->f[(pl * q.Ho + oh) * q.Wo + ow] = s * inv;
      }
  return 1;
}

int avgpool2d_grad_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0);
  Tensor *dx = REF_OUT(c, n);
  PoolGeom q = pool_geom(n, &ir_in(c->g, n, 1)->shape);
  float inv = 1.0f / (float)(q.k * q.k);
  memset(dx->f, 0, sizeof(float) * (size_t)dx->n);
  for (int64_t pl = 0; pl < q.N * q.C; pl++)
    for (int64_t oh = 0; oh < q.Ho; oh++)
      for (int64_t ow = 0; ow < q.Wo; ow++) {
        float g = dy->f[(pl * q.Ho + oh) * q.Wo + ow] * inv;
        for (int64_t kh = 0; kh < q.k; kh++)
          for (int64_t kw = 0; kw < q.k; kw++) {
            int64_t ih = oh * q.s - q.p + kh, iw = ow * q.s - q.p + kw;
            if (ih >= 0 && ih < q.H && iw >= 0 && iw < q.W) dx->f[(pl * q.H + ih) * q.W + iw] += g;
          }
      }
  return 1;
}

int global_avgpool_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_dtype(c, n, 0, DT_F32) || !shape_want_rank(c, n, 0, 4, 4)) return 0;
  const Shape *x = &ir_in(c->g, n, 0)->shape;
  return shape_set(c, n, DT_F32, shape_make(2, x->d));
}

void global_avgpool_grad(GradCtx *c, const Node *n, int dy) {
  if (!grad_needed(c, n->in[0])) return;
  grad_accum(c, n->in[0], grad_finish(c, GRAD_OP(c, n, OP_global_avgpool_grad, dy, n->in[0])));
}

int global_avgpool_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *y = REF_OUT(c, n);
  int64_t hw = x->d[2] * x->d[3];
  for (int64_t pl = 0; pl < y->n; pl++) {
    float s = 0;
    for (int64_t i = 0; i < hw; i++) s += x->f[pl * hw + i];
    y->f[pl] = s / (float)hw;
  }
  return 1;
}

int global_avgpool_grad_shape(ShapeCtx *c, Node *n) { return shape_set(c, n, DT_F32, ir_in(c->g, n, 1)->shape); }

int global_avgpool_grad_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0);
  Tensor *dx = REF_OUT(c, n);
  int64_t hw = dx->d[2] * dx->d[3];
  for (int64_t i = 0; i < dx->n; i++) dx->f[i] = dy->f[i / hw] / (float)hw;
  return 1;
}
