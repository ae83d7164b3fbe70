/* read.c: parses the text printed by print.c back into a graph, so passes can be unit-tested
 * from text. Errors name the line; the reader never trusts its input (names, arities, ranges). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include "print.h"

typedef struct {
  const char *p;
  int line;
  char *err;
  jmp_buf fail;
} Reader;

static SQ_NORETURN void bad(Reader *r, const char *what) {
  r->err = xasprintf("line %d: %s near '%.20s'", r->line, what, r->p);
  longjmp(r->fail, 1);
}
static void skip_ws(Reader *r) {
  while (*r->p == ' ' || *r->p == '\t') r->p++;
}
static int accept(Reader *r, const char *lit) {
  skip_ws(r);
  size_t n = strlen(lit);
  if (strncmp(r->p, lit, n) != 0) return 0;
  r->p += n;
  return 1;
}
static void expect(Reader *r, const char *lit) {
  if (!accept(r, lit)) bad(r, "unexpected text");
}
/* A name as a span of the input: nothing is allocated until the name is kept, so a failure
 * (longjmp) cannot leak. */
typedef struct { const char *s; size_t n; } Span;
static Span word(Reader *r) {
  skip_ws(r);
  Span w = {r->p, 0};
  while (isalnum((unsigned char)*r->p) || *r->p == '_' || *r->p == '.') r->p++;
  w.n = (size_t)(r->p - w.s);
  if (!w.n) bad(r, "expected a name");
  return w;
}
static int span_is(Span w, const char *lit) { return strlen(lit) == w.n && strncmp(w.s, lit, w.n) == 0; }
static int find_span(const Graph *g, Span w) {
  char *name = xstrndup(w.s, w.n);
  int id = ir_find(g, name);
  free(name);
  return id;
}
static int op_of_span(Span w) {
  for (int i = 0; i < OP_COUNT; i++)
    if (span_is(w, op_info[i].name)) return i;
  return OP_COUNT;
}
static double number(Reader *r) {
  skip_ws(r);
  char *end;
  errno = 0;
  double v = strtod(r->p, &end);
  if (end == r->p || errno == ERANGE || !isfinite(v)) bad(r, "expected a number");
  r->p = end;
  return v;
}
static int64_t integer(Reader *r, int64_t lo, int64_t hi) {
  double v = number(r);
  if (v != floor(v) || v < (double)lo || v > (double)hi) bad(r, "integer out of range");
  return (int64_t)v;
}
static int node_ref(Reader *r, Graph *g) {
  expect(r, "%");
  int id = find_span(g, word(r));
  if (id < 0) bad(r, "unknown node");
  return id;
}
static void end_line(Reader *r) {
  skip_ws(r);
  if (*r->p && *r->p != '\n') bad(r, "unexpected text at end of line");
  if (*r->p) r->p++;
  r->line++;
}

static void read_attrs(Reader *r, Node *n) {
  if (!accept(r, "{")) return;
  do {
    Span name = word(r);
    int i = -1;
    for (int k = 0; k < op_info[n->op].nattr; k++)
      if (span_is(name, op_info[n->op].attrs[k].name)) i = k;
    if (i < 0) bad(r, "unknown attribute");
    expect(r, "=");
    AttrVal *a = &n->attr[i];
    a->set = 1;
    if (op_info[n->op].attrs[i].type == AT_INTS) {
      expect(r, "[");
      a->nlist = 0;
      if (!accept(r, "]")) {
        do {
          if (a->nlist == SQ_MAX_RANK) bad(r, "list too long");
          a->list[a->nlist++] = integer(r, -((int64_t)1 << 50), (int64_t)1 << 50);
        } while (accept(r, ","));
        expect(r, "]");
      }
    } else {
      a->num = number(r);
    }
  } while (accept(r, ","));
  expect(r, "}");
}

static void read_type(Reader *r, Node *n) {
  expect(r, ":");
  if (accept(r, "?")) return;
  Span dt = word(r);
  if (span_is(dt, "f32")) n->dtype = DT_F32;
  else if (span_is(dt, "i32")) n->dtype = DT_I32;
  else if (span_is(dt, "void")) n->dtype = DT_VOID;
  else if (span_is(dt, "q8")) n->dtype = DT_Q8;
  else if (span_is(dt, "q4")) n->dtype = DT_Q4;
  else if (span_is(dt, "s16")) n->dtype = DT_S16;
  else bad(r, "unknown dtype");
  n->shaped = 1;
  if (n->dtype == DT_VOID) return;
  expect(r, "[");
  if (!accept(r, "]")) {
    do {
      if (n->shape.rank == SQ_MAX_RANK) bad(r, "rank too large");
      n->shape.d[n->shape.rank++] = integer(r, 1, (int64_t)1 << SQ_MAX_NUMEL_LOG2);
    } while (accept(r, ","));
    expect(r, "]");
  }
  if (shape_numel(&n->shape) < 0) bad(r, "tensor too large");
}

