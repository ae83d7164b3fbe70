/* quantize: the forward operands of every GEMM (linear, matmul, conv2d) become b-bit quantize
 * nodes and the GEMM becomes its integer form (qlinear, qmatmul, qconv2d), whose gradient rule
 * ShiftQuants the output gradient and reuses the saved q8 operands in the backward GEMMs.
 * b is the layer's `quant { layer NAME { bits } }` value, else the model's bits; 32 keeps the
 * GEMM in float. An operand known to be non-negative (relu output, and pooling, flattening,
 * reshaping or dropout of one) is quantized unsigned.
 * Expects: a typed forward graph (before autodiff). Guarantees: every GEMM with b < 32 reads
 * q8 operands; each operand is quantized once per bit width; the graph stays typed and in order. */
#include <string.h>
#include "../ops/rules.h"
#include "passes.h"

static int layer_bits(const Graph *g, const Node *n) {
  for (int i = 0; i < g->quant.layers.n; i++)
    if (!strcmp(g->quant.layers.v[i].layer, n->name)) return g->quant.layers.v[i].bits;
  return g->quant.bits;
}

static int non_negative(const Graph *g, int id) {
  const Node *n = ir_node(g, id);
  if (n->kind != NK_OP) return 0;
  switch (n->op) {
  case OP_relu: return 1;
  case OP_maxpool2d: case OP_avgpool2d: case OP_global_avgpool: case OP_flatten: case OP_reshape:
  case OP_transpose: case OP_dropout:
    return non_negative(g, n->in[0]);
  default: return 0;
  }
}

/* The quantize node of (operand, bits), made on first use. */
static int quantized(Graph *g, int src, int bits) {
  int uns = non_negative(g, src);
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *q = ir_node(g, id);
    if (q->kind == NK_OP && q->op == OP_quantize && q->in[0] == src && ir_int(q, "bits") == bits) return id;
  }
  char *name = xasprintf("%s.q%d", ir_node(g, src)->name, bits);
  Node *q = ir_add_op(g, OP_quantize, name, 1, &src, ir_node(g, src)->loc);
  free(name);
  ir_set_num(q, "bits", bits);
  ir_set_num(q, "unsigned", uns);
  ShapeCtx sc = {g, NULL};
  op_info[OP_quantize].shape(&sc, q);
  return q->id;
}

int pass_quantize(Graph *g, PassCtx *c) {
  int changed = 0, nfwd = g->nodes.n;
  for (int id = 0; id < nfwd; id++) {
    Node *n = ir_node(g, id);
    if (n->kind != NK_OP || (n->op != OP_linear && n->op != OP_matmul && n->op != OP_conv2d)) continue;
    int bits = layer_bits(g, n);
    if (bits >= 32) continue;
    if (g->quant.per_channel_weights) {
      diag_error(c->diag, n->loc, "quant { weights = per_channel } is not supported yet; use per_tensor");
      return 0;
    }
    for (int i = 0; i < 2; i++) n->in[i] = quantized(g, n->in[i], bits);
    Node old = *n;
    n->op = n->op == OP_linear ? OP_qlinear : n->op == OP_matmul ? OP_qmatmul : OP_qconv2d;
    ir_attr_defaults(n);
    ir_copy_attrs(n, &old);
    ir_set_num(n, "bits", bits);
    ir_set_num(n, "grad_groups", g->quant.groups);
    changed = 1;
  }
  if (changed) ir_toposort(g);
  return 1;
}
