/* model.c: the C ABI of include/sq/sq.h. The generated object of every library carries the
 * compiled graph IR (sq__graph_ir), the target's name (sq__target) and a kernel table
 * (sq__kernels, one entry per graph node): nodes with a generated kernel run it, the others
 * run their reference body. With an empty table (the "reference" target) this is the
 * reference executor itself, which the generated kernels are tested against. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../include/sq/sq.h"
#include "../src/interp/snapshot.h"
#include "../src/ir/print.h"
#include "checkpoint.h"

/* from the generated object (src/backend/llvm/module.c) */
extern const char sq__graph_ir[];
extern const char sq__target[];
extern const InterpKernel sq__kernels[];
extern const int64_t sq__nkernels;

struct sq_model {
  Graph *g;
  Interp *it;
  int x, y, out;       /* node ids: the input, the label, the first output */
  int threads;
  char *err;
};

static sq_status set_err(sq_model *m, sq_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  free(m->err);
  m->err = msg;
  return st;
}

static int first_of(const Graph *g, NodeKind k) {
  for (int i = 0; i < g->nodes.n; i++)
    if (ir_node(g, i)->kind == k) return i;
  return -1;
}

static sq_model_info info;

const sq_model_info *sq_info(void) {
  if (!info.name) { /* parsed once; the text is a constant of this library */
    char *err = NULL;
    Graph *g = ir_read(sq__graph_ir, &err);
    if (!g) {
      free(err);
      return NULL;
    }
    static char name[128];
    snprintf(name, sizeof name, "%s", g->name);
    int x = first_of(g, NK_INPUT);
    info.batch = g->batch;
    info.input_size = x >= 0 ? shape_numel(&ir_node(g, x)->shape) / g->batch : 0;
    info.output_size = g->outputs.n ? shape_numel(&ir_node(g, g->outputs.v[0].node)->shape) / g->batch : 0;
    info.bits = g->quant.bits;
    info.target = sq__target;
    ir_free(g);
    info.name = name;
  }
  return &info;
}

sq_status sq_create(sq_model **out, uint64_t seed) {
  if (!out) return SQ_ERR_ARG;
  *out = NULL;
  char *err = NULL;
  Graph *g = ir_read(sq__graph_ir, &err);
  if (!g) {
    free(err);
    return SQ_ERR_FORMAT;
  }
  sq_model *m = calloc(1, sizeof *m);
  if (!m) {
    ir_free(g);
    return SQ_ERR_NOMEM;
  }
  m->g = g;
  m->x = first_of(g, NK_INPUT);
  m->y = first_of(g, NK_LABEL);
  m->out = g->outputs.n ? g->outputs.v[0].node : -1;
  m->threads = 1;
  m->it = interp_new(g, seed);
  interp_set_kernels(m->it, sq__kernels, sq__nkernels);
  *out = m;
  return SQ_OK;
}

void sq_destroy(sq_model *m) {
  if (!m) return;
  interp_free(m->it);
  ir_free(m->g);
  free(m->err);
  free(m);
}

const char *sq_last_error(const sq_model *m) { return m && m->err ? m->err : ""; }
int64_t sq_step(const sq_model *m) { return m ? interp_step(m->it) : 0; }

sq_status sq_set_threads(sq_model *m, int n) {
  if (!m) return SQ_ERR_ARG;
  if (n < 1 || n > 256) return set_err(m, SQ_ERR_ARG, "sq_set_threads: %d threads (1..256)", n);
  m->threads = n; /* generated kernels split their outputs in n fixed parts: the bits never depend on n */
  interp_set_threads(m->it, n);
  return SQ_OK;
}

/* Batchnorm running statistics change in the forward pass: a failed step puts them back. */
static float **save_forward_state(sq_model *m) {
  float **copy = calloc((size_t)m->g->nodes.n, sizeof(float *));
  for (int id = 0; copy && id < m->g->nodes.n; id++) {
    const Node *n = ir_node(m->g, id);
    if (n->kind != NK_OP || n->role != ROLE_FWD) continue;
    for (int i = 0; i < n->nin; i++) {
      const Node *s = ir_in(m->g, n, i);
      if (s->kind != NK_STATE || copy[s->id]) continue;
      Tensor *t = interp_tensor(m->it, s->id);
      copy[s->id] = malloc(sizeof(float) * (size_t)t->n);
      if (copy[s->id]) memcpy(copy[s->id], t->f, sizeof(float) * (size_t)t->n);
    }
  }
  return copy;
}

static void end_forward_state(sq_model *m, float **copy, int restore) {
  for (int id = 0; copy && id < m->g->nodes.n; id++) {
    if (!copy[id]) continue;
    Tensor *t = interp_tensor(m->it, id);
    if (restore) memcpy(t->f, copy[id], sizeof(float) * (size_t)t->n);
    free(copy[id]);
  }
  free(copy);
}

/* x holds n input values as floats; an i32 input (ids for an embedding) takes them as
 * integers, which they must be exactly. Elements past n are zero. */
static sq_status write_input(sq_model *m, Tensor *tx, const float *x, int64_t n, const char *fn) {
  if (tx->f) {
    memcpy(tx->f, x, sizeof(float) * (size_t)n);
    memset(tx->f + n, 0, sizeof(float) * (size_t)(tx->n - n));
    return SQ_OK;
  }
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i]))
      return set_err(m, SQ_ERR_NUMERIC, "%s: input %lld is not finite; parameters were not updated", fn, (long long)i);
    else if (!(x[i] == floorf(x[i]) && fabsf(x[i]) <= 16777216.0f))
      return set_err(m, SQ_ERR_ARG, "%s: input %lld is %g, but this model's input holds integer ids", fn, (long long)i,
                     (double)x[i]);
  for (int64_t i = 0; i < tx->n; i++) tx->i[i] = i < n ? (int32_t)x[i] : 0;
  return SQ_OK;
}

