/* harness.c: see harness.h. */
#include "harness.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Graph *th_compile(const char *src, int64_t batch, char **diag) {
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  CompileOptions o;
  compile_options_default(&o);
  o.batch = batch;
  o.dump = mem;
  Graph *g = compile_source("test.sq", src, strlen(src), &o, mem);
  fclose(mem);
  if (diag) *diag = text;
  else free(text);
  return g;
}

const char *th_root(void) {
  const char *r = getenv("SQ_SOURCE_ROOT");
  return r && *r ? r : ".";
}

int th_node(const Graph *g, const char *name) {
  int id = ir_find(g, name);
  ck_assert_msg(id >= 0, "no node named %s", name);
  return id;
}

int th_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
