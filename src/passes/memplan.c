/* memplan: places the tensors a training step makes and uses up into one activation arena,
 * at static offsets from their lifetimes. A tensor lives from the node that writes it to the
 * last node that reads it, in the order the runtime runs nodes (the forward and backward nodes
 * in node order, then the updates); two tensors share bytes only when their lifetimes are disjoint, so a node's output
 * never shares with its inputs. Inference runs a subsequence of the same order, in which every
 * lifetime only shrinks, so the same offsets hold. A flatten or reshape of a tensor in the arena
 * is a view: it takes its input's bytes, and the input lives until the view's last reader. Kept out of the arena, each in its own
 * buffer: inputs, labels, parameters and state (they outlive a step), the loss and the outputs
 * (read after a step), and values nothing reads (read by tools and tests after a step).
 * Expects: a shaped graph in run order. Guarantees: every op node's `arena` is a 64-byte
 * aligned offset into g->arena_bytes, or -1 for a buffer of its own. */
#include <stdlib.h>
#include "passes.h"

enum { ARENA_ALIGN = 64 };

typedef struct { int id; int64_t first, last, bytes, at; } Life;

static int by_offset(const void *a, const void *b) {
  int64_t x = (*(Life *const *)a)->at, y = (*(Life *const *)b)->at;
  return (x > y) - (x < y);
}

int pass_memplan(Graph *g, PassCtx *c) {
  (void)c;
  int n = g->nodes.n, k = 0;
  int64_t *last = xmalloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  int *order = xmalloc(sizeof(int) * (size_t)(n ? n : 1)), *pos = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
  int *life_of = xmalloc(sizeof(int) * (size_t)(n ? n : 1)); /* a node's entry in life, or -1 */
  char *keep = xcalloc((size_t)(n ? n : 1), 1);
  for (int upd = 0; upd < 2; upd++) /* run order */
    for (int id = 0; id < n; id++)
      if ((ir_node(g, id)->role == ROLE_UPD) == upd) pos[id] = k, order[k++] = id;
  for (int id = 0; id < n; id++) last[id] = -1, life_of[id] = -1;
  for (int id = 0; id < n; id++) {
    const Node *x = ir_node(g, id);
    for (int i = 0; i < x->nin; i++)
      if (pos[id] > last[x->in[i]]) last[x->in[i]] = pos[id];
  }
  if (g->loss >= 0) keep[g->loss] = 1;
  for (int i = 0; i < g->outputs.n; i++) keep[g->outputs.v[i].node] = 1;
  Life *life = xmalloc(sizeof(Life) * (size_t)(n ? n : 1));
  Life **placed = xmalloc(sizeof(Life *) * (size_t)(n ? n : 1));
  int nl = 0;
  g->arena_bytes = 0;
  for (int at_pos = 0; at_pos < n; at_pos++) {
    int id = order[at_pos];
    Node *x = ir_node(g, id);
    x->arena = -1;
    int64_t bytes = (ir_tensor_bytes(x) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (x->kind != NK_OP || keep[id] || last[id] < 0 || bytes == 0) continue;
    if (ir_may_be_view(x) && life_of[x->in[0]] >= 0) {
      Life *in = &life[life_of[x->in[0]]]; /* already placed: it is written before its readers */
      if (last[id] > in->last) in->last = last[id];
      life_of[id] = life_of[x->in[0]];
      x->arena = ir_in(g, x, 0)->arena;
      continue;
    }
    /* first fit among the placed tensors still alive when this one is written */
    int np = 0;
    for (int j = 0; j < nl; j++)
      if (life[j].last >= at_pos) placed[np++] = &life[j];
    qsort(placed, (size_t)np, sizeof *placed, by_offset);
    int64_t at = 0;
    for (int j = 0; j < np && placed[j]->at < at + bytes; j++)
      if (placed[j]->at + placed[j]->bytes > at) at = placed[j]->at + placed[j]->bytes;
    life_of[id] = nl;
    life[nl++] = (Life){id, at_pos, last[id], bytes, at};
    x->arena = at;
    if (at + bytes > g->arena_bytes) g->arena_bytes = at + bytes;
  }
  free(placed);
  free(life);
  free(keep);
  free(life_of);
  free(pos);
  free(order);
  free(last);
  return 1;
}
