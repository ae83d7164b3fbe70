/* yaml_msg.h: diagnostics at a position of a YAML file read with libyaml (sqc's --tune file,
 * sqtrain's config): the path, line and column (counted from 1), then the given prefix (such
 * as "error: ") and the message. */
#ifndef SQ_BASE_YAML_MSG_H
#define SQ_BASE_YAML_MSG_H
#include <stdarg.h>
#include <yaml.h>

char *yaml_vmessage(const char *path, const yaml_mark_t *m, const char *prefix, const char *fmt, va_list ap);
#endif
