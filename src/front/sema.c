/* sema.c: AST -> graph IR. Every user error is reported at its source location; sema keeps
 * going after an error where it can, so one run shows most problems. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../ops/rules.h"
#include "sema.h"

typedef struct { const char *name; int node; SrcLoc loc; } Sym;

typedef struct {
  Diag *d;
  Graph *g;
  int64_t batch;
  VEC(Sym) syms;
} Sema;

static const Sym *sym_find(const Sema *s, const char *name) {
  for (int i = 0; i < s->syms.n; i++)
    if (strcmp(s->syms.v[i].name, name) == 0) return &s->syms.v[i];
  return NULL;
}

static void unknown_name(Sema *s, SrcLoc loc, const char *name) {
  const char **names = xmalloc(sizeof(char *) * (size_t)(s->syms.n + 1));
  for (int i = 0; i < s->syms.n; i++) names[i] = s->syms.v[i].name;
  const char *near = sq_closest_name(name, names, s->syms.n);
  if (near) diag_error(s->d, loc, "unknown name '%s'; did you mean '%s'?", name, near);
  else diag_error(s->d, loc, "unknown name '%s'", name);
  free(names);
}

/* Defines a symbol; reports a redefinition (and where the first one was). */
static int define(Sema *s, const char *name, int node, SrcLoc loc) {
  const Sym *old = sym_find(s, name);
  if (old) {
    diag_error(s->d, loc, "redefinition of '%s'", name);
    diag_note(s->d, old->loc, "'%s' was first defined here", name);
    return 0;
  }
  Sym sym = {name, node, loc};
  VEC_PUSH(s->syms, sym);
  return 1;
}

static const char *value_desc(const Value *v) {
  static const char *const desc[] = {"an integer", "a number", "a name", "a string", "a list", "a call", "a type"};
  return desc[v->kind];
}

/* An integer-valued literal (or B, the batch size) for an INT attribute or list element. */
static int int_value(Sema *s, const Value *v, int64_t *out) {
  if (v->kind == AV_INT) return *out = v->i, 1;
  if (v->kind == AV_IDENT && strcmp(v->s, "B") == 0) return *out = s->batch, 1;
  return 0;
}

/* Converts v into attribute spec a of `what`; reports type and range errors. */
static int set_attr(Sema *s, Node *n, const AttrSpec *a, const Value *v, const char *what) {
  int64_t iv;
  double num = 0;
  switch (a->type) {
  case AT_INTS: {
    if (v->kind != AV_LIST) {
      diag_error(s->d, v->loc, "attribute '%s' of %s must be a list of integers, got %s", a->name, what, value_desc(v));
      return 0;
    }
    int64_t list[SQ_MAX_RANK];
    int len = 0;
    for (const Value *e = v->items; e; e = e->next) {
      if (len == SQ_MAX_RANK) {
        diag_error(s->d, e->loc, "attribute '%s' of %s has more than %d elements", a->name, what, SQ_MAX_RANK);
        return 0;
      }
      if (!int_value(s, e, &iv)) {
        diag_error(s->d, e->loc, "elements of '%s' must be integers, got %s", a->name, value_desc(e));
        return 0;
      }
      if ((double)iv < a->lo || (double)iv > a->hi) {
        diag_error(s->d, e->loc, "element %lld of '%s' is out of range (%.15g to %.15g)", (long long)iv, a->name, a->lo, a->hi);
        return 0;
      }
      list[len++] = iv;
    }
    ir_set_list(n, a->name, list, len);
    return 1;
  }
  case AT_INT:
  case AT_BOOL:
    if (a->type == AT_BOOL && v->kind == AV_IDENT && (!strcmp(v->s, "true") || !strcmp(v->s, "false"))) {
      iv = strcmp(v->s, "true") == 0;
    } else if (!int_value(s, v, &iv)) {
      diag_error(s->d, v->loc, "attribute '%s' of %s must be %s, got %s", a->name, what,
                 a->type == AT_BOOL ? "true or false" : "an integer", value_desc(v));
      return 0;
    }
    num = (double)iv;
    break;
  case AT_FLOAT:
    if (v->kind != AV_INT && v->kind != AV_FLOAT) {
      diag_error(s->d, v->loc, "attribute '%s' of %s must be a number, got %s", a->name, what, value_desc(v));
      return 0;
    }
    num = v->kind == AV_INT ? (double)v->i : v->f;
    break;
  }
  if (!(num >= a->lo && num <= a->hi)) {
    diag_error(s->d, v->loc, "attribute '%s' of %s must be between %.15g and %.15g, got %.15g", a->name, what, a->lo,
               a->hi, num);
    return 0;
  }
  ir_set_num(n, a->name, num);
  return 1;
}

