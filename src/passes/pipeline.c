/* pipeline.c: the only place that orders the graph passes. It reads as a list; after each pass
 * the verifier runs, and --dump-after prints the graph (or "(unchanged)"). */
#include <stdlib.h>
#include <string.h>
#include "../ir/print.h"
#include "../ir/verify.h"
#include "passes.h"

typedef struct { const char *name; PassFn run; int shapes_known_after; } Pass;

/* l1norm and quantize run before autodiff, so that the L1 and integer ops' own gradient rules
 * build the backward graph (ShiftQuant'ed output gradients, saved q8 operands). */
static const Pass pipeline[] = {
    {"shapes", pass_shapes, 1},
    {"l1norm", pass_l1norm, 1},
    {"quantize", pass_quantize, 1},
    {"autodiff", pass_autodiff, 1},
    {"groups", pass_groups, 1},
    {"fuse", pass_fuse, 1},
    {"memplan", pass_memplan, 1},
};
enum { NPASSES = sizeof pipeline / sizeof *pipeline };

const char *const pipeline_pass_names[] = {"shapes", "l1norm", "quantize", "autodiff", "groups", "fuse", "memplan", NULL};
_Static_assert(sizeof pipeline_pass_names / sizeof *pipeline_pass_names == NPASSES + 1, "pass name list");

int pipeline_run(Graph *g, PassCtx *c) {
  for (int i = 0; i < NPASSES; i++) {
    const Pass *p = &pipeline[i];
    int dump = c->dump_after && (!strcmp(c->dump_after, p->name) || !strcmp(c->dump_after, "all"));
    char *before = dump ? ir_print(g) : NULL;
    if (!p->run(g, c)) {
      free(before);
      return 0;
    }
    char *err;
    if (!ir_verify(g, p->shapes_known_after, &err)) SQ_INTERNAL("graph invalid after pass '%s': %s", p->name, err);
    if (dump) {
      char *after = ir_print(g);
      fprintf(c->dump, "; after %s\n", p->name);
      fputs(strcmp(before, after) ? after : "(unchanged)\n", c->dump);
      free(after);
    }
    free(before);
  }
  return 1;
}
