/* compile.c: source text -> checked, differentiated graph IR. */
#include <stdlib.h>
#include "../front/ast.h"
#include "../front/sema.h"
#include "../passes/passes.h"
#include "compile.h"

void compile_options_default(CompileOptions *o) {
  o->batch = 128;
  o->bits = 0;
  o->norm = -1;
  o->dump_after = NULL;
  o->dump = NULL;
}

Graph *compile_source(const char *name, const char *src, size_t len, const CompileOptions *o, FILE *err) {
  Diag d;
  diag_init(&d, name, src, len, err);
  Program *p = parse_program(&d);
  if (!p) return NULL;
  Graph *g = sema_build(p, &d, o->batch);
  program_free(p);
  if (!g) return NULL;
  if (o->bits) g->quant.bits = o->bits;
  if (o->bits == 32) { /* the float baseline: no layer stays quantized */
    for (int i = 0; i < g->quant.layers.n; i++) free(g->quant.layers.v[i].layer);
    g->quant.layers.n = 0;
  }
  if (o->norm >= 0) g->quant.norm = (NormKind)o->norm;
  PassCtx pc = {&d, o->dump_after, o->dump ? o->dump : stdout};
  if (!pipeline_run(g, &pc)) {
    ir_free(g);
    return NULL;
  }
  return g;
}

Graph *compile_file(const char *path, const CompileOptions *o, FILE *err) {
  size_t len;
  const char *why;
  char *src = sq_read_file(path, &len, &why);
  if (!src) {
    fprintf(err, "sqc: error: cannot read '%s': %s\n", path, why);
    return NULL;
  }
  Graph *g = compile_source(path, src, len, o, err);
  free(src);
  return g;
}
