/* ops.c: expands ops.def into the op table (names, arities, attributes, rule functions). */
#include "ops.h"
#include "rules.h"
#include <math.h>
#include <string.h>
#include "../base/util.h"

#define REQ NAN
#define A(n, t, d, l, h) {#n, AT_##t, d, l, h, 0}
#define H(n, t, d, l, h) {#n, AT_##t, d, l, h, 1}
#define NOATTR
/* Each attribute list starts with a placeholder so that an op without attributes is legal C. */
#define OP(name, family, ua, nin, init, grad, ...) \
  static const AttrSpec attrs_##name[] = {{0}, __VA_ARGS__};
#include "ops.def"
#undef OP

#define INIT_I(name) name##_init
#define INIT_NI(name) NULL
#define GRAD_G(name) name##_grad
#define GRAD_NG(name) NULL
const OpInfo op_info[OP_COUNT] = {
#define OP(name, family, ua, nin, init, grad, ...) \
  [OP_##name] = {#name, #family, ua, nin, (int)(sizeof attrs_##name / sizeof(AttrSpec)) - 1, \
                 attrs_##name + 1, name##_shape, GRAD_##grad(name), name##_ref, INIT_##init(name)},
#include "ops.def"
#undef OP
};

/* Compile-time checks on the table's limits. */
#define OP(name, family, ua, nin, init, grad, ...) \
  _Static_assert(sizeof attrs_##name / sizeof(AttrSpec) - 1 <= SQ_MAX_ATTRS, #name ": too many attributes"); \
  _Static_assert(nin <= SQ_MAX_IN, #name ": too many inputs");
#include "ops.def"
#undef OP

OpCode op_lookup(const char *name) {
  for (int i = 0; i < OP_COUNT; i++)
    if (strcmp(op_info[i].name, name) == 0) return (OpCode)i;
  return OP_COUNT;
}

int op_attr_index(OpCode op, const char *name) {
  const OpInfo *oi = &op_info[op];
  for (int i = 0; i < oi->nattr; i++)
    if (strcmp(oi->attrs[i].name, name) == 0) return i;
  return -1;
}

const char *op_suggest(const char *name) {
  const char *names[OP_COUNT];
  for (int i = 0; i < OP_COUNT; i++) names[i] = op_info[i].user_args >= 0 ? op_info[i].name : NULL;
  return sq_closest_name(name, names, OP_COUNT);
}
