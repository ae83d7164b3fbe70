/* diag.h: user-facing diagnostics for .sq programs.
 * Every message is "file:line:col: error|warning|note: text", then the source line and a
 * caret under the column. Reporting never exits; callers check diag_errors(). */
#ifndef SQ_BASE_DIAG_H
#define SQ_BASE_DIAG_H
#include <stdio.h>
#include "util.h"

typedef struct { int line, col; } SrcLoc; /* 1-based; line 0 means "no location" */

typedef struct Diag {
  const char *file;  /* name shown in messages */
  const char *src;   /* whole source text (may contain NUL bytes up to len) */
  size_t len;
  FILE *out;
  int errors, warnings;
} Diag;

void diag_init(Diag *d, const char *file, const char *src, size_t len, FILE *out);
void diag_error(Diag *d, SrcLoc loc, const char *fmt, ...) SQ_PRINTF(3, 4);
void diag_warning(Diag *d, SrcLoc loc, const char *fmt, ...) SQ_PRINTF(3, 4);
void diag_note(Diag *d, SrcLoc loc, const char *fmt, ...) SQ_PRINTF(3, 4);
#endif
