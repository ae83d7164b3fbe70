/* quant.c: quantize, shiftquant and the integer GEMMs (qlinear, qmatmul, qconv2d and its two
 * gradients). Integer semantics (DESIGN §4): int8/uint8 operands, int32 accumulation (an
 * overflow is an error, never a wrap), one float32 multiply by the product of the two scales
 * per output, then the bias. Quantization rules themselves live in runtime/numerics.c. */
#include <string.h>
#include "../../runtime/numerics.h"
#include "conv_geom.h"
#include "rules.h"

/* ---- quantize: x -> q8 (q4 packed at b <= 4), symmetric per tensor; gradient straight through ---- */
int quantize_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_dtype(c, n, 0, DT_F32)) return 0;
  return shape_set(c, n, nm_packed((int)ir_int(n, "bits")) ? DT_Q4 : DT_Q8, ir_in(c->g, n, 0)->shape);
}

void quantize_grad(GradCtx *c, const Node *n, int dy) { grad_accum(c, n->in[0], dy); }

static int numeric_fail(RefCtx *c, const Node *n, const char *what, nm_status st, int64_t bad) {
  if (st == NM_NONFINITE) return ref_fail(c, n, "cannot quantize '%s': element %lld is not finite", what, (long long)bad);
  return ref_fail(c, n, "cannot quantize '%s': %s", what, nm_status_text(st));
}

int quantize_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *q = REF_OUT(c, n);
  int64_t bad = -1;
  q->q_unsigned = (int)ir_int(n, "unsigned");
  nm_status st = nm_quantize(x->f, x->n, (int)ir_int(n, "bits"), q->q_unsigned, q->q, &q->scale, &bad, 1);
  return st == NM_OK ? 1 : numeric_fail(c, n, ir_in(c->g, n, 0)->name, st, bad);
}

/* ---- shiftquant: an output gradient -> q8 (shifted values, one scale) ---- */
int shiftquant_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 0);
  if (!shape_want_dtype(c, n, 0, DT_F32)) return 0;
  if (ir_int(n, "axis") >= x->shape.rank) return shape_fail(c, n, "shiftquant channel axis is outside the tensor");
  return shape_set(c, n, DT_Q8, x->shape);
}

/* With ranges = 1 its input keeps each channel's range too (ops.def): they are what nm_shiftquant
 * computes, so the reference reads x alone. */
int shiftquant_ref_into(RefCtx *c, const Node *n, const char *what, const Tensor *x, int axis, nm_sq_params p, Tensor *q) {
  nm_chan geo = {1, x->d[axis], 1};
  for (int i = 0; i < axis; i++) geo.outer *= x->d[i];
  for (int i = axis + 1; i < x->rank; i++) geo.inner *= x->d[i];
  if (p.groups < 1) return ref_fail(c, n, "the group count was not chosen (the groups pass did not run)");
  int64_t bad = -1;
  q->q_unsigned = 0;
  nm_status st = nm_shiftquant(x->f, geo, &p, (int8_t *)q->q, &q->scale, NULL, NULL, &bad, 1);
  return st == NM_OK ? 1 : numeric_fail(c, n, what, st, bad);
}

int shiftquant_ref(RefCtx *c, const Node *n) {
  nm_sq_params p = {(int)ir_int(n, "bits"), (int)ir_int(n, "groups"), c->seed, (uint64_t)ir_int(n, "stream"), c->step};
  return shiftquant_ref_into(c, n, ir_in(c->g, n, 0)->name, REF_IN(c, n, 0), (int)ir_int(n, "axis"), p, REF_OUT(c, n));
}

/* The output gradient, ShiftQuant'ed once per GEMM: dX and dW share it. */
static int quantized_grad(GradCtx *c, const Node *n, int dy, int axis) {
  Node *sq = GRAD_OP(c, n, OP_shiftquant, dy);
  ir_set_num(sq, "bits", (double)ir_int(n, "bits"));
  ir_set_num(sq, "groups", (double)ir_int(n, "grad_groups"));
  ir_set_num(sq, "axis", axis);
  ir_set_num(sq, "stream", c->g->next_stream++);
  return grad_finish(c, sq);
}

/* ---- integer GEMM core: y[m,n] = (sum_k a[m,k] b[k,n]) * (sa*sb) (+ bias[n]) ---- */
typedef struct { const Tensor *t; int64_t off, sm, sk; } QOperand; /* element (m,k) at off + m*sm + k*sk */

static int ref_qgemm(RefCtx *c, const Node *n, int64_t M, int64_t N, int64_t K, QOperand a, QOperand b, float *y,
                     const float *bias) {
  float scale = a.t->scale * b.t->scale;
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < N; j++) {
      int64_t acc = 0;
      for (int64_t k = 0; k < K; k++)
        acc += (int64_t)tensor_q(a.t, a.off + m * a.sm + k * a.sk) * tensor_q(b.t, b.off + k * b.sm + j * b.sk);
      if (acc > INT32_MAX || acc < INT32_MIN) return ref_fail(c, n, "int32 accumulator overflow (K = %lld)", (long long)K);
      y[m * N + j] = (float)acc * scale + (bias ? bias[j] : 0.0f);
    }
  return 1;
}

