/* groups: chooses each shiftquant node's group count G. auto (0) takes the largest G whose
 * shifted values fit int8, 9 - bits (DESIGN §4: |q * 2^(G-1)| <= Qmax * 2^(G-1) <= 127); a
 * count from quant { grad = shiftquant(groups = N) } is kept when it fits and is an error
 * otherwise. Expects: the backward graph (after autodiff). Guarantees: every shiftquant node
 * has 1 <= groups <= 9 - bits. */
#include "../../runtime/numerics.h"
#include "../ops/rules.h"
#include "passes.h"

int pass_groups(Graph *g, PassCtx *c) {
  for (int id = 0; id < g->nodes.n; id++) {
    Node *n = ir_node(g, id);
    if (n->kind != NK_OP || n->op != OP_shiftquant) continue;
    int bits = (int)ir_int(n, "bits"), want = (int)ir_int(n, "groups"), max = nm_max_groups(bits);
    if (want == 0) {
      ir_set_num(n, "groups", max);
    } else if (want > max) {
      SrcLoc at = g->quant.groups_loc.line ? g->quant.groups_loc : n->loc;
      diag_error(c->diag, at, "shiftquant groups = %d does not fit %d-bit gradients in int8: at most %d (9 - bits)",
                 want, bits, max);
      if (at.line != n->loc.line) diag_note(c->diag, n->loc, "the %d-bit layer is here", bits);
      return 0;
    }
  }
  return 1;
}
