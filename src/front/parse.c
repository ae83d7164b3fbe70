/* parse.c: runs the flex scanner and bison parser over a source buffer. */
#include <stdlib.h>
#include "lex_state.h"
#include "parser.h"

typedef struct yy_buffer_state *YY_BUFFER_STATE;
int sq_yylex_init_extra(LexState *extra, yyscan_t *scanner);
int sq_yylex_destroy(yyscan_t scanner);
YY_BUFFER_STATE sq_yy_scan_bytes(const char *bytes, int len, yyscan_t scanner);
int sq_yyparse(yyscan_t scanner, ParseState *ps);

Program *parse_program(Diag *d) {
  if (d->len > (size_t)1 << 30) {
    diag_error(d, (SrcLoc){0, 0}, "source file is larger than 1 GiB");
    return NULL;
  }
  Program *p = xcalloc(1, sizeof *p);
  LexState lex = {.diag = d, .arena = &p->arena, .line = 1, .col = 1};
  ParseState ps = {&lex, p};
  yyscan_t scanner;
  if (sq_yylex_init_extra(&lex, &scanner)) SQ_INTERNAL("cannot create the scanner");
  sq_yy_scan_bytes(d->src ? d->src : "", (int)d->len, scanner);
  int rc = sq_yyparse(scanner, &ps);
  sq_yylex_destroy(scanner);
  p->end_loc = lex.end_loc;
  if (rc != 0 || lex.failed || d->errors) {
    if (rc != 0 && !lex.failed && !d->errors) diag_error(d, lex.end_loc, "cannot parse this file");
    program_free(p);
    return NULL;
  }
  return p;
}

void program_free(Program *p) {
  if (!p) return;
  arena_free(&p->arena);
  free(p);
}
