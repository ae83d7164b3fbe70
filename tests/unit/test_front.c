/* test_front.c: what sema makes of programs that are right: positional and named attributes,
 * defaults, parameter names, nesting, the train and quant blocks, and warnings that do not
 * stop compilation. (Programs that are wrong live in tests/errors.) */
#include <stdlib.h>
#include <string.h>
#include "harness.h"

#define PROLOGUE "model m {\n  input x : f32[B, 1, 8, 8]\n  label y : i32[B]\n"

START_TEST(positional_and_named_attributes) {
  Graph *g = th_compile(PROLOGUE "  c = conv2d(x, 4, 3, padding = 1)\n  z = linear(flatten(c), 10)\n"
                                 "  loss = cross_entropy(z, y)\n}\n", 2, NULL);
  ck_assert(g != NULL);
  const Node *c = ir_node(g, th_node(g, "c"));
  ck_assert_int_eq(ir_int(c, "out"), 4);
  ck_assert_int_eq(ir_int(c, "kernel"), 3);
  ck_assert_int_eq(ir_int(c, "padding"), 1);
  ck_assert_int_eq(ir_int(c, "stride"), 1); /* default */
  ck_assert_int_eq(ir_int(c, "groups"), 1);
  ck_assert_int_eq(c->shape.rank, 4);
  ck_assert_int_eq(c->shape.d[1], 4);
  ck_assert_int_eq(c->shape.d[2], 8);
  ck_assert_int_eq(ir_node(g, th_node(g, "c.weight"))->shape.d[3], 3);
  th_node(g, "z.flatten"); /* nested calls are named after their statement */
  ir_free(g);
}
END_TEST

START_TEST(batch_symbol_and_reshape) {
  Graph *g = th_compile(PROLOGUE "  r = reshape(x, [B, -1])\n  z = linear(r, 10)\n  loss = cross_entropy(z, y)\n}\n", 3,
                        NULL);
  ck_assert(g != NULL);
  const Node *r = ir_node(g, th_node(g, "r"));
  ck_assert_int_eq(r->shape.d[0], 3);
  ck_assert_int_eq(r->shape.d[1], 64);
  ir_free(g);
}
END_TEST

START_TEST(train_and_quant_blocks) {
  const char *src = PROLOGUE "  z = linear(flatten(x), 10)\n  loss = cross_entropy(z, y)\n}\n"
                             "train { optimizer = adamw(beta2 = 0.99) }\n"
                             "quant { bits = 6  grad = shiftquant(groups = 3)  norm = l2  weights = per_tensor\n"
                             "        layer z { bits = 5 } }\n";
  Graph *g = th_compile(src, 2, NULL);
  ck_assert(g != NULL);
  ck_assert_int_eq(g->optimizer.op, OP_adam_update);
  ck_assert_double_eq_tol(ir_num(&g->optimizer, "beta2"), 0.99, 1e-12);
  ck_assert_double_eq_tol(ir_num(&g->optimizer, "weight_decay"), 0.01, 1e-12); /* AdamW's default */
  ck_assert_int_eq(g->quant.bits, 6);
  ck_assert_int_eq(g->quant.groups, 3);
  ck_assert_int_eq(g->quant.norm, NORM_L2);
  ck_assert_int_eq(g->quant.per_channel_weights, 0);
  ck_assert_int_eq(ir_node(g, th_node(g, "z"))->op, OP_qlinear);
  ck_assert_int_eq(ir_int(ir_node(g, th_node(g, "z")), "bits"), 5);
  ck_assert_int_eq(g->quant.layers.n, 1);
  ck_assert_str_eq(g->quant.layers.v[0].layer, "z");
  ck_assert_int_eq(g->quant.layers.v[0].bits, 5);
  /* every parameter gets an Adam update with two state tensors */
  int updates = 0;
  for (int i = 0; i < g->nodes.n; i++) updates += ir_node(g, i)->op == OP_adam_update;
  ck_assert_int_eq(updates, 2);
  th_node(g, "z.weight.adam_v");
  ir_free(g);
}
END_TEST

START_TEST(warnings_do_not_fail) {
  char *diag;
  Graph *g = th_compile(PROLOGUE "  unused = linear(flatten(x), 3)\n  z = linear(flatten(x), 10)\n"
                                 "  loss = cross_entropy(z, y)\n}\n", 2, &diag);
  ck_assert(g != NULL);
  ck_assert_msg(strstr(diag, "test.sq:4:12: warning: the parameters of 'unused' (linear) do not affect the loss"),
                "%s", diag);
  /* an unused parameter gets no gradient and no update */
  ck_assert_int_lt(ir_find(g, "unused.weight.update"), 0);
  th_node(g, "z.weight.update");
  free(diag);
  ir_free(g);
}
END_TEST

START_TEST(alias_and_output) {
  Graph *g = th_compile(PROLOGUE "  f = flatten(x)\n  same = f\n  output logits = linear(same, 10)\n"
                                 "  loss = cross_entropy(logits, y)\n}\n", 2, NULL);
  ck_assert(g != NULL);
  ck_assert_int_eq(g->outputs.n, 1);
  ck_assert_str_eq(g->outputs.v[0].name, "logits");
  ck_assert_int_eq(ir_node(g, g->outputs.v[0].node)->in[0], th_node(g, "f"));
  ir_free(g);
}
END_TEST

START_TEST(diagnostic_shows_line_and_caret) {
  char *diag;
  Graph *g = th_compile("model m {\n\tinput x : f32[B, 4]\n\tz = relu(q)\n}\n", 2, &diag);
  ck_assert(g == NULL);
  ck_assert_str_eq(diag, "test.sq:3:11: error: unknown name 'q'\n\tz = relu(q)\n\t         ^\n"
                         "test.sq:4:1: error: model 'm' has no 'loss': assign the scalar to minimise to 'loss'\n"
                         "}\n^\n");
  free(diag);
}
END_TEST

int main(void) {
  Suite *s = suite_create("front");
  TCase *t = tcase_create("sema");
  tcase_add_test(t, positional_and_named_attributes);
  tcase_add_test(t, batch_symbol_and_reshape);
  tcase_add_test(t, train_and_quant_blocks);
  tcase_add_test(t, warnings_do_not_fail);
  tcase_add_test(t, alias_and_output);
  tcase_add_test(t, diagnostic_shows_line_and_caret);
  suite_add_tcase(s, t);
  return th_run(s);
}
