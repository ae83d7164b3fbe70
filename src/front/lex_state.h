/* lex_state.h: state shared by the flex scanner and the bison parser (location tracking,
 * nesting depth, the arena values are allocated in, and whether the scanner already reported). */
#ifndef SQ_FRONT_LEX_STATE_H
#define SQ_FRONT_LEX_STATE_H
#include "ast.h"

enum { SQ_MAX_NESTING = 200 }; /* deeper ( [ nesting is an error, not a stack overflow */
enum { SQ_MAX_IDENT = 1024 };   /* names longer than this are errors (they end up in messages) */

typedef struct LexState {
  Diag *diag;
  Arena *arena;
  int line, col;
  int prev_line_end; /* column just past the last character of the previous line */
  int depth;
  int failed;        /* the scanner reported an error: the parser stays quiet */
  SrcLoc comment_loc;
  SrcLoc end_loc;    /* location just past the last character */
} LexState;
#endif
