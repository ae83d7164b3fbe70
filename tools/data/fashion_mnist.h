/* fashion_mnist.h: reads Fashion-MNIST (big-endian IDX files in gzip, through zlib) and
 * normalises pixels as PyTorch users do: /255, then the training set's mean and std. */
#ifndef SQ_TOOLS_FASHION_MNIST_H
#define SQ_TOOLS_FASHION_MNIST_H
#include <stdint.h>

typedef struct {
  int64_t n;       /* images */
  int64_t pixels;  /* per image (784) */
  float *x;        /* n * pixels, normalised */
  int32_t *y;      /* n labels, 0..9 */
} Dataset;

/* Directory of the Debian package dataset-fashion-mnist, unless $SQ_FASHION_MNIST names another. */
const char *fmnist_default_dir(void);
/* Loads "train" or "t10k" from dir. Returns 0 and a malloc'd message in *err on failure. */
int fmnist_load(const char *dir, const char *split, Dataset *out, char **err);
/* Normalises in place with (v - mean) / std. */
void fmnist_normalize(Dataset *d, float mean, float std);
/* Mean and (population) standard deviation of all pixels of d. */
void fmnist_stats(const Dataset *d, float *mean, float *std);
void fmnist_free(Dataset *d);
#endif
