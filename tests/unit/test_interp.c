/* test_interp.c: the reference executor is deterministic, initialises from the seed, applies
 * the optimizers as documented, refuses NaN and bad labels without touching parameters, and
 * trains examples/mlp.sq on a slice of Fashion-MNIST. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../../runtime/numerics.h"
#include "../../runtime/rng.h"
#include "../../src/ops/rules.h"
#include "../../tools/data/fashion_mnist.h"
#include "harness.h"

static char *read_source(const char *rel) {
  char *path = xasprintf("%s/%s", th_root(), rel);
  size_t len;
  const char *err;
  char *s = sq_read_file(path, &len, &err);
  ck_assert_msg(s != NULL, "cannot read %s: %s", path, err);
  free(path);
  return s;
}

static Graph *mlp(int64_t batch) {
  char *src = read_source("examples/mlp.sq");
  Graph *g = th_compile(src, batch, NULL);
  free(src);
  ck_assert(g != NULL);
  return g;
}

static void random_batch(Interp *it, const Graph *g, int64_t step) {
  Tensor *x = interp_tensor(it, th_node(g, "x")), *y = interp_tensor(it, th_node(g, "y"));
  uint64_t classes = (uint64_t)ir_node(g, g->outputs.v[0].node)->shape.d[1];
  for (int64_t i = 0; i < x->n; i++) x->f[i] = rng_normal(3, 1, step, (uint64_t)i);
  for (int64_t i = 0; i < y->n; i++) y->i[i] = (int32_t)(rng_bits(3, 2, step, (uint64_t)i) % classes);
}

/* Concatenated bits of every parameter and state tensor. */
static size_t snapshot(Interp *it, const Graph *g, unsigned char **out) {
  size_t total = 0;
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = ir_node(g, i);
    if (n->kind == NK_PARAM || n->kind == NK_STATE) total += sizeof(float) * (size_t)interp_tensor(it, i)->n;
  }
  unsigned char *buf = xmalloc(total), *p = buf;
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = ir_node(g, i);
    if (n->kind != NK_PARAM && n->kind != NK_STATE) continue;
    Tensor *t = interp_tensor(it, i);
    memcpy(p, t->f, sizeof(float) * (size_t)t->n);
    p += sizeof(float) * (size_t)t->n;
  }
  *out = buf;
  return total;
}

static size_t train(Graph *g, uint64_t seed, int steps, unsigned char **bits) {
  Interp *it = interp_new(g, seed);
  for (int s = 0; s < steps; s++) {
    random_batch(it, g, s);
    float loss;
    ck_assert_msg(interp_train_step(it, 0.05f, &loss), "%s", interp_error(it));
  }
  size_t n = snapshot(it, g, bits);
  interp_free(it);
  return n;
}

/* The graph as it stood before the fuse pass: the last dump before it that is not "(unchanged)".
 * bits: as CompileOptions' (0: the model's quant block). */
static Graph *before_fuse(const char *rel, int64_t batch, NormKind norm, int bits) {
  char *src = read_source(rel), *text = NULL;
  size_t len;
  FILE *mem = open_memstream(&text, &len);
  CompileOptions o;
  compile_options_default(&o);
  o.batch = batch, o.dump = mem, o.dump_after = "all", o.norm = (int)norm, o.bits = bits;
  Graph *full = compile_source(rel, src, strlen(src), &o, mem);
  fclose(mem);
  ck_assert(full != NULL);
  char *fuse = strstr(text, "; after fuse\n"), *at = NULL;
  ck_assert(fuse != NULL);
  *fuse = 0;
  for (char *p = strstr(text, "; after "); p; p = strstr(p + 1, "; after ")) {
    char *body = strchr(p, '\n') + 1;
    if (strncmp(body, "(unchanged)", 11)) at = body;
  }
  ck_assert(at != NULL);
  char *end = strstr(at, "; after ");
  if (end) *end = 0;
  char *rerr = NULL;
  Graph *g = ir_read(at, &rerr);
  ck_assert_msg(g != NULL, "%s", rerr);
  ir_free(full);
  free(text);
  free(src);
  return g;
}

static int count_op(const Graph *g, OpCode op) {
  int k = 0;
  for (int i = 0; i < g->nodes.n; i++) k += ir_node(g, i)->kind == NK_OP && ir_node(g, i)->op == op;
  return k;
}