/* ---- qlinear(qx, qw, b) ---- */
int qlinear_shape(ShapeCtx *c, Node *n) { return linear_shape(c, n); }

void qlinear_grad(GradCtx *c, const Node *n, int dy) {
  GRAD_NOT_FUSED(n);
  const Node *x = ir_in(c->g, n, 0);
  int rank = x->shape.rank;
  int64_t K = x->shape.d[rank - 1], N = ir_int(n, "out"), M = shape_numel(&x->shape) / K;
  int need_x = grad_needed(c, n->in[0]), need_w = grad_needed(c, n->in[1]);
  int sq = need_x || need_w ? quantized_grad(c, n, dy, rank - 1) : -1;
  if (need_x) {
    Node *dx = GRAD_OP(c, n, OP_qmatmul, sq, n->in[1]);
    ir_set_num(dx, "bits", (double)ir_int(n, "bits"));
    grad_accum(c, n->in[0], grad_finish(c, dx));
  }
  if (need_w) {
    int sq2 = sq, x2 = n->in[0];
    if (rank != 2) {
      Node *r = GRAD_OP(c, n, OP_reshape, sq);
      ir_set_list(r, "shape", (int64_t[]){M, N}, 2);
      sq2 = grad_finish(c, r);
      r = GRAD_OP(c, n, OP_reshape, n->in[0]);
      ir_set_list(r, "shape", (int64_t[]){M, K}, 2);
      x2 = grad_finish(c, r);
    }
    Node *dw = GRAD_OP(c, n, OP_qmatmul, sq2, x2);
    ir_set_num(dw, "trans_a", 1);
    ir_set_num(dw, "bits", (double)ir_int(n, "bits"));
    grad_accum(c, n->in[1], grad_finish(c, dw));
  }
  if (ir_has_bias(n) && grad_needed(c, n->in[2])) grad_accum(c, n->in[2], grad_unbroadcast(c, n, dy, n->in[2]));
}

int qlinear_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0), *w = REF_IN(c, n, 1);
  int64_t K = x->d[x->rank - 1], N = w->d[0];
  const float *b = ir_has_bias(n) ? REF_IN(c, n, 2)->f : NULL;
  return ref_qgemm(c, n, x->n / K, N, K, (QOperand){x, 0, K, 1}, (QOperand){w, 0, 1, K}, REF_OUT(c, n)->f, b) &&
         ref_fused_relu(n, REF_OUT(c, n));
}

/* ---- qmatmul(qa, qb): batched like matmul ---- */
int qmatmul_shape(ShapeCtx *c, Node *n) { return matmul_shape(c, n); }

/* As matmul_grad, with the shared ShiftQuant'ed output gradient in place of dy. */
void qmatmul_grad(GradCtx *c, const Node *n, int dy) {
  if (!grad_needed(c, n->in[0]) && !grad_needed(c, n->in[1])) return;
  matmul_grads(c, n, quantized_grad(c, n, dy, n->shape.rank - 1), OP_qmatmul);
}

int qmatmul_ref(RefCtx *c, const Node *n) {
  const Tensor *a = REF_IN(c, n, 0), *b = REF_IN(c, n, 1);
  Tensor *y = REF_OUT(c, n);
  int ta = (int)ir_int(n, "trans_a"), tb = (int)ir_int(n, "trans_b");
  int64_t M = a->d[a->rank - (ta ? 1 : 2)], K = a->d[a->rank - (ta ? 2 : 1)], N = b->d[b->rank - (tb ? 2 : 1)];
  int64_t batch = y->n / (M * N);
  for (int64_t i = 0; i < batch; i++) {
    QOperand qa = {a, a->rank > 2 ? i * M * K : 0, ta ? 1 : K, ta ? M : 1};
    QOperand qb = {b, b->rank > 2 ? i * K * N : 0, tb ? 1 : N, tb ? K : 1};
    if (!ref_qgemm(c, n, M, N, K, qa, qb, y->f + i * M * N, NULL)) return 0;
  }
  return 1;
}

/* ---- qconv2d(qx, qw, b) and its gradients qconv2d_dx(sq, qw, qx), qconv2d_dw(sq, qx, qw) ---- */
/* sums16 (the fuse pass): the sums kept as s16 with the scale, where they provably fit */
int qconv2d_shape(ShapeCtx *c, Node *n) {
  if (!conv2d_shape(c, n)) return 0;
  if (!ir_int(n, "sums16")) return 1;
  if (ir_has_bias(n)) return shape_fail(c, n, "qconv2d keeps its sums as s16 only without a bias");
  n->dtype = DT_S16;
  return 1;
}
int qconv2d_dx_shape(ShapeCtx *c, Node *n) { return conv2d_dx_shape(c, n); }
int qconv2d_dw_shape(ShapeCtx *c, Node *n) {
  if (ir_int(n, "dy_bits")) { /* dy as floats, ShiftQuant'ed over its channels (axis 1) */
    if (!shape_want_dtype(c, n, 0, DT_F32)) return 0;
    if (ir_in(c->g, n, 0)->shape.rank != 4) return shape_fail(c, n, "qconv2d_dw's dy must be [N, O, H, W]");
  }
  return conv2d_dw_shape(c, n);
}

