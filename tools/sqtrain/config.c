/* config.c: a flat YAML mapping of scalars (the schedule may be a nested mapping):
 *   epochs: 3
 *   lr: 0.05
 *   schedule: {type: cosine, min_lr: 0.001}     # or step with step_size and gamma, or constant
 *   seed: 1
 *   threads: 2
 *   limit: 0
 *   data: /usr/share/datasets/fashion-mnist
 *   csv: log.csv
 *   save: model.safetensors
 *   plot: curves.png
 * Unknown keys and bad values are errors with the line and column. */
#include "config.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "../../src/base/util.h"
#include "../../src/base/yaml_msg.h"

void config_defaults(TrainConfig *c) {
  memset(c, 0, sizeof *c);
  c->epochs = 3;
  c->lr = 0.05;
  c->schedule = LR_CONSTANT;
  c->step_size = 1;
  c->gamma = 0.1;
  c->min_lr = 0;
  c->seed = 1;
  c->threads = 1;
}

void config_free(TrainConfig *c) {
  free(c->data), free(c->csv), free(c->save), free(c->resume), free(c->plot);
}

double config_lr(const TrainConfig *c, int epoch, int64_t step, int64_t steps_per_epoch) {
  switch (c->schedule) {
  case LR_STEP: return c->lr * pow(c->gamma, epoch / (c->step_size > 0 ? c->step_size : 1));
  case LR_COSINE: {
    double total = (double)c->epochs * (double)steps_per_epoch, t = (double)epoch * (double)steps_per_epoch + (double)step;
    return c->min_lr + 0.5 * (c->lr - c->min_lr) * (1 + cos(3.141592653589793 * (total > 0 ? t / total : 0)));
  }
  default: return c->lr;
  }
}

typedef struct {
  const char *path;
  char **err;
} Ctx;

static int bad(Ctx *x, const yaml_mark_t *m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  *x->err = yaml_vmessage(x->path, m, "", fmt, ap);
  va_end(ap);
  return -1;
}

static int number(Ctx *x, yaml_node_t *v, const char *key, double lo, double hi, double *out) {
  if (v->type != YAML_SCALAR_NODE) return bad(x, &v->start_mark, "'%s' must be a number", key);
  const char *s = (const char *)v->data.scalar.value;
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (!*s || *end || errno || !(d >= lo && d <= hi)) return bad(x, &v->start_mark, "'%s' must be a number from %g to %g, not '%s'", key, lo, hi, s);
  *out = d;
  return 0;
}

static int integer(Ctx *x, yaml_node_t *v, const char *key, double lo, double hi, double *out) {
  if (number(x, v, key, lo, hi, out)) return -1;
  if (*out != floor(*out)) return bad(x, &v->start_mark, "'%s' must be an integer", key);
  return 0;
}

static int text(Ctx *x, yaml_node_t *v, const char *key, char **out) {
  if (v->type != YAML_SCALAR_NODE || !v->data.scalar.length) return bad(x, &v->start_mark, "'%s' must be a path", key);
  free(*out);
  *out = xstrdup((const char *)v->data.scalar.value);
  return 0;
}

static int schedule(Ctx *x, yaml_document_t *doc, yaml_node_t *v, TrainConfig *c) {
  if (v->type == YAML_SCALAR_NODE) {
    const char *s = (const char *)v->data.scalar.value;
    if (!strcmp(s, "constant")) return c->schedule = LR_CONSTANT, 0;
    if (!strcmp(s, "step")) return c->schedule = LR_STEP, 0;
    if (!strcmp(s, "cosine")) return c->schedule = LR_COSINE, 0;
    return bad(x, &v->start_mark, "schedule must be constant, step or cosine, not '%s'", s);
  }
  if (v->type != YAML_MAPPING_NODE) return bad(x, &v->start_mark, "schedule must be a name or a mapping");
  for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key), *val = yaml_document_get_node(doc, p->value);
    const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "";
    double d;
    if (!strcmp(key, "type")) {
      if (schedule(x, doc, val, c)) return -1;
    } else if (!strcmp(key, "step_size")) {
      if (integer(x, val, key, 1, 1e6, &d)) return -1;
      c->step_size = (int)d;
    } else if (!strcmp(key, "gamma")) {
      if (number(x, val, key, 0, 1, &d)) return -1;
      c->gamma = d;
    } else if (!strcmp(key, "min_lr")) {
      if (number(x, val, key, 0, 100, &d)) return -1;
      c->min_lr = d;
    } else {
      return bad(x, &k->start_mark, "unknown schedule setting '%s' (type, step_size, gamma, min_lr)", key);
    }
  }
  return 0;
}

int config_load_yaml(TrainConfig *c, const char *path, char **err) {
  Ctx x = {path, err};
  FILE *f = fopen(path, "rb");
  if (!f) {
    *err = xasprintf("cannot read %s: %s", path, strerror(errno));
    return -1;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  int rc = -1;
  if (!yaml_parser_load(&parser, &doc)) {
    *err = xasprintf("%s:%zu:%zu: %s", path, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                     parser.problem ? parser.problem : "YAML syntax error");
    yaml_parser_delete(&parser);
    fclose(f);
    return -1;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root) {
    rc = 0; /* an empty file changes nothing */
    goto out;
  }
  if (root->type != YAML_MAPPING_NODE) {
    bad(&x, &root->start_mark, "the configuration must be a mapping of settings");
    goto out;
  }
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(&doc, p->key), *v = yaml_document_get_node(&doc, p->value);
    const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "";
    double d;
    int r = 0;
    if (!strcmp(key, "epochs")) r = integer(&x, v, key, 1, 10000, &d), c->epochs = r ? c->epochs : (int)d;
    else if (!strcmp(key, "lr")) r = number(&x, v, key, 0, 100, &d), c->lr = r ? c->lr : d;
    else if (!strcmp(key, "seed")) r = integer(&x, v, key, 0, 9007199254740992.0, &d), c->seed = r ? c->seed : (uint64_t)d;
    else if (!strcmp(key, "threads")) r = integer(&x, v, key, 1, 256, &d), c->threads = r ? c->threads : (int)d;
    else if (!strcmp(key, "limit")) r = integer(&x, v, key, 0, 1e9, &d), c->limit = r ? c->limit : (int64_t)d;
    else if (!strcmp(key, "schedule")) r = schedule(&x, &doc, v, c);
    else if (!strcmp(key, "data")) r = text(&x, v, key, &c->data);
    else if (!strcmp(key, "csv")) r = text(&x, v, key, &c->csv);
    else if (!strcmp(key, "save")) r = text(&x, v, key, &c->save);
    else if (!strcmp(key, "plot")) r = text(&x, v, key, &c->plot);
    else {
      static const char *const keys[] = {"epochs", "lr", "schedule", "seed", "threads", "limit", "data", "csv", "save", "plot"};
      const char *near = sq_closest_name(key, keys, 10);
      r = near ? bad(&x, &k->start_mark, "unknown setting '%s'; did you mean '%s'?", key, near)
               : bad(&x, &k->start_mark, "unknown setting '%s'", key);
    }
    if (r) goto out;
  }
  rc = 0;
out:
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}
