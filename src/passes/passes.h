/* passes.h: the graph passes and the pipeline that orders them. Each pass is one file with one
 * entry point; its header comment says what it expects and what it guarantees. */
#ifndef SQ_PASSES_H
#define SQ_PASSES_H
#include <stdio.h>
#include "../ir/graph.h"

typedef struct {
  Diag *diag;          /* user errors (source locations come from the nodes) */
  const char *dump_after; /* pass name, "all", or NULL */
  FILE *dump;          /* where --dump-after writes */
} PassCtx;

typedef int (*PassFn)(Graph *g, PassCtx *c); /* 1 ok, 0 user error reported */

int pass_shapes(Graph *g, PassCtx *c);
int pass_l1norm(Graph *g, PassCtx *c);
int pass_quantize(Graph *g, PassCtx *c);
int pass_autodiff(Graph *g, PassCtx *c);
int pass_groups(Graph *g, PassCtx *c);
int pass_fuse(Graph *g, PassCtx *c);
int pass_memplan(Graph *g, PassCtx *c);

/* Runs every pass in order, verifying after each. Returns 1 ok, 0 on a user error. */
int pipeline_run(Graph *g, PassCtx *c);
/* Pass names in order (NULL-terminated), for --dump-after validation. */
extern const char *const pipeline_pass_names[];
#endif
