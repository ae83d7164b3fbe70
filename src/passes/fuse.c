/* fuse: folds elementwise relus into the kernels next to them, so their tensors are never
 * written out and read back and their kernels are gone:
 *  - a relu into the node that makes its input, when that node is a GEMM with a bias (linear,
 *    qlinear) or a batchnorm (L1 or L2) and nothing reads the input but the relu and the
 *    relu's gradient: the producer gets relu = 1 and applies it as its epilogue writes each
 *    output. relu_grad(dy, x) then reads the producer's output: relu(x) > 0 exactly when
 *    x > 0 (a NaN fails both), so no bit changes;
 *  - a relu_grad(g, x) into the maxpool2d_grad that makes g from the same x, when nothing
 *    else reads g: maxpool2d_grad gets relu = 1 and masks as it writes;
 *  - a maxpool2d without padding whose windows do not overlap (up to 8 x 8), of an
 *    l1_/l2_batchnorm that only it and the pooling's gradient read, into batchnorm_pool, which
 *    keeps each window's first maximum as a code; the gradient's readers batchnorm_dparams and
 *    batchnorm_dx into batchnorm_pool_dparams and batchnorm_pool_dx, which route dp by the
 *    codes a plane at a time: the full-size normalized tensor and its full-size gradient are
 *    never stored;
 *  - a shiftquant over the channels of a batchnorm dx of feature maps: the dx keeps each
 *    channel's range after its values (ranges = 1) and the shiftquant takes them from there
 *    (ranges = 1) instead of reading dx a first time; where the shiftquant is dx's only reader,
 *    dx ShiftQuants its own output (sq_bits) and the shiftquant dies, and an L1 dx then takes
 *    the ranges from the class extremes its dparams keeps (extremes = 1), computing dx once;
 *  - a shiftquant that only a first convolution's dW reads: the dW quantizes dy on pack;
 *  - a qconv2d without bias that only batchnorms read (as their x), whose sums provably fit in
 *    16 bits (taps x the largest |x| x the largest |w| <= 32767): keeps its sums as s16 with
 *    the scale (sums16 = 1), half the bytes of the floats each batchnorm pass reads; the
 *    batchnorms compute each value from them exactly as the float was computed;
 *  - such a qconv2d whose sums a batchnorm_stats takes for integer (L1) statistics: the
 *    qconv2d's epilogue also sums each channel (chansums = 1), and the statistics take those
 *    sums (chansums = 1) instead of a first pass over the sums; integers add up exactly in any
 *    order, so no bit changes.
 * Expects: the backward graph (after autodiff: gradient rules never see a folded relu).
 * Guarantees: the graph computes the same values with fewer nodes. */
#include <stdlib.h>
#include <string.h>
#include "../../runtime/numerics.h"
#include "../lower/kir.h"
#include "../ops/rules.h"
#include "passes.h"

static int folds_relu(OpCode op) {
  return op == OP_linear || op == OP_qlinear || op == OP_l1_batchnorm || op == OP_l2_batchnorm;
}

/* the relu reading p, when every reader of p is that relu or a relu_grad of it */
static int sole_relu(const Graph *g, int p) {
  int relu = -1;
  for (int id = p + 1; id < g->nodes.n; id++) {
    const Node *n = ir_node(g, id);
    for (int i = 0; i < n->nin; i++) {
      if (n->in[i] != p) continue;
      if (n->op == OP_relu && relu < 0) relu = id;
      else if (!(n->op == OP_relu_grad && i == 1)) return -1;
    }
  }
  return relu;
}

static int is_output(const Graph *g, int id) {
  for (int i = 0; i < g->outputs.n; i++)
    if (g->outputs.v[i].node == id) return 1;
  return 0;
}

/* inputs, over all nodes, that are id */
static int readers(const Graph *g, int id) {
  int k = 0;
  for (int j = id + 1; j < g->nodes.n; j++)
    for (int i = 0; i < ir_node(g, j)->nin; i++) k += ir_node(g, j)->in[i] == id;
  return k;
}

/* the only live node other than `except` that reads id: -1 when none, -2 when several */
static int only_reader(const Graph *g, int id, int except, const char *dead) {
  int r = -1;
  for (int j = id + 1; j < g->nodes.n; j++) {
    const Node *n = ir_node(g, j);
    if (dead[j]) continue;
    for (int i = 0; i < n->nin; i++) {
      if (n->in[i] != id || j == except) continue;
      if (r >= 0 && r != j) return -2;
      r = j;
    }
  }
  return r;
}

