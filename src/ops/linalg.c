/* linalg.c: linear, matmul, reduce_sum, fill.
 * Reference GEMMs accumulate each output in float32 in ascending k, so the order is fixed. */
#include <math.h>
#include <string.h>
#include "rules.h"

/* C[m,n] = sum_k A[m,k] * B[k,n] (+ C when acc), with element strides for A and B. */
static void ref_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t am, int64_t ak,
                     const float *B, int64_t bk, int64_t bn, float *C, int acc) {
  for (int64_t m = 0; m < M; m++) {
    float *c = C + m * N;
    if (!acc) memset(c, 0, sizeof(float) * (size_t)N);
    if (bn == 1) {
      for (int64_t k = 0; k < K; k++) {
        float a = A[m * am + k * ak];
        const float *b = B + k * bk;
        for (int64_t n = 0; n < N; n++) c[n] += a * b[n];
      }
    } else {
      for (int64_t n = 0; n < N; n++) {
        float s = c[n];
        for (int64_t k = 0; k < K; k++) s += A[m * am + k * ak] * B[k * bk + n * bn];
        c[n] = s;
      }
    }
  }
}

/* ---- linear: y[..., o] = sum_k x[..., k] W[o, k] + b[o] ---- */
void linear_init(InitCtx *c, Node *n) {
  init_leaf(c, "weight", NK_PARAM, INIT_UNIFORM);
  if (ir_has_bias(n)) init_leaf(c, "bias", NK_PARAM, INIT_UNIFORM);
}

int linear_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 0);
  if (!shape_want_real(c, n, 0) || !shape_want_rank(c, n, 0, 2, SQ_MAX_RANK)) return 0;
  int64_t K = x->shape.d[x->shape.rank - 1], N = ir_int(n, "out");
  double bound = 1.0 / sqrt((double)K); /* PyTorch's default: kaiming_uniform(a=sqrt(5)) */
  if (!shape_define_input(c, n, 1, shape_make(2, (int64_t[]){N, K}), bound) ||
      (ir_has_bias(n) && !shape_define_input(c, n, 2, shape_make(1, &N), bound)))
    return 0;
  Shape s = x->shape;
  s.d[s.rank - 1] = N;
  return shape_set(c, n, DT_F32, s);
}

void linear_grad(GradCtx *c, const Node *n, int dy) {
  GRAD_NOT_FUSED(n);
  const Node *x = ir_in(c->g, n, 0);
  int rank = x->shape.rank;
  int64_t K = x->shape.d[rank - 1], N = ir_int(n, "out"), M = shape_numel(&x->shape) / K;
  if (grad_needed(c, n->in[0]))
    grad_accum(c, n->in[0], grad_finish(c, GRAD_OP(c, n, OP_matmul, dy, n->in[1])));
  if (grad_needed(c, n->in[1])) {
    int dy2 = dy, x2 = n->in[0];
    if (rank != 2) {
      Node *r = GRAD_OP(c, n, OP_reshape, dy);
      ir_set_list(r, "shape", (int64_t[]){M, N}, 2);
      dy2 = grad_finish(c, r);
      r = GRAD_OP(c, n, OP_reshape, n->in[0]);
      ir_set_list(r, "shape", (int64_t[]){M, K}, 2);
      x2 = grad_finish(c, r);
    }
    Node *dw = GRAD_OP(c, n, OP_matmul, dy2, x2);
    ir_set_num(dw, "trans_a", 1);
    grad_accum(c, n->in[1], grad_finish(c, dw));
  }
  if (ir_has_bias(n) && grad_needed(c, n->in[2])) grad_accum(c, n->in[2], grad_unbroadcast(c, n, dy, n->in[2]));
}

int linear_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0), *w = REF_IN(c, n, 1);
  Tensor *y = REF_OUT(c, n);
  int64_t K = x->d[x->rank - 1], N = w->d[0], M = x->n / K;
  ref_gemm(M, N, K, x->f, K, 1, w->f, 1, K, y->f, 0);
  if (ir_has_bias(n)) {
    const Tensor *b = REF_IN(c, n, 2);
    for (int64_t m = 0; m < M; m++)
      for (int64_t o = 0; o < N; o++) y->f[m * N + o] += b->f[o];
  }
  return ref_fused_relu(n, y);
}

/* ---- matmul: op(a) x op(b) where op transposes the last two axes when trans_a/trans_b is set.
 * Either operand may carry leading batch axes; when both do they must agree, and an operand
 * without them is shared by every batch entry. ---- */
typedef struct { int64_t batch, M, N, K; int a_batched, b_batched; } MatmulDims;

static MatmulDims matmul_dims(const Shape *a, const Shape *b, int ta, int tb) {
  MatmulDims d;
  d.M = a->d[a->rank - (ta ? 1 : 2)];
  d.K = a->d[a->rank - (ta ? 2 : 1)];
  d.N = b->d[b->rank - (tb ? 2 : 1)];
  d.a_batched = a->rank > 2;
  d.b_batched = b->rank > 2;
  const Shape *big = a->rank >= b->rank ? a : b;
  d.batch = 1;
  for (int i = 0; i < big->rank - 2; i++) d.batch *= big->d[i];
  return d;
}

