/* gradquant: measures the error of quantizing real output gradients. It trains a model with
 * the reference executor on Fashion-MNIST (as its .sq says: 4-bit GEMMs, ShiftQuant) and, every
 * few steps, takes the f32 output gradient of every GEMM layer (the input of its shiftquant
 * node) and quantizes it with per-tensor scaling, ShiftQuant with G = 1..Gmax, and per-channel
 * scaling, all with the same stochastic-rounding draws. It prints, per layer and bit width, the
 * mean squared error relative to the gradient's mean square, and ShiftQuant's ratio to
 * per-channel. A measurement tool (make gradquant), not a test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../runtime/numerics.h"
#include "../runtime/rng.h"
#include "../src/driver/compile.h"
#include "../src/interp/interp.h"
#include "../tools/data/fashion_mnist.h"

enum { MAXG = 7, NBITS = 2 };
static const int bit_widths[NBITS] = {4, 6};

typedef struct {
  char name[96];
  double per_tensor[NBITS], shift[NBITS][MAXG + 1], per_channel[NBITS], energy;
  int samples;
} LayerErr;

static nm_chan geometry(const Tensor *x, int axis) {
  nm_chan g = {1, x->d[axis], 1};
  for (int i = 0; i < axis; i++) g.outer *= x->d[i];
  for (int i = axis + 1; i < x->rank; i++) g.inner *= x->d[i];
  return g;
}

static double shiftquant_mse(const float *x, nm_chan geo, int bits, int G, int64_t step, int8_t *qt) {
  nm_sq_params p = {bits, G, 77, 1, step};
  float scale;
  int64_t bad, n = geo.outer * geo.channels * geo.inner;
  if (nm_shiftquant(x, geo, &p, qt, &scale, NULL, NULL, &bad, 2) != NM_OK) return NAN;
  double e = 0;
  for (int64_t i = 0; i < n; i++) e += ((double)qt[i] * scale - x[i]) * ((double)qt[i] * scale - x[i]);
  return e / (double)n;
}

/* Per-channel: channel c gets its own scale r_c / Qmax (the upper bound ShiftQuant approaches);
 * per-tensor: one scale R / Qmax. Same rounding draws as ShiftQuant's. */
static double scaled_mse(const float *x, nm_chan geo, int bits, int per_channel, int64_t step) {
  int64_t C = geo.channels;
  float *r = calloc((size_t)C, sizeof(float)), R = 0, Q = (float)nm_qmax(bits);
  for (int64_t o = 0; o < geo.outer; o++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t i = 0; i < geo.inner; i++) r[c] = fmaxf(r[c], fabsf(x[(o * C + c) * geo.inner + i]));
  for (int64_t c = 0; c < C; c++) R = fmaxf(R, r[c]);
  double e = 0;
  for (int64_t o = 0; o < geo.outer; o++)
    for (int64_t c = 0; c < C; c++) {
      float range = per_channel ? r[c] : R;
      for (int64_t i = 0; i < geo.inner; i++) {
        int64_t k = (o * C + c) * geo.inner + i;
        double deq = 0;
        if (range > 0) {
          float q = nm_stochastic_round(x[k] * (Q / range), rng_uniform(77, 1, step, (uint64_t)k));
          q = fmaxf(-Q, fminf(Q, q));
          deq = (double)q * (range / Q);
        }
        e += (deq - x[k]) * (deq - x[k]);
      }
    }
  free(r);
  return e / (double)(geo.outer * C * geo.inner);
}