/* n becomes op over the given inputs, with op's default attributes (the caller sets the rest) */
static void become(Node *n, OpCode op, int nin, const int *in) {
  n->op = op, n->nin = nin;
  memcpy(n->in, in, sizeof(int) * (size_t)nin);
  ir_attr_defaults(n);
}

static void set_pool(Node *n, int64_t kernel, int64_t stride, int relu) {
  ir_set_num(n, "kernel", (double)kernel), ir_set_num(n, "stride", (double)stride), ir_set_num(n, "relu", relu);
}

/* p = maxpool2d(y = l1_/l2_batchnorm(x, gamma, beta, rm, rs, stats)), and in the backward graph
 * gp = maxpool2d_grad(dp, y) read by dparams = batchnorm_dparams(gp, x, stats) and
 * dx = batchnorm_dx(gp, x, gamma, stats, dparams): p, dparams and dx become the fused ops in
 * place (their ids and names stay), y and gp die */
static void fuse_batchnorm_pool(Graph *g, int p, char *dead) {
  Node *pool = ir_node(g, p);
  if (pool->kind != NK_OP || pool->op != OP_maxpool2d || ir_int(pool, "padding") != 0) return;
  int64_t kernel = ir_int(pool, "kernel"), stride = ir_int(pool, "stride");
  if (kernel < 2 || kernel > 8 || stride < kernel) return; /* a window's tap fits a code byte */
  Node *y = ir_in(g, pool, 0);
  if (y->kind != NK_OP || (y->op != OP_l1_batchnorm && y->op != OP_l2_batchnorm)) return;
  if (y->id == g->loss || is_output(g, y->id)) return;
  int gp = only_reader(g, y->id, p, dead), dparams = -1, dx = -1, relu = (int)ir_int(y, "relu");
  if (gp == -2) return;
  if (gp >= 0) { /* the backward graph: its pooling gradient, and that gradient's readers */
    const Node *gn = ir_node(g, gp);
    if (gn->op != OP_maxpool2d_grad || gn->in[0] == y->id || ir_int(gn, "relu") != relu || is_output(g, gp)) return;
    for (int j = gp + 1; j < g->nodes.n; j++) {
      const Node *r = ir_node(g, j);
      if (dead[j]) continue;
      int reads = 0;
      for (int i = 0; i < r->nin; i++) reads += r->in[i] == gp;
      if (!reads) continue;
      if (reads != 1 || r->in[0] != gp || r->in[1] != y->in[0]) return;
      if (r->op == OP_batchnorm_dparams && dparams < 0 && r->in[2] == y->in[5]) dparams = j;
      else if (r->op == OP_batchnorm_dx && dx < 0 && r->in[2] == y->in[1] && r->in[3] == y->in[5]) dx = j;
      else return;
    }
    if (dparams < 0 || (dx >= 0 && ir_node(g, dx)->in[4] != dparams)) return;
  }
  int x = y->in[0], gamma = y->in[1], stats = y->in[5], l2 = y->op == OP_l2_batchnorm;
  double momentum = ir_num(y, "momentum"), eps = ir_num(y, "eps");
  become(pool, OP_batchnorm_pool, 6, y->in);
  set_pool(pool, kernel, stride, relu);
  ir_set_num(pool, "momentum", momentum), ir_set_num(pool, "eps", eps), ir_set_num(pool, "l2", l2);
  dead[y->id] = 1;
  if (gp < 0) return;
  int dp = ir_node(g, gp)->in[0];
  become(ir_node(g, dparams), OP_batchnorm_pool_dparams, 4, (int[]){dp, x, stats, p});
  set_pool(ir_node(g, dparams), kernel, stride, relu);
  if (dx >= 0) {
    Node *d = ir_node(g, dx);
    int dx_l2 = (int)ir_int(d, "l2");
    become(d, OP_batchnorm_pool_dx, 6, (int[]){dp, x, gamma, stats, dparams, p});
    set_pool(d, kernel, stride, relu);
    ir_set_num(d, "l2", dx_l2);
  }
  dead[gp] = 1;
}

