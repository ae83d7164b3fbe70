/* test_ops.c: the op table is complete (every op has a shape rule, a reference body, and a
 * gradient rule or an explicit "no gradient"; every op DESIGN.md lists exists), and every
 * gradient rule matches central finite differences of the reference executor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../../runtime/rng.h"
#include "../../src/front/ast.h"
#include "../../src/front/sema.h"
#include "../../src/passes/passes.h"
#include "harness.h"

/* One finite-difference case per differentiable op (more where an op has several forms);
 * l1_* cases compile with norm = l1, the others with norm = l2.
 * f32 inputs become parameters (so they get gradients); the loss is the op itself when it is a
 * scalar, else mse against a random target t. Tolerance: |fd - analytic| <= atol + rtol*|analytic|. */
typedef struct {
  const char *op, *decls, *expr;
  int label_mod; /* i32 labels are drawn from 0..label_mod-1 */
  double atol, rtol;
} GradCase;

static const GradCase cases[] = {
    {"linear", "input x : f32[2,4]  label t : f32[2,3]", "linear(x, 3)", 0, 1e-3, 1e-2},
    {"linear", "input x : f32[2,2,4]  label t : f32[2,2,3]", "linear(x, 3)", 0, 1e-3, 1e-2},
    {"matmul", "input a : f32[2,3]  input b : f32[3,4]  label t : f32[2,4]", "matmul(a, b)", 0, 1e-3, 1e-2},
    {"matmul", "input a : f32[3,2]  input b : f32[4,3]  label t : f32[2,4]", "matmul(a, b, trans_a = 1, trans_b = 1)", 0, 1e-3, 1e-2},
    {"matmul", "input a : f32[2,2,3]  input b : f32[2,3,2]  label t : f32[2,2,2]", "matmul(a, b)", 0, 1e-3, 1e-2},
    {"matmul", "input a : f32[2,3,2]  input b : f32[3,4]  label t : f32[2,2,4]", "matmul(a, b, trans_a = 1)", 0, 1e-3, 1e-2},
    {"matmul", "input a : f32[2,3]  input b : f32[2,4,3]  label t : f32[2,2,4]", "matmul(a, b, trans_b = 1)", 0, 1e-3, 1e-2},
    {"conv2d", "input x : f32[2,2,5,5]  label t : f32[2,3,3,3]", "conv2d(x, 3, kernel = 3, stride = 2, padding = 1)", 0, 1e-3, 1e-2},
    {"conv2d", "input x : f32[1,4,4,4]  label t : f32[1,4,4,4]", "conv2d(x, 4, kernel = 3, padding = 1, groups = 2)", 0, 1e-3, 1e-2},
    {"maxpool2d", "input x : f32[1,2,4,4]  label t : f32[1,2,2,2]", "maxpool2d(x, kernel = 2)", 0, 1e-3, 1e-2},
    {"maxpool2d", "input x : f32[1,1,5,5]  label t : f32[1,1,3,3]", "maxpool2d(x, kernel = 3, stride = 2, padding = 1)", 0, 1e-3, 1e-2},
    {"avgpool2d", "input x : f32[1,2,4,4]  label t : f32[1,2,4,4]", "avgpool2d(x, kernel = 3, stride = 1, padding = 1)", 0, 1e-3, 1e-2},
    {"global_avgpool", "input x : f32[2,3,2,2]  label t : f32[2,3]", "global_avgpool(x)", 0, 1e-3, 1e-2},
    {"flatten", "input x : f32[2,2,3]  label t : f32[2,6]", "flatten(x)", 0, 1e-3, 1e-2},
    {"reshape", "input x : f32[2,6]  label t : f32[3,2,2]", "reshape(x, [3, -1, 2])", 0, 1e-3, 1e-2},
    {"transpose", "input x : f32[2,3,4]  label t : f32[3,4,2]", "transpose(x, perm = [1, 2, 0])", 0, 1e-3, 1e-2},
    {"transpose", "input x : f32[2,3,4]  label t : f32[2,4,3]", "transpose(x)", 0, 1e-3, 1e-2},
    {"add", "input a : f32[2,3]  input b : f32[2,3]  label t : f32[2,3]", "add(a, b)", 0, 1e-3, 1e-2},
    {"add", "input a : f32[2,2,3]  input b : f32[2,3]  label t : f32[2,2,3]", "add(a, b)", 0, 1e-3, 1e-2},
    {"mul", "input a : f32[2,3]  input b : f32[2,3]  label t : f32[2,3]", "mul(a, b)", 0, 1e-3, 1e-2},
    {"mul", "input a : f32[2,2,3]  input b : f32[3]  label t : f32[2,2,3]", "mul(a, b)", 0, 1e-3, 1e-2},
    {"relu", "input x : f32[2,5]  label t : f32[2,5]", "relu(x)", 0, 1e-3, 1e-2},
    {"gelu", "input x : f32[2,5]  label t : f32[2,5]", "gelu(x)", 0, 1e-3, 1e-2},
    {"dropout", "input x : f32[4,5]  label t : f32[4,5]", "dropout(x, p = 0.3)", 0, 1e-3, 1e-2},
    {"softmax", "input x : f32[2,5]  label t : f32[2,5]", "softmax(x)", 0, 1e-3, 2e-2},
    {"l2_batchnorm", "input x : f32[4,3]  label t : f32[4,3]", "batchnorm(x)", 0, 2e-3, 2e-2},
    {"l2_batchnorm", "input x : f32[2,3,2,2]  label t : f32[2,3,2,2]", "batchnorm(x)", 0, 2e-3, 2e-2},
    {"layernorm", "input x : f32[3,5]  label t : f32[3,5]", "layernorm(x)", 0, 2e-3, 2e-2},
    {"l1_batchnorm", "input x : f32[4,3]  label t : f32[4,3]", "batchnorm(x)", 0, 2e-3, 2e-2},
    {"l1_batchnorm", "input x : f32[2,3,2,2]  label t : f32[2,3,2,2]", "batchnorm(x)", 0, 2e-3, 2e-2},
    {"l1_layernorm", "input x : f32[3,5]  label t : f32[3,5]", "layernorm(x)", 0, 2e-3, 2e-2},
    {"embedding", "input ids : i32[2,3]  label t : f32[2,3,4]", "embedding(ids, vocab = 5, dim = 4)", 5, 1e-3, 1e-2},
    {"cross_entropy", "input z : f32[3,4]  label t : i32[3]", "cross_entropy(z, t)", 4, 1e-3, 1e-2},
    {"mse", "input a : f32[2,3]  label t : f32[2,3]", "mse(a, t)", 0, 1e-3, 1e-2},
};
enum { NCASES = sizeof cases / sizeof *cases };