/* Applies a call's attribute arguments (positional ones after the tensors, in declaration
 * order, then named ones) to n. Returns 0 after reporting any error. */
static int apply_attrs(Sema *s, Node *n, const Value *call, const Arg *first_attr, const char *what) {
  const OpInfo *oi = &op_info[n->op];
  int given[SQ_MAX_ATTRS] = {0}, next = 0, ok = 1;
  for (const Arg *a = first_attr; a; a = a->next) {
    int idx;
    SrcLoc loc = a->name ? a->name_loc : a->v->loc;
    if (a->name) {
      idx = op_attr_index(n->op, a->name);
      if (idx < 0 || oi->attrs[idx].hidden) {
        const char *names[SQ_MAX_ATTRS];
        for (int i = 0; i < oi->nattr; i++) names[i] = oi->attrs[i].hidden ? NULL : oi->attrs[i].name;
        const char *near = sq_closest_name(a->name, names, oi->nattr);
        if (near) diag_error(s->d, loc, "unknown attribute '%s' for %s; did you mean '%s'?", a->name, what, near);
        else diag_error(s->d, loc, "unknown attribute '%s' for %s", a->name, what);
        ok = 0;
        continue;
      }
    } else {
      while (next < oi->nattr && (oi->attrs[next].hidden || given[next])) next++;
      if (next == oi->nattr) {
        diag_error(s->d, loc, "too many arguments to %s", what);
        ok = 0;
        break;
      }
      idx = next;
    }
    if (given[idx]++) {
      diag_error(s->d, loc, "duplicate attribute '%s' for %s", oi->attrs[idx].name, what);
      ok = 0;
      continue;
    }
    ok &= set_attr(s, n, &oi->attrs[idx], a->v, what);
  }
  for (int i = 0; ok && i < oi->nattr; i++)
    if (!n->attr[i].set) {
      diag_error(s->d, call->loc, "%s needs the attribute '%s'", what, oi->attrs[i].name);
      ok = 0;
    }
  return ok;
}

static int is_tensor_expr(const Value *v) { return v->kind == AV_IDENT || v->kind == AV_CALL; }

static int eval_tensor(Sema *s, const Value *v, const char *name);

/* A call of a user op: tensor arguments, the op's own parameters, then the node itself. */
static int eval_call(Sema *s, const Value *v, const char *name) {
  OpCode op = op_lookup(v->s);
  if (op == OP_COUNT || op_info[op].user_args < 0) {
    const char *near = op_suggest(v->s);
    if (near) diag_error(s->d, v->loc, "unknown op '%s'; did you mean '%s'?", v->s, near);
    else diag_error(s->d, v->loc, "unknown op '%s'", v->s);
    return -1;
  }
  const OpInfo *oi = &op_info[op];
  int in[SQ_MAX_IN], ntensor = 0, ok = 1;
  const Arg *a = v->args;
  for (; a && !a->name && is_tensor_expr(a->v); a = a->next) {
    if (ntensor == oi->user_args) {
      diag_error(s->d, a->v->loc, "%s takes %d tensor argument%s, got more", oi->name, oi->user_args,
                 oi->user_args == 1 ? "" : "s");
      return -1;
    }
    char *sub = xasprintf("%s.%s", name, a->v->kind == AV_CALL ? a->v->s : "arg");
    int id = eval_tensor(s, a->v, sub);
    free(sub);
    if (id < 0) ok = 0;
    in[ntensor++] = id;
  }
  if (ntensor < oi->user_args) {
    diag_error(s->d, a ? a->v->loc : v->loc, "%s takes %d tensor argument%s, got %d", oi->name, oi->user_args,
               oi->user_args == 1 ? "" : "s", ntensor);
    return -1;
  }
  for (const Arg *b = a; b; b = b->next)
    if (!b->name && is_tensor_expr(b->v) && !(b->v->kind == AV_IDENT && (!strcmp(b->v->s, "B") ||
                                                                         !strcmp(b->v->s, "true") ||
                                                                         !strcmp(b->v->s, "false")))) {
      diag_error(s->d, b->v->loc, "%s takes %d tensor argument%s; this one comes after its attributes", oi->name,
                 oi->user_args, oi->user_args == 1 ? "" : "s");
      return -1;
    }
  Node proto = {0};
  proto.kind = NK_OP;
  proto.op = op;
  ir_attr_defaults(&proto);
  if (!apply_attrs(s, &proto, v, a, oi->name) || !ok) return -1;
  /* The node's final name is fixed first so that its parameters are "<that name>.weight". */
  char *unique = ir_unique_name(s->g, name);
  InitCtx ic = {s->g, unique, v->loc, ntensor, {0}};
  memcpy(ic.in, in, sizeof(int) * (size_t)ntensor);
  if (oi->init) oi->init(&ic, &proto);
  SQ_ASSERT(ic.nin == ir_nin(&proto));
  Node *n = ir_add_op(s->g, op, unique, ic.nin, ic.in, v->loc);
  free(unique);
  memcpy(n->attr, proto.attr, sizeof n->attr);
  if (op_attr_index(op, "stream") >= 0) ir_set_num(n, "stream", s->g->next_stream++);
  return n->id;
}