static Node *add_named(Reader *r, Graph *g, Span name, NodeKind kind, OpCode op, int nin, const int *in) {
  if (find_span(g, name) >= 0) bad(r, "duplicate node name");
  char *s = xstrndup(name.s, name.n);
  Node *n = kind == NK_OP ? ir_add_op(g, op, s, nin, in, (SrcLoc){0, 0}) : ir_add(g, kind, s, (SrcLoc){0, 0});
  free(s);
  return n;
}

static void read_node(Reader *r, Graph *g) {
  Span name = word(r);
  expect(r, "=");
  Span head = word(r);
  static const struct { const char *w; NodeKind k; } leaves[] = {
      {"input", NK_INPUT}, {"label", NK_LABEL}, {"param", NK_PARAM}, {"state", NK_STATE}};
  Node *n = NULL;
  for (size_t i = 0; i < sizeof leaves / sizeof *leaves; i++)
    if (span_is(head, leaves[i].w)) n = add_named(r, g, name, leaves[i].k, OP_COUNT, 0, NULL);
  if (n && (n->kind == NK_PARAM || n->kind == NK_STATE)) {
    Span init = word(r);
    int found = 0;
    for (int k = INIT_ZEROS; k <= INIT_NORMAL; k++)
      if (span_is(init, init_name((InitKind)k))) n->init = (InitKind)k, found = 1;
    if (!found) bad(r, "unknown initialiser");
    if (accept(r, "(")) {
      n->init_scale = number(r);
      expect(r, ")");
    }
  } else if (!n) {
    int op = op_of_span(head);
    if (op == OP_COUNT) bad(r, "unknown op");
    int in[SQ_MAX_IN], nin = 0;
    expect(r, "(");
    if (!accept(r, ")")) {
      do {
        if (nin == SQ_MAX_IN) bad(r, "too many inputs");
        in[nin++] = node_ref(r, g);
      } while (accept(r, ","));
      expect(r, ")");
    }
    n = add_named(r, g, name, NK_OP, (OpCode)op, nin, in);
    read_attrs(r, n);
    if (nin != ir_nin(n)) bad(r, "wrong number of inputs");
  }
  read_type(r, n);
  if (accept(r, "@arena+")) n->arena = integer(r, 0, (int64_t)1 << 50);
  if (accept(r, "bwd")) n->role = ROLE_BWD;
  else if (accept(r, "upd")) n->role = ROLE_UPD;
  end_line(r);
}

static void read_header(Reader *r, Graph *g) {
  expect(r, "graph");
  Span name = word(r);
  free(g->name);
  g->name = xstrndup(name.s, name.n);
  expect(r, "batch=");
  g->batch = integer(r, 1, 1 << 24);
  end_line(r);
  expect(r, "optimizer");
  int op = op_of_span(word(r));
  if (op != OP_sgd_update && op != OP_adam_update) bad(r, "unknown optimizer");
  g->optimizer.op = (OpCode)op;
  ir_attr_defaults(&g->optimizer);
  read_attrs(r, &g->optimizer);
  end_line(r);
  expect(r, "quant bits=");
  g->quant.bits = (int)integer(r, 1, 32);
  expect(r, "groups=");
  g->quant.groups = accept(r, "auto") ? 0 : (int)integer(r, 1, 8);
  expect(r, "norm=");
  g->quant.norm = accept(r, "l1") ? NORM_L1 : (expect(r, "l2"), NORM_L2);
  expect(r, "weights=");
  g->quant.per_channel_weights = accept(r, "per_channel") ? 1 : (expect(r, "per_tensor"), 0);
  end_line(r);
  while (accept(r, "quant layer")) {
    Span layer = word(r);
    expect(r, "bits=");
    LayerBits lb = {NULL, (int)integer(r, 1, 32), {0, 0}};
    lb.layer = xstrndup(layer.s, layer.n);
    VEC_PUSH(g->quant.layers, lb);
    end_line(r);
  }
  if (accept(r, "arena bytes=")) {
    g->arena_bytes = integer(r, 1, (int64_t)1 << 50);
    end_line(r);
  }
}

Graph *ir_read(const char *text, char **err) {
  Reader r;
  memset(&r, 0, sizeof r);
  r.p = text;
  r.line = 1;
  Graph *volatile g = ir_new("model", 1);
  if (setjmp(r.fail)) {
    ir_free(g);
    *err = r.err;
    return NULL;
  }
  read_header(&r, g);
  while (*r.p) {
    if (accept(&r, "%")) {
      read_node(&r, g);
    } else if (accept(&r, "loss")) {
      g->loss = node_ref(&r, g);
      end_line(&r);
    } else if (accept(&r, "output")) {
      Span name = word(&r);
      GraphOutput o = {NULL, node_ref(&r, g)};
      o.name = xstrndup(name.s, name.n);
      VEC_PUSH(g->outputs, o);
      end_line(&r);
    } else {
      skip_ws(&r);
      if (*r.p != '\n') bad(&r, "expected a node, 'loss' or 'output'");
      end_line(&r);
    }
  }
  *err = NULL;
  return g;
}
