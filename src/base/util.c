/* util.c: allocation that cannot return NULL, string building, name suggestions, file reading. */
#include "util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sq_internal_error(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "%s:%d: internal error: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

static void *check_alloc(void *p, size_t n) {
  if (!p && n) SQ_INTERNAL("out of memory allocating %zu bytes", n);
  return p;
}
void *xmalloc(size_t n) { return check_alloc(malloc(n ? n : 1), n); }
void *xcalloc(size_t n, size_t size) { return check_alloc(calloc(n ? n : 1, size ? size : 1), n * size); }
void *xaligned_alloc(size_t align, size_t size) {
  size = (size + align - 1) / align * align; /* aligned_alloc wants a multiple of the alignment */
  void *p = check_alloc(aligned_alloc(align, size ? size : align), size);
  return memset(p, 0, size ? size : align);
}
void *xrealloc(void *p, size_t n) { return check_alloc(realloc(p, n ? n : 1), n); }
char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }
char *xstrndup(const char *s, size_t n) {
  char *r = xmalloc(n + 1);
  memcpy(r, s, n);
  r[n] = 0;
  return r;
}

static void sb_vprintf(StrBuf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) SQ_INTERNAL("bad format string");
  if (b->len + (size_t)n + 1 > b->cap) {
    b->cap = (b->len + (size_t)n + 1) * 2;
    b->s = xrealloc(b->s, b->cap);
  }
  vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}
char *xvasprintf(const char *fmt, va_list ap) {
  StrBuf b = {0};
  sb_vprintf(&b, fmt, ap);
  return sb_take(&b);
}
char *xasprintf(const char *fmt, ...) {
  StrBuf b = {0};
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(&b, fmt, ap);
  va_end(ap);
  return sb_take(&b);
}
void sb_printf(StrBuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(b, fmt, ap);
  va_end(ap);
}
void sb_putc(StrBuf *b, char c) {
  if (b->len + 2 > b->cap) {
    b->cap = b->cap ? b->cap * 2 : 64;
    b->s = xrealloc(b->s, b->cap);
  }
  b->s[b->len++] = c;
  b->s[b->len] = 0;
}
void sb_puts(StrBuf *b, const char *s) { sb_printf(b, "%s", s); }
char *sb_take(StrBuf *b) {
  char *s = b->s ? b->s : xstrdup("");
  b->s = NULL;
  b->len = b->cap = 0;
  return s;
}

static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 1000;
  int prev[65], cur[65];
  for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
      if (prev[j] + 1 < c) c = prev[j] + 1;
      if (cur[j - 1] + 1 < c) c = cur[j - 1] + 1;
      cur[j] = c;
    }
    memcpy(prev, cur, sizeof(int) * (lb + 1));
  }
  return prev[lb];
}

const char *sq_closest_name(const char *word, const char *const *names, int n) {
  const char *best = NULL;
  int best_d = 1000;
  int limit = (int)strlen(word) / 3 + 1;
  for (int i = 0; i < n; i++) {
    if (!names[i]) continue;
    int d = edit_distance(word, names[i]);
    if (d < best_d) best_d = d, best = names[i];
  }
  return best_d <= limit && best_d < (int)strlen(word) ? best : NULL; /* never "q" -> "x" */
}

char *sq_read_file(const char *path, size_t *len, const char **err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    *err = strerror(errno);
    return NULL;
  }
  StrBuf b = {0};
  char chunk[65536];
  size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (b.len + got + 1 > b.cap) {
      b.cap = (b.len + got + 1) * 2;
      b.s = xrealloc(b.s, b.cap);
    }
    memcpy(b.s + b.len, chunk, got);
    b.len += got;
    b.s[b.len] = 0;
  }
  int bad = ferror(f);
  int e = errno;
  fclose(f);
  if (bad) {
    free(b.s);
    *err = strerror(e ? e : EIO);
    return NULL;
  }
  *len = b.len;
  return sb_take(&b);
}
