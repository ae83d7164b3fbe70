/* app.c: an application that embeds training. Build it against any model library:
 *   sqc examples/mlp.sq -o build/mlp.so
 *   cc -include build/mlp.h examples/app/app.c build/mlp.so -o build/app -Wl,-rpath,'$ORIGIN'
 *   build/app build/app.safetensors
 * It trains a few steps on synthetic data (class k lights up input block k), saves a
 * checkpoint, loads it into a second model and checks that both predict the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(sq_status st, const sq_model *m, const char *what) {
  if (st == SQ_OK) return 1;
  fprintf(stderr, "app: %s failed (status %d): %s\n", what, (int)st, sq_last_error(m));
  return 0;
}

int main(int argc, char **argv) {
  const char *ckpt = argc > 1 ? argv[1] : "app.safetensors";
  const sq_model_info *info = sq_info();
  if (!info) return 1;
  int64_t B = info->batch, in = info->input_size, classes = info->output_size;
  printf("model %s: batch %lld, %lld inputs, %lld outputs, %d bits, target %s\n", info->name, (long long)B,
         (long long)in, (long long)classes, info->bits, info->target);
  sq_model *m = NULL, *copy = NULL;
  if (sq_create(&m, 42) != SQ_OK) return 1;
  float *x = calloc((size_t)(B * in), sizeof(float)), *a = malloc(sizeof(float) * (size_t)(B * classes));
  float *b = malloc(sizeof(float) * (size_t)(B * classes));
  int32_t *y = calloc((size_t)B, sizeof(int32_t));
  int ok = x && a && b && y;
  for (int step = 0; ok && step < 20; step++) {
    for (int64_t r = 0; r < B; r++) {
      y[r] = (int32_t)((r + step) % classes);
      for (int64_t i = 0; i < in; i++) x[r * in + i] = (i * classes / in == y[r]) ? 1.0f : 0.0f;
    }
    sq_step_stats st;
    ok = check(sq_train_step(m, x, y, 0.05f, &st), m, "sq_train_step");
    if (ok && step % 5 == 4) printf("step %d: loss %.4f, batch accuracy %.2f\n", step + 1, st.loss, st.accuracy);
  }
  ok = ok && check(sq_save(m, ckpt), m, "sq_save") && check(sq_create(&copy, 7), NULL, "sq_create") &&
       check(sq_load(copy, ckpt), copy, "sq_load") && check(sq_infer(m, x, B, a), m, "sq_infer") &&
       check(sq_infer(copy, x, B, b), copy, "sq_infer");
  if (ok && memcmp(a, b, sizeof(float) * (size_t)(B * classes)) != 0) {
    fprintf(stderr, "app: the loaded model predicts differently\n");
    ok = 0;
  }
  if (ok) printf("saved %s; a second model loaded from it predicts the same\n", ckpt);
  free(x), free(y), free(a), free(b);
  sq_destroy(m);
  sq_destroy(copy);
  return ok ? 0 : 1;
}
