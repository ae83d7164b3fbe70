/* tuning.c: see tuning.h. Parsed with libyaml's document API. */
#include "tuning.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "../base/yaml_msg.h"

typedef struct {
  const char *path;
  char **err;
} Ctx;

static int bad(Ctx *x, const yaml_mark_t *m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  *x->err = yaml_vmessage(x->path, m, "error: ", fmt, ap);
  va_end(ap);
  return 0;
}

static const char *scalar(yaml_node_t *n) { return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : ""; }

static int small_int(Ctx *x, yaml_node_t *v, const char *key, int *out) {
  const char *s = scalar(v);
  char *end;
  errno = 0;
  long n = strtol(s, &end, 10);
  if (!*s || *end || errno || n < 1 || n > 8) return bad(x, &v->start_mark, "'%s' must be an integer from 1 to 8, not '%s'", key, s);
  *out = (int)n;
  return 1;
}

static int tile(Ctx *x, yaml_document_t *doc, yaml_node_t *v, const char *isa, DotIsa d, DotTile *t) {
  if (v->type != YAML_MAPPING_NODE) return bad(x, &v->start_mark, "'%s' must be a mapping like {mr: 6, nr: 4}", isa);
  for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key), *val = yaml_document_get_node(doc, p->value);
    const char *key = scalar(k);
    if (!strcmp(key, "mr")) {
      if (!small_int(x, val, key, &t->mr)) return 0;
    } else if (!strcmp(key, "nr")) {
      if (!small_int(x, val, key, &t->nr)) return 0;
    } else {
      return bad(x, &k->start_mark, "unknown tile setting '%s' (mr, nr)", key);
    }
  }
  /* the accumulators, the nr vectors of S and the broadcast of U must fit in the registers */
  int need = t->mr * t->nr + t->nr + 1;
  if (need > dot_registers(d))
    return bad(x, &v->start_mark, "the %s tile %dx%d needs %d vector registers; the ISA has %d", isa, t->mr, t->nr, need,
               dot_registers(d));
  return 1;
}

int tuning_load(Tuning *t, const char *path, char **err) {
  Ctx x = {path, err};
  FILE *f = fopen(path, "rb");
  if (!f) {
    *err = xasprintf("sqc: error: cannot read tuning file '%s': %s", path, strerror(errno));
    return 0;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  if (!yaml_parser_load(&parser, &doc)) {
    *err = xasprintf("%s:%zu:%zu: error: %s", path, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                     parser.problem ? parser.problem : "YAML syntax error");
    yaml_parser_delete(&parser);
    fclose(f);
    return 0;
  }
  int ok = 1;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (root && root->type != YAML_MAPPING_NODE) {
    ok = bad(&x, &root->start_mark, "a tuning file is a mapping of ISA names (vpdpbusd, vpmaddubsw, sdot) to tiles");
  } else if (root) {
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; ok && p < root->data.mapping.pairs.top; p++) {
      yaml_node_t *k = yaml_document_get_node(&doc, p->key), *val = yaml_document_get_node(&doc, p->value);
      const char *key = scalar(k);
      if (!strcmp(key, "vpdpbusd")) ok = tile(&x, &doc, val, key, DOT_VNNI, &t->tile[DOT_VNNI]);
      else if (!strcmp(key, "sdot")) ok = tile(&x, &doc, val, key, DOT_SDOT, &t->tile[DOT_SDOT]);
      else if (!strcmp(key, "vpmaddubsw")) ok = tile(&x, &doc, val, key, DOT_AVX2, &t->tile[DOT_AVX2]);
      else ok = bad(&x, &k->start_mark, "unknown ISA '%s' (vpdpbusd, vpmaddubsw, sdot)", key);
    }
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  fclose(f);
  return ok;
}
