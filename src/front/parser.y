%{
/* parser.y: grammar of the .sq language (docs/language.md has it in EBNF). Reentrant, with
 * locations; values are allocated in the program's arena, so an error needs no clean-up. */
#include <stdio.h>
#include <string.h>
#include "lex_state.h"
%}

%code requires {
#include "ast.h"
typedef void *yyscan_t;
typedef struct ParseState { struct LexState *lex; Program *prog; } ParseState;
}

%code provides {
int sq_yylex(SQ_YYSTYPE *yylval, SQ_YYLTYPE *yylloc, yyscan_t scanner);
}

%code {
static void sq_yyerror(YYLTYPE *loc, yyscan_t scanner, ParseState *ps, const char *msg);
#define A (&ps->prog->arena)
#define LOC(l) ((SrcLoc){(l).first_line, (l).first_column})
static Value *new_value(ParseState *ps, ValueKind k, YYLTYPE l) {
  Value *v = arena_alloc(&ps->prog->arena, sizeof *v);
  v->kind = k;
  v->loc = LOC(l);
  return v;
}
static Stmt *new_stmt(ParseState *ps, StmtKind k, YYLTYPE l, const char *name, YYLTYPE nl, Value *v) {
  Stmt *s = arena_alloc(&ps->prog->arena, sizeof *s);
  s->kind = k;
  s->loc = LOC(l);
  s->name = name;
  s->name_loc = LOC(nl);
  s->v = v;
  return s;
}
static Block *new_block(ParseState *ps, BlockKind k, YYLTYPE l, YYLTYPE end, const char *name, Stmt *body) {
  Block *b = arena_alloc(&ps->prog->arena, sizeof *b);
  b->kind = k;
  b->loc = LOC(l);
  b->end_loc = LOC(end);
  b->name = name;
  b->stmts = body;
  return b;
}
}

%define api.pure full
%define api.prefix {sq_yy}
%define parse.error detailed
%locations
%param {yyscan_t scanner}
%parse-param {ParseState *ps}

%union {
  int64_t i;
  double f;
  const char *s;
  Value *v;
  struct { Value *head, *tail; } vl;
  Arg *arg;
  struct { Arg *head, *tail; } al;
  Stmt *st;
  struct { Stmt *head, *tail; } sl;
  Block *b;
}

%token T_MODEL "'model'" T_TRAIN "'train'" T_QUANT "'quant'" T_INPUT "'input'"
%token T_LABEL "'label'" T_OUTPUT "'output'" T_LAYER "'layer'"
%token <s> T_IDENT "identifier" T_STRING "string"
%token <i> T_INT "integer"
%token <f> T_FLOAT "number"
%token T_BAD "invalid token"
%token T_END 0 "end of file"

%type <v> value type
%type <vl> values values_opt
%type <arg> arg
%type <al> args args_opt
%type <st> stmt
%type <sl> stmts
%type <b> block

%%

program
  : %empty
  | program block   { Block **p = &ps->prog->blocks; while (*p) p = &(*p)->next; *p = $2; }
  ;

block
  : T_MODEL T_IDENT '{' stmts '}'   { $$ = new_block(ps, BK_MODEL, @1, @5, $2, $4.head); }
  | T_TRAIN '{' stmts '}'           { $$ = new_block(ps, BK_TRAIN, @1, @4, NULL, $3.head); }
  | T_QUANT '{' stmts '}'           { $$ = new_block(ps, BK_QUANT, @1, @4, NULL, $3.head); }
  ;

stmts
  : %empty        { $$.head = $$.tail = NULL; }
  | stmts stmt    { $$ = $1; if ($$.tail) $$.tail->next = $2; else $$.head = $2; $$.tail = $2; }
  ;

stmt
  : T_INPUT T_IDENT ':' type        { $$ = new_stmt(ps, ST_INPUT, @1, $2, @2, $4); }
  | T_LABEL T_IDENT ':' type        { $$ = new_stmt(ps, ST_LABEL, @1, $2, @2, $4); }
  | T_IDENT '=' value               { $$ = new_stmt(ps, ST_ASSIGN, @1, $1, @1, $3); }
  | T_OUTPUT T_IDENT '=' value      { $$ = new_stmt(ps, ST_OUTPUT, @1, $2, @2, $4); }
  | T_LAYER T_IDENT '{' stmts '}'   { $$ = new_stmt(ps, ST_LAYER, @1, $2, @2, NULL); $$->body = $4.head; }
  ;

type
  : T_IDENT '[' values_opt ']'      { $$ = new_value(ps, AV_TYPE, @1); $$->s = $1; $$->items = $3.head; }
  ;

value
  : T_INT                           { $$ = new_value(ps, AV_INT, @1); $$->i = $1; }
  | '-' T_INT                       { $$ = new_value(ps, AV_INT, @1); $$->i = -$2; }
  | T_FLOAT                         { $$ = new_value(ps, AV_FLOAT, @1); $$->f = $1; }
  | '-' T_FLOAT                     { $$ = new_value(ps, AV_FLOAT, @1); $$->f = -$2; }
  | T_STRING                        { $$ = new_value(ps, AV_STRING, @1); $$->s = $1; }
  | T_IDENT                         { $$ = new_value(ps, AV_IDENT, @1); $$->s = $1; }
  | '[' values_opt ']'              { $$ = new_value(ps, AV_LIST, @1); $$->items = $2.head; }
  | T_IDENT '(' args_opt ')'        { $$ = new_value(ps, AV_CALL, @1); $$->s = $1; $$->args = $3.head; }
  ;

values_opt
  : %empty        { $$.head = $$.tail = NULL; }
  | values
  ;

values
  : value                 { $$.head = $$.tail = $1; }
  | values ',' value      { $$ = $1; $$.tail->next = $3; $$.tail = $3; }
  ;

args_opt
  : %empty        { $$.head = $$.tail = NULL; }
  | args
  ;

args
  : arg                   { $$.head = $$.tail = $1; }
  | args ',' arg          { $$ = $1; $$.tail->next = $3; $$.tail = $3; }
  ;

arg
  : value                 { $$ = arena_alloc(A, sizeof *$$); $$->v = $1; }
  | T_IDENT '=' value     { $$ = arena_alloc(A, sizeof *$$); $$->name = $1; $$->name_loc = LOC(@1); $$->v = $3; }
  ;

%%

static void sq_yyerror(YYLTYPE *loc, yyscan_t scanner, ParseState *ps, const char *msg) {
  (void)scanner;
  if (ps->lex->failed) return;
  diag_error(ps->lex->diag, LOC(*loc), "%s", msg);
}