/* Quantized ops are piecewise constant, so finite differences say nothing; their gradient is
 * the straight-through estimate. These cases compile a float case at 8 bits (G = 1) and check
 * that the gradients are those of the float graph up to quantization error: relative L2
 * distance below 6%. ops names the integer op and the quantize op the case exercises. */
typedef struct { int fd_case; const char *ops[2]; } SteCase;
static const SteCase ste_cases[] = {
    {0, {"qlinear", "quantize"}},
    {1, {"qlinear", "quantize"}},
    {2, {"qmatmul", "quantize"}},
    {5, {"qmatmul", "quantize"}},
    {7, {"qconv2d", "quantize"}},
    {8, {"qconv2d", "quantize"}},
};
enum { NSTE = sizeof ste_cases / sizeof *ste_cases };

START_TEST(op_table_is_complete) {
  static const char *const design_ops[] = {"linear", "matmul", "conv2d", "maxpool2d", "avgpool2d", "global_avgpool",
                                           "flatten", "reshape", "transpose", "add", "mul", "relu", "gelu", "softmax",
                                           "batchnorm", "layernorm", "dropout", "embedding", "cross_entropy", "mse"};
  for (size_t i = 0; i < sizeof design_ops / sizeof *design_ops; i++) {
    OpCode op = op_lookup(design_ops[i]);
    ck_assert_msg(op != OP_COUNT, "op %s is missing from ops.def", design_ops[i]);
    ck_assert_msg(op_info[op].user_args >= 0, "op %s is not callable from .sq", design_ops[i]);
  }
  for (int i = 0; i < OP_COUNT; i++) {
    const OpInfo *oi = &op_info[i];
    ck_assert_msg(oi->shape != NULL, "op %s has no shape rule", oi->name);
    ck_assert_msg(oi->ref != NULL, "op %s has no reference body", oi->name);
    /* batchnorm never reaches autodiff: the l1norm pass makes it l1_ or l2_batchnorm */
    ck_assert_msg(oi->user_args < 0 || oi->grad != NULL || i == OP_batchnorm, "user op %s has no gradient rule", oi->name);
    ck_assert_msg(oi->user_args <= oi->nin, "op %s: more user arguments than inputs", oi->name);
    ck_assert_msg(oi->init != NULL || oi->user_args < 0 || oi->user_args == oi->nin,
                  "op %s has inputs of its own but no init to create them", oi->name);
    ck_assert_int_eq(op_lookup(oi->name), i);
    for (int a = 0; a < oi->nattr; a++) {
      const AttrSpec *s = &oi->attrs[a];
      ck_assert_int_eq(op_attr_index((OpCode)i, s->name), a);
      ck_assert_msg(s->lo <= s->hi, "op %s attribute %s: empty range", oi->name, s->name);
    }
    if (oi->grad) {
      int covered = 0;
      for (int c = 0; c < NCASES; c++) covered |= !strcmp(cases[c].op, oi->name);
      for (int c = 0; c < NSTE; c++)
        for (int k = 0; k < 2; k++) covered |= !strcmp(ste_cases[c].ops[k], oi->name);
      ck_assert_msg(covered, "op %s has a gradient rule but no finite-difference or straight-through case", oi->name);
    }
  }
}
END_TEST

