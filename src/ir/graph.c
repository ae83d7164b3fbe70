/* graph.c: node storage, unique names, attributes and shape helpers of the graph IR. */
#include "graph.h"
#include "../../runtime/numerics.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

Graph *ir_new(const char *name, int64_t batch) {
  Graph *g = xcalloc(1, sizeof *g);
  g->name = xstrdup(name ? name : "model");
  g->batch = batch;
  g->loss = -1;
  g->optimizer.kind = NK_OP;
  g->optimizer.op = OP_sgd_update;
  ir_attr_defaults(&g->optimizer);
  g->quant.bits = 32;
  g->quant.norm = NORM_L2;
  return g;
}

void ir_free(Graph *g) {
  if (!g) return;
  for (int i = 0; i < g->nodes.n; i++) {
    free(g->nodes.v[i]->name);
    free(g->nodes.v[i]);
  }
  VEC_FREE(g->nodes);
  for (int i = 0; i < g->outputs.n; i++) free(g->outputs.v[i].name);
  VEC_FREE(g->outputs);
  for (int i = 0; i < g->quant.layers.n; i++) free(g->quant.layers.v[i].layer);
  VEC_FREE(g->quant.layers);
  free(g->name_slots);
  free(g->name);
  free(g);
}

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int ir_find(const Graph *g, const char *name) {
  if (!g->name_cap) return -1;
  for (uint64_t i = hash_str(name);; i++) {
    int id = g->name_slots[i & (uint64_t)(g->name_cap - 1)];
    if (id < 0) return -1;
    if (strcmp(g->nodes.v[id]->name, name) == 0) return id;
  }
}

static void name_insert(Graph *g, int id) {
  if (2 * (g->nodes.n + 1) > g->name_cap) {
    int cap = g->name_cap ? 2 * g->name_cap : 64;
    free(g->name_slots);
    g->name_slots = xmalloc(sizeof(int) * (size_t)cap);
    g->name_cap = cap;
    for (int i = 0; i < cap; i++) g->name_slots[i] = -1;
    for (int j = 0; j < g->nodes.n; j++)
      if (j != id) name_insert(g, j);
  }
  uint64_t i = hash_str(g->nodes.v[id]->name);
  while (g->name_slots[i & (uint64_t)(g->name_cap - 1)] >= 0) i++;
  g->name_slots[i & (uint64_t)(g->name_cap - 1)] = id;
}

char *ir_unique_name(const Graph *g, const char *base) {
  if (!base || !*base) base = "t";
  char *name = xstrdup(base);
  for (int k = 2; ir_find(g, name) >= 0; k++) {
    free(name);
    name = xasprintf("%s.%d", base, k);
  }
  return name;
}

Node *ir_add(Graph *g, NodeKind kind, const char *name, SrcLoc loc) {
  Node *n = xcalloc(1, sizeof *n);
  n->name = ir_unique_name(g, name);
  n->id = g->nodes.n;
  n->kind = kind;
  n->op = OP_COUNT;
  n->arena = -1;
  n->loc = loc;
  VEC_PUSH(g->nodes, n);
  name_insert(g, n->id);
  return n;
}

Node *ir_add_op(Graph *g, OpCode op, const char *name, int nin, const int *in, SrcLoc loc) {
  SQ_ASSERT(op < OP_COUNT && nin <= SQ_MAX_IN);
  Node *n = ir_add(g, NK_OP, name ? name : op_info[op].name, loc);
  n->op = op;
  n->nin = nin;
  for (int i = 0; i < nin; i++) {
    SQ_ASSERT(in[i] >= 0 && in[i] < n->id);
    n->in[i] = in[i];
  }
  ir_attr_defaults(n);
  return n;
}

static void rebuild_names(Graph *g) {
  free(g->name_slots);
  g->name_slots = NULL;
  g->name_cap = 0;
  int n = g->nodes.n;
  g->nodes.n = 0; /* name_insert sizes the table from nodes.n */
  for (int i = 0; i < n; i++) {
    g->nodes.n = i;
    name_insert(g, i);
  }
  g->nodes.n = n;
}

