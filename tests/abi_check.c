/* abi_check.c: the model library's ABI on bad input. Built by tests/cli.sh against a compiled
 * model (cc -include MODEL.h tests/abi_check.c MODEL.so) and run with a directory for files
 * and the path of another model's checkpoint. Prints "abi: N passed, M failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib_check.h"

static int64_t B, IN, OUT;

/* logits of a fixed input: equal before and after a failed call means nothing changed */
static float *probe(sq_model *m, const float *x) {
  float *z = malloc(sizeof(float) * (size_t)(B * OUT));
  if (sq_infer(m, x, B, z) != SQ_OK) { free(z); return NULL; }
  return z;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const char *dir = argv[1], *other = argv[2];
  const sq_model_info *info = sq_info();
  B = info->batch, IN = info->input_size, OUT = info->output_size;
  sq_model *m;
  CHECK(sq_create(NULL, 1) == SQ_ERR_ARG, "sq_create(NULL)");
  CHECK(sq_create(&m, 1) == SQ_OK, "sq_create");
  float *x = malloc(sizeof(float) * (size_t)(B * IN));
  int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
  for (int64_t i = 0; i < B * IN; i++) x[i] = (float)((i * 7919) % 13) / 13.0f - 0.5f;
  for (int64_t i = 0; i < B; i++) y[i] = (int32_t)(i % OUT);
  sq_step_stats st;
  CHECK(sq_train_step(m, x, y, 0.1f, &st) == SQ_OK && isfinite(st.loss), "a good step");
  float *before = probe(m, x);
  int64_t step = sq_step(m);

  CHECK(sq_train_step(m, NULL, y, 0.1f, &st) == SQ_ERR_ARG, "NULL x");
  CHECK(sq_train_step(m, x, y, NAN, &st) == SQ_ERR_ARG, "NaN learning rate");
  float keep = x[5];
  x[5] = NAN;
  CHECK(sq_train_step(m, x, y, 0.1f, &st) == SQ_ERR_NUMERIC, "NaN input: %s", sq_last_error(m));
  CHECK(strlen(sq_last_error(m)) > 0, "no message after a NaN input");
  x[5] = INFINITY;
  CHECK(sq_train_step(m, x, y, 0.1f, &st) == SQ_ERR_NUMERIC, "Inf input");
  x[5] = keep;
  y[3] = (int32_t)OUT;
  CHECK(sq_train_step(m, x, y, 0.1f, &st) == SQ_ERR_ARG, "label out of range: %s", sq_last_error(m));
  y[3] = (int32_t)(3 % OUT);
  float *huge = malloc(sizeof(float) * (size_t)(B * IN));
  for (int64_t i = 0; i < B * IN; i++) huge[i] = 1e38f; /* finite, but the activations overflow */
  CHECK(sq_train_step(m, huge, y, 0.1f, &st) == SQ_ERR_NUMERIC, "an overflowing step: %s", sq_last_error(m));
  free(huge);
  float *after = probe(m, x);
  CHECK(before && after && memcmp(before, after, sizeof(float) * (size_t)(B * OUT)) == 0 && sq_step(m) == step,
        "failed steps changed the model");

  float *z = malloc(sizeof(float) * (size_t)((2 * B + 1) * OUT)), *xs = calloc((size_t)((2 * B + 1) * IN), sizeof(float));
  memcpy(xs, x, sizeof(float) * (size_t)(B * IN));
  CHECK(sq_infer(m, xs, 0, z) == SQ_OK, "infer 0 samples");
  CHECK(sq_infer(m, xs, -1, z) == SQ_ERR_ARG, "infer -1 samples");
  CHECK(sq_infer(m, xs, 2 * B + 1, z) == SQ_OK, "infer 2B+1 samples");
  CHECK(memcmp(z, before, sizeof(float) * (size_t)(B * OUT)) == 0, "chunked inference differs");
  float *three = malloc(sizeof(float) * (size_t)(3 * OUT));
  CHECK(sq_infer(m, x, 3, three) == SQ_OK && memcmp(three, before, sizeof(float) * (size_t)(3 * OUT)) == 0,
        "inference of 3 samples differs from the same rows of a full batch");

  char path[4096];
  snprintf(path, sizeof path, "%s/abi.safetensors", dir);
  CHECK(sq_save(m, path) == SQ_OK, "save: %s", sq_last_error(m));
  CHECK(sq_save(m, NULL) == SQ_ERR_ARG, "save NULL");
  snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", dir);
  CHECK(sq_save(m, path) == SQ_ERR_IO, "save into a missing directory");
  snprintf(path, sizeof path, "%s/missing.safetensors", dir);
  CHECK(sq_load(m, path) == SQ_ERR_IO, "load a missing file");
  CHECK(sq_load(m, other) == SQ_ERR_MISMATCH, "load another model's checkpoint: %s", sq_last_error(m));
  snprintf(path, sizeof path, "%s/abi.safetensors", dir);
  FILE *f = fopen(path, "r+b");
  if (f) { fseek(f, 20, SEEK_SET); fputc('#', f); fclose(f); }
  CHECK(sq_load(m, path) == SQ_ERR_FORMAT, "load a corrupt file: %s", sq_last_error(m));
  float *still = probe(m, x);
  CHECK(still && memcmp(still, before, sizeof(float) * (size_t)(B * OUT)) == 0, "failed loads changed the model");
  CHECK(sq_set_threads(m, 0) == SQ_ERR_ARG && sq_set_threads(m, 2) == SQ_OK, "sq_set_threads");
  sq_destroy(m);
  sq_destroy(NULL);
  free(x), free(y), free(before), free(after), free(z), free(xs), free(three), free(still);
  printf("abi: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
