/* interp.c: runs nodes in list order with their reference bodies, or with a generated kernel
 * where a library set one (split into fixed parts on threads). Parameters are initialised
 * with the counter-based generator keyed by (seed, name of the tensor, element), so the values
 * do not depend on node numbering or on any other tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../../runtime/numerics.h"
#include "../../runtime/rng.h"
#include "../../runtime/threads.h"
#include "../ops/rules.h"
#include "interp.h"

/* per node, 1 where: an update writes the tensor (written), its update kernel writes it aside
 * into the shadow (aside), or it is copied to the shadow before the updates (copied) */
typedef struct { char *written, *aside, *copied; } UpdatePlan;
static void plan_free(UpdatePlan *p) {
  if (p) free(p->written), free(p->aside), free(p->copied);
  free(p);
}

struct Interp {
  const Graph *g;
  Tensor *t;
  char *for_output; /* forward nodes the outputs depend on */
  uint64_t seed;
  int64_t step;
  char *err;
  float **shadow; /* per node: a copy of each tensor an update writes, made before the updates */
  UpdatePlan *plan; /* which tensors the updates write, and how; made at the first step */
  InterpKernel const *kernels;
  int64_t nkernels;
  void *scratch; /* the largest scratch space any kernel asks for */
  char *arena;   /* memplan's activation arena */
  int threads;
  int64_t serial_max; /* a kernel whose tensors are all smaller runs on the calling thread alone */
};

void interp_set_threads(Interp *it, int threads) { it->threads = threads > 0 ? threads : 1; }

void interp_set_kernels(Interp *it, InterpKernel const *table, int64_t n) {
  it->kernels = table;
  it->nkernels = n;
  plan_free(it->plan); /* which updates write aside depends on the kernels */
  it->plan = NULL;
  int64_t bytes = 64;
  for (int64_t i = 0; i < n; i++) bytes = table[i].scratch > bytes ? table[i].scratch : bytes;
  free(it->scratch);
  it->scratch = xaligned_alloc(64, (size_t)bytes);
}

static void *data_of(const Tensor *t) {
  return t->f ? (void *)t->f : t->q ? (void *)t->q : t->s16 ? (void *)t->s16 : (void *)t->i;
}

enum { PARTS_PER_THREAD = 4, SERIAL_MAX = 131072 };

typedef struct {
  InterpKernelFn fn;
  KernelArgs args;
  int64_t phase, parts;
} KernelCall;

static void kernel_part(void *ctx, int64_t part) {
  KernelCall *k = ctx;
  k->fn(&k->args, k->phase, part, k->parts);
}

/* Runs a node's kernel, writing to `dest` (NULL: the node's output); 0 when it reported input
 * its op rejects (or, for an update given destinations, a value that is not finite). */
static int run_kernel_to(Interp *it, const RefCtx *c, const Node *n, void *dest) {
  const InterpKernel *kn = &it->kernels[n->id];
  Tensor *out = &it->t[n->id];
  void *in[SQ_MAX_IN] = {0};
  float scales[SQ_MAX_IN] = {0};
  for (int i = 0; i < n->nin; i++) {
    const Tensor *t = &it->t[n->in[i]];
    in[i] = data_of(t);
    scales[i] = t->scale;
  }
  /* more parts than threads, so that a thread the machine slows down takes fewer of them; a
   * small node runs on this thread alone (no tensor of serial_max elements): handing its
   * phases to the pool costs more than its work (z's ShiftQuant of 1,280 values took 126 us on
   * two threads, 4 us on one). A kernel's bits never depend on its parts. */
  int64_t largest = out->n;
  for (int i = 0; i < n->nin; i++) largest = it->t[n->in[i]].n > largest ? it->t[n->in[i]].n : largest;
  int threads = largest < it->serial_max ? 1 : it->threads;
  int64_t parts = threads > 1 ? (int64_t)threads * PARTS_PER_THREAD : 1;
  KernelCall k = {kn->fn, {in, scales, dest ? dest : data_of(out), it->scratch, c->seed, c->step, c->lr, c->training, 0, 1.0f, 0},
                  0, parts};
  for (k.phase = 0; k.phase < kn->phases && !k.args.failed; k.phase++) rt_parallel(threads, k.parts, kernel_part, &k);
  if (dtype_is_scaled(n->dtype)) {
    out->scale = k.args.out_scale;
    out->q_unsigned = k.args.out_unsigned;
  }
  return !k.args.failed;
}
static int run_kernel(Interp *it, const RefCtx *c, const Node *n) { return run_kernel_to(it, c, n, NULL); }