/* y holds one int32 label per sample: class indices, or the targets of a float label with one
 * value per sample (converted to float). */
static sq_status write_labels(sq_model *m, Tensor *ty, const int32_t *y) {
  if (ty->i) {
    memcpy(ty->i, y, sizeof(int32_t) * (size_t)ty->n);
    return SQ_OK;
  }
  if (ty->n != m->g->batch)
    return set_err(m, SQ_ERR_UNSUPPORTED, "sq_train_step: the label holds %lld floats per sample; this ABI passes one "
                                          "value per sample", (long long)(ty->n / m->g->batch));
  for (int64_t i = 0; i < ty->n; i++) ty->f[i] = (float)y[i];
  return SQ_OK;
}

sq_status sq_train_step(sq_model *m, const float *x, const int32_t *y, float lr, sq_step_stats *st) {
  if (!m) return SQ_ERR_ARG;
  if (!x || !y) return set_err(m, SQ_ERR_ARG, "sq_train_step: x and y must not be NULL");
  if (!(lr >= 0) || !isfinite(lr)) return set_err(m, SQ_ERR_ARG, "sq_train_step: learning rate %g", (double)lr);
  if (m->x < 0 || m->y < 0) return set_err(m, SQ_ERR_UNSUPPORTED, "this model has no input or no label");
  Tensor *tx = interp_tensor(m->it, m->x), *ty = interp_tensor(m->it, m->y);
  sq_status wst = write_input(m, tx, x, tx->n, "sq_train_step");
  if (wst == SQ_OK) wst = write_labels(m, ty, y);
  if (wst != SQ_OK) return wst;
  float **saved = save_forward_state(m);
  if (!saved) return set_err(m, SQ_ERR_NOMEM, "sq_train_step: out of memory");
  float loss;
  if (!interp_train_step(m->it, lr, &loss)) {
    end_forward_state(m, saved, 1);
    const char *why = interp_error(m->it);
    int numeric = strstr(why, "not finite") || strstr(why, "the loss is") || strstr(why, "range");
    return set_err(m, numeric ? SQ_ERR_NUMERIC : SQ_ERR_ARG, "%s", why);
  }
  end_forward_state(m, saved, 0);
  if (st) {
    st->loss = loss;
    st->accuracy = 0;
    if (m->out >= 0 && ty->i) {
      const Tensor *z = interp_tensor(m->it, m->out);
      int64_t C = z->d[z->rank - 1], rows = z->n / C, right = 0;
      for (int64_t r = 0; r < rows && r < ty->n; r++) {
        int64_t best = 0;
        for (int64_t c = 1; c < C; c++)
          if (z->f[r * C + c] > z->f[r * C + best]) best = c;
        right += best == ty->i[r];
      }
      st->accuracy = rows ? (float)right / (float)rows : 0;
    }
  }
  return SQ_OK;
}

sq_status sq_infer(sq_model *m, const float *x, int64_t n, float *logits) {
  if (!m) return SQ_ERR_ARG;
  if (n < 0 || (n > 0 && (!x || !logits))) return set_err(m, SQ_ERR_ARG, "sq_infer: bad arguments (n = %lld)", (long long)n);
  if (m->x < 0 || m->out < 0) return set_err(m, SQ_ERR_UNSUPPORTED, "this model has no input or no output");
  Tensor *tx = interp_tensor(m->it, m->x), *z = interp_tensor(m->it, m->out);
  int64_t B = m->g->batch, in = tx->n / B, outn = z->n / B;
  for (int64_t s = 0; s < n; s += B) {
    int64_t k = n - s < B ? n - s : B;
    sq_status wst = write_input(m, tx, x + s * in, k * in, "sq_infer");
    if (wst != SQ_OK) return wst;
    if (!interp_forward(m->it, 0)) return set_err(m, SQ_ERR_NUMERIC, "%s", interp_error(m->it));
    memcpy(logits + s * outn, z->f, sizeof(float) * (size_t)(k * outn));
  }
  return SQ_OK;
}

static sq_status from_ck(sq_model *m, int rc, char *err) {
  sq_status st = rc == CK_EIO ? SQ_ERR_IO : rc == CK_EMISMATCH ? SQ_ERR_MISMATCH : SQ_ERR_FORMAT;
  set_err(m, st, "%s", err ? err : "checkpoint error");
  free(err);
  return st;
}

sq_status sq_save(const sq_model *cm, const char *path) {
  sq_model *m = (sq_model *)cm; /* only the error message changes */
  if (!m) return SQ_ERR_ARG;
  if (!path) return set_err(m, SQ_ERR_ARG, "sq_save: path is NULL");
  char *err = NULL;
  int rc = interp_save(m->it, path, NULL, 0, &err);
  return rc ? from_ck(m, rc, err) : SQ_OK;
}

sq_status sq_load(sq_model *m, const char *path) {
  if (!m) return SQ_ERR_ARG;
  if (!path) return set_err(m, SQ_ERR_ARG, "sq_load: path is NULL");
  char *err = NULL;
  int rc = interp_load(m->it, path, NULL, NULL, 0, &err);
  return rc ? from_ck(m, rc, err) : SQ_OK;
}
