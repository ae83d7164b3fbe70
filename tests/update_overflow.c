/* update_overflow.c DIR THREADS: an update whose result overflows leaves the model as it was.
 * Built by tests/cli.sh against tests/models/regress.sq (cc -include regress.h ... regress.so):
 * targets of 1000 give the output bias a gradient near -2000, and a learning rate of 1e37 takes
 * it past 3.4e38. The model's checkpoint after the failed step must equal the one before it,
 * byte for byte, and the model must train on. Prints "update-overflow: N passed, M failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib_check.h"

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const sq_model_info *info = sq_info();
  int64_t B = info->batch, IN = info->input_size;
  float *x = malloc(sizeof(float) * (size_t)(B * IN));
  int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
  for (int64_t i = 0; i < B * IN; i++) x[i] = (float)((i * 7919) % 13) / 13.0f - 0.5f;
  for (int64_t i = 0; i < B; i++) y[i] = 1000;
  sq_model *m;
  CHECK(sq_create(&m, 1) == SQ_OK && sq_set_threads(m, atoi(argv[2])) == SQ_OK, "sq_create");
  CHECK(sq_train_step(m, x, y, 0.001f, NULL) == SQ_OK, "a good step: %s", sq_last_error(m));
  char before[4096], after[4096];
  snprintf(before, sizeof before, "%s/overflow-before.safetensors", argv[1]);
  snprintf(after, sizeof after, "%s/overflow-after.safetensors", argv[1]);
  CHECK(sq_save(m, before) == SQ_OK, "save: %s", sq_last_error(m));
  int64_t step = sq_step(m);
  CHECK(sq_train_step(m, x, y, 1e37f, NULL) == SQ_ERR_NUMERIC, "lr 1e37: %s", sq_last_error(m));
  CHECK(strstr(sq_last_error(m), "is not finite; parameters were not updated") != NULL, "message: %s", sq_last_error(m));
  CHECK(sq_step(m) == step, "the failed step counted");
  CHECK(sq_save(m, after) == SQ_OK && same_file(before, after), "the failed step changed the model");
  CHECK(sq_train_step(m, x, y, 0.001f, NULL) == SQ_OK && sq_step(m) == step + 1, "no step after: %s", sq_last_error(m));
  CHECK(sq_save(m, after) == SQ_OK && !same_file(before, after), "the step after changed nothing");
  sq_destroy(m);
  free(x), free(y);
  printf("update-overflow: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