static void init_leaf_values(Interp *it, const Node *n) {
  Tensor *t = &it->t[n->id];
  uint64_t stream = rng_stream_of(n->name);
  for (int64_t i = 0; i < t->n; i++) {
    switch (n->init) {
    case INIT_ZEROS: t->f[i] = 0; break;
    case INIT_ONES: t->f[i] = 1; break;
    case INIT_UNIFORM:
      t->f[i] = (float)n->init_scale * (2.0f * rng_uniform(it->seed, stream, RNG_STEP_INIT, (uint64_t)i) - 1.0f);
      break;
    case INIT_NORMAL: t->f[i] = rng_normal(it->seed, stream, RNG_STEP_INIT, (uint64_t)i); break;
    }
  }
}

Interp *interp_new(const Graph *g, uint64_t seed) {
  Interp *it = xcalloc(1, sizeof *it);
  it->g = g;
  it->seed = seed;
  it->t = xcalloc((size_t)g->nodes.n, sizeof(Tensor));
  it->for_output = xcalloc((size_t)g->nodes.n, 1);
  it->threads = 1;
  /* SQ_SERIAL_MAX (elements) moves the bound; 0 runs every kernel in parts, as the tests do to
   * check that no kernel's bits depend on its parts */
  const char *serial = getenv("SQ_SERIAL_MAX");
  it->serial_max = serial && *serial ? strtoll(serial, NULL, 10) : SERIAL_MAX;
  it->arena = g->arena_bytes ? xaligned_alloc(64, (size_t)g->arena_bytes) : NULL;
  for (int i = 0; i < g->outputs.n; i++) it->for_output[g->outputs.v[i].node] = 1;
  for (int id = g->nodes.n - 1; id >= 0; id--) {
    const Node *n = ir_node(g, id);
    SQ_ASSERT(n->shaped);
    if (it->for_output[id])
      for (int i = 0; i < n->nin; i++) it->for_output[n->in[i]] = 1;
    Tensor *t = &it->t[id];
    t->dtype = (int)n->dtype;
    t->rank = n->shape.rank;
    memcpy(t->d, n->shape.d, sizeof t->d);
    if (n->dtype == DT_VOID) continue;
    t->n = shape_numel(&n->shape);
    t->q4 = n->dtype == DT_Q4;
    /* memplan's place in the arena, or a buffer of its own */
    void *p = n->arena >= 0 ? it->arena + n->arena : xcalloc((size_t)ir_tensor_bytes(n) + 1, 1);
    if (n->dtype == DT_F32) t->f = p;
    else if (dtype_is_quantized(n->dtype)) t->q = p;
    else if (n->dtype == DT_S16) t->s16 = p;
    else t->i = p;
    if (n->kind == NK_PARAM || n->kind == NK_STATE) init_leaf_values(it, n);
  }
  return it;
}

void interp_free(Interp *it) {
  if (!it) return;
  for (int i = 0; i < it->g->nodes.n; i++) {
    if (ir_node(it->g, i)->arena >= 0) continue; /* in the arena */
    free(it->t[i].f);
    free(it->t[i].i);
    free(it->t[i].q);
    free(it->t[i].s16);
  }
  free(it->arena);
  free(it->t);
  free(it->for_output);
  for (int i = 0; it->shadow && i < it->g->nodes.n; i++) free(it->shadow[i]);
  free(it->shadow);
  plan_free(it->plan);
  free(it->err);
  free(it->scratch);
  free(it);
}

Tensor *interp_tensor(Interp *it, int node) { return &it->t[node]; }
const Graph *interp_graph(const Interp *it) { return it->g; }
int64_t interp_step(const Interp *it) { return it->step; }
void interp_set_step(Interp *it, int64_t step) { it->step = step; }
uint64_t interp_seed(const Interp *it) { return it->seed; }
void interp_set_seed(Interp *it, uint64_t seed) { it->seed = seed; }
const char *interp_error(const Interp *it) { return it->err ? it->err : ""; }

/* Runs the op nodes with role in [lo, hi] (and, when only_outputs, only those outputs need). */
/* Runs node n: its kernel, or, with no kernel or one that rejected its input, its reference
 * body, which says why (the message kept for interp_error); 0 on failure. */
static int run_node(Interp *it, const RefCtx *c, const Node *n) {
  if (n->id < it->nkernels && it->kernels[n->id].fn && run_kernel(it, c, n)) return 1;
  RefCtx rc = *c;
  if (op_info[n->op].ref(&rc, n)) return 1;
  free(it->err);
  it->err = rc.err;
  return 0;
}