static Graph *fused_graph(const char *rel, const char *src, int64_t batch, NormKind norm, int bits) {
  CompileOptions o;
  compile_options_default(&o);
  o.batch = batch, o.norm = (int)norm, o.bits = bits;
  Graph *g = compile_source(rel, src, strlen(src), &o, stderr);
  ck_assert(g != NULL);
  return g;
}

/* whether an L1 batchnorm's statistics read a convolution's s16 sums: integer statistics
 * (DESIGN §4), which the unfused graph's float sums do not reproduce */
static int integer_statistics(const Graph *g) {
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = ir_node(g, i);
    if (n->kind == NK_OP && n->op == OP_batchnorm_stats && !ir_int(n, "l2") && ir_in(g, n, 0)->dtype == DT_S16) return 1;
  }
  return 0;
}

/* fuse folds the relus into their producers and batchnorms with the max pooling after them,
 * keeps convolutions' sums as s16, and memplan shares tensor memory (and makes flattens and
 * reshapes views, linear_rank3's at 4 bits of quantized tensors with their scales): none of it may change a
 * bit of what training computes, except that L1 statistics of s16 sums are integer sums. So
 * each model runs as written (L1), or with L2 batchnorms where its L1 statistics would be
 * integer sums. */
START_TEST(fuse_and_memplan_keep_the_bits) {
  static const struct { const char *path; int pools, bits; } models[] = {
      {"examples/mlp.sq", 0, 0},           {"examples/cnn.sq", 2, 0},           {"tests/models/bn_pool.sq", 2, 0},
      {"tests/models/pool_rows.sq", 1, 0}, {"tests/models/linear_rank3.sq", 0, 4}};
  int integer = 0;
  for (int m = 0; m < (int)(sizeof models / sizeof *models); m++) {
    NormKind norm = NORM_L1;
    char *src = read_source(models[m].path);
    Graph *fused = fused_graph(models[m].path, src, 2, norm, models[m].bits);
    if (integer_statistics(fused)) {
      integer++, norm = NORM_L2;
      ir_free(fused);
      fused = fused_graph(models[m].path, src, 2, norm, models[m].bits);
    }
    Graph *plain = before_fuse(models[m].path, 2, norm, models[m].bits);
    int relus = count_op(fused, OP_relu), folded = 0, pools = models[m].pools;
    for (int i = 0; i < fused->nodes.n; i++) {
      const Node *n = ir_node(fused, i);
      int op = n->kind == NK_OP ? (int)n->op : -1;
      folded += (op == OP_l1_batchnorm || op == OP_l2_batchnorm || op == OP_qlinear || op == OP_batchnorm_pool) && ir_int(n, "relu");
    }
    ck_assert_msg(relus == 0 && folded > 0 && fused->arena_bytes > 0, "%s: %d relu nodes left, %d folded", models[m].path,
                  relus, folded);
    /* each fused batchnorm: its forward pass, dparams and dx, and no maxpool or full-size gradient left */
    ck_assert_msg(count_op(fused, OP_batchnorm_pool) == pools && count_op(fused, OP_batchnorm_pool_dparams) == pools &&
                      count_op(fused, OP_batchnorm_pool_dx) == pools && count_op(fused, OP_maxpool2d_grad) == 0,
                  "%s: not every batchnorm and max pooling fused", models[m].path);
    unsigned char *a, *b;
    size_t n = train(plain, 7, 2, &a);
    ck_assert_uint_eq(train(fused, 7, 2, &b), n);
    ck_assert_msg(memcmp(a, b, n) == 0, "%s (%s): fused and memory-planned training differs", models[m].path,
                  norm == NORM_L2 ? "L2" : "L1");
    free(a), free(b), free(src);
    ir_free(plain), ir_free(fused);
  }
  ck_assert_msg(integer > 0, "no model's L1 statistics became integer sums");
}
END_TEST

/* fuse gives a shiftquant to the batchnorm dx that is its only input's only reader (the CNN's two:
 * dx is ShiftQuant'ed as it is computed) or to the convolution dW that is its only reader (a
 * first layer's dW without a batchnorm before it: pools.sq's c at 4 bits, its ranges read from
 * dy): training keeps its bits, and every shiftquant of the unfused graph went to one of the
 * two. (The unfused graph is read back from a dump, whose initialisation scales are printed to
 * 9 digits: conv_strided.sq's then round to other floats.) */
