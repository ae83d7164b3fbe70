/* checkpoint.h: safetensors files (an 8-byte little-endian header length, a JSON header, raw
 * little-endian tensors) with sqc metadata under "__metadata__". Other tools read the weights
 * with nothing but a JSON parser. Saving writes a temporary file beside the target, fsyncs it
 * and renames it over the target, so an old checkpoint survives any failure. Loading validates
 * the whole file (structure, names, dtypes, shapes, offsets, metadata, a CRC-32 over header
 * fields and data) before it writes a single destination byte. */
#ifndef SQ_RUNTIME_CHECKPOINT_H
#define SQ_RUNTIME_CHECKPOINT_H
#include <stdint.h>

typedef enum { CK_F32, CK_I32 } ck_dtype;

typedef struct {
  const char *name;
  ck_dtype dtype;
  int rank;
  const int64_t *shape;
  void *data; /* saved from / loaded into */
} ck_tensor;

typedef struct { const char *key, *value; } ck_meta;

/* Failures: a file that cannot be read or written, one that is not a valid checkpoint, and a
 * valid checkpoint of another model. */
enum { CK_EIO = -1, CK_EFORMAT = -2, CK_EMISMATCH = -3 };

/* Returns 0 on success; otherwise a CK_E* code and a malloc'd message in *err. */
int ck_save(const char *path, const ck_tensor *t, int nt, const ck_meta *meta, int nmeta, char **err);

/* Loads exactly the tensors in t (each must be in the file with the same dtype and shape; the
 * file may hold no others). Each `expect` entry must be in the metadata with that value
 * (e.g. the model hash); got_values[k] receives the file's value of got_keys[k] (malloc'd; NULL
 * when absent). Nothing is written to t[].data or got_values unless the whole file is valid.
 * Returns 0 or a CK_E* code with a malloc'd message in *err. */
int ck_load(const char *path, const ck_tensor *t, int nt, const ck_meta *expect, int nexpect,
            const char *const *got_keys, char **got_values, int ngot, char **err);
#endif
