/* rules.h: what an op family file sees: the contexts its shape rule, gradient rule, reference
 * body and parameter creation run in, and the helpers they share. Declarations of every rule
 * function are expanded from ops.def, so a missing rule fails the build. */
#ifndef SQ_OPS_RULES_H
#define SQ_OPS_RULES_H
#include <stdlib.h>
#include "../ir/graph.h"
#include "../../runtime/tensor.h"

/* ---- shape rules ---- */
typedef struct ShapeCtx {
  Graph *g;
  Diag *diag; /* NULL: a failure is an internal error (graphs the compiler built itself) */
} ShapeCtx;

int shape_fail(ShapeCtx *c, const Node *n, const char *fmt, ...) SQ_PRINTF(3, 4); /* returns 0 */
/* Sets n's type; fails (with a diagnostic) when the tensor is too large. */
int shape_set(ShapeCtx *c, Node *n, DType dt, Shape s);
/* Gives owned input i (a parameter or state leaf) its shape, or checks it against an earlier one.
 * bound > 0 selects uniform(-bound, bound) initialisation for INIT_UNIFORM leaves. */
int shape_define_input(ShapeCtx *c, Node *n, int i, Shape s, double bound);
int shape_want_rank(ShapeCtx *c, const Node *n, int i, int lo, int hi);
int shape_want_dtype(ShapeCtx *c, const Node *n, int i, DType dt);
int shape_want_real(ShapeCtx *c, const Node *n, int i); /* f32, or q8 (a quantized f32) */
int shape_want_values(ShapeCtx *c, const Node *n, int i); /* f32, or s16 (floats kept as sums) */
/* The quantize node a quantized tensor comes from (through reshapes), or NULL (ShiftQuant's) */
const Node *quant_source(const Graph *g, int id);
/* The largest magnitude a quantized tensor holds: 2^bits - 1 (unsigned) or 2^(bits-1) - 1
 * (signed) of its quantize node; other int8 (ShiftQuant's shifted values) up to 128. */
int quant_max(const Graph *g, int id);
/* Both shapes in the message, e.g. "shape mismatch in add: f32[2,3] and f32[2,4]". */
int shape_mismatch(ShapeCtx *c, const Node *n, const char *what, const Node *a, const Node *b);

/* ---- parameter / state creation ---- */
typedef struct InitCtx {
  Graph *g;
  const char *owner; /* the owning node's name: leaves are "<owner>.<suffix>" */
  SrcLoc loc;
  int nin;
  int in[SQ_MAX_IN];
} InitCtx;
void init_leaf(InitCtx *c, const char *suffix, NodeKind kind, InitKind init);