void qconv2d_grad(GradCtx *c, const Node *n, int dy) {
  int sq = grad_needed(c, n->in[0]) || grad_needed(c, n->in[1]) ? quantized_grad(c, n, dy, 1) : -1;
  conv_grads(c, n, sq, dy, OP_qconv2d_dx, OP_qconv2d_dw);
}

/* Accumulates into an int64 array, checks the int32 range, dequantizes once per element. */
static int finish_acc(RefCtx *c, const Node *n, const int64_t *acc, int64_t count, float scale, const float *bias,
                      int64_t per_bias, int64_t nbias, float *y) {
  for (int64_t i = 0; i < count; i++) {
    if (acc[i] > INT32_MAX || acc[i] < INT32_MIN) return ref_fail(c, n, "int32 accumulator overflow");
    y[i] = (float)acc[i] * scale + (bias ? bias[(i / per_bias) % nbias] : 0.0f);
  }
  return 1;
}

int qconv2d_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0), *w = REF_IN(c, n, 1);
  const float *b = ir_has_bias(n) ? REF_IN(c, n, 2)->f : NULL;
  Tensor *y = REF_OUT(c, n);
  ConvGeom q = conv_geom(n, &ir_in(c->g, n, 0)->shape, w->d[0]);
  int64_t *acc = xcalloc((size_t)y->n, sizeof(int64_t));
  CONV_LOOP(q, acc[yi] += (int64_t)tensor_q(x, xi) * tensor_q(w, wi));
  int ok = 1;
  if (y->s16) { /* the sums themselves, with the scale that dequantizes them */
    for (int64_t i = 0; ok && i < y->n; i++) {
      if (acc[i] > INT16_MAX || acc[i] < INT16_MIN) ok = ref_fail(c, n, "int16 sum overflow");
      y->s16[i] = (int16_t)acc[i];
    }
    y->scale = x->scale * w->scale;
    if (ok && ir_int(n, "chansums")) { /* and each channel's sum of them */
      int64_t *sums = channel_sums_of(y), hw = q.Ho * q.Wo;
      for (int64_t o = 0; o < q.O; o++) sums[o] = 0;
      for (int64_t i = 0; i < y->n; i++) sums[(i / hw) % q.O] += acc[i];
    }
  } else {
    ok = finish_acc(c, n, acc, y->n, x->scale * w->scale, b, q.Ho * q.Wo, q.O, y->f);
  }
  free(acc);
  return ok;
}

int qconv2d_dx_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *w = REF_IN(c, n, 1);
  Tensor *dx = REF_OUT(c, n);
  ConvGeom q = conv_geom(n, &ir_in(c->g, n, 2)->shape, w->d[0]);
  int64_t *acc = xcalloc((size_t)dx->n, sizeof(int64_t));
  CONV_LOOP(q, acc[xi] += (int64_t)tensor_q(dy, yi) * tensor_q(w, wi));
  int ok = finish_acc(c, n, acc, dx->n, dy->scale * w->scale, NULL, 1, 1, dx->f);
  free(acc);
  return ok;
}

int qconv2d_dw_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *x = REF_IN(c, n, 1);
  Tensor *dw = REF_OUT(c, n), dyq = *dy;
  if (ir_int(n, "dy_bits")) { /* dy as floats: ShiftQuant'ed here, as the shiftquant fuse removed did */
    nm_sq_params p = {(int)ir_int(n, "dy_bits"), (int)ir_int(n, "dy_groups"), c->seed, (uint64_t)ir_int(n, "dy_stream"), c->step};
    dyq.dtype = DT_Q8, dyq.f = NULL, dyq.q = xmalloc((size_t)dy->n);
    if (!shiftquant_ref_into(c, n, ir_in(c->g, n, 0)->name, dy, 1, p, &dyq)) {
      free(dyq.q);
      return 0;
    }
    dy = &dyq;
  }
  ConvGeom q = conv_geom(n, &ir_in(c->g, n, 1)->shape, dw->d[0]);
  int64_t *acc = xcalloc((size_t)dw->n, sizeof(int64_t));
  CONV_LOOP(q, acc[wi] += (int64_t)tensor_q(dy, yi) * tensor_q(x, xi));
  int ok = finish_acc(c, n, acc, dw->n, dy->scale * x->scale, NULL, 1, 1, dw->f);
  free(acc);
  if (dy == &dyq) free(dyq.q);
  return ok;
}