START_TEST(shiftquant_fusions_keep_the_bits) {
  static const struct { const char *path; int dx, dw; } models[] = {{"examples/cnn.sq", 2, 0}, {"tests/models/pools.sq", 0, 1}};
  for (int m = 0; m < 2; m++) {
    char *src = read_source(models[m].path);
    Graph *fused = fused_graph(models[m].path, src, 2, NORM_L2, 4), *plain = before_fuse(models[m].path, 2, NORM_L2, 4);
    int dx = 0, dw = 0;
    for (int i = 0; i < fused->nodes.n; i++) {
      const Node *n = ir_node(fused, i);
      if (n->kind != NK_OP) continue;
      dx += (n->op == OP_batchnorm_dx || n->op == OP_batchnorm_pool_dx) && ir_int(n, "sq_bits") > 0 && n->dtype == DT_Q8;
      dw += n->op == OP_qconv2d_dw && ir_int(n, "dy_bits") > 0 && ir_in(fused, n, 0)->dtype == DT_F32;
    }
    ck_assert_msg(dx == models[m].dx && dw == models[m].dw, "%s: %d dx and %d dW ShiftQuant", models[m].path, dx, dw);
    ck_assert_int_eq(count_op(fused, OP_shiftquant) + dx + dw, count_op(plain, OP_shiftquant));
    unsigned char *a, *b;
    size_t n = train(plain, 7, 2, &a);
    ck_assert_uint_eq(train(fused, 7, 2, &b), n);
    ck_assert_msg(memcmp(a, b, n) == 0, "%s: training with the ShiftQuant fused differs", models[m].path);
    free(a), free(b), free(src);
    ir_free(plain), ir_free(fused);
  }
}
END_TEST

/* A convolution whose s16 sums feed integer statistics keeps each channel's sum after them
 * (chansums), as the reference body writes them: a generated statistics kernel takes them from
 * there when the convolution's kernel fails over to this body. */
START_TEST(convolution_keeps_its_channel_sums) {
  char *src = read_source("examples/cnn.sq");
  Graph *g = fused_graph("examples/cnn.sq", src, 3, NORM_L1, 0);
  Interp *it = interp_new(g, 1);
  random_batch(it, g, 0);
  ck_assert_msg(interp_forward(it, 1), "%s", interp_error(it));
  int convs = 0, stats = 0;
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = ir_node(g, i);
    if (n->kind != NK_OP || (n->op != OP_qconv2d && n->op != OP_batchnorm_stats) || !ir_int(n, "chansums")) continue;
    if (n->op == OP_batchnorm_stats) {
      stats++;
      ck_assert(ir_int(ir_in(g, n, 0), "chansums"));
      continue;
    }
    ck_assert_int_eq(n->op, OP_qconv2d);
    convs++;
    const Tensor *t = interp_tensor(it, i);
    int64_t C = t->d[1], hw = t->d[2] * t->d[3];
    for (int64_t c = 0; c < C; c++) {
      int64_t s = 0;
      for (int64_t o = 0; o < t->d[0]; o++)
        for (int64_t e = 0; e < hw; e++) s += t->s16[(o * C + c) * hw + e];
      ck_assert_msg(channel_sums_of(t)[c] == s, "%s: channel %lld sums to %lld, not %lld", n->name, (long long)c,
                    (long long)channel_sums_of(t)[c], (long long)s);
    }
  }
  ck_assert_msg(convs == 2 && stats == 2, "%d convolutions and %d statistics with chansums", convs, stats);
  interp_free(it);
  ir_free(g);
  free(src);
}
END_TEST

START_TEST(same_seed_same_bits) {
  Graph *g = mlp(8);
  unsigned char *a, *b, *c;
  size_t n = train(g, 5, 4, &a);
  ck_assert_uint_eq(train(g, 5, 4, &b), n);
  ck_assert_msg(memcmp(a, b, n) == 0, "two runs with seed 5 differ");
  train(g, 6, 4, &c);
  ck_assert_msg(memcmp(a, c, n) != 0, "seeds 5 and 6 gave the same parameters");
  free(a);
  free(b);
  free(c);
  ir_free(g);
}
END_TEST