static int eval_tensor(Sema *s, const Value *v, const char *name) {
  if (v->kind == AV_IDENT) {
    const Sym *sym = sym_find(s, v->s);
    if (!sym) {
      unknown_name(s, v->loc, v->s);
      return -1;
    }
    return sym->node; /* -1 for a name whose definition failed: already reported */
  }
  if (v->kind == AV_CALL) return eval_call(s, v, name);
  diag_error(s->d, v->loc, "expected a tensor expression, got %s", value_desc(v));
  return -1;
}

static int leaf_type(Sema *s, const Stmt *st, DType *dtype, Shape *shape);

/* A failed definition still defines its name (as no node), so later uses stay quiet. */
static void declare_leaf(Sema *s, const Stmt *st) {
  DType dt;
  Shape sh;
  if (sym_find(s, st->name)) {
    define(s, st->name, -1, st->name_loc);
    return;
  }
  if (!leaf_type(s, st, &dt, &sh)) {
    define(s, st->name, -1, st->name_loc);
    return;
  }
  Node *n = ir_add(s->g, st->kind == ST_INPUT ? NK_INPUT : NK_LABEL, st->name, st->name_loc);
  n->dtype = dt;
  n->shape = sh;
  n->shaped = 1;
  define(s, st->name, n->id, st->name_loc);
}

static int leaf_type(Sema *s, const Stmt *st, DType *dtype, Shape *shape) {
  const Value *t = st->v;
  if (!strcmp(t->s, "f32")) *dtype = DT_F32;
  else if (!strcmp(t->s, "i32")) *dtype = DT_I32;
  else {
    diag_error(s->d, t->loc, "unknown element type '%s' (expected f32 or i32)", t->s);
    return 0;
  }
  Shape sh = {0};
  for (const Value *e = t->items; e; e = e->next) {
    int64_t dim;
    if (sh.rank == SQ_MAX_RANK) {
      diag_error(s->d, e->loc, "tensors have at most %d dimensions", SQ_MAX_RANK);
      return 0;
    }
    if (!int_value(s, e, &dim)) {
      if (e->kind == AV_IDENT) diag_error(s->d, e->loc, "unknown dimension '%s' (only B, the batch size, is predefined)", e->s);
      else diag_error(s->d, e->loc, "a dimension must be a positive integer or B, got %s", value_desc(e));
      return 0;
    }
    if (dim <= 0) {
      diag_error(s->d, e->loc, "dimension %lld must be positive", (long long)dim);
      return 0;
    }
    sh.d[sh.rank++] = dim;
  }
  if (shape_numel(&sh) < 0) {
    diag_error(s->d, t->loc, "dimension overflow: '%s' would have more than 2^%d elements", st->name, SQ_MAX_NUMEL_LOG2);
    return 0;
  }
  *shape = sh;
  return 1;
}

