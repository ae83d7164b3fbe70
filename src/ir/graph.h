/* graph.h: the graph IR. A graph is a list of nodes in execution order; each node is a leaf
 * (input, label, parameter, optimizer/statistics state) or an op from ops.def with inputs that
 * come earlier in the list. Nodes are heap objects owned by the graph, so pointers stay valid
 * while nodes are appended. Every node has a unique name (the dump uses it as %name). */
#ifndef SQ_IR_GRAPH_H
#define SQ_IR_GRAPH_H
#include <stdint.h>
#include "../base/diag.h"
#include "../ops/ops.h"

enum { SQ_MAX_RANK = 6 };

/* q8: int8/uint8 values with one f32 scale; q4: the same at most 4 bits wide, two a byte
 * (runtime/numerics.h): forward operands quantized to b <= 4 bits, saved for the backward.
 * s16: int16 values with one f32 scale, each standing for nm_s16_value(v, scale): the sums of
 * an integer convolution that provably fit (the fuse pass), kept for the batchnorm that reads
 * them at half the bytes of their floats. */
typedef enum { DT_F32, DT_I32, DT_VOID, DT_Q8, DT_Q4, DT_S16 } DType;
static inline int dtype_is_quantized(DType dt) { return dt == DT_Q8 || dt == DT_Q4; }
/* a tensor whose values come with a scale the kernel that makes it sets */
static inline int dtype_is_scaled(DType dt) { return dtype_is_quantized(dt) || dt == DT_S16; }
typedef struct { int rank; int64_t d[SQ_MAX_RANK]; } Shape;

typedef enum { NK_OP, NK_INPUT, NK_LABEL, NK_PARAM, NK_STATE } NodeKind;
typedef enum { ROLE_FWD, ROLE_BWD, ROLE_UPD } NodeRole;
typedef enum { INIT_ZEROS, INIT_ONES, INIT_UNIFORM, INIT_NORMAL } InitKind;

typedef struct {
  int set;
  double num;                   /* INT, FLOAT, BOOL */
  int nlist;                    /* INTS */
  int64_t list[SQ_MAX_RANK];
} AttrVal;

typedef struct Node {
  int id;
  NodeKind kind;
  OpCode op; /* NK_OP only */
  NodeRole role;
  char *name;
  DType dtype;
  Shape shape;
  int shaped; /* shape and dtype are known */
  int nin;
  int in[SQ_MAX_IN];
  AttrVal attr[SQ_MAX_ATTRS];
  InitKind init; /* NK_PARAM / NK_STATE */
  double init_scale;
  int64_t arena; /* memplan: byte offset of the tensor in the activation arena; -1: its own buffer */
  SrcLoc loc;
} Node;

typedef enum { NORM_L1, NORM_L2 } NormKind;
typedef struct { char *layer; int bits; SrcLoc loc; } LayerBits;

/* The quant { } block as written (validated by sema; consumed by the quantization passes). */
typedef struct {
  int bits;      /* 2..8, or 32 for float */
  int groups;    /* ShiftQuant groups; 0 = auto */
  SrcLoc groups_loc; /* where the quant block set it (line 0: not set) */
  NormKind norm;
  int per_channel_weights;
  VEC(LayerBits) layers;
} QuantConfig;

typedef struct { char *name; int node; } GraphOutput;

typedef struct Graph {
  char *name;
  int64_t batch;
  VEC(Node *) nodes;
  int loss; /* node id, -1 until known */
  VEC(GraphOutput) outputs;
  Node optimizer; /* prototype: op sgd_update/adam_update with its attributes */
  QuantConfig quant;
  int next_stream; /* counter for per-node random streams (dropout) */
  int64_t arena_bytes; /* memplan: the activation arena's size */
  /* name -> node id, open addressing */
  int *name_slots;
  int name_cap;
} Graph;

Graph *ir_new(const char *name, int64_t batch);
void ir_free(Graph *g);

static inline Node *ir_node(const Graph *g, int id) { return g->nodes.v[id]; }
static inline Node *ir_in(const Graph *g, const Node *n, int i) { return g->nodes.v[n->in[i]]; }

/* Appends a node; name is made unique by appending .2, .3 ... (base may be NULL: "t"). */
Node *ir_add(Graph *g, NodeKind kind, const char *name, SrcLoc loc);
Node *ir_add_op(Graph *g, OpCode op, const char *name, int nin, const int *in, SrcLoc loc);
int ir_find(const Graph *g, const char *name); /* -1 when absent */
void ir_rename(Graph *g, int id, const char *name); /* made unique like ir_add's names */
/* Restores topological order after a pass gave a node inputs that come later in the list
 * (ids change; nodes that were in order keep their relative order). */
void ir_toposort(Graph *g);
/* Removes the nodes with dead[id] set; no remaining node, loss or output may refer to them.
 * The others keep their order (their ids close up). */
void ir_remove(Graph *g, const char *dead);
char *ir_unique_name(const Graph *g, const char *base); /* base, or base.2, base.3 ... (malloc'd) */

/* Attributes (by name; an unknown name is an internal error). */
void ir_attr_defaults(Node *n);
void ir_set_num(Node *n, const char *attr, double v);
void ir_set_list(Node *n, const char *attr, const int64_t *v, int len);
int64_t ir_int(const Node *n, const char *attr);
double ir_num(const Node *n, const char *attr);
const AttrVal *ir_attr(const Node *n, const char *attr);
void ir_copy_attrs(Node *dst, const Node *src); /* attributes with the same names */
/* A linear layer's or convolution's bias is input 2 when its attribute bias = 1 (the default) */
int ir_has_bias(const Node *n);
int ir_nin(const Node *n); /* the inputs n's op and attributes call for */

/* Shapes */
int64_t shape_numel(const Shape *s); /* -1 on overflow */
int64_t ir_tensor_bytes(const Node *n); /* of the node's tensor (q4: two elements a byte), ir_aux_bytes included */
/* bytes an op keeps after its tensor's values: batchnorm_pool's code byte per pooled value, a
 * batchnorm dx's channel ranges, a qconv2d's channel sums (ops.def) */
int64_t ir_aux_bytes(const Node *n);
/* an op whose tensor is its input's elements in another shape (flatten, reshape): memplan makes
 * it a view where its input is in the arena */
int ir_may_be_view(const Node *n);
/* memplan made it a view: its tensor is its input's bytes (the same place in the arena); it
 * copies nothing and runs no kernel */
int ir_is_view(const Graph *g, const Node *n);
/* where a qconv2d's channel sums start: bytes from its tensor's start (n s16 values, 8-aligned) */
static inline int64_t ir_s16_sums_at(int64_t n) { return (2 * n + 7) / 8 * 8; }
int shape_eq(const Shape *a, const Shape *b);
Shape shape_make(int rank, const int64_t *d);
char *type_str(DType dt, const Shape *s); /* "f32[128,784]", malloc'd */
const char *dtype_name(DType dt);
const char *kind_name(NodeKind k);
const char *init_name(InitKind k);

enum { SQ_MAX_NUMEL_LOG2 = 40 }; /* tensors above 2^40 elements are rejected */
#endif
