/* tensor.h: a dense tensor view (row-major, contiguous) shared by the reference executor and
 * the runtime. The element buffer is f for f32 tensors and i for i32 tensors. */
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
} Tensor;
#endif
