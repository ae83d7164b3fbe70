/* test_ir.c: the graph IR text form round-trips, the reader rejects bad text with a line
 * number, the verifier catches broken graphs, and passes run from text. */
#include <stdlib.h>
#include <string.h>
#include "../../src/passes/passes.h"
#include "harness.h"

static char *read_text(const char *rel) {
  char *path = xasprintf("%s/%s", th_root(), rel);
  size_t len;
  const char *err;
  char *s = sq_read_file(path, &len, &err);
  ck_assert_msg(s != NULL, "cannot read %s: %s", path, err);
  free(path);
  return s;
}

static const char *const sources[] = {"examples/mlp.sq", "examples/cnn.sq", "tests/golden/mlp_small.sq",
                                      "tests/golden/conv_small.sq"};

START_TEST(print_read_print_is_identity) {
  char *src = read_text(sources[_i]);
  Graph *g = th_compile(src, 4, NULL);
  ck_assert_msg(g != NULL, "%s does not compile", sources[_i]);
  char *a = ir_print(g), *err = NULL;
  Graph *r = ir_read(a, &err);
  ck_assert_msg(r != NULL, "%s: %s", sources[_i], err);
  char *b = ir_print(r);
  ck_assert_str_eq(a, b);
  ck_assert_msg(ir_verify(r, 1, &err), "%s", err);
  free(a);
  free(b);
  free(src);
  ir_free(g);
  ir_free(r);
}
END_TEST

static const char *const header = "graph t batch=2\noptimizer sgd_update {momentum=0.9, weight_decay=0, nesterov=0}\n"
                                  "quant bits=32 groups=auto norm=l2 weights=per_tensor\n";

