/* arena.h: bump allocator freed all at once (the AST lives in one; a failed parse frees it
 * without tracking each node). */
#ifndef SQ_BASE_ARENA_H
#define SQ_BASE_ARENA_H
#include <stddef.h>

typedef struct ArenaChunk ArenaChunk;
typedef struct { ArenaChunk *head; } Arena;

void *arena_alloc(Arena *a, size_t n); /* zeroed, 16-byte aligned */
char *arena_strndup(Arena *a, const char *s, size_t n);
void arena_free(Arena *a);
#endif