void ir_rename(Graph *g, int id, const char *name) {
  char *unique = ir_unique_name(g, name);
  free(g->nodes.v[id]->name);
  g->nodes.v[id]->name = unique;
  rebuild_names(g);
}

/* Depth-first: a node is placed after all its inputs; among ready nodes the old order is kept,
 * so nodes a pass appended land just before their first user. */
static void place(Graph *g, int id, char *placed, int *order, int *k) {
  if (placed[id]) return;
  placed[id] = 1;
  const Node *n = g->nodes.v[id];
  for (int i = 0; i < n->nin; i++) place(g, n->in[i], placed, order, k);
  order[(*k)++] = id;
}

void ir_toposort(Graph *g) {
  int n = g->nodes.n, k = 0;
  char *placed = xcalloc((size_t)n, 1);
  int *order = xmalloc(sizeof(int) * (size_t)n), *where = xmalloc(sizeof(int) * (size_t)n);
  for (int id = 0; id < n; id++) place(g, id, placed, order, &k);
  Node **old = xmalloc(sizeof(Node *) * (size_t)n);
  memcpy(old, g->nodes.v, sizeof(Node *) * (size_t)n);
  for (int i = 0; i < n; i++) where[order[i]] = i;
  for (int i = 0; i < n; i++) {
    Node *node = old[order[i]];
    node->id = i;
    for (int j = 0; j < node->nin; j++) node->in[j] = where[node->in[j]];
    g->nodes.v[i] = node;
  }
  if (g->loss >= 0) g->loss = where[g->loss];
  for (int i = 0; i < g->outputs.n; i++) g->outputs.v[i].node = where[g->outputs.v[i].node];
  rebuild_names(g);
  free(old);
  free(placed);
  free(order);
  free(where);
}

void ir_remove(Graph *g, const char *dead) {
  int n = g->nodes.n, k = 0;
  int *where = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
  for (int id = 0; id < n; id++) {
    Node *node = g->nodes.v[id];
    if (dead[id]) {
      where[id] = -1;
      free(node->name);
      free(node);
      continue;
    }
    where[id] = k;
    node->id = k;
    for (int j = 0; j < node->nin; j++) {
      node->in[j] = where[node->in[j]];
      SQ_ASSERT(node->in[j] >= 0);
    }
    g->nodes.v[k++] = node;
  }
  g->nodes.n = k;
  if (g->loss >= 0) {
    g->loss = where[g->loss];
    SQ_ASSERT(g->loss >= 0);
  }
  for (int i = 0; i < g->outputs.n; i++) {
    g->outputs.v[i].node = where[g->outputs.v[i].node];
    SQ_ASSERT(g->outputs.v[i].node >= 0);
  }
  rebuild_names(g);
  free(where);
}

int ir_has_bias(const Node *n) { return op_attr_index(n->op, "bias") >= 0 && ir_int(n, "bias"); }

int ir_nin(const Node *n) { return op_info[n->op].nin - (op_attr_index(n->op, "bias") >= 0 && !ir_int(n, "bias")); }

void ir_attr_defaults(Node *n) {
  const OpInfo *oi = &op_info[n->op];
  for (int i = 0; i < oi->nattr; i++) {
    AttrVal *a = &n->attr[i];
    memset(a, 0, sizeof *a);
    if (!isnan(oi->attrs[i].def)) {
      a->set = 1;
      a->num = oi->attrs[i].def;
    }
    if (oi->attrs[i].type == AT_INTS) a->num = 0;
  }
}

