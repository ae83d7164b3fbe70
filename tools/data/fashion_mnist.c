/* fashion_mnist.c: IDX reader. Every header field is checked (magic, rank, sizes, counts of
 * images and labels agree, labels in 0..9) and a short file is an error, never a crash. */
#include "fashion_mnist.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "../../src/base/util.h"

const char *fmnist_default_dir(void) {
  const char *env = getenv("SQ_FASHION_MNIST");
  return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads a whole gzip file; NULL with *err on failure. */
static unsigned char *read_gz(const char *path, size_t *len, char **err) {
  gzFile f = gzopen(path, "rb");
  if (!f) {
    *err = xasprintf("cannot open %s (is the Debian package dataset-fashion-mnist installed?)", path);
    return NULL;
  }
  size_t cap = 1 << 20, n = 0;
  unsigned char *buf = xmalloc(cap);
  for (;;) {
    if (cap - n < (1 << 16)) buf = xrealloc(buf, cap *= 2);
    int got = gzread(f, buf + n, (unsigned)(cap - n));
    if (got < 0) {
      int code;
      *err = xasprintf("%s: corrupt gzip data (%s)", path, gzerror(f, &code));
      gzclose(f);
      free(buf);
      return NULL;
    }
    if (got == 0) break;
    n += (size_t)got;
  }
  gzclose(f);
  *len = n;
  return buf;
}

/* Parses an IDX header of the given rank; returns the payload pointer or NULL. */
static const unsigned char *idx_payload(const unsigned char *b, size_t len, int rank, uint32_t *dims) {
  if (len < 4 + 4 * (size_t)rank || b[0] || b[1] || b[2] != 0x08 || b[3] != rank) return NULL;
  uint64_t total = 1;
  for (int i = 0; i < rank; i++) {
    dims[i] = be32(b + 4 + 4 * i);
    total *= dims[i];
  }
  if (total != len - 4 - 4 * (size_t)rank) return NULL;
  return b + 4 + 4 * rank;
}

int fmnist_load(const char *dir, const char *split, Dataset *out, char **err) {
  memset(out, 0, sizeof *out);
  char *ipath = xasprintf("%s/%s-images-idx3-ubyte.gz", dir, split);
  char *lpath = xasprintf("%s/%s-labels-idx1-ubyte.gz", dir, split);
  size_t ilen = 0, llen = 0;
  unsigned char *ib = read_gz(ipath, &ilen, err), *lb = ib ? read_gz(lpath, &llen, err) : NULL;
  int ok = 0;
  if (ib && lb) {
    uint32_t idims[3], ldims[1];
    const unsigned char *ip = idx_payload(ib, ilen, 3, idims), *lp = idx_payload(lb, llen, 1, ldims);
    if (!ip) *err = xasprintf("%s: not an IDX image file, or truncated", ipath);
    else if (!lp) *err = xasprintf("%s: not an IDX label file, or truncated", lpath);
    else if (idims[0] != ldims[0]) *err = xasprintf("%s and %s: %u images but %u labels", ipath, lpath, idims[0], ldims[0]);
    else {
      out->n = idims[0];
      out->pixels = (int64_t)idims[1] * idims[2];
      out->x = xmalloc(sizeof(float) * (size_t)(out->n * out->pixels));
      out->y = xmalloc(sizeof(int32_t) * (size_t)out->n);
      for (int64_t i = 0; i < out->n * out->pixels; i++) out->x[i] = (float)ip[i] / 255.0f;
      ok = 1;
      for (int64_t i = 0; i < out->n; i++) {
        if (lp[i] > 9) {
          *err = xasprintf("%s: label %u of image %lld is not in 0..9", lpath, lp[i], (long long)i);
          ok = 0;
          break;
        }
        out->y[i] = lp[i];
      }
      if (!ok) fmnist_free(out);
    }
  }
  free(ib);
  free(lb);
  free(ipath);
  free(lpath);
  return ok;
}

void fmnist_stats(const Dataset *d, float *mean, float *std) {
  double s = 0, ss = 0;
  int64_t n = d->n * d->pixels;
  for (int64_t i = 0; i < n; i++) s += d->x[i];
  double m = s / (double)n;
  for (int64_t i = 0; i < n; i++) ss += (d->x[i] - m) * (d->x[i] - m);
  *mean = (float)m;
  *std = (float)sqrt(ss / (double)n);
}

void fmnist_normalize(Dataset *d, float mean, float std) {
  for (int64_t i = 0; i < d->n * d->pixels; i++) d->x[i] = (d->x[i] - mean) / std;
}

void fmnist_free(Dataset *d) {
  free(d->x);
  free(d->y);
  memset(d, 0, sizeof *d);
}
