/* print.c: the graph IR as stable, diffable text (read back by read.c). One line per node:
 *   %name = op(%in, ...) {attr=value, ...} : type [bwd|upd]
 *   %name = param|state INIT : type      %name = input|label : type
 * Attributes print in declaration order with full precision (%.9g), so print(read(t)) == t. */
#include <stdio.h>
#include <stdlib.h>
#include "print.h"

static void put_attrs(StrBuf *b, const Node *n) {
  const OpInfo *oi = &op_info[n->op];
  int first = 1;
  for (int i = 0; i < oi->nattr; i++) {
    const AttrVal *a = &n->attr[i];
    if (!a->set) continue;
    sb_printf(b, "%s%s=", first ? " {" : ", ", oi->attrs[i].name);
    first = 0;
    if (oi->attrs[i].type == AT_INTS) {
      sb_putc(b, '[');
      for (int k = 0; k < a->nlist; k++) sb_printf(b, "%s%lld", k ? "," : "", (long long)a->list[k]);
      sb_putc(b, ']');
    } else if (oi->attrs[i].type == AT_FLOAT) {
      sb_printf(b, "%.9g", a->num);
    } else {
      sb_printf(b, "%lld", (long long)a->num);
    }
  }
  if (!first) sb_putc(b, '}');
}

void ir_print_node(StrBuf *b, const Graph *g, const Node *n) {
  sb_printf(b, "%%%s = ", n->name);
  if (n->kind == NK_OP) {
    sb_printf(b, "%s(", op_info[n->op].name);
    for (int i = 0; i < n->nin; i++) sb_printf(b, "%s%%%s", i ? ", " : "", ir_in(g, n, i)->name);
    sb_putc(b, ')');
    put_attrs(b, n);
  } else {
    sb_puts(b, kind_name(n->kind));
    if (n->kind == NK_PARAM || n->kind == NK_STATE) {
      sb_printf(b, " %s", init_name(n->init));
      /* the float the initialisation multiplies by (interp.c), to 9 digits: it reads back as
       * the same float, so a dump (and the IR a library embeds) initialises alike */
      if (n->init == INIT_UNIFORM && n->shaped) sb_printf(b, "(%.9g)", (double)(float)n->init_scale);
    }
  }
  if (n->shaped) {
    char *t = type_str(n->dtype, &n->shape);
    sb_printf(b, " : %s", t);
    free(t);
  } else {
    sb_puts(b, " : ?");
  }
  if (n->arena >= 0) sb_printf(b, " @arena+%lld", (long long)n->arena);
  if (n->role == ROLE_BWD) sb_puts(b, " bwd");
  if (n->role == ROLE_UPD) sb_puts(b, " upd");
  sb_putc(b, '\n');
}

char *ir_print(const Graph *g) {
  StrBuf b = {0};
  sb_printf(&b, "graph %s batch=%lld\n", g->name, (long long)g->batch);
  sb_printf(&b, "optimizer %s", op_info[g->optimizer.op].name);
  put_attrs(&b, &g->optimizer);
  sb_putc(&b, '\n');
  const QuantConfig *q = &g->quant;
  sb_printf(&b, "quant bits=%d groups=", q->bits);
  if (q->groups) sb_printf(&b, "%d", q->groups);
  else sb_puts(&b, "auto");
  sb_printf(&b, " norm=%s weights=%s\n", q->norm == NORM_L1 ? "l1" : "l2",
            q->per_channel_weights ? "per_channel" : "per_tensor");
  for (int i = 0; i < q->layers.n; i++) sb_printf(&b, "quant layer %s bits=%d\n", q->layers.v[i].layer, q->layers.v[i].bits);
  if (g->arena_bytes) sb_printf(&b, "arena bytes=%lld\n", (long long)g->arena_bytes);
  for (int i = 0; i < g->nodes.n; i++) ir_print_node(&b, g, g->nodes.v[i]);
  if (g->loss >= 0) sb_printf(&b, "loss %%%s\n", ir_node(g, g->loss)->name);
  for (int i = 0; i < g->outputs.n; i++)
    sb_printf(&b, "output %s %%%s\n", g->outputs.v[i].name, ir_node(g, g->outputs.v[i].node)->name);
  return sb_take(&b);
}
