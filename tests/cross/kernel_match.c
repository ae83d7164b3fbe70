/* kernel_match.c: built for another architecture (AArch64) together with the reference
 * executor and one generated model object (sqc --target=aarch64 --emit=obj), and run under
 * qemu. Two executors train the model from the same seed on the same synthetic batches: one
 * with the generated kernels, one with reference bodies only. Every tensor must be
 * bit-identical after each step. Prints "aarch64: N passed, M failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../src/interp/interp.h"
#include "../../src/ir/print.h"

extern const char sq__graph_ir[];
extern const InterpKernel sq__kernels[];
extern const int64_t sq__nkernels;

static void batch(Interp *it, const Graph *g, int step) {
  uint64_t s = 777 + (uint64_t)step;
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = ir_node(g, id);
    if (n->kind != NK_INPUT && n->kind != NK_LABEL) continue;
    Tensor *t = interp_tensor(it, id);
    int64_t classes = g->outputs.n ? ir_node(g, g->outputs.v[0].node)->shape.d[1] : 2;
    for (int64_t i = 0; i < t->n; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      if (t->f) t->f[i] = (float)(s % 2001) / 1000.0f - 1.0f;
      else t->i[i] = (int32_t)(s % (uint64_t)classes);
    }
  }
}

static int same(Interp *a, Interp *b, const Graph *g, int step) {
  for (int id = 0; id < g->nodes.n; id++) {
    const Tensor *x = interp_tensor(a, id), *y = interp_tensor(b, id);
    size_t bytes = x->f ? 4 * (size_t)x->n : x->i ? 4 * (size_t)x->n : (size_t)nm_q_bytes(x->n, x->q4);
    const void *p = x->f ? (void *)x->f : x->i ? (void *)x->i : (void *)x->q;
    const void *q = y->f ? (void *)y->f : y->i ? (void *)y->i : (void *)y->q;
    if (p && memcmp(p, q, bytes)) {
      printf("FAIL: step %d: tensor %s differs\n", step, ir_node(g, id)->name);
      return 0;
    }
  }
  return 1;
}

int main(void) {
  char *err = NULL;
  Graph *g = ir_read(sq__graph_ir, &err);
  if (!g) return printf("FAIL: %s\n", err), 1;
  int generated = 0;
  for (int64_t i = 0; i < sq__nkernels; i++) generated += sq__kernels[i].fn != NULL;
  Interp *ref = interp_new(g, 5), *gen = interp_new(g, 5);
  interp_set_kernels(gen, sq__kernels, sq__nkernels);
  interp_set_threads(gen, 3); /* uneven parts: the bits must not change */
  int passed = 0, failed = 0;
  for (int step = 0; step < 3; step++) {
    batch(ref, g, step), batch(gen, g, step);
    float la, lb;
    int ok = interp_train_step(ref, 0.05f, &la) && interp_train_step(gen, 0.05f, &lb) && same(ref, gen, g, step);
    ok ? passed++ : failed++;
  }
  if (generated == 0) printf("FAIL: the object has no generated kernels\n"), failed++;
  printf("aarch64 (%d generated kernels): %d passed, %d failed\n", generated, passed, failed);
  interp_free(ref), interp_free(gen);
  ir_free(g);
  return failed != 0;
}