START_TEST(reader_rejects_bad_text) {
  static const struct { const char *body; const char *msg; } bad[] = {
      {"%x = input : f32[2,3]\n%y = relu(%z) : f32[2,3]\n", "line 5: unknown node"},
      {"%x = input : f32[2,3]\n%y = frobnicate(%x) : f32[2,3]\n", "line 5: unknown op"},
      {"%x = input : f32[2,3]\n%y = relu(%x, %x) : f32[2,3]\n", "line 5: wrong number of inputs"},
      {"%x = input : f32[2,3]\n%x = relu(%x) : f32[2,3]\n", "line 5: duplicate node name"},
      {"%x = input : f64[2,3]\n", "line 4: unknown dtype"},
      {"%x = input : f32[2,0]\n", "line 4: integer out of range"},
      {"%x = input : f32[2,3]\n%y = dropout(%x) {q=1} : f32[2,3]\n", "line 5: unknown attribute"},
      {"%x = input : f32[2,3] extra\n", "line 4: unexpected text at end of line"},
      {"%x = input : f32[1,2,3,4,5,6,7]\n", "line 4: rank too large"},
      {"loss %nothing\n", "line 4: unknown node"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *text = xasprintf("%s%s", header, bad[i].body), *err = NULL;
    Graph *g = ir_read(text, &err);
    ck_assert_msg(g == NULL, "accepted bad text %zu", i);
    ck_assert_msg(strstr(err, bad[i].msg) != NULL, "case %zu: got '%s', want '%s'", i, err, bad[i].msg);
    free(err);
    free(text);
  }
}
END_TEST

START_TEST(verifier_catches_broken_graphs) {
  static const struct { const char *body; const char *msg; } bad[] = {
      {"%x = input : f32[2,3]\n%y = relu(%x) : f32[2,4]\n", "type differs from its shape rule"},
      {"%x = input : f32[2,3]\n%y = relu(%x) : f32[2,3] bwd\n%z = relu(%y) : f32[2,3]\n", "depends on a later phase"},
      {"%x = input : f32[2,3]\n%y = add(%x, %x) : f32[2,3] upd\n", "only they have the upd role"},
      {"%x = input : f32[2,3]\n%g = input : f32[2,3]\n%m = state zeros : f32[2,3]\n"
       "%u = sgd_update(%x, %g, %m) {momentum=0.9, weight_decay=0, nesterov=0} : void upd\n",
       "updates a non-parameter"},
      {"%x = input : f32[2,3]\n%y = relu(%x) : f32[2,3]\nloss %y\n", "loss must be a scalar f32"},
      {"%x = input : f32[2,3]\n%y = add(%x, %x) : ?\n", "has no type"},
      {"arena bytes=64\n%x = input : f32[2,3]\n%y = relu(%x) : f32[2,3] @arena+48\n", "its place in the arena is outside it"},
      {"arena bytes=64\n%x = input : f32[2,3] @arena+0\n", "its place in the arena is outside it"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *text = xasprintf("%s%s", header, bad[i].body), *err = NULL;
    Graph *g = ir_read(text, &err);
    ck_assert_msg(g != NULL, "case %zu does not read: %s", i, err);
    ck_assert_msg(!ir_verify(g, 1, &err), "verifier accepted case %zu", i);
    ck_assert_msg(strstr(err, bad[i].msg) != NULL, "case %zu: got '%s', want '%s'", i, err, bad[i].msg);
    free(err);
    free(text);
    ir_free(g);
  }
}
END_TEST

/* memplan: tensors whose lifetimes (writer to last reader, in node order) overlap never share
 * a byte, except a view (a flatten or reshape) and the tensor whose bytes it is; the loss, the
 * outputs and the leaves keep buffers of their own; and the arena is smaller than the tensors it
 * holds. The CNN flattens its pooled maps and reshapes their gradient back: views both. */
static int view_root(const Graph *g, int id) {
  while (ir_is_view(g, ir_node(g, id))) id = ir_node(g, id)->in[0];
  return id;
}

START_TEST(memplan_shares_only_disjoint_lifetimes) {
  char *src = read_text(sources[_i]);
  Graph *g = th_compile(src, 16, NULL);
  ck_assert(g != NULL);
  int n = g->nodes.n, views = 0;
  int *last = calloc((size_t)n, sizeof(int));
  for (int id = 0; id < n; id++)
    for (int i = 0; i < ir_node(g, id)->nin; i++) last[ir_node(g, id)->in[i]] = id;
  int64_t held = 0;
  for (int a = 0; a < n; a++) {
    const Node *x = ir_node(g, a);
    if (x->arena < 0) continue;
    ck_assert_msg(x->kind == NK_OP && a != g->loss, "%s is in the arena", x->name);
    for (int o = 0; o < g->outputs.n; o++) ck_assert(g->outputs.v[o].node != a);
    if (ir_is_view(g, x)) {
      views++;
      continue; /* its bytes are its root's, checked below against everything alive with the view */
    }
    held += ir_tensor_bytes(x);
  }
  for (int a = 0; a < n; a++) {
    const Node *x = ir_node(g, a);
    if (x->arena < 0) continue;
    for (int b = a + 1; b < n; b++) {
      const Node *y = ir_node(g, b);
      if (y->arena < 0 || b > last[a] || view_root(g, a) == view_root(g, b))
        continue; /* b is written after a's last reader, or they are views of the same bytes */
      int apart = x->arena + ir_tensor_bytes(x) <= y->arena || y->arena + ir_tensor_bytes(y) <= x->arena;
      ck_assert_msg(apart, "%s and %s are alive together and share bytes", x->name, y->name);
    }
  }
  if (strstr(sources[_i], "cnn")) ck_assert_int_eq(views, 2);
  ck_assert_msg(g->arena_bytes > 0 && g->arena_bytes < held, "arena %lld bytes for %lld bytes of tensors",
                (long long)g->arena_bytes, (long long)held);
  free(last);
  free(src);
  ir_free(g);
}
END_TEST

/* The shapes and autodiff passes give the same result from text as from source. */
START_TEST(passes_run_from_text) {
  char *src = read_text("tests/golden/mlp_small.sq");
  Graph *full = th_compile(src, 4, NULL);
  char *want = ir_print(full);
  const char *text = "graph mlp_small batch=4\n"
                     "optimizer adam_update {beta1=0.8, beta2=0.999, eps=1e-08, weight_decay=0}\n"
                     "quant bits=32 groups=auto norm=l1 weights=per_tensor\n"
                     "%x = input : f32[4,6]\n%y = label : i32[4]\n"
                     "%h.weight = param uniform : ?\n%h.bias = param uniform : ?\n"
                     "%h = linear(%x, %h.weight, %h.bias) {out=5} : ?\n"
                     "%a.batchnorm.weight = param ones : ?\n%a.batchnorm.bias = param zeros : ?\n"
                     "%a.batchnorm.running_mean = state zeros : ?\n%a.batchnorm.running_var = state ones : ?\n"
                     "%a.batchnorm = batchnorm(%h, %a.batchnorm.weight, %a.batchnorm.bias, %a.batchnorm.running_mean, "
                     "%a.batchnorm.running_var) {momentum=0.1, eps=1e-05} : ?\n"
                     "%a = relu(%a.batchnorm) : ?\n"
                     "%z.dropout = dropout(%a) {p=0.25, stream=0} : ?\n"
                     "%z.weight = param uniform : ?\n%z.bias = param uniform : ?\n"
                     "%z = linear(%z.dropout, %z.weight, %z.bias) {out=3} : ?\n"
                     "%loss = cross_entropy(%z, %y) : ?\nloss %loss\noutput logits %z\n";
  char *err = NULL;
  Graph *g = ir_read(text, &err);
  ck_assert_msg(g != NULL, "%s", err);
  ck_assert_msg(ir_verify(g, 0, &err), "%s", err);
  Diag d;
  diag_init(&d, "text", NULL, 0, stderr);
  PassCtx pc = {&d, NULL, stderr};
  ck_assert(pipeline_run(g, &pc));
  char *got = ir_print(g);
  ck_assert_str_eq(got, want);
  free(got);
  free(want);
  free(src);
  ir_free(g);
  ir_free(full);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ir");
  TCase *t = tcase_create("text");
  tcase_add_loop_test(t, print_read_print_is_identity, 0, sizeof sources / sizeof *sources);
  tcase_add_test(t, reader_rejects_bad_text);
  tcase_add_test(t, verifier_catches_broken_graphs);
  tcase_add_test(t, passes_run_from_text);
  tcase_add_loop_test(t, memplan_shares_only_disjoint_lifetimes, 0, sizeof sources / sizeof *sources);
  suite_add_tcase(s, t);
  return th_run(s);
}