int matmul_shape(ShapeCtx *c, Node *n) {
  const Node *a = ir_in(c->g, n, 0), *b = ir_in(c->g, n, 1);
  if (!shape_want_real(c, n, 0) || !shape_want_real(c, n, 1) || !shape_want_rank(c, n, 0, 2, SQ_MAX_RANK) ||
      !shape_want_rank(c, n, 1, 2, SQ_MAX_RANK))
    return 0;
  int ta = (int)ir_int(n, "trans_a"), tb = (int)ir_int(n, "trans_b");
  int64_t kb = b->shape.d[b->shape.rank - (tb ? 1 : 2)];
  MatmulDims d = matmul_dims(&a->shape, &b->shape, ta, tb);
  if (d.K != kb) return shape_mismatch(c, n, "inner dimensions differ", a, b);
  if (d.a_batched && d.b_batched) {
    if (b->shape.rank != a->shape.rank) return shape_mismatch(c, n, "batch ranks differ", a, b);
    for (int i = 0; i < a->shape.rank - 2; i++)
      if (a->shape.d[i] != b->shape.d[i]) return shape_mismatch(c, n, "batch dimensions differ", a, b);
  }
  Shape s = a->shape.rank >= b->shape.rank ? a->shape : b->shape;
  s.d[s.rank - 2] = d.M;
  s.d[s.rank - 1] = d.N;
  return shape_set(c, n, DT_F32, s);
}

static int matmul_node(GradCtx *c, const Node *n, OpCode op, int a, int b, int ta, int tb) {
  Node *m = GRAD_OP(c, n, op, a, b);
  ir_set_num(m, "trans_a", ta);
  ir_set_num(m, "trans_b", tb);
  if (op_attr_index(op, "bits") >= 0) ir_set_num(m, "bits", (double)ir_int(n, "bits"));
  return grad_finish(c, m);
}

/* With C = op(A) op(B): dA = dC op(B)^T and dB = op(A)^T dC, each written back in the
 * operand's stored orientation; a shared operand's gradient is summed over the batch. */
void matmul_grads(GradCtx *c, const Node *n, int dy, OpCode op) {
  int A = n->in[0], B = n->in[1];
  int ta = (int)ir_int(n, "trans_a"), tb = (int)ir_int(n, "trans_b");
  if (grad_needed(c, A)) {
    int g = !ta ? matmul_node(c, n, op, dy, B, 0, !tb) : matmul_node(c, n, op, B, dy, tb, 1);
    grad_accum(c, A, grad_unbroadcast(c, n, g, A));
  }
  if (grad_needed(c, B)) {
    int g = !tb ? matmul_node(c, n, op, A, dy, !ta, 0) : matmul_node(c, n, op, dy, A, 1, ta);
    grad_accum(c, B, grad_unbroadcast(c, n, g, B));
  }
}

void matmul_grad(GradCtx *c, const Node *n, int dy) { matmul_grads(c, n, dy, OP_matmul); }

int matmul_ref(RefCtx *c, const Node *n) {
  const Tensor *a = REF_IN(c, n, 0), *b = REF_IN(c, n, 1);
  Tensor *y = REF_OUT(c, n);
  const Node *na = ir_in(c->g, n, 0), *nb = ir_in(c->g, n, 1);
  int ta = (int)ir_int(n, "trans_a"), tb = (int)ir_int(n, "trans_b");
  MatmulDims d = matmul_dims(&na->shape, &nb->shape, ta, tb);
  int64_t am = ta ? 1 : d.K, ak = ta ? d.M : 1, bk = tb ? 1 : d.N, bn = tb ? d.K : 1;
  for (int64_t i = 0; i < d.batch; i++)
    ref_gemm(d.M, d.N, d.K, a->f + (d.a_batched ? i * d.M * d.K : 0), am, ak,
             b->f + (d.b_batched ? i * d.K * d.N : 0), bk, bn, y->f + i * d.M * d.N, 0);
  return 1;
}

/* ---- reduce_sum: sums over the listed axes (ascending), which disappear from the shape ---- */
int reduce_sum_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 0);
  const AttrVal *ax = ir_attr(n, "axes");
  Shape s = {0};
  int k = 0;
  for (int i = 0; i < x->shape.rank; i++) {
    if (k < ax->nlist && ax->list[k] == i) {
      k++;
      continue;
    }
    s.d[s.rank++] = x->shape.d[i];
  }
  if (k != ax->nlist) return shape_fail(c, n, "reduce_sum axes must be ascending axes of the input");
  return shape_set(c, n, x->dtype, s);
}

int reduce_sum_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *y = REF_OUT(c, n);
  const AttrVal *ax = ir_attr(n, "axes");
  int reduced[SQ_MAX_RANK] = {0};
  for (int i = 0; i < ax->nlist; i++) reduced[ax->list[i]] = 1;
  memset(y->f, 0, sizeof(float) * (size_t)y->n);
  int64_t idx[SQ_MAX_RANK] = {0};
  for (int64_t e = 0; e < x->n; e++) {
    int64_t o = 0;
    for (int i = 0; i < x->rank; i++)
      if (!reduced[i]) o = o * x->d[i] + idx[i];
    y->f[o] += x->f[e];
    for (int i = x->rank - 1; i >= 0 && ++idx[i] == x->d[i]; i--) idx[i] = 0;
  }
  return 1;
}

/* ---- fill: a constant tensor (seeds the loss gradient) ---- */
int fill_shape(ShapeCtx *c, Node *n) {
  const AttrVal *s = ir_attr(n, "shape");
  return shape_set(c, n, DT_F32, shape_make(s->nlist, s->list));
}

int fill_ref(RefCtx *c, const Node *n) {
  Tensor *y = REF_OUT(c, n);
  float v = (float)ir_num(n, "value");
  for (int64_t i = 0; i < y->n; i++) y->f[i] = v;
  return 1;
}
