/* print.h: text form of the graph IR (see print.c) and its reader (read.c). */
#ifndef SQ_IR_PRINT_H
#define SQ_IR_PRINT_H
#include "graph.h"

char *ir_print(const Graph *g); /* malloc'd */
void ir_print_node(StrBuf *b, const Graph *g, const Node *n);
/* Parses ir_print's output. Returns NULL and a malloc'd message "line N: ..." on bad text. */
Graph *ir_read(const char *text, char **err);
#endif
