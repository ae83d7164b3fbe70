/* sqref: trains a .sq model on Fashion-MNIST with the reference executor (float32, scalar
 * reference bodies). It is the slow, obvious twin of the compiled library and its trainer:
 * what they compute is checked against what this computes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../runtime/rng.h"
#include "../../src/driver/compile.h"
#include "../../src/interp/interp.h"
#include "../../src/interp/snapshot.h"
#include "../data/fashion_mnist.h"

typedef struct {
  const char *model, *data, *save, *resume;
  long batch, epochs, limit, test_limit, bits, norm;
  double lr;
  unsigned long long seed;
} Opts;

static int usage(void) {
  fputs("usage: sqref MODEL.sq [--batch N] [--epochs N] [--lr X] [--seed N] [--limit N] [--test-limit N]\n"
        "                    [--data DIR] [--bits 2..8|32] [--norm l1|l2] [--save CKPT] [--resume CKPT]\n",
        stderr);
  return 1;
}

static int num_arg(const char *opt, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (!*v || *end || errno || !(d >= lo && d <= hi)) {
    fprintf(stderr, "sqref: error: invalid value '%s' for %s\n", v, opt);
    return 0;
  }
  *out = d;
  return 1;
}

static int parse(Opts *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    double d;
    if (a[0] != '-') {
      if (o->model) return usage(), 0;
      o->model = a;
      continue;
    }
    if (i + 1 >= argc) return usage(), 0;
    const char *v = argv[++i];
    if (!strcmp(a, "--batch") && num_arg(a, v, 1, 1 << 20, &d)) o->batch = (long)d;
    else if (!strcmp(a, "--epochs") && num_arg(a, v, 1, 1000, &d)) o->epochs = (long)d;
    else if (!strcmp(a, "--limit") && num_arg(a, v, 1, 1e9, &d)) o->limit = (long)d;
    else if (!strcmp(a, "--test-limit") && num_arg(a, v, 1, 1e9, &d)) o->test_limit = (long)d;
    else if (!strcmp(a, "--lr") && num_arg(a, v, 0, 100, &d)) o->lr = d;
    else if (!strcmp(a, "--seed") && num_arg(a, v, 0, 1e18, &d)) o->seed = (unsigned long long)d;
    else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--save")) o->save = v;
    else if (!strcmp(a, "--resume")) o->resume = v;
    else if (!strcmp(a, "--bits") && num_arg(a, v, 2, 32, &d) && (d <= 8 || d == 32)) o->bits = (long)d;
    else if (!strcmp(a, "--norm") && (!strcmp(v, "l1") || !strcmp(v, "l2"))) o->norm = v[1] == '1' ? NORM_L1 : NORM_L2;
    else return usage(), 0;
  }
  return o->model ? 1 : (usage(), 0);
}

static int find_kind(const Graph *g, NodeKind k) {
  for (int i = 0; i < g->nodes.n; i++)
    if (ir_node(g, i)->kind == k) return i;
  return -1;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double evaluate(Interp *it, int xin, int out, const Dataset *test, int64_t B) {
  Tensor *x = interp_tensor(it, xin), *z = interp_tensor(it, out);
  int64_t px = test->pixels, C = z->d[z->rank - 1], correct = 0;
  for (int64_t s = 0; s < test->n; s += B) {
    int64_t m = test->n - s < B ? test->n - s : B;
    memset(x->f, 0, sizeof(float) * (size_t)x->n);
    memcpy(x->f, test->x + s * px, sizeof(float) * (size_t)(m * px));
    if (!interp_forward(it, 0)) return -1;
    for (int64_t r = 0; r < m; r++) {
      int64_t best = 0;
      for (int64_t c = 1; c < C; c++)
        if (z->f[r * C + c] > z->f[r * C + best]) best = c;
      correct += best == test->y[s + r];
    }
  }
  return (double)correct / (double)test->n;
}

int main(int argc, char **argv) {
  Opts o = {NULL, NULL, NULL, NULL, 128, 1, 0, 0, 0, -1, 0.05, 1};
  if (!parse(&o, argc, argv)) return 1;
  CompileOptions co;
  compile_options_default(&co);
  co.batch = o.batch;
  co.bits = (int)o.bits;
  co.norm = (int)o.norm;
  Graph *g = compile_file(o.model, &co, stderr);
  if (!g) return 1;
  int xin = find_kind(g, NK_INPUT), yin = find_kind(g, NK_LABEL);
  if (xin < 0 || yin < 0 || !g->outputs.n || shape_numel(&ir_node(g, xin)->shape) != o.batch * 784 ||
      ir_node(g, yin)->dtype != DT_I32) {
    fprintf(stderr, "sqref: error: %s must take 784 f32 pixels and an i32 label per sample, and declare an output\n", o.model);
    ir_free(g);
    return 1;
  }
  Dataset train, test;
  char *err = NULL;
  const char *dir = o.data ? o.data : fmnist_default_dir();
  if (!fmnist_load(dir, "train", &train, &err) || !fmnist_load(dir, "t10k", &test, &err)) {
    fprintf(stderr, "sqref: error: %s\n", err);
    free(err);
    ir_free(g);
    return 1;
  }
  float mean, std;
  fmnist_stats(&train, &mean, &std);
  fmnist_normalize(&train, mean, std);
  fmnist_normalize(&test, mean, std);
  if (o.test_limit && o.test_limit < test.n) test.n = o.test_limit; /* the first N test images */
  int64_t n = o.limit && o.limit < train.n ? o.limit : train.n, B = o.batch, px = train.pixels;
  Interp *it = interp_new(g, o.seed);
  Tensor *x = interp_tensor(it, xin), *y = interp_tensor(it, yin);
  int64_t *order = xmalloc(sizeof(int64_t) * (size_t)n);
  int status = 0;
  char what[64];
  if (g->quant.bits >= 32) snprintf(what, sizeof what, "float32");
  else snprintf(what, sizeof what, "%d-bit GEMMs, ShiftQuant gradients", g->quant.bits);
  printf("sqref: %s, %lld training images, batch %lld, lr %g, seed %llu (reference executor: %s, %s norm)\n", g->name,
         (long long)n, (long long)B, o.lr, o.seed, what, g->quant.norm == NORM_L1 ? "L1" : "L2");
  long first_epoch = 0;
  if (o.resume) { /* continue after the checkpoint's epoch with its seed and step: the same bits */
    static const char *const keys[] = {"sqref.epoch"};
    char *epoch = NULL;
    if (interp_load(it, o.resume, keys, &epoch, 1, &err) != 0 || !epoch) {
      fprintf(stderr, "sqref: error: cannot resume: %s\n", err ? err : "the checkpoint has no sqref.epoch");
      status = 1;
    } else {
      first_epoch = atol(epoch);
      o.seed = interp_seed(it);
      printf("resumed from %s after epoch %ld (step %lld, seed %llu)\n", o.resume, first_epoch,
             (long long)interp_step(it), o.seed);
    }
    free(err);
    err = NULL;
    free(epoch);
  }
  for (long e = first_epoch; e < o.epochs && !status; e++) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates, keyed by (seed, epoch) */
      int64_t j = (int64_t)(rng_bits(o.seed, rng_stream_of("shuffle"), e, (uint64_t)i) % (uint64_t)(i + 1));
      int64_t t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    double t0 = now(), total = 0;
    int64_t steps = n / B;
    for (int64_t s = 0; s < steps; s++) {
      for (int64_t r = 0; r < B; r++) {
        memcpy(x->f + r * px, train.x + order[s * B + r] * px, sizeof(float) * (size_t)px);
        y->i[r] = train.y[order[s * B + r]];
      }
      float loss;
      if (!interp_train_step(it, (float)o.lr, &loss)) {
        fprintf(stderr, "sqref: error: step %lld: %s\n", (long long)s, interp_error(it));
        status = 1;
        break;
      }
      total += loss;
    }
    if (status) break;
    double acc = evaluate(it, xin, g->outputs.v[0].node, &test, B);
    printf("epoch %ld: train loss %.4f, test accuracy %.4f (%.1f s)\n", e + 1, steps ? total / (double)steps : 0.0, acc,
           now() - t0);
    fflush(stdout);
    if (o.save) {
      char epoch_text[32];
      snprintf(epoch_text, sizeof epoch_text, "%ld", e + 1);
      const char *kv[] = {"sqref.epoch", epoch_text};
      if (interp_save(it, o.save, kv, 1, &err) != 0) {
        fprintf(stderr, "sqref: error: %s\n", err);
        free(err);
        err = NULL;
        status = 1;
      }
    }
  }
  free(order);
  interp_free(it);
  fmnist_free(&train);
  fmnist_free(&test);
  ir_free(g);
  return status;
}
