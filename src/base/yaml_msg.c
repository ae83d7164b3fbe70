/* yaml_msg.c: see yaml_msg.h. */
#include "yaml_msg.h"
#include <stdlib.h>
#include "util.h"

char *yaml_vmessage(const char *path, const yaml_mark_t *m, const char *prefix, const char *fmt, va_list ap) {
  char *msg = xvasprintf(fmt, ap);
  char *out = xasprintf("%s:%zu:%zu: %s%s", path, m->line + 1, m->column + 1, prefix, msg);
  free(msg);
  return out;
}
