/* util.h: allocation helpers, growable arrays and internal-error reporting.
 * Internal errors mean the compiler is wrong (not the user's program): they print
 * "file.c:line: internal error: ..." and abort so a debugger or sanitizer shows the stack. */
#ifndef SQ_BASE_UTIL_H
#define SQ_BASE_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define SQ_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SQ_NORETURN __attribute__((noreturn))
#else
#define SQ_PRINTF(f, a)
#define SQ_NORETURN
#endif

SQ_NORETURN void sq_internal_error(const char *file, int line, const char *fmt, ...) SQ_PRINTF(3, 4);
#define SQ_INTERNAL(...) sq_internal_error(__FILE__, __LINE__, __VA_ARGS__)
#define SQ_ASSERT(c) ((c) ? (void)0 : SQ_INTERNAL("assertion failed: %s", #c))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
/* size bytes aligned to align (a power of two), zeroed; free with free() */
void *xaligned_alloc(size_t align, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) SQ_PRINTF(1, 2);
char *xvasprintf(const char *fmt, va_list ap);

/* Growable array: struct { T *v; int n, cap; }; VEC_PUSH grows geometrically. */
#define VEC(T) struct { T *v; int n, cap; }
#define VEC_PUSH(vec, x) do { \
    if ((vec).n == (vec).cap) { \
      (vec).cap = (vec).cap ? 2 * (vec).cap : 8; \
      (vec).v = xrealloc((vec).v, (size_t)(vec).cap * sizeof *(vec).v); \
    } \
    (vec).v[(vec).n++] = (x); \
  } while (0)
#define VEC_FREE(vec) do { free((vec).v); (vec).v = NULL; (vec).n = (vec).cap = 0; } while (0)

/* Dynamic string builder. */
typedef struct { char *s; size_t len, cap; } StrBuf;
void sb_putc(StrBuf *b, char c);
void sb_puts(StrBuf *b, const char *s);
void sb_printf(StrBuf *b, const char *fmt, ...) SQ_PRINTF(2, 3);
char *sb_take(StrBuf *b); /* returns the string (never NULL) and resets b */

/* Edit distance for "did you mean" suggestions; returns the closest of names[0..n)
 * within a small distance, or NULL. */
const char *sq_closest_name(const char *word, const char *const *names, int n);

/* Reads a whole file; returns NULL and sets *err (static text) on failure. */
char *sq_read_file(const char *path, size_t *len, const char **err);
#endif
