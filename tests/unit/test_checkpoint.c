/* test_checkpoint.c: checkpoints round-trip, resume with the same bits, and refuse every broken
 * file (truncated at every tenth byte, any header byte flipped, another model's, missing) with a
 * message, leaving the model as it was; a failed save leaves no file behind. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../../runtime/rng.h"
#include "../../src/interp/snapshot.h"
#include "harness.h"

static const char *tiny_src = "model tiny {\n  input x : f32[B, 5]\n  label y : i32[B]\n"
                              "  z = linear(relu(batchnorm(linear(x, 4))), 3)\n  loss = cross_entropy(z, y)\n}\n"
                              "train { optimizer = adam() }\nquant { bits = 4 }\n";

static char tmpdir[64];

static void setup(void) {
  strcpy(tmpdir, "/tmp/sqck.XXXXXX");
  ck_assert(mkdtemp(tmpdir) != NULL);
}
static void teardown(void) {
  char *cmd = xasprintf("rm -rf '%s'", tmpdir);
  ck_assert_int_eq(system(cmd), 0);
  free(cmd);
}
static char *path_in(const char *name) { return xasprintf("%s/%s", tmpdir, name); }

static void batch(Interp *it, const Graph *g, int64_t step) {
  Tensor *x = interp_tensor(it, th_node(g, "x")), *y = interp_tensor(it, th_node(g, "y"));
  for (int64_t i = 0; i < x->n; i++) x->f[i] = rng_normal(8, 1, step, (uint64_t)i);
  for (int64_t i = 0; i < y->n; i++) y->i[i] = (int32_t)(rng_bits(8, 2, step, (uint64_t)i) % 3);
}

static void steps(Interp *it, const Graph *g, int from, int to) {
  for (int s = from; s < to; s++) {
    batch(it, g, s);
    float loss;
    ck_assert_msg(interp_train_step(it, 0.01f, &loss), "%s", interp_error(it));
  }
}

/* Every parameter and state value, as bytes. */
static unsigned char *state(Interp *it, const Graph *g, size_t *len) {
  StrBuf b = {0};
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = ir_node(g, i);
    if (n->kind != NK_PARAM && n->kind != NK_STATE) continue;
    const Tensor *t = interp_tensor(it, i);
    for (int64_t e = 0; e < t->n; e++) sb_printf(&b, "%a,", (double)t->f[e]);
  }
  sb_printf(&b, "step %lld", (long long)interp_step(it));
  *len = b.len;
  return (unsigned char *)sb_take(&b);
}

static unsigned char *read_bytes(const char *path, size_t *len) {
  const char *why;
  char *s = sq_read_file(path, len, &why);
  ck_assert_msg(s != NULL, "%s: %s", path, why);
  return (unsigned char *)s;
}
static void write_bytes(const char *path, const unsigned char *b, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert(f != NULL);
  ck_assert_uint_eq(fwrite(b, 1, len, f), len);
  ck_assert_int_eq(fclose(f), 0);
}

START_TEST(resume_gives_the_same_bits) {
  Graph *g = th_compile(tiny_src, 4, NULL);
  ck_assert(g != NULL);
  char *ck = path_in("mid.safetensors");
  Interp *a = interp_new(g, 3);
  steps(a, g, 0, 3);
  char *err = NULL;
  ck_assert_msg(interp_save(a, ck, NULL, 0, &err) == 0, "%s", err);
  steps(a, g, 3, 6);
  Interp *b = interp_new(g, 99); /* other initial values: everything must come from the file */
  ck_assert_msg(interp_load(b, ck, NULL, NULL, 0, &err) == 0, "%s", err);
  ck_assert_int_eq(interp_step(b), 3);
  steps(b, g, 3, 6);
  size_t la, lb;
  unsigned char *sa = state(a, g, &la), *sb = state(b, g, &lb);
  ck_assert_msg(la == lb && memcmp(sa, sb, la) == 0, "resumed training differs from uninterrupted training");
  free(sa), free(sb), free(ck);
  interp_free(a), interp_free(b);
  ir_free(g);
}
END_TEST