static void measure(Interp *it, const Graph *g, LayerErr *layers, int *nlayers, int64_t step) {
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = ir_node(g, id);
    if (n->kind != NK_OP) continue;
    int quantizes_dy = n->op == OP_qconv2d_dw && ir_int(n, "dy_bits"); /* a shiftquant fuse gave its reader */
    if (n->op != OP_shiftquant && !quantizes_dy) continue;
    const Tensor *x = interp_tensor(it, n->in[0]);
    nm_chan geo = geometry(x, quantizes_dy ? 1 : (int)ir_int(n, "axis"));
    LayerErr *L = NULL;
    for (int i = 0; i < *nlayers; i++)
      if (!strncmp(layers[i].name, n->name, strlen(layers[i].name)) && n->name[strlen(layers[i].name)] == '.') L = &layers[i];
    if (!L) {
      L = &layers[(*nlayers)++];
      memset(L, 0, sizeof *L);
      snprintf(L->name, sizeof L->name, "%.*s", (int)(strchr(n->name, '.') ? strchr(n->name, '.') - n->name : 95), n->name);
    }
    double energy = 0;
    for (int64_t i = 0; i < x->n; i++) energy += (double)x->f[i] * x->f[i];
    energy /= (double)x->n;
    if (energy == 0) continue;
    int8_t *qt = malloc((size_t)x->n);
    for (int b = 0; b < NBITS; b++) {
      int bits = bit_widths[b];
      L->per_tensor[b] += scaled_mse(x->f, geo, bits, 0, step) / energy;
      L->per_channel[b] += scaled_mse(x->f, geo, bits, 1, step) / energy;
      for (int G = 1; G <= nm_max_groups(bits) && G <= 5; G++) L->shift[b][G] += shiftquant_mse(x->f, geo, bits, G, step, qt) / energy;
    }
    L->samples++;
    free(qt);
  }
}

static int run(const char *model, int64_t batch, int steps, int every, const Dataset *d) {
  CompileOptions co;
  compile_options_default(&co);
  co.batch = batch;
  Graph *g = compile_file(model, &co, stderr);
  if (!g) return 1;
  Interp *it = interp_new(g, 1);
  Tensor *x = interp_tensor(it, ir_find(g, "x")), *y = interp_tensor(it, ir_find(g, "y"));
  LayerErr layers[32];
  int nlayers = 0;
  for (int s = 0; s < steps; s++) {
    int64_t base = (int64_t)s * batch % (d->n - batch);
    memcpy(x->f, d->x + base * 784, sizeof(float) * (size_t)(batch * 784));
    memcpy(y->i, d->y + base, sizeof(int32_t) * (size_t)batch);
    float loss;
    if (!interp_train_step(it, 0.05f, &loss)) {
      fprintf(stderr, "gradquant: %s: %s\n", model, interp_error(it));
      return 1;
    }
    if ((s + 1) % every == 0) measure(it, g, layers, &nlayers, s);
  }
  printf("\n%s, batch %lld, %d training steps, gradients taken every %d steps (%d samples per layer)\n\n", model,
         (long long)batch, steps, every, nlayers ? layers[0].samples : 0);
  printf("| layer | bits | per-tensor | G=1 | G=2 | G=3 | G=4 | G=5 | per-channel | best ShiftQuant / per-channel |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < nlayers; i++)
    for (int b = 0; b < NBITS; b++) {
      LayerErr *L = &layers[i];
      double k = 1.0 / L->samples, best = INFINITY;
      printf("| %s | %d | %.3e |", L->name, bit_widths[b], L->per_tensor[b] * k);
      for (int G = 1; G <= 5; G++) {
        if (G <= nm_max_groups(bit_widths[b])) {
          printf(" %.3e |", L->shift[b][G] * k);
          best = fmin(best, L->shift[b][G] * k);
        } else {
          printf(" – |");
        }
      }
      printf(" %.3e | %.2f |\n", L->per_channel[b] * k, best / (L->per_channel[b] * k));
    }
  interp_free(it);
  ir_free(g);
  return 0;
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : ".";
  Dataset d;
  char *err = NULL;
  if (!fmnist_load(fmnist_default_dir(), "train", &d, &err)) {
    fprintf(stderr, "gradquant: %s\n", err);
    return 1;
  }
  float mean, std;
  fmnist_stats(&d, &mean, &std);
  fmnist_normalize(&d, mean, std);
  printf("Relative MSE of quantized output gradients: mean over samples of sum((deq - g)^2) / sum(g^2).\n");
  printf("Stochastic rounding; the same draws for every method. ShiftQuant G <= 9 - bits.\n");
  char *mlp = malloc(strlen(root) + 32), *cnn = malloc(strlen(root) + 32);
  sprintf(mlp, "%s/examples/mlp.sq", root);
  sprintf(cnn, "%s/examples/cnn.sq", root);
  int rc = run(mlp, 128, 300, 30, &d) || run(cnn, 32, 60, 10, &d);
  free(mlp);
  free(cnn);
  fmnist_free(&d);
  return rc;
}