static int attr_slot(const Node *n, const char *attr) {
  int i = n->kind == NK_OP ? op_attr_index(n->op, attr) : -1;
  if (i < 0) SQ_INTERNAL("node '%s' has no attribute '%s'", n->name, attr);
  return i;
}
const AttrVal *ir_attr(const Node *n, const char *attr) { return &n->attr[attr_slot(n, attr)]; }
double ir_num(const Node *n, const char *attr) { return ir_attr(n, attr)->num; }
int64_t ir_int(const Node *n, const char *attr) { return (int64_t)ir_attr(n, attr)->num; }
void ir_set_num(Node *n, const char *attr, double v) {
  AttrVal *a = &n->attr[attr_slot(n, attr)];
  a->set = 1;
  a->num = v;
}
void ir_set_list(Node *n, const char *attr, const int64_t *v, int len) {
  AttrVal *a = &n->attr[attr_slot(n, attr)];
  SQ_ASSERT(len >= 0 && len <= SQ_MAX_RANK);
  a->set = 1;
  a->nlist = len;
  if (len) memcpy(a->list, v, sizeof(int64_t) * (size_t)len);
}
void ir_copy_attrs(Node *dst, const Node *src) {
  const OpInfo *so = &op_info[src->op];
  for (int i = 0; i < so->nattr; i++) {
    int j = op_attr_index(dst->op, so->attrs[i].name);
    if (j >= 0) dst->attr[j] = src->attr[i];
  }
}

int64_t shape_numel(const Shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) {
    if (s->d[i] < 0 || __builtin_mul_overflow(n, s->d[i], &n)) return -1;
    if (n > ((int64_t)1 << SQ_MAX_NUMEL_LOG2)) return -1;
  }
  return n;
}
int shape_eq(const Shape *a, const Shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}
Shape shape_make(int rank, const int64_t *d) {
  Shape s = {0};
  SQ_ASSERT(rank >= 0 && rank <= SQ_MAX_RANK);
  s.rank = rank;
  for (int i = 0; i < rank; i++) s.d[i] = d[i];
  return s;
}
int64_t ir_aux_bytes(const Node *n) {
  if (n->kind != NK_OP) return 0;
  if (n->op == OP_batchnorm_pool) return shape_numel(&n->shape); /* a code byte per pooled value */
  if ((n->op == OP_batchnorm_dx || n->op == OP_batchnorm_pool_dx) && ir_int(n, "ranges")) return 4 * n->shape.d[1];
  if (n->op == OP_qconv2d && ir_int(n, "chansums")) {
    int64_t e = shape_numel(&n->shape);
    return ir_s16_sums_at(e) - 2 * e + 8 * n->shape.d[1];
  }
  return 0;
}

int ir_may_be_view(const Node *n) { return n->kind == NK_OP && (n->op == OP_flatten || n->op == OP_reshape); }

int ir_is_view(const Graph *g, const Node *n) {
  return ir_may_be_view(n) && n->arena >= 0 && n->arena == ir_in(g, n, 0)->arena;
}

int64_t ir_tensor_bytes(const Node *n) {
  int64_t e = shape_numel(&n->shape);
  switch (n->dtype) {
  case DT_Q8: return e;
  case DT_Q4: return nm_q_bytes(e, 1);
  case DT_S16: return 2 * e + ir_aux_bytes(n);
  case DT_VOID: return 0;
  default: return 4 * e + ir_aux_bytes(n);
  }
}

const char *dtype_name(DType dt) {
  static const char *const names[] = {"f32", "i32", "void", "q8", "q4", "s16"};
  return names[dt];
}
char *type_str(DType dt, const Shape *s) {
  StrBuf b = {0};
  sb_puts(&b, dtype_name(dt));
  if (dt == DT_VOID) return sb_take(&b);
  sb_putc(&b, '[');
  for (int i = 0; i < s->rank; i++) sb_printf(&b, "%s%lld", i ? "," : "", (long long)s->d[i]);
  sb_putc(&b, ']');
  return sb_take(&b);
}
const char *kind_name(NodeKind k) {
  static const char *const names[] = {"op", "input", "label", "param", "state"};
  return names[k];
}
const char *init_name(InitKind k) {
  static const char *const names[] = {"zeros", "ones", "uniform", "normal"};
  return names[k];
}
