/* embed.c: embedding(ids i32[...], table[vocab, dim]) -> f32[..., dim] and its gradient (a
 * scatter-add in ascending id-position order, so it is deterministic). */
#include <string.h>
#include "rules.h"

void embedding_init(InitCtx *c, Node *n) {
  (void)n;
  init_leaf(c, "weight", NK_PARAM, INIT_NORMAL); /* N(0, 1), as PyTorch */
}

int embedding_shape(ShapeCtx *c, Node *n) {
  const Node *ids = ir_in(c->g, n, 0);
  if (!shape_want_dtype(c, n, 0, DT_I32) || !shape_want_rank(c, n, 0, 1, SQ_MAX_RANK - 1)) return 0;
  int64_t V = ir_int(n, "vocab"), D = ir_int(n, "dim");
  if (!shape_define_input(c, n, 1, shape_make(2, (int64_t[]){V, D}), 0)) return 0;
  Shape s = ids->shape;
  s.d[s.rank++] = D;
  return shape_set(c, n, DT_F32, s);
}

static int check_ids(RefCtx *c, const Node *n, const Tensor *ids, int64_t V) {
  for (int64_t i = 0; i < ids->n; i++)
    if (ids->i[i] < 0 || ids->i[i] >= V)
      return ref_fail(c, n, "id %d at position %lld is outside the vocabulary 0..%lld", ids->i[i], (long long)i,
                      (long long)V - 1);
  return 1;
}

int embedding_ref(RefCtx *c, const Node *n) {
  const Tensor *ids = REF_IN(c, n, 0), *tab = REF_IN(c, n, 1);
  Tensor *y = REF_OUT(c, n);
  int64_t V = tab->d[0], D = tab->d[1];
  if (!check_ids(c, n, ids, V)) return 0;
  for (int64_t i = 0; i < ids->n; i++) memcpy(y->f + i * D, tab->f + (int64_t)ids->i[i] * D, sizeof(float) * (size_t)D);
  return 1;
}

void embedding_grad(GradCtx *c, const Node *n, int dy) {
  if (!grad_needed(c, n->in[1])) return;
  Node *g = GRAD_OP(c, n, OP_embedding_grad, dy, n->in[0]);
  ir_copy_attrs(g, n);
  grad_accum(c, n->in[1], grad_finish(c, g));
}

int embedding_grad_shape(ShapeCtx *c, Node *n) {
  const Node *dy = ir_in(c->g, n, 0);
  int64_t V = ir_int(n, "vocab"), D = dy->shape.d[dy->shape.rank - 1];
  return shape_set(c, n, DT_F32, shape_make(2, (int64_t[]){V, D}));
}

int embedding_grad_ref(RefCtx *c, const Node *n) {
  const Tensor *dy = REF_IN(c, n, 0), *ids = REF_IN(c, n, 1);
  Tensor *g = REF_OUT(c, n);
  int64_t V = g->d[0], D = g->d[1];
  if (!check_ids(c, n, ids, V)) return 0;
  memset(g->f, 0, sizeof(float) * (size_t)g->n);
  for (int64_t i = 0; i < ids->n; i++)
    for (int64_t j = 0; j < D; j++) g->f[(int64_t)ids->i[i] * D + j] += dy->f[i * D + j];
  return 1;
}
