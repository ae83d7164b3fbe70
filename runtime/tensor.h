/* tensor.h: a dense tensor view (row-major, contiguous) shared by the reference executor and
 * the runtime. The element buffer is f for f32 tensors, i for i32 tensors, and q for quantized
 * (q8, q4) tensors: int8 values, or uint8 when q_unsigned, times one float32 scale; q4 packs
 * two values a byte (numerics.h). */
#ifndef SQ_RUNTIME_TENSOR_H
#define SQ_RUNTIME_TENSOR_H
#include <stdint.h>
#include "numerics.h"

typedef struct {
  int dtype; /* DType */
  int rank;
  int64_t d[6];
  int64_t n; /* number of elements */
  float *f;
  int32_t *i;
  uint8_t *q;
  int16_t *s16; /* s16: values nm_s16_value(s16[i], scale) */
  float scale;
  int q_unsigned;
  int q4; /* q holds two values a byte */
} Tensor;

static inline int32_t tensor_q(const Tensor *t, int64_t i) {
  if (t->q4) return nm_q4_get(t->q, i, t->q_unsigned);
  return t->q_unsigned ? t->q[i] : (int8_t)t->q[i];
}
#endif
