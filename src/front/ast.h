/* ast.h: the syntax tree of a .sq file, allocated in one arena. The grammar is deliberately
 * generic (blocks of statements whose right-hand sides are values); sema gives it meaning. */
#ifndef SQ_FRONT_AST_H
#define SQ_FRONT_AST_H
#include <stdint.h>
#include "../base/arena.h"
#include "../base/diag.h"

typedef enum { AV_INT, AV_FLOAT, AV_IDENT, AV_STRING, AV_LIST, AV_CALL, AV_TYPE } ValueKind;

typedef struct Value Value;
typedef struct Arg Arg;
struct Arg {         /* call argument: positional (name NULL) or name = value */
  const char *name;
  SrcLoc name_loc;
  Value *v;
  Arg *next;
};
struct Value {
  ValueKind kind;
  SrcLoc loc;
  int64_t i;         /* AV_INT */
  double f;          /* AV_FLOAT */
  const char *s;     /* AV_IDENT, AV_STRING, AV_CALL (callee), AV_TYPE (dtype) */
  Value *items;      /* AV_LIST, AV_TYPE: first element */
  Value *next;       /* next list element */
  Arg *args;         /* AV_CALL */
};

typedef enum { ST_INPUT, ST_LABEL, ST_ASSIGN, ST_OUTPUT, ST_LAYER } StmtKind;
typedef struct Stmt Stmt;
struct Stmt {
  StmtKind kind;
  SrcLoc loc;
  const char *name;
  SrcLoc name_loc;
  Value *v;          /* the type (input/label) or the right-hand side */
  Stmt *body;        /* ST_LAYER: its settings */
  Stmt *next;
};

typedef enum { BK_MODEL, BK_TRAIN, BK_QUANT } BlockKind;
typedef struct Block Block;
struct Block {
  BlockKind kind;
  SrcLoc loc, end_loc;
  const char *name;  /* model name */
  Stmt *stmts;
  Block *next;
};

typedef struct {
  Arena arena;
  Block *blocks;
  SrcLoc end_loc;    /* end of the file, for "missing ..." diagnostics */
} Program;

/* Parses src; diagnostics go to d. Returns NULL on any error (the arena is freed). */
Program *parse_program(Diag *d);
void program_free(Program *p);
#endif
