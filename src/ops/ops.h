/* ops.h: the op table, expanded from ops.def. Everything about an op that is not in its row
 * lives in its family file (shape rule, gradient rule, reference body, parameter creation). */
#ifndef SQ_OPS_H
#define SQ_OPS_H
#include <stdint.h>

typedef enum {
#define OP(name, ...) OP_##name,
#include "ops.def"
#undef OP
  OP_COUNT
} OpCode;

typedef enum { AT_INT, AT_FLOAT, AT_BOOL, AT_INTS } AttrType;

typedef struct {
  const char *name;
  AttrType type;
  double def; /* NaN: required */
  double lo, hi;
  int hidden; /* set by the compiler, not the user */
} AttrSpec;

enum { SQ_MAX_ATTRS = 10, SQ_MAX_IN = 6 };

struct Node;
struct ShapeCtx;
struct GradCtx;
struct RefCtx;
struct InitCtx;

typedef struct {
  const char *name, *family;
  int user_args; /* -1: internal op */
  int nin;
  int nattr;
  const AttrSpec *attrs;
  int (*shape)(struct ShapeCtx *c, struct Node *n);            /* 1 ok, 0 error reported */
  void (*grad)(struct GradCtx *c, const struct Node *n, int dy); /* NULL: no gradient */
  int (*ref)(struct RefCtx *c, const struct Node *n);            /* 1 ok, 0 error set */
  void (*init)(struct InitCtx *c, struct Node *n);               /* NULL: owns no inputs */
} OpInfo;

extern const OpInfo op_info[OP_COUNT];

OpCode op_lookup(const char *name);            /* OP_COUNT when unknown */
int op_attr_index(OpCode op, const char *name); /* -1 when the op has no such attribute */
const char *op_suggest(const char *name);       /* closest user-callable op name, or NULL */
#endif