START_TEST(initialisation_follows_the_graph) {
  Graph *g = mlp(4);
  Interp *it = interp_new(g, 1);
  const Node *w = ir_node(g, th_node(g, "h.weight"));
  Tensor *t = interp_tensor(it, w->id);
  double lo = 0, hi = 0, sum = 0;
  for (int64_t i = 0; i < t->n; i++) {
    lo = fmin(lo, t->f[i]), hi = fmax(hi, t->f[i]);
    sum += t->f[i];
  }
  ck_assert_double_le(hi, w->init_scale);
  ck_assert_double_ge(lo, -w->init_scale);
  ck_assert_double_gt(hi, 0.9 * w->init_scale); /* 200k draws reach close to the bound */
  ck_assert_double_lt(fabs(sum / (double)t->n), 0.01 * w->init_scale);
  Tensor *gamma = interp_tensor(it, th_node(g, "a.batchnorm.weight"));
  for (int64_t i = 0; i < gamma->n; i++) ck_assert_float_eq(gamma->f[i], 1.0f);
  interp_free(it);
  ir_free(g);
}
END_TEST

/* One step of each optimizer, checked on the layernorm bias b: y = xhat * w + b, so
 * d mse(y, t) / d b[j] = sum over rows of 2 (y - t) / n. */
START_TEST(optimizer_updates_match_their_formulas) {
  static const char *const opts[] = {"sgd(momentum = 0.9, weight_decay = 0.1)", "adam(weight_decay = 0.1)"};
  const char *src = "model o {\n  input x : f32[B, 4]\n  label t : f32[B, 4]\n  y = layernorm(x)\n  loss = mse(y, t)\n}\n"
                    "train { optimizer = %s }\n";
  for (int k = 0; k < 2; k++) {
    char *text = xasprintf(src, opts[k]);
    Graph *g = th_compile(text, 2, NULL);
    free(text);
    ck_assert(g != NULL);
    Interp *it = interp_new(g, 1);
    Tensor *x = interp_tensor(it, th_node(g, "x")), *t = interp_tensor(it, th_node(g, "t"));
    for (int64_t i = 0; i < x->n; i++) x->f[i] = (float)i * 0.37f - 1.0f, t->f[i] = (float)(i % 3) - 0.5f;
    Tensor *b = interp_tensor(it, th_node(g, "y.bias")), *w = interp_tensor(it, th_node(g, "y.weight"));
    ck_assert(interp_forward(it, 1));
    Tensor *y = interp_tensor(it, th_node(g, "y"));
    double grad[4] = {0};
    for (int64_t i = 0; i < y->n; i++) grad[i % 4] += 2.0 * (y->f[i] - t->f[i]) / (double)y->n;
    float before[4];
    memcpy(before, b->f, sizeof before);
    float loss;
    ck_assert(interp_train_step(it, 0.1f, &loss));
    for (int j = 0; j < 4; j++) {
      double want = k == 0 ? before[j] - 0.1 * (grad[j] + 0.1 * before[j]) /* sgd: first buf = d */
                           : before[j] * (1 - 0.1 * 0.1) - 0.1 * grad[j] / (fabs(grad[j]) + 1e-8); /* adam, t = 1 */
      ck_assert_msg(fabs(b->f[j] - want) < 1e-5, "%s: bias[%d] = %g, want %g", opts[k], j, b->f[j], want);
    }
    ck_assert(w->f[0] != 1.0f);
    interp_free(it);
    ir_free(g);
  }
}
END_TEST

