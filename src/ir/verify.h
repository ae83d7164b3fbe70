/* verify.h: structural and type checks of a graph, run after every pass. */
#ifndef SQ_IR_VERIFY_H
#define SQ_IR_VERIFY_H
#include "graph.h"

/* Returns 1 when g is well formed; otherwise 0 and a malloc'd description in *err.
 * With want_shapes, every node must have a type that its shape rule reproduces. */
int ir_verify(Graph *g, int want_shapes, char **err);
#endif