static void fuse_ranges(Graph *g, int s) {
  Node *sq = ir_node(g, s);
  if (sq->kind != NK_OP || sq->op != OP_shiftquant || ir_int(sq, "axis") != 1) return;
  Node *dx = ir_in(g, sq, 0);
  if (dx->kind != NK_OP || (dx->op != OP_batchnorm_dx && dx->op != OP_batchnorm_pool_dx)) return;
  if (dx->shape.rank != 4 || dx->shape.d[2] * dx->shape.d[3] < 2) return; /* the kernel's rows are planes */
  ir_set_num(dx, "ranges", 1);
  ir_set_num(sq, "ranges", 1);
}

/* A batchnorm dx (of feature maps) whose only reader is a shiftquant over its channels does the
 * ShiftQuant itself (ops.def's sq_bits) and the shiftquant dies: the kernel computes dx twice,
 * once for the channels' ranges and once into the rounding, a row at a time on the stack (up to
 * KIR_POOL_PLANE_MAX elements), so the float dx is never written and read back. An L1 dx takes
 * its ranges from the extremes its dparams keeps (ops.def) and computes dx once. */
static void fuse_dx_shiftquant(Graph *g, int s, char *dead) {
  Node *sq = ir_node(g, s);
  if (sq->kind != NK_OP || sq->op != OP_shiftquant || ir_int(sq, "axis") != 1 || s == g->loss || is_output(g, s)) return;
  Node *dx = ir_in(g, sq, 0);
  if (dx->kind != NK_OP || (dx->op != OP_batchnorm_dx && dx->op != OP_batchnorm_pool_dx)) return;
  int64_t hw = dx->shape.rank == 4 ? dx->shape.d[2] * dx->shape.d[3] : 0;
  if (hw < 2 || hw > KIR_POOL_PLANE_MAX || readers(g, dx->id) != 1 || is_output(g, dx->id) || dx->id == g->loss) return;
  ir_set_num(dx, "sq_bits", (double)ir_int(sq, "bits"));
  ir_set_num(dx, "sq_groups", (double)ir_int(sq, "groups"));
  ir_set_num(dx, "sq_stream", (double)ir_int(sq, "stream"));
  dx->dtype = DT_Q8;
  if (!ir_int(dx, "l2")) { /* L1: the ranges from dparams' classes' extremes, dx computed once */
    Node *dp = ir_in(g, dx, 4);
    ir_set_num(dp, "extremes", 1);
    dp->shape.d[0] = NM_BN_DPARAMS_EXTREMES;
  }
  for (int j = s + 1; j < g->nodes.n; j++)
    for (int i = 0; i < ir_node(g, j)->nin; i++)
      if (ir_node(g, j)->in[i] == s) ir_node(g, j)->in[i] = dx->id;
  dead[s] = 1;
}

/* A shiftquant whose only reader is a qconv2d_dw (a first convolution's dW: no dX reads it)
 * dies: the dW reads the float dy and ShiftQuants it while packing it, a chunk of images at a
 * time (ops.def's dy_bits), so the q8 gradient is never written and read back. With a second
 * reader (dX) the pack would draw every random number twice. */
static void fuse_dy_on_pack(Graph *g, int s, char *dead) {
  Node *sq = ir_node(g, s);
  if (sq->kind != NK_OP || sq->op != OP_shiftquant || ir_int(sq, "axis") != 1 || s == g->loss || is_output(g, s)) return;
  int r = only_reader(g, s, -1, dead);
  if (r < 0 || readers(g, s) != 1) return;
  Node *dw = ir_node(g, r);
  if (dw->kind != NK_OP || dw->op != OP_qconv2d_dw || dw->in[0] != s) return;
  ir_set_num(dw, "dy_bits", (double)ir_int(sq, "bits"));
  ir_set_num(dw, "dy_groups", (double)ir_int(sq, "groups"));
  ir_set_num(dw, "dy_stream", (double)ir_int(sq, "stream"));
  ir_set_num(dw, "dy_ranges", (double)ir_int(sq, "ranges"));
  dw->in[0] = sq->in[0];
  dead[s] = 1;
}

/* whether reader r takes input i as a batchnorm's x */
static int batchnorm_x(const Node *r, int i) {
  switch (r->op) {
  case OP_batchnorm_stats: case OP_l1_batchnorm: case OP_l2_batchnorm: case OP_batchnorm_pool: return i == 0;
  case OP_batchnorm_dparams: case OP_batchnorm_dx: case OP_batchnorm_pool_dparams: case OP_batchnorm_pool_dx: return i == 1;
  default: return 0;
  }
}