START_TEST(bad_steps_leave_parameters_unchanged) {
  Graph *g = mlp(4);
  Interp *it = interp_new(g, 2);
  random_batch(it, g, 0);
  float loss;
  ck_assert(interp_train_step(it, 0.05f, &loss));
  unsigned char *before, *after;
  size_t n = snapshot(it, g, &before);
  Tensor *x = interp_tensor(it, th_node(g, "x")), *y = interp_tensor(it, th_node(g, "y"));
  x->f[3] = NAN;
  ck_assert(!interp_train_step(it, 0.05f, &loss));
  ck_assert_msg(strstr(interp_error(it), "x: element 3 is not finite") != NULL, "%s", interp_error(it));
  x->f[3] = 0;
  y->i[1] = 10;
  ck_assert(!interp_train_step(it, 0.05f, &loss));
  ck_assert_msg(strstr(interp_error(it), "label 10 of sample 1 is outside 0..9") != NULL, "%s", interp_error(it));

  snapshot(it, g, &after);
  /* Running statistics move in any forward pass; parameters and optimizer state must not. */
  ck_assert_int_eq(interp_step(it), 1);
  unsigned char *p = before, *q = after;
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *nd = ir_node(g, i);
    if (nd->kind != NK_PARAM && nd->kind != NK_STATE) continue;
    size_t bytes = sizeof(float) * (size_t)interp_tensor(it, i)->n;
    if (!strstr(nd->name, "running_")) ck_assert_msg(memcmp(p, q, bytes) == 0, "%s changed in a failed step", nd->name);
    p += bytes, q += bytes;
  }
  ck_assert(p == before + n);
  free(before);
  free(after);
  interp_free(it);
  ir_free(g);
}
END_TEST

/* An update whose result overflows float32 is undone: loss = mse(layernorm(x), t) with targets
 * of 1000 gives the bias a gradient of about -2000, and lr = 1e37 takes it past 3.4e38. */
START_TEST(an_overflowing_update_is_undone) {
  Graph *g = th_compile("model o {\n  input x : f32[B, 4]\n  label t : f32[B, 4]\n  y = layernorm(x)\n"
                        "  loss = mse(y, t)\n}\ntrain { optimizer = sgd(momentum = 0) }\n", 2, NULL);
  ck_assert(g != NULL);
  Interp *it = interp_new(g, 1);
  Tensor *x = interp_tensor(it, th_node(g, "x")), *t = interp_tensor(it, th_node(g, "t"));
  for (int64_t i = 0; i < x->n; i++) x->f[i] = (float)i, t->f[i] = 1000;
  unsigned char *before, *after;
  size_t n = snapshot(it, g, &before);
  float loss;
  ck_assert(!interp_train_step(it, 1e37f, &loss));
  ck_assert_msg(strstr(interp_error(it), "is not finite; parameters were not updated"), "%s",
                interp_error(it));
  snapshot(it, g, &after);
  ck_assert(memcmp(before, after, n) == 0);
  ck_assert_int_eq(interp_step(it), 0);
  ck_assert(interp_train_step(it, 0.01f, &loss)); /* and the model still trains */
  free(before), free(after);
  interp_free(it);
  ir_free(g);
}
END_TEST

START_TEST(inference_uses_running_statistics) {
  Graph *g = mlp(4);
  Interp *it = interp_new(g, 3);
  random_batch(it, g, 0);
  Tensor *z = interp_tensor(it, th_node(g, "z"));
  ck_assert(interp_forward(it, 1));
  float train_out = z->f[0];
  ck_assert(interp_forward(it, 0));
  float a = z->f[0];
  ck_assert(interp_forward(it, 0));
  ck_assert_float_eq(a, z->f[0]);
  ck_assert_float_ne(a, train_out);
  interp_free(it);
  ir_free(g);
}
END_TEST

/* examples/mlp.sq as written (4-bit GEMMs, ShiftQuant gradients, L1 batchnorm) at batch 32
 * for 300 steps on the first 9600 training images. */
START_TEST(mlp_learns_fashion_mnist_at_4_bits) {
  Dataset d;
  char *err = NULL;
  ck_assert_msg(fmnist_load(fmnist_default_dir(), "train", &d, &err), "%s", err);
  float mean, std;
  fmnist_stats(&d, &mean, &std);
  fmnist_normalize(&d, mean, std);
  Graph *g = mlp(32);
  ck_assert_int_eq(ir_node(g, th_node(g, "h"))->op, OP_qlinear);
  ck_assert_int_eq(ir_node(g, th_node(g, "a.batchnorm"))->op, OP_l1_batchnorm);
  Interp *it = interp_new(g, 1);
  Tensor *x = interp_tensor(it, th_node(g, "x")), *y = interp_tensor(it, th_node(g, "y"));
  double first = 0, last = 0;
  for (int s = 0; s < 300; s++) {
    int64_t base = (int64_t)(s % 300) * 32;
    memcpy(x->f, d.x + base * 784, sizeof(float) * 32 * 784);
    memcpy(y->i, d.y + base, sizeof(int32_t) * 32);
    float loss;
    ck_assert_msg(interp_train_step(it, 0.05f, &loss), "%s", interp_error(it));
    if (s < 50) first += loss / 50;
    if (s >= 250) last += loss / 50;
  }
  ck_assert_msg(last < 0.65 && last < 0.75 * first, "mean loss of the first 50 steps %.4f, of the last 50 %.4f", first, last);
  interp_free(it);
  ir_free(g);
  fmnist_free(&d);
}
END_TEST