static void model_block(Sema *s, const Block *b) {
  int inputs = 0;
  for (const Stmt *st = b->stmts; st; st = st->next) {
    switch (st->kind) {
    case ST_INPUT:
    case ST_LABEL:
      inputs += st->kind == ST_INPUT;
      declare_leaf(s, st);
      break;
    case ST_ASSIGN:
    case ST_OUTPUT: {
      if (sym_find(s, st->name)) {
        define(s, st->name, -1, st->name_loc);
        break;
      }
      int id = eval_tensor(s, st->v, st->name);
      define(s, st->name, id, st->name_loc);
      if (id < 0) break;
      if (st->kind == ST_OUTPUT) {
        GraphOutput o = {xstrdup(st->name), id};
        VEC_PUSH(s->g->outputs, o);
      }
      break;
    }
    case ST_LAYER:
      diag_error(s->d, st->loc, "'layer' settings belong in a quant block");
      break;
    }
  }
  if (!inputs) diag_error(s->d, b->loc, "model '%s' declares no input", b->name);
  const Sym *loss = sym_find(s, "loss");
  if (loss) s->g->loss = loss->node; /* -1 when its definition failed (reported) */
  else diag_error(s->d, b->end_loc, "model '%s' has no 'loss': assign the scalar to minimise to 'loss'", b->name);
}

/* ---- train { optimizer = sgd(...) | adam(...) | adamw(...) } ---- */
static void train_block(Sema *s, const Block *b) {
  for (const Stmt *st = b->stmts; st; st = st->next) {
    if (st->kind != ST_ASSIGN || strcmp(st->name, "optimizer") != 0) {
      const char *names[] = {"optimizer"};
      const char *near = sq_closest_name(st->name, names, 1);
      if (near) diag_error(s->d, st->name_loc, "unknown train setting '%s'; did you mean '%s'?", st->name, near);
      else diag_error(s->d, st->name_loc, "unknown train setting '%s'", st->name);
      continue;
    }
    const Value *v = st->v;
    static const char *const opt_names[] = {"sgd", "adam", "adamw"};
    OpCode op = OP_COUNT;
    if (v->kind == AV_CALL || v->kind == AV_IDENT)
      for (int i = 0; i < 3; i++)
        if (!strcmp(v->s, opt_names[i])) op = i == 0 ? OP_sgd_update : OP_adam_update;
    if (op == OP_COUNT) {
      const char *near = v->kind == AV_CALL || v->kind == AV_IDENT ? sq_closest_name(v->s, opt_names, 3) : NULL;
      if (near) diag_error(s->d, v->loc, "unknown optimizer '%s'; did you mean '%s'?", v->s, near);
      else diag_error(s->d, v->loc, "the optimizer must be sgd(...), adam(...) or adamw(...)");
      continue;
    }
    Node *opt = &s->g->optimizer;
    opt->op = op;
    ir_attr_defaults(opt);
    if (!strcmp(v->s, "adamw")) ir_set_num(opt, "weight_decay", 0.01); /* PyTorch's AdamW default */
    if (v->kind == AV_CALL) apply_attrs(s, opt, v, v->args, v->s);
  }
}

/* ---- quant { bits, grad, norm, weights, layer NAME { bits } } ---- */
static int quant_bits(Sema *s, const Value *v) {
  if (v->kind != AV_INT || !((v->i >= 2 && v->i <= 8) || v->i == 32)) {
    diag_error(s->d, v->loc, "bits must be an integer from 2 to 8, or 32 for float training");
    return -1;
  }
  return (int)v->i;
}

static int ident_choice(Sema *s, const Value *v, const char *key, const char *a, const char *b) {
  if (v->kind == AV_IDENT && !strcmp(v->s, a)) return 0;
  if (v->kind == AV_IDENT && !strcmp(v->s, b)) return 1;
  diag_error(s->d, v->loc, "%s must be %s or %s", key, a, b);
  return -1;
}

static void quant_grad(Sema *s, const Value *v) {
  if (v->kind != AV_CALL || strcmp(v->s, "shiftquant") != 0) {
    diag_error(s->d, v->loc, "grad must be shiftquant(groups = auto | N)");
    return;
  }
  for (const Arg *a = v->args; a; a = a->next) {
    if (!a->name || strcmp(a->name, "groups") != 0) {
      diag_error(s->d, a->name ? a->name_loc : a->v->loc, "shiftquant takes only 'groups = auto | N'");
      return;
    }
    if (a->v->kind == AV_IDENT && !strcmp(a->v->s, "auto")) s->g->quant.groups = 0;
    else if (a->v->kind == AV_INT && a->v->i >= 1 && a->v->i <= 8) {
      s->g->quant.groups = (int)a->v->i;
      s->g->quant.groups_loc = a->v->loc;
    }
    else diag_error(s->d, a->v->loc, "groups must be auto or an integer from 1 to 8");
  }
}