static void fuse_sums16(Graph *g, int id) {
  Node *n = ir_node(g, id);
  if (n->kind != NK_OP || n->op != OP_qconv2d || ir_has_bias(n) || id == g->loss || is_output(g, id)) return;
  if (n->shape.d[2] * n->shape.d[3] < 2) return; /* the batchnorm kernels' rows are planes */
  const Shape *w = &ir_in(g, n, 1)->shape;
  double taps = (double)(w->d[1] * w->d[2] * w->d[3]);
  if (taps * quant_max(g, n->in[0]) * quant_max(g, n->in[1]) > INT16_MAX) return;
  int readers = 0;
  for (int j = id + 1; j < g->nodes.n; j++) {
    const Node *r = ir_node(g, j);
    for (int i = 0; i < r->nin; i++) {
      if (r->in[i] != id) continue;
      if (!batchnorm_x(r, i)) return;
      readers++;
    }
  }
  if (!readers) return;
  ir_set_num(n, "sums16", 1);
  n->dtype = DT_S16;
}

static void fuse_chansums(Graph *g, int s) {
  Node *st = ir_node(g, s);
  if (st->kind != NK_OP || st->op != OP_batchnorm_stats) return;
  Node *conv = ir_in(g, st, 0);
  if (conv->kind != NK_OP || conv->op != OP_qconv2d || !ir_int(conv, "sums16")) return;
  const Shape *x = &conv->shape;
  if (!nm_bn_int_stats((int)ir_int(st, "l2"), x->d[0] * x->d[2] * x->d[3], x->d[2] * x->d[3])) return;
  ir_set_num(conv, "chansums", 1);
  ir_set_num(st, "chansums", 1);
}

int pass_fuse(Graph *g, PassCtx *c) {
  (void)c;
  int n = g->nodes.n;
  char *dead = xcalloc((size_t)(n ? n : 1), 1);
  int *to = xmalloc(sizeof(int) * (size_t)(n ? n : 1)); /* a folded relu's readers read its producer */
  for (int id = 0; id < n; id++) to[id] = id;
  for (int p = 0; p < n; p++) {
    Node *prod = ir_node(g, p);
    if (prod->kind != NK_OP || !folds_relu(prod->op) || ir_int(prod, "relu")) continue;
    int r = sole_relu(g, p);
    if (r < 0 || r == g->loss) continue;
    if (is_output(g, r) || is_output(g, p)) continue; /* an output keeps the value its name promises */
    ir_set_num(prod, "relu", 1);
    dead[r] = 1, to[r] = p;
  }
  for (int id = 0; id < n; id++) {
    Node *x = ir_node(g, id);
    for (int i = 0; i < x->nin; i++) x->in[i] = to[x->in[i]];
  }
  for (int r = 0; r < n; r++) { /* relu_grad(maxpool2d_grad(dy, x), x) */
    Node *rg = ir_node(g, r);
    if (rg->kind != NK_OP || rg->op != OP_relu_grad || r == g->loss) continue;
    Node *mp = ir_in(g, rg, 0);
    if (mp->kind != NK_OP || mp->op != OP_maxpool2d_grad || mp->in[1] != rg->in[1] || ir_int(mp, "relu")) continue;
    if (readers(g, mp->id) != 1 || is_output(g, r) || is_output(g, mp->id)) continue;
    ir_set_num(mp, "relu", 1);
    dead[r] = 1, to[r] = mp->id;
  }
  for (int id = 0; id < n; id++) {
    Node *x = ir_node(g, id);
    for (int i = 0; i < x->nin; i++) x->in[i] = to[x->in[i]];
  }
  for (int p = 0; p < n; p++) fuse_batchnorm_pool(g, p, dead);
  ir_remove(g, dead);
  memset(dead, 0, (size_t)n);
  for (int s = 0; s < g->nodes.n; s++) fuse_dx_shiftquant(g, s, dead);
  ir_remove(g, dead);
  for (int s = 0; s < g->nodes.n; s++) fuse_ranges(g, s);
  memset(dead, 0, (size_t)n);
  for (int s = 0; s < g->nodes.n; s++) fuse_dy_on_pack(g, s, dead);
  ir_remove(g, dead);
  for (int s = 0; s < g->nodes.n; s++) fuse_sums16(g, s);
  for (int s = 0; s < g->nodes.n; s++) fuse_chansums(g, s);
  free(to);
  free(dead);
  return 1;
}