/* Loads a broken file and checks: it fails, says something, and changes nothing. */
static void refused(Interp *it, const Graph *g, const char *path, const char *what, const char *must_say) {
  size_t l0, l1;
  unsigned char *before = state(it, g, &l0);
  char *err = NULL;
  ck_assert_msg(interp_load(it, path, NULL, NULL, 0, &err) != 0, "%s was accepted", what);
  ck_assert_msg(err && *err, "%s: no message", what);
  if (must_say) ck_assert_msg(strstr(err, must_say), "%s: message '%s' lacks '%s'", what, err, must_say);
  unsigned char *after = state(it, g, &l1);
  ck_assert_msg(l0 == l1 && memcmp(before, after, l0) == 0, "%s changed the model", what);
  free(err), free(before), free(after);
}

START_TEST(broken_files_are_refused_and_change_nothing) {
  Graph *g = th_compile(tiny_src, 4, NULL);
  ck_assert(g != NULL);
  Interp *it = interp_new(g, 5);
  steps(it, g, 0, 2);
  char *good = path_in("good.safetensors"), *bad = path_in("bad.safetensors"), *err = NULL;
  ck_assert_msg(interp_save(it, good, NULL, 0, &err) == 0, "%s", err);
  steps(it, g, 2, 3); /* the model now differs from the file */
  size_t len;
  unsigned char *bytes = read_bytes(good, &len);
  uint64_t hlen;
  memcpy(&hlen, bytes, 8);
  int truncations = 0, flips = 0;
  for (size_t cut = 0; cut < len; cut += 10, truncations++) {
    write_bytes(bad, bytes, cut);
    refused(it, g, bad, "a truncated file", NULL);
  }
  for (size_t i = 0; i < 8 + hlen; i++, flips++) {
    bytes[i] ^= 0x01;
    write_bytes(bad, bytes, len);
    char what[64];
    snprintf(what, sizeof what, "a flipped header byte (offset %zu)", i);
    refused(it, g, bad, what, NULL);
    bytes[i] ^= 0x01;
  }
  bytes[len - 3] ^= 0x40; /* and one in the data */
  write_bytes(bad, bytes, len);
  refused(it, g, bad, "a flipped data byte", "checksum mismatch");
  ck_assert_int_gt(truncations, 50);
  ck_assert_int_gt(flips, 300);
  char *missing = path_in("nope.safetensors");
  refused(it, g, missing, "a missing file", "cannot open");
  refused(it, g, tmpdir, "a directory", "not a regular file");
  /* another model: same structure, other layer width */
  Graph *other = th_compile("model tiny {\n  input x : f32[B, 5]\n  label y : i32[B]\n"
                            "  z = linear(relu(batchnorm(linear(x, 6))), 3)\n  loss = cross_entropy(z, y)\n}\n",
                            4, NULL);
  Interp *oi = interp_new(other, 1);
  char *theirs = path_in("other.safetensors");
  ck_assert(interp_save(oi, theirs, NULL, 0, &err) == 0);
  refused(it, g, theirs, "another model's checkpoint", "another model");
  /* the good file still loads */
  ck_assert_msg(interp_load(it, good, NULL, NULL, 0, &err) == 0, "%s", err);
  ck_assert_int_eq(interp_step(it), 2);
  free(bytes), free(good), free(bad), free(missing), free(theirs);
  interp_free(oi), interp_free(it);
  ir_free(other), ir_free(g);
}
END_TEST