static int run_nodes(Interp *it, int training, NodeRole lo, NodeRole hi, int only_outputs, float lr) {
  RefCtx c = {it->g, it->t, training, it->seed, it->step, lr, NULL};
  for (int id = 0; id < it->g->nodes.n; id++) {
    const Node *n = ir_node(it->g, id);
    if (n->kind != NK_OP || n->role < lo || n->role > hi || (only_outputs && !it->for_output[id])) continue;
    if (!run_node(it, &c, n)) return 0;
  }
  return 1;
}

int interp_run_node(Interp *it, int node) {
  const Node *n = ir_node(it->g, node);
  if (n->kind != NK_OP) return 0;
  RefCtx c = {it->g, it->t, 1, it->seed, it->step, 0.0f, NULL};
  return run_node(it, &c, n);
}

int interp_gradients(Interp *it) { return run_nodes(it, 1, ROLE_FWD, ROLE_BWD, 0, 0); }

int interp_forward(Interp *it, int training) { return run_nodes(it, training, ROLE_FWD, ROLE_FWD, !training, 0); }

static int fail(Interp *it, char *msg) {
  free(it->err);
  it->err = msg;
  return 0;
}

/* A NaN or Inf in an input fails the step before anything runs (relu would hide it). */
static int inputs_finite(Interp *it) {
  for (int id = 0; id < it->g->nodes.n; id++) {
    const Node *n = ir_node(it->g, id);
    if ((n->kind != NK_INPUT && n->kind != NK_LABEL) || n->dtype != DT_F32) continue;
    const Tensor *t = &it->t[id];
    int64_t i = nm_first_nonfinite(t->f, t->n);
    if (i >= 0) return fail(it, xasprintf("%s: element %lld is not finite; parameters were not updated", n->name, (long long)i));
  }
  return 1;
}

/* The tensors the updates write, cut into blocks of SPAN_FLOATS: copied before the updates and
 * scanned after them, a block per part on the threads (fixed blocks: the same result for any
 * thread count; the first bad tensor in node order is the one named) */
enum { SPAN_FLOATS = 16384 };
typedef struct { Interp *it; int64_t *first; int64_t nblocks; int scan; int64_t *bad; const char *copied; } Spans;
static void span_block(void *ctx, int64_t b) {
  Spans *s = ctx;
  int id = 0; /* the tensor holding block b: the last whose first block is <= b */
  for (int lo = 0, hi = s->it->g->nodes.n; lo < hi;) {
    int mid = (lo + hi) / 2;
    if (s->first[mid] <= b) id = mid, lo = mid + 1;
    else hi = mid;
  }
  const Tensor *t = &s->it->t[id];
  int64_t from = (b - s->first[id]) * SPAN_FLOATS, n = t->n - from < SPAN_FLOATS ? t->n - from : SPAN_FLOATS;
  /* a tensor its update kernel wrote to the shadow holds the new values there */
  const float *v = s->copied[id] ? t->f : s->it->shadow[id];
  if (!s->scan) memcpy(s->it->shadow[id] + from, t->f + from, sizeof(float) * (size_t)n);
  else if (nm_first_nonfinite(v + from, n) >= 0) s->bad[b] = 1;
}
/* the blocks of the tensors with mark[id] (all with shadows) */
static void spans(Interp *it, Spans *s, const char *mark) {
  int nn = it->g->nodes.n;
  s->first = xmalloc(sizeof(int64_t) * (size_t)(nn + 1));
  s->nblocks = 0;
  for (int id = 0; id < nn; id++) {
    s->first[id] = s->nblocks;
    if (mark[id]) s->nblocks += (it->t[id].n + SPAN_FLOATS - 1) / SPAN_FLOATS;
  }
  s->first[nn] = s->nblocks;
}

/* Whether update u's kernel can write its results next to the old values: sgd_update, whose
 * parameter and momentum no other update writes. */
static int updates_aside(const Interp *it, const Node *u, const char *written_twice) {
  return u->op == OP_sgd_update && u->id < it->nkernels && it->kernels[u->id].fn && !written_twice[u->in[0]] &&
         !written_twice[u->in[2]];
}

/* The updates are a transaction: when any result is not finite (a learning rate that blows
 * up), every tensor they write keeps its old values. An sgd_update kernel writes its new
 * values into the tensors' second buffers and says whether all are finite; the buffers trade
 * places when every update succeeded. Any other update's tensors are copied first, updated in
 * place, scanned, and put back on failure. */