static void quant_block(Sema *s, const Block *b) {
  QuantConfig *q = &s->g->quant;
  for (const Stmt *st = b->stmts; st; st = st->next) {
    if (st->kind == ST_LAYER) {
      const Sym *target = sym_find(s, st->name);
      if (!target || target->node < 0 || ir_node(s->g, target->node)->kind != NK_OP) {
        diag_error(s->d, st->name_loc, "unknown layer '%s'", st->name);
        continue;
      }
      for (const Stmt *in = st->body; in; in = in->next) {
        if (in->kind != ST_ASSIGN || strcmp(in->name, "bits") != 0) {
          diag_error(s->d, in->name_loc, "a layer setting must be 'bits = N'");
          continue;
        }
        int bits = quant_bits(s, in->v);
        if (bits > 0) {
          LayerBits lb = {xstrdup(st->name), bits, st->name_loc};
          VEC_PUSH(q->layers, lb);
        }
      }
      continue;
    }
    static const char *const keys[] = {"bits", "grad", "norm", "weights"};
    int r;
    if (st->kind != ST_ASSIGN) diag_error(s->d, st->loc, "expected a quant setting");
    else if (!strcmp(st->name, "bits")) q->bits = (r = quant_bits(s, st->v)) > 0 ? r : q->bits;
    else if (!strcmp(st->name, "grad")) quant_grad(s, st->v);
    else if (!strcmp(st->name, "norm")) q->norm = (r = ident_choice(s, st->v, "norm", "l1", "l2")) >= 0 ? (NormKind)r : q->norm;
    else if (!strcmp(st->name, "weights"))
      q->per_channel_weights = (r = ident_choice(s, st->v, "weights", "per_tensor", "per_channel")) >= 0 ? r : 0;
    else {
      const char *near = sq_closest_name(st->name, keys, 4);
      if (near) diag_error(s->d, st->name_loc, "unknown quant setting '%s'; did you mean '%s'?", st->name, near);
      else diag_error(s->d, st->name_loc, "unknown quant setting '%s'", st->name);
    }
  }
}

/* Parameters of ops whose result cannot reach the loss would never train: warn. */
static void warn_unused(Sema *s) {
  Graph *g = s->g;
  if (g->loss < 0) return;
  char *live = xcalloc((size_t)g->nodes.n, 1);
  live[g->loss] = 1;
  for (int id = g->nodes.n - 1; id >= 0; id--) {
    const Node *n = ir_node(g, id);
    if (live[id])
      for (int i = 0; i < n->nin; i++) live[n->in[i]] = 1;
  }
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = ir_node(g, id);
    if (n->kind == NK_OP && op_info[n->op].init && !live[id])
      diag_warning(s->d, n->loc, "the parameters of '%s' (%s) do not affect the loss and will not be trained", n->name,
                   op_info[n->op].name);
    if (n->kind == NK_INPUT && !live[id]) diag_warning(s->d, n->loc, "input '%s' does not affect the loss", n->name);
  }
  free(live);
}

Graph *sema_build(const Program *p, Diag *d, int64_t batch) {
  const Block *model = NULL, *train = NULL, *quant = NULL;
  for (const Block *b = p->blocks; b; b = b->next) {
    const Block **slot = b->kind == BK_MODEL ? &model : b->kind == BK_TRAIN ? &train : &quant;
    static const char *const what[] = {"model", "train", "quant"};
    if (*slot) {
      diag_error(d, b->loc, "a second %s block", what[b->kind]);
      diag_note(d, (*slot)->loc, "the first %s block is here", what[b->kind]);
      continue;
    }
    *slot = b;
  }
  if (!model) {
    diag_error(d, (SrcLoc){1, 1}, "no model block: a .sq file starts with 'model NAME { ... }'");
    return NULL;
  }
  Sema s = {d, ir_new(model->name, batch), batch, {0}};
  s.g->quant.norm = NORM_L1;
  model_block(&s, model);
  if (train) train_block(&s, train);
  if (quant) quant_block(&s, quant);
  if (!d->errors) warn_unused(&s);
  VEC_FREE(s.syms);
  if (d->errors) {
    ir_free(s.g);
    return NULL;
  }
  return s.g;
}