START_TEST(a_failed_save_leaves_the_old_file_and_no_temporary) {
  Graph *g = th_compile(tiny_src, 4, NULL);
  Interp *it = interp_new(g, 5);
  char *good = path_in("keep.safetensors"), *err = NULL;
  ck_assert(interp_save(it, good, NULL, 0, &err) == 0);
  size_t l0, l1;
  unsigned char *before = read_bytes(good, &l0);
  steps(it, g, 0, 1);
  char *nodir = path_in("no/such/dir.safetensors");
  ck_assert(interp_save(it, nodir, NULL, 0, &err) != 0);
  ck_assert_msg(strstr(err, "cannot create a temporary file"), "%s", err);
  free(err);
  char *sub = path_in("sub");
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  ck_assert(interp_save(it, sub, NULL, 0, &err) != 0); /* the target is a directory: rename fails */
  ck_assert_msg(strstr(err, "cannot rename"), "%s", err);
  free(err);
  if (geteuid() != 0) { /* root writes into read-only directories, so only others can test this */
    char *ro = path_in("ro"), *target = path_in("ro/ck.safetensors");
    ck_assert_int_eq(mkdir(ro, 0755), 0);
    ck_assert(interp_save(it, target, NULL, 0, &err) == 0);
    ck_assert_int_eq(chmod(ro, 0555), 0);
    ck_assert(interp_save(it, target, NULL, 0, &err) != 0);
    free(err);
    chmod(ro, 0755);
    free(ro), free(target);
  }
  unsigned char *after = read_bytes(good, &l1);
  ck_assert(l0 == l1 && memcmp(before, after, l0) == 0);
  char *cmd = xasprintf("cd '%s' && find . -name '*.tmp*' | wc -l", tmpdir);
  FILE *p = popen(cmd, "r");
  int leftovers = -1;
  ck_assert(fscanf(p, "%d", &leftovers) == 1);
  pclose(p);
  ck_assert_int_eq(leftovers, 0);
  free(cmd), free(before), free(after), free(good), free(nodir), free(sub);
  interp_free(it);
  ir_free(g);
}
END_TEST

/* With SQ_PY_CHECK_DIR set, leaves a checkpoint and the values it must hold for
 * tests/checkpoint_numpy.py, which reads it with numpy and json alone. */
START_TEST(write_for_python) {
  const char *dir = getenv("SQ_PY_CHECK_DIR");
  if (!dir) return;
  Graph *g = th_compile(tiny_src, 4, NULL);
  Interp *it = interp_new(g, 7);
  steps(it, g, 0, 2);
  char *ck = xasprintf("%s/tiny.safetensors", dir), *txt = xasprintf("%s/tiny.expected", dir), *err = NULL;
  ck_assert_msg(interp_save(it, ck, NULL, 0, &err) == 0, "%s", err);
  FILE *f = fopen(txt, "w");
  ck_assert(f != NULL);
  for (int i = 0; i < g->nodes.n; i++) {
    const Node *n = ir_node(g, i);
    if (n->kind != NK_PARAM && n->kind != NK_STATE) continue;
    const Tensor *t = interp_tensor(it, i);
    fprintf(f, "%s", n->name);
    for (int d = 0; d < t->rank; d++) fprintf(f, "%c%lld", d ? 'x' : ' ', (long long)t->d[d]);
    for (int64_t e = 0; e < t->n; e++) fprintf(f, " %a", (double)t->f[e]);
    fputc('\n', f);
  }
  fclose(f);
  free(ck), free(txt);
  interp_free(it);
  ir_free(g);
}
END_TEST

int main(void) {
  Suite *s = suite_create("checkpoint");
  TCase *t = tcase_create("files");
  tcase_add_checked_fixture(t, setup, teardown);
  tcase_set_timeout(t, 120);
  tcase_add_test(t, resume_gives_the_same_bits);
  tcase_add_test(t, broken_files_are_refused_and_change_nothing);
  tcase_add_test(t, a_failed_save_leaves_the_old_file_and_no_temporary);
  tcase_add_test(t, write_for_python);
  suite_add_tcase(s, t);
  return th_run(s);
}
