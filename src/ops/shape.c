/* shape.c: flatten (keeps axis 0, merges the rest), reshape (one -1 axis may be inferred) and
 * transpose (a permutation; none given swaps the last two axes). */
#include <string.h>
#include "rules.h"

static int reshape_back(GradCtx *c, const Node *n, int dy) {
  const Node *x = ir_in(c->g, n, 0);
  Node *r = GRAD_OP(c, n, OP_reshape, dy);
  ir_set_list(r, "shape", x->shape.d, x->shape.rank);
  return grad_finish(c, r);
}

int flatten_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_rank(c, n, 0, 2, SQ_MAX_RANK)) return 0;
  const Node *x = ir_in(c->g, n, 0);
  int64_t d0 = x->shape.d[0];
  return shape_set(c, n, x->dtype, shape_make(2, (int64_t[]){d0, shape_numel(&x->shape) / d0}));
}
void flatten_grad(GradCtx *c, const Node *n, int dy) {
  if (grad_needed(c, n->in[0])) grad_accum(c, n->in[0], reshape_back(c, n, dy));
}
/* Same elements, new shape: a copy (q8 tensors keep their scale and signedness), or nothing to
 * copy where memplan made y a view of x's bytes. */
static int copy_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *y = REF_OUT(c, n);
  if (!ir_is_view(c->g, n)) {
    if (x->f) memcpy(y->f, x->f, sizeof(float) * (size_t)x->n);
    else if (x->i) memcpy(y->i, x->i, sizeof(int32_t) * (size_t)x->n);
    else memcpy(y->q, x->q, (size_t)nm_q_bytes(x->n, x->q4));
  }
  y->scale = x->scale;
  y->q_unsigned = x->q_unsigned;
  return 1;
}
int flatten_ref(RefCtx *c, const Node *n) { return copy_ref(c, n); }

int reshape_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 0);
  const AttrVal *a = ir_attr(n, "shape");
  Shape s = shape_make(a->nlist, a->list);
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.rank; i++) {
    if (s.d[i] == -1) {
      if (infer >= 0) return shape_fail(c, n, "reshape may infer only one dimension (-1)");
      infer = i;
    } else if (s.d[i] <= 0 || __builtin_mul_overflow(known, s.d[i], &known)) {
      return shape_fail(c, n, "reshape dimension %d is not valid", i);
    }
  }
  int64_t total = shape_numel(&x->shape);
  if (infer >= 0 && total % known == 0) s.d[infer] = total / known;
  if (infer >= 0 ? total % known != 0 : known != total) {
    char *t = type_str(x->dtype, &x->shape);
    StrBuf b = {0};
    for (int i = 0; i < a->nlist; i++) sb_printf(&b, "%s%lld", i ? "," : "", (long long)a->list[i]);
    char *want = sb_take(&b);
    shape_fail(c, n, "shape mismatch in reshape: cannot reshape %s into [%s]", t, want);
    free(t);
    free(want);
    return 0;
  }
  return shape_set(c, n, x->dtype, s);
}
void reshape_grad(GradCtx *c, const Node *n, int dy) {
  if (grad_needed(c, n->in[0])) grad_accum(c, n->in[0], reshape_back(c, n, dy));
}
int reshape_ref(RefCtx *c, const Node *n) { return copy_ref(c, n); }

/* The permutation in effect: the attribute, or a swap of the last two axes. */
static int effective_perm(const Node *n, int rank, int64_t *perm) {
  const AttrVal *a = ir_attr(n, "perm");
  for (int i = 0; i < rank; i++) perm[i] = i;
  if (a->nlist == 0) {
    if (rank < 2) return 0;
    perm[rank - 2] = rank - 1;
    perm[rank - 1] = rank - 2;
    return 1;
  }
  if (a->nlist != rank) return 0;
  int seen[SQ_MAX_RANK] = {0};
  for (int i = 0; i < rank; i++) {
    if (a->list[i] < 0 || a->list[i] >= rank || seen[a->list[i]]++) return 0;
    perm[i] = a->list[i];
  }
  return 1;
}

int transpose_shape(ShapeCtx *c, Node *n) {
  const Node *x = ir_in(c->g, n, 0);
  int64_t perm[SQ_MAX_RANK];
  if (!effective_perm(n, x->shape.rank, perm)) {
    char *t = type_str(x->dtype, &x->shape);
    shape_fail(c, n, "transpose perm is not a permutation of the axes of %s", t);
    free(t);
    return 0;
  }
  Shape s = x->shape;
  for (int i = 0; i < s.rank; i++) s.d[i] = x->shape.d[perm[i]];
  return shape_set(c, n, x->dtype, s);
}

void transpose_grad(GradCtx *c, const Node *n, int dy) {
  if (!grad_needed(c, n->in[0])) return;
  int rank = ir_in(c->g, n, 0)->shape.rank;
  int64_t perm[SQ_MAX_RANK], inv[SQ_MAX_RANK];
  effective_perm(n, rank, perm);
  for (int i = 0; i < rank; i++) inv[perm[i]] = i;
  Node *t = GRAD_OP(c, n, OP_transpose, dy);
  ir_set_list(t, "perm", inv, rank);
  grad_accum(c, n->in[0], grad_finish(c, t));
}

int transpose_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *y = REF_OUT(c, n);
  int64_t perm[SQ_MAX_RANK], stride[SQ_MAX_RANK], idx[SQ_MAX_RANK] = {0};
  effective_perm(n, x->rank, perm);
  int64_t st = 1;
  for (int i = x->rank - 1; i >= 0; i--) stride[i] = st, st *= x->d[i];
  for (int64_t e = 0; e < y->n; e++) {
    int64_t src = 0;
    for (int i = 0; i < y->rank; i++) src += idx[i] * stride[perm[i]];
    if (y->f) y->f[e] = x->f[src];
    else y->i[e] = x->i[src];
    for (int i = y->rank - 1; i >= 0 && ++idx[i] == y->d[i]; i--) idx[i] = 0;
  }
  return 1;
}

/* row `index` of a matrix (a copy; the L1 batchnorm's parameter gradients come as one) */
int row_shape(ShapeCtx *c, Node *n) {
  if (!shape_want_dtype(c, n, 0, DT_F32) || !shape_want_rank(c, n, 0, 2, 2)) return 0;
  const Node *x = ir_in(c->g, n, 0);
  if (ir_int(n, "index") >= x->shape.d[0]) return shape_fail(c, n, "row %lld of a %lld-row matrix", (long long)ir_int(n, "index"), (long long)x->shape.d[0]);
  return shape_set(c, n, DT_F32, shape_make(1, &x->shape.d[1]));
}
int row_ref(RefCtx *c, const Node *n) {
  const Tensor *x = REF_IN(c, n, 0);
  Tensor *y = REF_OUT(c, n);
  memcpy(y->f, x->f + ir_int(n, "index") * y->n, sizeof(float) * (size_t)y->n);
  return 1;
}
