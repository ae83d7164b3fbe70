/* snapshot.c: maps the executor's leaves onto runtime/checkpoint.c. */
#include "snapshot.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../runtime/checkpoint.h"
#include "../ir/print.h"

void ir_hash_text(const Graph *g, char out[17]) {
  char *text = ir_print(g);
  uint64_t h = 1469598103934665603ull;
  for (const char *p = text; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  free(text);
  snprintf(out, 17, "%016" PRIx64, h);
}

/* Parameters and state in node order. */
static int leaves(Interp *it, ck_tensor **out) {
  const Graph *g = interp_graph(it);
  int n = 0;
  ck_tensor *t = xmalloc(sizeof(ck_tensor) * (size_t)(g->nodes.n ? g->nodes.n : 1));
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *nd = ir_node(g, id);
    if (nd->kind != NK_PARAM && nd->kind != NK_STATE) continue;
    Tensor *x = interp_tensor(it, id);
    t[n++] = (ck_tensor){nd->name, CK_F32, x->rank, x->d, x->f};
  }
  *out = t;
  return n;
}

enum { FIXED_META = 6 };

int interp_save(Interp *it, const char *path, const char *const *extra_kv, int nextra, char **err) {
  const Graph *g = interp_graph(it);
  ck_tensor *t;
  int nt = leaves(it, &t);
  char hash[17], bits[16], step[32], seed[32];
  ir_hash_text(g, hash);
  snprintf(bits, sizeof bits, "%d", g->quant.bits);
  snprintf(step, sizeof step, "%lld", (long long)interp_step(it));
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)interp_seed(it));
  ck_meta *meta = xmalloc(sizeof(ck_meta) * (size_t)(FIXED_META + nextra));
  meta[0] = (ck_meta){"sqc.format", "1"};
  meta[1] = (ck_meta){"sqc.model", g->name};
  meta[2] = (ck_meta){"sqc.hash", hash};
  meta[3] = (ck_meta){"sqc.bits", bits};
  meta[4] = (ck_meta){"sqc.step", step};
  meta[5] = (ck_meta){"sqc.seed", seed}; /* with the step, the position of every random stream */
  for (int i = 0; i < nextra; i++) meta[FIXED_META + i] = (ck_meta){extra_kv[2 * i], extra_kv[2 * i + 1]};
  int rc = ck_save(path, t, nt, meta, FIXED_META + nextra, err);
  free(meta);
  free(t);
  return rc;
}

int interp_load(Interp *it, const char *path, const char *const *extra_keys, char **extra_values, int nextra,
                char **err) {
  const Graph *g = interp_graph(it);
  ck_tensor *t;
  int nt = leaves(it, &t);
  char hash[17];
  ir_hash_text(g, hash);
  ck_meta expect[] = {{"sqc.format", "1"}, {"sqc.model", g->name}, {"sqc.hash", hash}};
  enum { OWN = 2 }; /* sqc.step, sqc.seed */
  const char **keys = xcalloc((size_t)nextra + OWN, sizeof(char *));
  char **values = xcalloc((size_t)nextra + OWN, sizeof(char *));
  keys[0] = "sqc.step";
  keys[1] = "sqc.seed";
  for (int i = 0; i < nextra; i++) keys[i + OWN] = extra_keys[i];
  /* Load into scratch copies first: the step must parse before the model changes. */
  ck_tensor *scratch = xmalloc(sizeof(ck_tensor) * (size_t)(nt ? nt : 1));
  for (int i = 0; i < nt; i++) {
    scratch[i] = t[i];
    scratch[i].data = xmalloc(sizeof(float) * (size_t)interp_tensor(it, ir_find(g, t[i].name))->n + 1);
  }
  int rc = ck_load(path, scratch, nt, expect, 3, keys, values, nextra + OWN, err);
  char *end = NULL, *send = NULL;
  long long step = rc == 0 && values[0] ? strtoll(values[0], &end, 10) : -1;
  unsigned long long seed = rc == 0 && values[1] ? strtoull(values[1], &send, 10) : 0;
  if (rc == 0 && (!values[0] || *end || step < 0 || !values[1] || *send)) {
    *err = xasprintf("%s: metadata sqc.step or sqc.seed is missing or not a number", path);
    rc = CK_EFORMAT;
  }
  if (rc == 0) {
    for (int i = 0; i < nt; i++)
      memcpy(t[i].data, scratch[i].data, sizeof(float) * (size_t)interp_tensor(it, ir_find(g, t[i].name))->n);
    interp_set_step(it, step);
    interp_set_seed(it, seed);
    for (int i = 0; i < nextra; i++) extra_values[i] = values[i + OWN];
  } else {
    for (int i = 0; i < nextra; i++) free(values[i + OWN]);
  }
  free(values[0]);
  free(values[1]);
  for (int i = 0; i < nt; i++) free(scratch[i].data);
  free(scratch);
  free(keys);
  free(values);
  free(t);
  return rc;
}
