/* emit_so.h: writes NAME.so (the model library) and NAME.h (its header) for a compiled graph. */
#ifndef SQ_DRIVER_EMIT_SO_H
#define SQ_DRIVER_EMIT_SO_H
#include <stdio.h>
#include "../ir/graph.h"

/* The "reference" target: the library carries the graph IR and the reference executor behind
 * the ABI of include/sq/sq.h. Returns 1 on success; 0 after printing why to err. */
int emit_reference_library(const Graph *g, const char *so_path, FILE *err);
#endif