static const UpdatePlan *update_plan(Interp *it) {
  if (it->plan) return it->plan;
  const Graph *g = it->g;
  int nn = g->nodes.n;
  if (!it->shadow) it->shadow = xcalloc((size_t)nn, sizeof(float *));
  UpdatePlan *p = xcalloc(1, sizeof *p);
  p->written = xcalloc((size_t)nn, 1), p->aside = xcalloc((size_t)nn, 1), p->copied = xcalloc((size_t)nn, 1);
  char *twice = xcalloc((size_t)nn, 1);
  for (int id = 0; id < nn; id++) {
    const Node *u = ir_node(g, id);
    if (u->role != ROLE_UPD) continue;
    for (int i = 0; i < u->nin; i++) {
      if (i == 1) continue; /* the gradient is read, not written */
      Tensor *t = &it->t[u->in[i]];
      if (p->written[u->in[i]]) twice[u->in[i]] = 1;
      p->written[u->in[i]] = 1;
      if (!it->shadow[u->in[i]]) it->shadow[u->in[i]] = xmalloc(sizeof(float) * (size_t)(t->n ? t->n : 1));
    }
  }
  for (int id = 0; id < nn; id++) {
    const Node *u = ir_node(g, id);
    if (u->role != ROLE_UPD) continue;
    int a = updates_aside(it, u, twice);
    for (int i = 0; i < u->nin; i++)
      if (i != 1) (a ? p->aside : p->copied)[u->in[i]] = 1;
  }
  free(twice);
  return it->plan = p;
}

static int run_updates(Interp *it, float lr) {
  const Graph *g = it->g;
  int nn = g->nodes.n;
  const UpdatePlan *p = update_plan(it);
  const char *written = p->written, *aside = p->aside, *copied = p->copied;
  Spans s = {.it = it, .copied = copied};
  spans(it, &s, copied);
  rt_parallel(it->threads, s.nblocks, span_block, &s);
  free(s.first);
  RefCtx c = {g, it->t, 1, it->seed, it->step, lr, NULL};
  int ok = 1, nonfinite = 0;
  for (int id = 0; ok && id < nn; id++) {
    const Node *u = ir_node(g, id);
    if (u->role != ROLE_UPD) continue;
    if (aside[u->in[0]]) {
      void *dest[3] = {it->shadow[u->in[0]], NULL, it->shadow[u->in[2]]};
      if (!run_kernel_to(it, &c, u, dest)) nonfinite = 1;
      continue;
    }
    ok = run_node(it, &c, u);
  }
  const char *bad = NULL;
  int scan_all = nonfinite || !ok; /* the failure path names the first bad tensor of all */
  const char *scan = scan_all ? written : copied;
  spans(it, &s, scan);
  s.scan = 1, s.bad = xcalloc((size_t)(s.nblocks ? s.nblocks : 1), sizeof(int64_t));
  if (ok) rt_parallel(it->threads, s.nblocks, span_block, &s);
  for (int id = 0; ok && id < nn && !bad; id++)
    for (int64_t b = s.first[id]; b < s.first[id + 1] && !bad; b++)
      if (s.bad[b]) bad = ir_node(g, id)->name;
  free(s.first);
  free(s.bad);
  if (ok && !bad && !nonfinite) {
    for (int id = 0; id < nn; id++)
      if (aside[id]) { /* the new values take the tensor's place; the old buffer is the next step's second */
        float *t = it->t[id].f;
        it->t[id].f = it->shadow[id], it->shadow[id] = t;
      }
    it->step++;
  } else {
    for (int id = 0; id < nn; id++)
      if (copied[id]) memcpy(it->t[id].f, it->shadow[id], sizeof(float) * (size_t)it->t[id].n);
    if (ok) fail(it, xasprintf("the update of %s is not finite; parameters were not updated", bad ? bad : "a parameter"));
  }
  return ok && !bad && !nonfinite;
}

int interp_train_step(Interp *it, float lr, float *loss) {
  if (it->g->loss < 0) return fail(it, xstrdup("the graph has no loss"));
  if (!inputs_finite(it)) return 0;
  if (!run_nodes(it, 1, ROLE_FWD, ROLE_BWD, 0, lr)) return 0;
  float l = it->t[it->g->loss].f[0];
  if (loss) *loss = l;
  if (!isfinite(l)) return fail(it, xasprintf("the loss is %f; parameters were not updated", (double)l));
  return run_updates(it, lr);
}
