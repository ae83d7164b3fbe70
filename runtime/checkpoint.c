/* checkpoint.c: see checkpoint.h. The CRC-32 (zlib) covers a canonical text of every tensor's
 * name, dtype, shape and offsets and of every metadata entry but itself, then the data bytes:
 * a flipped byte anywhere in the file is caught, whether or not the JSON still parses. */
#include "checkpoint.h"
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoints store tensors little-endian; this code assumes a little-endian host"
#endif

#define CRC_KEY "sqc.crc32"

static int fail_code(int code, char **err, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  *err = malloc((size_t)n + 1);
  if (*err) vsnprintf(*err, (size_t)n + 1, fmt, ap);
  return code;
}
#define FAILFN(name, code) \
  static int name(char **err, const char *fmt, ...) { \
    va_list ap; \
    va_start(ap, fmt); \
    int r = fail_code(code, err, fmt, ap); \
    va_end(ap); \
    return r; \
  }
FAILFN(fail_io, CK_EIO)
FAILFN(fail_mismatch, CK_EMISMATCH)

static int fail(char **err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  *err = malloc((size_t)n + 1);
  if (*err) {
    va_start(ap, fmt);
    vsnprintf(*err, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  return CK_EFORMAT;
}

static const char *dtype_text(ck_dtype d) { return d == CK_F32 ? "F32" : "I32"; }

static int64_t numel(const ck_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

static int cmp_meta(const void *a, const void *b) { return strcmp(((const ck_meta *)a)->key, ((const ck_meta *)b)->key); }

/* CRC over the canonical description (tensors in t's order, metadata sorted by key, the CRC
 * entry left out), then over the data region. */
static uint32_t header_crc(const ck_tensor *t, int nt, const int64_t *begin, const ck_meta *meta, int nmeta) {
  uLong crc = crc32(0L, Z_NULL, 0);
  char line[128];
  for (int i = 0; i < nt; i++) {
    crc = crc32(crc, (const Bytef *)t[i].name, (uInt)strlen(t[i].name));
    int n = snprintf(line, sizeof line, "|%s|%d", dtype_text(t[i].dtype), t[i].rank);
    crc = crc32(crc, (const Bytef *)line, (uInt)n);
    for (int d = 0; d < t[i].rank; d++) {
      n = snprintf(line, sizeof line, ",%lld", (long long)t[i].shape[d]);
      crc = crc32(crc, (const Bytef *)line, (uInt)n);
    }
    n = snprintf(line, sizeof line, "@%lld\n", (long long)begin[i]);
    crc = crc32(crc, (const Bytef *)line, (uInt)n);
  }
  ck_meta *sorted = malloc(sizeof(ck_meta) * (size_t)(nmeta ? nmeta : 1));
  int m = 0;
  for (int i = 0; sorted && i < nmeta; i++)
    if (strcmp(meta[i].key, CRC_KEY)) sorted[m++] = meta[i];
  if (sorted) qsort(sorted, (size_t)m, sizeof *sorted, cmp_meta);
  for (int i = 0; sorted && i < m; i++) {
    crc = crc32(crc, (const Bytef *)sorted[i].key, (uInt)strlen(sorted[i].key) + 1);
    crc = crc32(crc, (const Bytef *)sorted[i].value, (uInt)strlen(sorted[i].value) + 1);
  }
  free(sorted);
  return (uint32_t)crc;
}

static uint32_t data_crc(uint32_t crc, const unsigned char *p, int64_t n) {
  while (n > 0) {
    uInt chunk = n > (1 << 30) ? (1u << 30) : (uInt)n;
    crc = (uint32_t)crc32(crc, p, chunk);
    p += chunk, n -= chunk;
  }
  return crc;
}

static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

int ck_save(const char *path, const ck_tensor *t, int nt, const ck_meta *meta, int nmeta, char **err) {
  int64_t *begin = calloc((size_t)(nt ? nt : 1), sizeof(int64_t)), off = 0;
  if (!begin) return fail(err, "out of memory");
  for (int i = 0; i < nt; i++) begin[i] = off, off += numel(&t[i]) * 4;
  uint32_t crc = header_crc(t, nt, begin, meta, nmeta);
  for (int i = 0; i < nt; i++) crc = data_crc(crc, t[i].data, numel(&t[i]) * 4);
  char crc_text[16];
  snprintf(crc_text, sizeof crc_text, "%08x", crc);

  json_object *root = json_object_new_object(), *md = json_object_new_object();
  for (int i = 0; i < nmeta; i++) json_object_object_add(md, meta[i].key, json_object_new_string(meta[i].value));
  json_object_object_add(md, CRC_KEY, json_object_new_string(crc_text));
  json_object_object_add(root, "__metadata__", md);
  for (int i = 0; i < nt; i++) {
    json_object *e = json_object_new_object(), *shape = json_object_new_array(), *offs = json_object_new_array();
    for (int d = 0; d < t[i].rank; d++) json_object_array_add(shape, json_object_new_int64(t[i].shape[d]));
    json_object_array_add(offs, json_object_new_int64(begin[i]));
    json_object_array_add(offs, json_object_new_int64(begin[i] + numel(&t[i]) * 4));
    json_object_object_add(e, "dtype", json_object_new_string(dtype_text(t[i].dtype)));
    json_object_object_add(e, "shape", shape);
    json_object_object_add(e, "data_offsets", offs);
    json_object_object_add(root, t[i].name, e);
  }
  const char *json = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
  size_t jlen = strlen(json), hlen = (jlen + 7) / 8 * 8; /* pad with spaces to 8 bytes */
  char *header = malloc(hlen + 8);
  int rc = -1;
  char *tmp = malloc(strlen(path) + 16);
  int fd = -1, created = 0;
  if (!header || !tmp) {
    fail(err, "out of memory");
    goto out;
  }
  uint64_t le = hlen;
  memcpy(header, &le, 8);
  memcpy(header + 8, json, jlen);
  memset(header + 8 + jlen, ' ', hlen - jlen);
  sprintf(tmp, "%s.tmpXXXXXX", path);
  fd = mkstemp(tmp);
  if (fd < 0) {
    fail_io(err, "cannot create a temporary file beside %s: %s", path, strerror(errno));
    goto out;
  }
  created = 1;
  int bad = write_all(fd, header, hlen + 8);
  for (int i = 0; i < nt && !bad; i++) bad = write_all(fd, t[i].data, (size_t)numel(&t[i]) * 4);
  if (bad || fsync(fd) != 0) {
    fail_io(err, "cannot write %s: %s", tmp, strerror(errno));
    goto out;
  }
  if (close(fd) != 0) {
    fd = -1;
    fail_io(err, "cannot write %s: %s", tmp, strerror(errno));
    goto out;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    fail_io(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    goto out;
  }
  created = 0; /* the temporary file is now the checkpoint */
  /* make the rename durable: fsync the directory */
  char *dir = strdup(path);
  char *slash = dir ? strrchr(dir, '/') : NULL;
  if (dir) {
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    int dfd = open(slash ? dir : ".", O_RDONLY);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
  }
  free(dir);
  rc = 0;
out:
  if (fd >= 0) close(fd);
  if (created) unlink(tmp);
  free(tmp);
  free(header);
  free(begin);
  json_object_put(root);
  return rc;
}

static unsigned char *slurp(const char *path, int64_t *size, char **err) {
  FILE *f = fopen(path, "rb");
  if (!f) return fail_io(err, "cannot open %s: %s", path, strerror(errno)), NULL;
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return fail_io(err, "%s is not a regular file", path), NULL;
  }
  unsigned char *buf = malloc((size_t)st.st_size + 1);
  if (!buf || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
    free(buf);
    fclose(f);
    return fail_io(err, "cannot read %s", path), NULL;
  }
  fclose(f);
  *size = st.st_size;
  return buf;
}

static int64_t json_int(json_object *o, int *ok) {
  if (!o || !json_object_is_type(o, json_type_int)) return *ok = 0, 0;
  return json_object_get_int64(o);
}

int ck_load(const char *path, const ck_tensor *t, int nt, const ck_meta *expect, int nexpect,
            const char *const *got_keys, char **got_values, int ngot, char **err) {
  int64_t size;
  unsigned char *buf = slurp(path, &size, err);
  if (!buf) return CK_EIO;
  int rc = CK_EFORMAT, nmeta = 0;
  json_object *root = NULL;
  json_tokener *tok = NULL;
  int64_t *begin = calloc((size_t)(nt ? nt : 1), sizeof(int64_t));
  char *seen = calloc((size_t)(nt ? nt : 1), 1);
  ck_meta *meta = NULL;
  uint64_t hlen;
  if (!begin || !seen) {
    fail(err, "out of memory");
    goto out;
  }
  if (size < 8) {
    fail(err, "%s: truncated (%lld bytes, no header)", path, (long long)size);
    goto out;
  }
  memcpy(&hlen, buf, 8);
  if (hlen > (uint64_t)size - 8 || hlen > (1u << 30)) {
    fail(err, "%s: truncated or corrupt: the header claims %llu bytes", path, (unsigned long long)hlen);
    goto out;
  }
  tok = json_tokener_new();
  root = tok ? json_tokener_parse_ex(tok, (const char *)buf + 8, (int)hlen) : NULL;
  size_t used = tok ? json_tokener_get_parse_end(tok) : 0;
  while (root && used < hlen && buf[8 + used] == ' ') used++; /* only padding may follow the object */
  if (!root || json_tokener_get_error(tok) != json_tokener_success || !json_object_is_type(root, json_type_object) ||
      used != hlen) {
    fail(err, "%s: the header is not a JSON object (corrupt file?)", path);
    goto out;
  }
  const unsigned char *data = buf + 8 + hlen;
  int64_t data_size = size - 8 - (int64_t)hlen, covered = 0;
  /* The metadata first: another model's file is a mismatch; anything wrong after the hash
   * matched is corruption. */
  json_object *md = NULL;
  if (!json_object_object_get_ex(root, "__metadata__", &md) || !json_object_is_type(md, json_type_object)) {
    fail(err, "%s: no __metadata__ (not an sqc checkpoint, or corrupt)", path);
    goto out;
  }
  meta = calloc((size_t)json_object_object_length(md) + 1, sizeof *meta);
  const char *crc_text = NULL;
  if (!meta) {
    fail(err, "out of memory");
    goto out;
  }
  json_object_object_foreach(md, mkey, mval) {
    if (!json_object_is_type(mval, json_type_string)) {
      fail(err, "%s: metadata '%s' is not a string", path, mkey);
      goto out;
    }
    meta[nmeta++] = (ck_meta){mkey, json_object_get_string(mval)};
    if (!strcmp(mkey, CRC_KEY)) crc_text = json_object_get_string(mval);
  }
  for (int k = 0; k < nexpect; k++) {
    const char *have = NULL;
    for (int m = 0; m < nmeta; m++)
      if (!strcmp(meta[m].key, expect[k].key)) have = meta[m].value;
    if (!have || strcmp(have, expect[k].value)) {
      rc = fail_mismatch(err, "%s: %s is '%s', but this model's is '%s' (a checkpoint of another model?)", path, expect[k].key,
           have ? have : "(absent)", expect[k].value);
      goto out;
    }
  }
  json_object_object_foreach(root, key, val) {
    if (!strcmp(key, "__metadata__")) continue;
    int i = 0;
    while (i < nt && strcmp(t[i].name, key)) i++;
    if (i == nt) {
      fail(err, "%s: holds a tensor '%s' that this model does not have", path, key);
      goto out;
    }
    json_object *dt, *shape, *offs;
    int ok = json_object_object_get_ex(val, "dtype", &dt) && json_object_object_get_ex(val, "shape", &shape) &&
             json_object_object_get_ex(val, "data_offsets", &offs) && json_object_is_type(dt, json_type_string) &&
             json_object_is_type(shape, json_type_array) && json_object_is_type(offs, json_type_array) &&
             json_object_array_length(offs) == 2;
    if (!ok) {
      fail(err, "%s: tensor '%s' has a malformed entry", path, key);
      goto out;
    }
    if (strcmp(json_object_get_string(dt), dtype_text(t[i].dtype))) {
      fail(err, "%s: tensor '%s' is %s, expected %s", path, key, json_object_get_string(dt), dtype_text(t[i].dtype));
      goto out;
    }
    int same = (int)json_object_array_length(shape) == t[i].rank;
    for (int d = 0; same && d < t[i].rank; d++) same = json_int(json_object_array_get_idx(shape, (size_t)d), &ok) == t[i].shape[d];
    if (!same || !ok) {
      fail(err, "%s: tensor '%s' has another shape than this model's", path, key);
      goto out;
    }
    int64_t b = json_int(json_object_array_get_idx(offs, 0), &ok), e = json_int(json_object_array_get_idx(offs, 1), &ok);
    if (!ok || b < 0 || e != b + numel(&t[i]) * 4 || e > data_size) {
      fail(err, "%s: tensor '%s' lies outside the file (truncated?)", path, key);
      goto out;
    }
    begin[i] = b;
    seen[i] = 1;
    covered += e - b;
  }
  for (int i = 0; i < nt; i++)
    if (!seen[i]) {
      fail(err, "%s: tensor '%s' is missing", path, t[i].name);
      goto out;
    }
  if (covered != data_size) {
    fail(err, "%s: the data region is %lld bytes but the tensors cover %lld (truncated or overlapping?)", path,
         (long long)data_size, (long long)covered);
    goto out;
  }
  uint32_t crc = header_crc(t, nt, begin, meta, nmeta);
  for (int i = 0; i < nt; i++) crc = data_crc(crc, data + begin[i], numel(&t[i]) * 4);
  char want[16];
  snprintf(want, sizeof want, "%08x", crc);
  if (!crc_text || strcmp(crc_text, want)) {
    fail(err, "%s: checksum mismatch (the file is corrupt)", path);
    goto out;
  }
  /* Everything is valid: only now touch the destination. */
  for (int i = 0; i < nt; i++) memcpy(t[i].data, data + begin[i], (size_t)numel(&t[i]) * 4);
  for (int k = 0; k < ngot; k++) {
    got_values[k] = NULL;
    for (int m = 0; m < nmeta; m++)
      if (!strcmp(meta[m].key, got_keys[k])) got_values[k] = strdup(meta[m].value);
  }
  rc = 0;
out:
  free(meta);
  if (root) json_object_put(root);
  if (tok) json_tokener_free(tok);
  free(begin);
  free(seen);
  free(buf);
  return rc;
}
