/* harness.h: helpers shared by the Check suites: compile .sq text in-process with the
 * diagnostics captured, and run a suite with Check's summary line. */
#ifndef SQ_TESTS_HARNESS_H
#define SQ_TESTS_HARNESS_H
#include <check.h>
#include "../../src/driver/compile.h"
#include "../../src/interp/interp.h"
#include "../../src/ir/print.h"
#include "../../src/ir/verify.h"

/* Compiles src at batch B; *diag (if not NULL) receives everything printed (malloc'd). */
Graph *th_compile(const char *src, int64_t batch, char **diag);
/* Path of a file in the source tree (tests run from the repository root). */
const char *th_root(void);
/* Runs the suite; returns the process exit status. */
int th_run(Suite *s);
/* Node id by name; fails the test when absent. */
int th_node(const Graph *g, const char *name);
#endif
