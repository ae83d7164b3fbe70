/* lib_check.h: what the C programs that drive a model library in tests/cli.sh share: CHECK,
 * which counts and prints a failed condition, and same_file, whether two files hold the same
 * bytes. */
#ifndef SQ_TESTS_LIB_CHECK_H
#define SQ_TESTS_LIB_CHECK_H
#include <stdio.h>

static int passed, failed;
#define CHECK(cond, ...) \
  do { \
    if (cond) passed++; \
    else { failed++; printf("FAIL line %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); } \
  } while (0)

static inline int same_file(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb, ca, cb;
  while (same && (ca = fgetc(fa)) != EOF) same = ca == (cb = fgetc(fb));
  same = same && fgetc(fb) == EOF;
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}
#endif
