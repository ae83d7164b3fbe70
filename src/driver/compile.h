/* compile.h: the front half of sqc as a library call: read a .sq file, parse, check, build the
 * graph and run the pass pipeline. Used by the sqc command, sqref and the tests. */
#ifndef SQ_DRIVER_COMPILE_H
#define SQ_DRIVER_COMPILE_H
#include <stdio.h>
#include "../ir/graph.h"

typedef struct {
  int64_t batch;          /* B */
  int bits;               /* 0: as the quant block says; 32: float everywhere (drops layer overrides) */
  int norm;               /* -1: as the quant block says; else NormKind */
  const char *dump_after; /* pass name or "all" */
  FILE *dump;             /* where dumps go (stdout when NULL) */
} CompileOptions;

void compile_options_default(CompileOptions *o);
/* Returns the compiled graph, or NULL after printing diagnostics to err. */
Graph *compile_file(const char *path, const CompileOptions *o, FILE *err);
Graph *compile_source(const char *name, const char *src, size_t len, const CompileOptions *o, FILE *err);
#endif