static Graph *compile_case(const GradCase *gc, int bits) {
  char *src = xasprintf("model t {\n  %s\n  y = %s\n  loss = %s\n  output o = y\n}\n", gc->decls, gc->expr,
                        strstr(gc->decls, "label t : f32") && strcmp(gc->op, "mse") ? "mse(y, t)" : "y");
  Diag d;
  diag_init(&d, gc->op, src, strlen(src), stderr);
  Program *p = parse_program(&d);
  ck_assert_msg(p != NULL, "case %s does not parse:\n%s", gc->op, src);
  Graph *g = sema_build(p, &d, 2);
  program_free(p);
  ck_assert_msg(g != NULL, "case %s fails sema:\n%s", gc->op, src);
  for (int i = 0; i < g->nodes.n; i++) {
    Node *n = ir_node(g, i);
    if (n->kind == NK_INPUT && n->dtype == DT_F32) n->kind = NK_PARAM, n->init = INIT_NORMAL;
  }
  g->quant.norm = strncmp(gc->op, "l1_", 3) ? NORM_L2 : NORM_L1;
  g->quant.bits = bits;
  PassCtx pc = {&d, NULL, stderr};
  ck_assert_msg(pipeline_run(g, &pc), "case %s fails the passes", gc->op);
  free(src);
  return g;
}

static void fill_labels(Interp *it, const Graph *g, int label_mod) {
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = ir_node(g, i);
    if (n->kind != NK_LABEL && n->kind != NK_INPUT) continue;
    Tensor *t = interp_tensor(it, i);
    for (int64_t e = 0; e < t->n; e++) {
      if (t->f) t->f[e] = rng_normal(7, (uint64_t)i, 0, (uint64_t)e);
      else t->i[e] = (int32_t)(rng_bits(7, (uint64_t)i, 0, (uint64_t)e) % (uint64_t)label_mod);
    }
  }
}

static double loss_at(Interp *it, const Graph *g) {
  ck_assert_msg(interp_forward(it, 1), "%s", interp_error(it));
  return interp_tensor(it, g->loss)->f[0];
}

