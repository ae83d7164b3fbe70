/* tensor.h: a dense tensor view (row-major, contiguous) shared by the reference executor and
 * the runtime. The element buffer is f for f32 tensors, i for i32 tensors, and q for quantized
 * (q8) tensors: int8 values, or uint8 when q_unsigned, times one float32 scale. */
#ifndef SQ_RUNTIME_TENSOR_H
#define SQ_RUNTIME_TENSOR_H
#include <stdint.h>

typedef struct {
  int dtype; /* DType */
  int rank;
  int64_t d[6];
  int64_t n; /* number of elements */
  float *f;
  int32_t *i;
  uint8_t *q;
  float scale;
  int q_unsigned;
} Tensor;

static inline int32_t tensor_q(const Tensor *t, int64_t i) { return t->q_unsigned ? t->q[i] : (int8_t)t->q[i]; }
#endif
