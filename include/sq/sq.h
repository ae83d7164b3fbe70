/* sq.h: the C ABI of a model library compiled by sqc (DESIGN.md §5; docs/abi.md).
 * Every function returns a status; after an error the model and the files on disk are as they
 * were, and sq_last_error() says what happened. No function exits or aborts on bad input. */
#ifndef SQ_SQ_H
#define SQ_SQ_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SQ_OK = 0,
  SQ_ERR_ARG,         /* a NULL pointer, a bad count, a value out of range */
  SQ_ERR_NOMEM,
  SQ_ERR_IO,          /* a file could not be read or written */
  SQ_ERR_FORMAT,      /* a file is not a valid checkpoint */
  SQ_ERR_MISMATCH,    /* a checkpoint of another model */
  SQ_ERR_NUMERIC,     /* NaN/Inf in the input or the result; nothing was updated */
  SQ_ERR_UNSUPPORTED
} sq_status;

typedef struct sq_model sq_model;

typedef struct {
  float loss;
  float accuracy; /* on this batch */
} sq_step_stats;

typedef struct {
  const char *name;
  int64_t batch;       /* B: samples per training step */
  int64_t input_size;  /* f32 values per sample */
  int64_t output_size; /* f32 values per sample of the first output */
  int bits;            /* GEMM bit width (32: float) */
  const char *target;  /* the backend that runs the model */
} sq_model_info;

sq_status sq_create(sq_model **out, uint64_t seed); /* allocates, initialises parameters from seed */
void sq_destroy(sq_model *m);
/* x: batch * input_size floats; y: batch labels; lr: learning rate of this step. st may be NULL. */
sq_status sq_train_step(sq_model *m, const float *x, const int32_t *y, float lr, sq_step_stats *st);
/* Inference for any n >= 0 samples (run in chunks of B): logits gets n * output_size floats. */
sq_status sq_infer(sq_model *m, const float *x, int64_t n, float *logits);
sq_status sq_save(const sq_model *m, const char *path); /* safetensors; temp file, fsync, rename */
sq_status sq_load(sq_model *m, const char *path);       /* validates everything before touching m */
sq_status sq_set_threads(sq_model *m, int n);
const char *sq_last_error(const sq_model *m);
const sq_model_info *sq_info(void);
int64_t sq_step(const sq_model *m); /* training steps taken (restored by sq_load) */

#ifdef __cplusplus
}
#endif
#endif