START_TEST(gradients_match_finite_differences) {
  const GradCase *gc = &cases[_i];
  Graph *g = compile_case(gc, 32);
  Interp *it = interp_new(g, 42);
  fill_labels(it, g, gc->label_mod);
  ck_assert_msg(interp_gradients(it), "%s", interp_error(it));
  /* every gradient first: the forward passes below reuse the memory plan's shared bytes */
  float **grads = xmalloc(sizeof(float *) * (size_t)g->nodes.n);
  for (int u = 0; u < g->nodes.n; u++) {
    const Node *upd = ir_node(g, u);
    grads[u] = NULL;
    if (upd->role != ROLE_UPD) continue;
    const Tensor *grad = interp_tensor(it, upd->in[1]);
    grads[u] = xmalloc(sizeof(float) * (size_t)grad->n);
    memcpy(grads[u], grad->f, sizeof(float) * (size_t)grad->n);
  }
  const double eps = 1e-3;
  int checked = 0;
  for (int u = 0; u < g->nodes.n; u++) {
    const Node *upd = ir_node(g, u);
    if (upd->role != ROLE_UPD) continue;
    Tensor *p = interp_tensor(it, upd->in[0]);
    float *analytic = grads[u];
    for (int64_t e = 0; e < p->n; e++) {
      float v = p->f[e];
      p->f[e] = (float)(v + eps);
      double lp = loss_at(it, g);
      p->f[e] = (float)(v - eps);
      double lm = loss_at(it, g);
      p->f[e] = v;
      double fd = (lp - lm) / (2 * eps), an = analytic[e];
      ck_assert_msg(fabs(fd - an) <= gc->atol + gc->rtol * fabs(an),
                    "%s (%s): d loss / d %s[%lld]: finite difference %.6g, gradient rule %.6g", gc->op, gc->expr,
                    ir_in(g, upd, 0)->name, (long long)e, fd, an);
      checked++;
    }
    free(analytic);
  }
  free(grads);
  ck_assert_msg(checked > 0, "case %s checked nothing", gc->op);
  interp_free(it);
  ir_free(g);
}
END_TEST

/* Gradients of every parameter of the case, in node order, concatenated. */
static double *all_grads(const GradCase *gc, int bits, int64_t *count, const Graph **keep) {
  Graph *g = compile_case(gc, bits);
  Interp *it = interp_new(g, 42);
  fill_labels(it, g, gc->label_mod);
  ck_assert_msg(interp_gradients(it), "%s", interp_error(it));
  double *out = NULL;
  int64_t n = 0;
  for (int u = 0; u < g->nodes.n; u++) {
    const Node *upd = ir_node(g, u);
    if (upd->role != ROLE_UPD) continue;
    const Tensor *t = interp_tensor(it, upd->in[1]);
    out = xrealloc(out, sizeof(double) * (size_t)(n + t->n));
    for (int64_t e = 0; e < t->n; e++) out[n++] = t->f[e];
  }
  interp_free(it);
  *count = n;
  *keep = g;
  return out;
}

START_TEST(quantized_gradients_are_straight_through) {
  const SteCase *sc = &ste_cases[_i];
  const GradCase *gc = &cases[sc->fd_case];
  const Graph *gf, *gq;
  int64_t nf, nq;
  double *f = all_grads(gc, 32, &nf, &gf), *q = all_grads(gc, 8, &nq, &gq);
  int found = 0;
  for (int i = 0; i < gq->nodes.n; i++) found |= ir_node(gq, i)->op == op_lookup(sc->ops[0]);
  ck_assert_msg(found, "case %s at 8 bits has no %s", gc->expr, sc->ops[0]);
  ck_assert_int_eq(nf, nq);
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < nf; i++) diff += (f[i] - q[i]) * (f[i] - q[i]), norm += f[i] * f[i];
  ck_assert_msg(sqrt(diff / norm) < 0.06, "%s: 8-bit gradients are %.3f (relative L2) from float", gc->expr,
                sqrt(diff / norm));
  free(f);
  free(q);
  ir_free((Graph *)gf);
  ir_free((Graph *)gq);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ops");
  TCase *t = tcase_create("table");
  tcase_add_test(t, op_table_is_complete);
  suite_add_tcase(s, t);
  t = tcase_create("gradcheck");
  tcase_add_loop_test(t, gradients_match_finite_differences, 0, NCASES);
  suite_add_tcase(s, t);
  t = tcase_create("straight-through");
  tcase_add_loop_test(t, quantized_gradients_are_straight_through, 0, NSTE);
  suite_add_tcase(s, t);
  return th_run(s);
}
