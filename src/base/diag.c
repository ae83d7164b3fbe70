/* diag.c: prints diagnostics with the offending source line and a caret.
 * Very long lines are shown as a window around the column so a 1 MB line stays readable. */
#include "diag.h"
#include <string.h>

enum { WINDOW = 60 }; /* characters shown either side of the caret on long lines */

void diag_init(Diag *d, const char *file, const char *src, size_t len, FILE *out) {
  memset(d, 0, sizeof *d);
  d->file = file;
  d->src = src;
  d->len = len;
  d->out = out ? out : stderr;
}

static void show_line(Diag *d, SrcLoc loc) {
  if (!d->src || loc.line <= 0) return;
  size_t pos = 0;
  for (int l = 1; l < loc.line && pos < d->len; pos++)
    if (d->src[pos] == '\n') l++;
  size_t end = pos;
  while (end < d->len && d->src[end] != '\n') end++;
  size_t col = loc.col > 0 ? (size_t)loc.col - 1 : 0;
  if (col > end - pos) col = end - pos;
  size_t from = col > WINDOW ? col - WINDOW : 0;
  size_t to = end - pos - col > WINDOW ? col + WINDOW : end - pos;
  const char *lead = from > 0 ? "..." : "";
  fputs(lead, d->out);
  for (size_t i = from; i < to; i++) {
    unsigned char c = (unsigned char)d->src[pos + i];
    fputc(c == '\t' || (c >= 32 && c < 127) || c >= 128 ? c : '?', d->out);
  }
  fputs(to < end - pos ? "...\n" : "\n", d->out);
  fputs(lead, d->out);
  for (size_t i = from; i < col; i++) fputc(d->src[pos + i] == '\t' ? '\t' : ' ', d->out);
  fputs("^\n", d->out);
}

static void report(Diag *d, const char *kind, SrcLoc loc, const char *fmt, va_list ap) {
  if (loc.line > 0)
    fprintf(d->out, "%s:%d:%d: %s: ", d->file, loc.line, loc.col, kind);
  else
    fprintf(d->out, "%s: %s: ", d->file, kind);
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  show_line(d, loc);
}

#define DIAG_FN(fn, kind, counter) \
  void fn(Diag *d, SrcLoc loc, const char *fmt, ...) { \
    va_list ap; \
    va_start(ap, fmt); \
    report(d, kind, loc, fmt, ap); \
    va_end(ap); \
    counter; \
  }
DIAG_FN(diag_error, "error", d->errors++)
DIAG_FN(diag_warning, "warning", d->warnings++)
DIAG_FN(diag_note, "note", (void)0)
