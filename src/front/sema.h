/* sema.h: gives a parsed program its meaning: resolves names, checks op arities and attributes
 * against the op table, creates parameters, and builds the graph IR (shapes come later, from
 * the shapes pass). */
#ifndef SQ_FRONT_SEMA_H
#define SQ_FRONT_SEMA_H
#include "../ir/graph.h"
#include "ast.h"

/* Returns NULL when any error was reported to d (warnings do not fail). */
Graph *sema_build(const Program *p, Diag *d, int64_t batch);
#endif