/* ---- gradient rules ---- */
typedef struct GradCtx {
  Graph *g;
  int *grad;       /* accumulated gradient node per node id, -1 when none yet */
  const char *needs; /* needs[id]: a gradient of node id is wanted */
} GradCtx;
int grad_needed(const GradCtx *c, int id);
Node *grad_op(GradCtx *c, const Node *fwd, OpCode op, int nin, const int *in);
int grad_finish(GradCtx *c, Node *n); /* infers the shape; returns the node id */
void grad_accum(GradCtx *c, int target, int g);
/* Sums g over the leading axes so that it matches target's shape (undo a broadcast). */
int grad_unbroadcast(GradCtx *c, const Node *fwd, int g, int target);
#define GRAD_OP(c, fwd, op, ...) \
  grad_op(c, fwd, op, (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (int[]){__VA_ARGS__})

/* ---- gradient structures shared by an op and its integer or L1 form ---- */
/* dA and dB of a (q)matmul from output gradient dy, made with op (matmul or qmatmul). */
void matmul_grads(GradCtx *c, const Node *n, int dy, OpCode op);
/* dx, dw of a (q)conv2d from g (dy or its ShiftQuant form) and db from dy. */
void conv_grads(GradCtx *c, const Node *n, int g, int dy, OpCode dx_op, OpCode dw_op);
/* A layernorm's dx and dgamma by the given ops and dbeta = dy summed over every axis but the last. */
void norm_grads(GradCtx *c, const Node *n, int dy, OpCode dx_op, OpCode dg_op);
/* A batchnorm's forward pass from saved statistics (bnstats.c): in training, the batch's
 * ([NM_BN_STATS][channels]; NULL: computed here) and a running update; in inference, the
 * running statistics. */
int bn_forward_ref(struct RefCtx *c, const Node *n, const float *stats, int l2, Tensor *y);
/* Max pooling as maxpool2d computes it (pool.c), with n's kernel, stride and padding, for the
 * ops that fuse it: the pooled shape of x[N,C,H,W]; y = each window's first maximum; dx (x's
 * shape) = dy added at each window's first maximum, then with relu masked where x <= 0. */
Shape maxpool_output_shape(const Node *n, const Shape *x);
void maxpool_ref(const Node *n, const Tensor *x, float *y);
void maxpool_grad_ref(const Node *n, const float *dy, const Tensor *x, int relu, float *dx);
/* A window's first maximum as a byte, for a gradient that does not keep x: its tap kh * k + kw
 * (k <= 8), with POOL_CODE_MASKED set when relu masks it (the maximum is not > 0). Routing dy by
 * the codes gives maxpool_grad_ref's dx with its relu exactly. */
enum { POOL_CODE_MASKED = 0x80 };
/* where a batchnorm_pool's tensor keeps its codes (ir_aux_bytes): after its values */
static inline uint8_t *batchnorm_pool_codes(const Tensor *t) { return (uint8_t *)(t->f + t->n); }
/* a batchnorm dx's channel ranges (ops.def): the largest |x| of each channel of x [N, C, ...] by
 * the bits of |x| (a NaN above an Inf above every finite value), after x's values */
static inline float *channel_ranges_of(const Tensor *t) { return t->f + t->n; }
/* a qconv2d's channel sums (chansums = 1), after its s16 values */
static inline int64_t *channel_sums_of(const Tensor *t) { return (int64_t *)(void *)((char *)t->s16 + ir_s16_sums_at(t->n)); }
void channel_ranges_ref(const Tensor *x, float *ranges);
/* q = shiftquant(x) over channel axis `axis` (runtime/numerics.c's nm_shiftquant); a failure
 * names n and the tensor `what` */
int shiftquant_ref_into(struct RefCtx *c, const Node *n, const char *what, const Tensor *x, int axis, nm_sq_params p, Tensor *q);
void maxpool_codes_ref(const Node *n, const Tensor *x, int relu, uint8_t *codes);
void maxpool_route_ref(const Node *n, const float *dy, const uint8_t *codes, const Tensor *x, float *dx);

/* ---- reference bodies ---- */
typedef struct RefCtx {
  const Graph *g;
  Tensor *t;   /* one per node */
  int training;
  uint64_t seed;
  int64_t step;
  float lr;
  char *err;   /* set by ref_fail */
} RefCtx;
int ref_fail(RefCtx *c, const Node *n, const char *fmt, ...) SQ_PRINTF(3, 4); /* returns 0 */
/* The relu the fuse pass folded into n (its attribute relu = 1), on n's output y; returns 1 */
int ref_fused_relu(const Node *n, Tensor *y);
/* Gradient rules run before fuse: a node with a folded relu has none */
#define GRAD_NOT_FUSED(n) SQ_ASSERT(!ir_int((n), "relu"))
#define REF_IN(c, n, i) (&(c)->t[(n)->in[i]])
/* input i's values as floats: the input itself, or (s16) a float copy made in *copy, which
 * ref_values_free frees */
const Tensor *ref_values(RefCtx *c, const Node *n, int i, Tensor *copy);
void ref_values_free(const Tensor *values, Tensor *copy);
#define REF_OUT(c, n) (&(c)->t[(n)->id])

#define INITDECL_I(name) void name##_init(InitCtx *c, Node *n);
#define INITDECL_NI(name)
#define GRADDECL_G(name) void name##_grad(GradCtx *c, const Node *n, int dy);
#define GRADDECL_NG(name)
#define OP(name, family, ua, nin, init, grad, ...) \
  int name##_shape(ShapeCtx *c, Node *n); \
  int name##_ref(RefCtx *c, const Node *n); \
  INITDECL_##init(name) GRADDECL_##grad(name)
#include "ops.def"
#undef OP
#undef INITDECL_I
#undef INITDECL_NI
#undef GRADDECL_G
#undef GRADDECL_NG
#endif
