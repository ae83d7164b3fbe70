/* config.h: sqtrain's settings: defaults, then a YAML file (--config, read with libyaml), then
 * the command line, each overriding the one before. */
#ifndef SQ_SQTRAIN_CONFIG_H
#define SQ_SQTRAIN_CONFIG_H
#include <stdint.h>

typedef enum { LR_CONSTANT, LR_STEP, LR_COSINE } LrSchedule;

typedef struct {
  int epochs;
  double lr;
  LrSchedule schedule;
  int step_size;    /* LR_STEP: epochs between decays */
  double gamma;     /* LR_STEP: decay factor */
  double min_lr;    /* LR_COSINE: the floor */
  uint64_t seed;    /* parameter initialisation and batch shuffling */
  int threads;
  int64_t limit;    /* training images (0: all) */
  char *data, *csv, *save, *resume, *plot;
} TrainConfig;

void config_defaults(TrainConfig *c);
/* Returns 0, or -1 with a malloc'd "file:line:col: message" in *err. */
int config_load_yaml(TrainConfig *c, const char *path, char **err);
void config_free(TrainConfig *c);
/* The learning rate of an epoch (0-based) and step within it. */
double config_lr(const TrainConfig *c, int epoch, int64_t step, int64_t steps_per_epoch);
#endif