/* qlinear = one int32 GEMM of the quantized operands, dequantized with one float multiply. */
START_TEST(quantized_linear_is_bit_exact) {
  Graph *g = th_compile("model q {\n  input x : f32[B, 5]\n  label y : i32[B]\n  z = linear(relu(x), 3)\n"
                        "  loss = cross_entropy(z, y)\n}\nquant { bits = 4 }\n", 3, NULL);
  ck_assert(g != NULL);
  Interp *it = interp_new(g, 4);
  Tensor *x = interp_tensor(it, th_node(g, "x"));
  for (int64_t i = 0; i < x->n; i++) x->f[i] = rng_normal(5, 5, 0, (uint64_t)i);
  ck_assert(interp_forward(it, 1));
  const Tensor *w = interp_tensor(it, th_node(g, "z.weight")), *b = interp_tensor(it, th_node(g, "z.bias"));
  const Tensor *z = interp_tensor(it, th_node(g, "z"));
  float relu[15], sx, sw;
  uint8_t qx[15], qw[15];
  int64_t bad;
  for (int i = 0; i < 15; i++) relu[i] = x->f[i] > 0 ? x->f[i] : 0;
  ck_assert_int_eq(nm_quantize(relu, 15, 4, 1, qx, &sx, &bad, 1), NM_OK); /* relu output: unsigned */
  ck_assert_int_eq(nm_quantize(w->f, 15, 4, 0, qw, &sw, &bad, 1), NM_OK);
  for (int m = 0; m < 3; m++)
    for (int o = 0; o < 3; o++) {
      int32_t acc = 0;
      for (int k = 0; k < 5; k++) acc += nm_q4_get(qx, m * 5 + k, 1) * nm_q4_get(qw, o * 5 + k, 0); /* 4 bits: packed */
      float want = (float)acc * (sx * sw) + b->f[o];
      ck_assert_msg(z->f[m * 3 + o] == want, "z[%d,%d] = %.9g, want %.9g", m, o, z->f[m * 3 + o], want);
    }
  interp_free(it);
  ir_free(g);
}
END_TEST

/* A NaN that reaches a quantized tensor is reported by name, and the step changes nothing. */
START_TEST(nan_in_a_quantized_tensor_is_reported) {
  Graph *g = mlp(4);
  Interp *it = interp_new(g, 2);
  random_batch(it, g, 0);
  interp_tensor(it, th_node(g, "h.weight"))->f[5] = NAN;
  float loss;
  ck_assert(!interp_train_step(it, 0.05f, &loss));
  ck_assert_msg(strstr(interp_error(it), "cannot quantize 'h.weight': element 5 is not finite"), "%s", interp_error(it));
  ck_assert_int_eq(interp_step(it), 0);
  interp_free(it);
  ir_free(g);
}
END_TEST

int main(void) {
  Suite *s = suite_create("interp");
  TCase *t = tcase_create("executor");
  tcase_set_timeout(t, 300);
  tcase_add_test(t, same_seed_same_bits);
  tcase_add_test(t, fuse_and_memplan_keep_the_bits);
  tcase_add_test(t, shiftquant_fusions_keep_the_bits);
  tcase_add_test(t, convolution_keeps_its_channel_sums);
  tcase_add_test(t, initialisation_follows_the_graph);
  tcase_add_test(t, optimizer_updates_match_their_formulas);
  tcase_add_test(t, bad_steps_leave_parameters_unchanged);
  tcase_add_test(t, inference_uses_running_statistics);
  tcase_add_test(t, an_overflowing_update_is_undone);
  tcase_add_test(t, mlp_learns_fashion_mnist_at_4_bits);
  tcase_add_test(t, quantized_linear_is_bit_exact);
  tcase_add_test(t, nan_in_a_quantized_tensor_is_reported);
  suite_add_tcase(s, t);
  return th_run(s);
}
