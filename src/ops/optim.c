/* optim.c: in-place optimizer updates. The learning rate is the runtime argument of the step.
 * sgd_update(p, g, buf): d = g + wd*p; buf = momentum*buf + d; p -= lr*(nesterov ? d + momentum*buf : buf)
 *   (PyTorch's SGD without dampening; buf starts at zero, so the first step has buf = d).
 * adam_update(p, g, m, v): AdamW with decoupled weight decay and bias correction, t = step + 1. */
#include <math.h>
#include "rules.h"

static int update_shape(ShapeCtx *c, Node *n) {
  const Node *p = ir_in(c->g, n, 0), *g = ir_in(c->g, n, 1);
  if (!shape_eq(&p->shape, &g->shape)) return shape_mismatch(c, n, "parameter and gradient", p, g);
  for (int i = 2; i < n->nin; i++)
    if (!shape_define_input(c, n, i, p->shape, 0)) return 0;
  n->dtype = DT_VOID;
  n->shape = (Shape){0};
  n->shaped = 1;
  return 1;
}
int sgd_update_shape(ShapeCtx *c, Node *n) { return update_shape(c, n); }
int adam_update_shape(ShapeCtx *c, Node *n) { return update_shape(c, n); }

int sgd_update_ref(RefCtx *c, const Node *n) {
  Tensor *p = REF_IN(c, n, 0), *buf = REF_IN(c, n, 2);
  const Tensor *g = REF_IN(c, n, 1);
  float mom = (float)ir_num(n, "momentum"), wd = (float)ir_num(n, "weight_decay");
  int nesterov = (int)ir_int(n, "nesterov");
  for (int64_t i = 0; i < p->n; i++) {
    float d = g->f[i] + wd * p->f[i];
    buf->f[i] = mom * buf->f[i] + d;
    p->f[i] -= c->lr * (nesterov ? d + mom * buf->f[i] : buf->f[i]);
  }
  return 1;
}

int adam_update_ref(RefCtx *c, const Node *n) {
  Tensor *p = REF_IN(c, n, 0), *m = REF_IN(c, n, 2), *v = REF_IN(c, n, 3);
  const Tensor *g = REF_IN(c, n, 1);
  double b1 = ir_num(n, "beta1"), b2 = ir_num(n, "beta2"), t = (double)(c->step + 1);
  float eps = (float)ir_num(n, "eps"), wd = (float)ir_num(n, "weight_decay");
  float c1 = (float)(1.0 / (1.0 - pow(b1, t))), c2 = (float)(1.0 / (1.0 - pow(b2, t)));
  for (int64_t i = 0; i < p->n; i++) {
    p->f[i] -= c->lr * wd * p->f[i];
    m->f[i] = (float)b1 * m->f[i] + (float)(1 - b1) * g->f[i];
    v->f[i] = (float)b2 * v->f[i] + (float)(1 - b2) * g->f[i] * g->f[i];
    p->f[i] -= c->lr * (m->f[i] * c1) / (sqrtf(v->f[i] * c2) + eps);
  }
  return 1;
}
