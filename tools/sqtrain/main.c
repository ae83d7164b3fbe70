/* sqtrain: trains a model library (sqc -o NAME.so) on Fashion-MNIST. Shows a progress bar on a
 * terminal and plain lines otherwise, prints test accuracy after each epoch, writes a CSV log,
 * draws the curves with gnuplot (--plot), saves checkpoints, resumes them with the same bits,
 * and on Ctrl-C saves a checkpoint and exits 130. */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "../../include/sq/sq.h"
#include "../../runtime/rng.h"
#include "../../src/base/util.h"
#include "../data/fashion_mnist.h"
#include "config.h"

typedef struct { /* the library's ABI, resolved with dlsym */
  sq_status (*create)(sq_model **, uint64_t);
  void (*destroy)(sq_model *);
  sq_status (*train_step)(sq_model *, const float *, const int32_t *, float, sq_step_stats *);
  sq_status (*infer)(sq_model *, const float *, int64_t, float *);
  sq_status (*save)(const sq_model *, const char *);
  sq_status (*load)(sq_model *, const char *);
  sq_status (*set_threads)(sq_model *, int);
  const char *(*last_error)(const sq_model *);
  const sq_model_info *(*info)(void);
  int64_t (*step)(const sq_model *);
} Lib;

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

static int load_lib(const char *path, Lib *l, void **handle) {
  char *p = strchr(path, '/') ? xstrdup(path) : xasprintf("./%s", path); /* dlopen searches bare names */
  *handle = dlopen(p, RTLD_NOW | RTLD_LOCAL);
  free(p);
  if (!*handle) {
    fprintf(stderr, "sqtrain: error: cannot load %s: %s\n", path, dlerror());
    return 0;
  }
#define SYM(field, name) \
  if (!(*(void **)&l->field = dlsym(*handle, name))) { \
    fprintf(stderr, "sqtrain: error: %s is not an sqc model library (no %s)\n", path, name); \
    return 0; \
  }
  SYM(create, "sq_create") SYM(destroy, "sq_destroy") SYM(train_step, "sq_train_step") SYM(infer, "sq_infer")
  SYM(save, "sq_save") SYM(load, "sq_load") SYM(set_threads, "sq_set_threads") SYM(last_error, "sq_last_error")
  SYM(info, "sq_info") SYM(step, "sq_step")
#undef SYM
  return 1;
}

static void usage(FILE *f) {
  fputs("usage: sqtrain MODEL.so [options]\n"
        "  --config FILE     YAML settings (epochs, lr, schedule, seed, threads, limit, data, csv, save, plot)\n"
        "  --epochs N        epochs to train (default 3)\n"
        "  --lr X            learning rate (default 0.05)\n"
        "  --seed N          initialisation and shuffling seed (default 1)\n"
        "  --threads N       threads of the model library (default 1)\n"
        "  --limit N         train on the first N images only\n"
        "  --data DIR        Fashion-MNIST directory (default: Debian's dataset-fashion-mnist)\n"
        "  --csv FILE        write a CSV log\n"
        "  --save FILE       checkpoint after each epoch (and on Ctrl-C)\n"
        "  --resume FILE     continue from a checkpoint (same seed, limit and batch: the same bits)\n"
        "  --plot FILE.png   draw loss and accuracy curves with gnuplot\n",
        f);
}

static int parse_args(int argc, char **argv, TrainConfig *c, const char **lib) {
  *lib = NULL;
  for (int i = 1; i < argc; i++) { /* --config first, so the rest overrides it */
    if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      char *err = NULL;
      if (config_load_yaml(c, argv[i + 1], &err)) {
        fprintf(stderr, "sqtrain: error: %s\n", err);
        free(err);
        return 0;
      }
    }
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help")) return usage(stdout), 0;
    if (a[0] != '-') {
      if (*lib) return fprintf(stderr, "sqtrain: error: more than one model library\n"), 0;
      *lib = a;
      continue;
    }
    if (i + 1 >= argc) return fprintf(stderr, "sqtrain: error: option '%s' needs a value\n", a), 0;
    const char *v = argv[++i];
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    int num = *v && !*end && !errno;
    if (!strcmp(a, "--config")) continue;
    else if (!strcmp(a, "--epochs") && num && d >= 1 && d <= 10000 && d == floor(d)) c->epochs = (int)d;
    else if (!strcmp(a, "--lr") && num && d >= 0 && d <= 100) c->lr = d;
    else if (!strcmp(a, "--seed") && num && d >= 0 && d == floor(d)) c->seed = (uint64_t)d;
    else if (!strcmp(a, "--threads") && num && d >= 1 && d <= 256 && d == floor(d)) c->threads = (int)d;
    else if (!strcmp(a, "--limit") && num && d >= 0 && d == floor(d)) c->limit = (int64_t)d;
    else if (!strcmp(a, "--data")) free(c->data), c->data = xstrdup(v);
    else if (!strcmp(a, "--csv")) free(c->csv), c->csv = xstrdup(v);
    else if (!strcmp(a, "--save")) free(c->save), c->save = xstrdup(v);
    else if (!strcmp(a, "--resume")) free(c->resume), c->resume = xstrdup(v);
    else if (!strcmp(a, "--plot")) free(c->plot), c->plot = xstrdup(v);
    else {
      static const char *const opts[] = {"--config", "--epochs", "--lr", "--seed", "--threads", "--limit", "--data",
                                         "--csv", "--save", "--resume", "--plot", "--help"};
      const char *near = sq_closest_name(a, opts, 12);
      if (near && strcmp(near, a)) fprintf(stderr, "sqtrain: error: unknown option '%s'; did you mean '%s'?\n", a, near);
      else fprintf(stderr, "sqtrain: error: invalid value '%s' for %s\n", v, a);
      return 0;
    }
  }
  if (!*lib) return fprintf(stderr, "sqtrain: error: no model library (try 'sqtrain --help')\n"), 0;
  return 1;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One line, redrawn in place on a terminal. */
static void progress(int epoch, int epochs, int64_t done, int64_t total, double ips, double loss) {
  enum { WIDTH = 30 };
  int fill = total ? (int)(WIDTH * done / total) : WIDTH;
  char bar[WIDTH + 1];
  for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
  bar[WIDTH] = 0;
  printf("\repoch %d/%d [%s] %3d%% %lld/%lld | %6.0f img/s | loss %.4f ", epoch, epochs, bar,
         total ? (int)(100 * done / total) : 100, (long long)done, (long long)total, ips, loss);
  fflush(stdout);
}

static double accuracy(const Lib *L, sq_model *m, const Dataset *test, int64_t classes, int *ok) {
  float *z = malloc(sizeof(float) * (size_t)(test->n * classes));
  if (!z || L->infer(m, test->x, test->n, z) != SQ_OK) {
    fprintf(stderr, "sqtrain: error: inference failed: %s\n", L->last_error(m));
    free(z);
    *ok = 0;
    return 0;
  }
  int64_t right = 0;
  for (int64_t r = 0; r < test->n; r++) {
    int64_t best = 0;
    for (int64_t c = 1; c < classes; c++)
      if (z[r * classes + c] > z[r * classes + best]) best = c;
    right += best == test->y[r];
  }
  free(z);
  return (double)right / (double)test->n;
}

static int plot(const char *png, const char *csv) {
  char *cmd = xasprintf("gnuplot 2>&1");
  FILE *g = popen(cmd, "w");
  free(cmd);
  if (!g) return 0;
  fprintf(g, "set terminal png size 1000,420 noenhanced\nset output '%s'\nset datafile separator ','\nset key autotitle columnhead\n"
             "set multiplot layout 1,2\nset xlabel 'epoch'\nset title 'training loss'\nplot '%s' using 1:4 with linespoints\n"
             "set title 'accuracy'\nset yrange [0:1]\nplot '%s' using 1:5 with linespoints, '' using 1:6 with linespoints\n"
             "unset multiplot\n",
          png, csv, csv);
  return pclose(g) == 0;
}

int main(int argc, char **argv) {
  TrainConfig c;
  config_defaults(&c);
  const char *libpath;
  if (!parse_args(argc, argv, &c, &libpath)) return config_free(&c), 1;
  Lib L;
  void *handle = NULL;
  if (!load_lib(libpath, &L, &handle)) return config_free(&c), 1;
  const sq_model_info *info = L.info();
  Dataset train, test;
  char *err = NULL;
  const char *dir = c.data ? c.data : fmnist_default_dir();
  int loaded = 0;
  if (!info || info->input_size != 784) {
    fprintf(stderr, "sqtrain: error: %s does not take 28x28 images (784 values per sample)\n", libpath);
  } else if (!fmnist_load(dir, "train", &train, &err)) {
    fprintf(stderr, "sqtrain: error: %s\n", err);
  } else if (!fmnist_load(dir, "t10k", &test, &err)) {
    fprintf(stderr, "sqtrain: error: %s\n", err);
    fmnist_free(&train);
  } else {
    loaded = 1;
  }
  if (!loaded) {
    free(err);
    config_free(&c);
    dlclose(handle);
    return 1;
  }
  float mean, std;
  fmnist_stats(&train, &mean, &std); /* pixels /255, then the training set's mean and std */
  fmnist_normalize(&train, mean, std);
  fmnist_normalize(&test, mean, std);
  sq_model *m = NULL;
  int status = 0;
  FILE *csv = NULL;
  int64_t *order = NULL;
  float *x = NULL;
  int32_t *y = NULL;
  int64_t B = info->batch, n = c.limit && c.limit < train.n ? c.limit : train.n, steps = n / B, first_step = 0;
  if (L.create(&m, c.seed) != SQ_OK || L.set_threads(m, c.threads) != SQ_OK) {
    fprintf(stderr, "sqtrain: error: cannot create the model: %s\n", m ? L.last_error(m) : "out of memory");
    status = 1;
    goto done;
  }
  if (steps == 0) {
    fprintf(stderr, "sqtrain: error: %lld images are fewer than one batch of %lld\n", (long long)n, (long long)B);
    status = 1;
    goto done;
  }
  if (c.resume) {
    if (L.load(m, c.resume) != SQ_OK) {
      fprintf(stderr, "sqtrain: error: cannot resume: %s\n", L.last_error(m));
      status = 1;
      goto done;
    }
    first_step = L.step(m);
  }
  int tty = isatty(STDOUT_FILENO);
  /* Test hook: behave as if Ctrl-C came right after this global step (deterministic). */
  const char *hook = getenv("SQTRAIN_INTERRUPT_AFTER_STEP");
  int64_t interrupt_after = hook && *hook ? atoll(hook) : -1;
  printf("sqtrain: %s (%d bits, target %s), %lld images, batch %lld, %d epochs, lr %g, seed %llu, %d threads\n",
         info->name, info->bits, info->target, (long long)n, (long long)B, c.epochs, c.lr, (unsigned long long)c.seed,
         c.threads);
  if (c.resume) printf("resumed from %s at step %lld\n", c.resume, (long long)first_step);
  if (c.csv && !(csv = fopen(c.csv, c.resume ? "a" : "w"))) {
    fprintf(stderr, "sqtrain: error: cannot write %s: %s\n", c.csv, strerror(errno));
    status = 1;
    goto done;
  }
  if (csv && !c.resume) fprintf(csv, "epoch,step,lr,train_loss,train_accuracy,test_accuracy,seconds,images_per_second\n");
  struct sigaction sa = {0};
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, NULL);
  order = xmalloc(sizeof(int64_t) * (size_t)n);
  x = xmalloc(sizeof(float) * (size_t)(B * 784));
  y = xmalloc(sizeof(int32_t) * (size_t)B);
  for (int e = (int)(first_step / steps); e < c.epochs && !status; e++) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates keyed by (seed, epoch): resumable */
      int64_t j = (int64_t)(rng_bits(c.seed, rng_stream_of("shuffle"), e, (uint64_t)i) % (uint64_t)(i + 1));
      int64_t t = order[i];
      order[i] = order[j], order[j] = t;
    }
    double t0 = now(), last_draw = 0, loss_sum = 0, acc_sum = 0, lr = 0;
    int64_t s0 = e == first_step / steps ? first_step % steps : 0, done = 0;
    for (int64_t s = s0; s < steps; s++) {
      for (int64_t r = 0; r < B; r++) {
        memcpy(x + r * 784, train.x + order[s * B + r] * 784, sizeof(float) * 784);
        y[r] = train.y[order[s * B + r]];
      }
      sq_step_stats st;
      lr = config_lr(&c, e, s, steps);
      sq_status rc = L.train_step(m, x, y, (float)lr, &st);
      if (rc != SQ_OK) {
        fprintf(stderr, "%ssqtrain: error: step %lld: %s\n", tty ? "\n" : "", (long long)(e * steps + s), L.last_error(m));
        status = 1;
        break;
      }
      loss_sum += st.loss, acc_sum += st.accuracy, done++;
      double t = now();
      if (tty && (t - last_draw > 0.1 || s + 1 == steps)) {
        progress(e + 1, c.epochs, s + 1, steps, (double)(done * B) / (t - t0), loss_sum / (double)done);
        last_draw = t;
      }
      if (L.step(m) == interrupt_after) raise(SIGINT);
      if (interrupted) break;
    }
    if (interrupted) {
      const char *path = c.save ? c.save : "sqtrain-interrupted.safetensors";
      int saved = L.save(m, path) == SQ_OK;
      printf("%sinterrupted at step %lld; %s %s\n", tty ? "\n" : "", (long long)L.step(m),
             saved ? "checkpoint saved to" : "could not save", saved ? path : L.last_error(m));
      status = 130;
      break;
    }
    if (status) break;
    double secs = now() - t0, ips = (double)(done * B) / secs;
    int ok = 1;
    double acc = accuracy(&L, m, &test, info->output_size, &ok);
    if (!ok) {
      status = 1;
      break;
    }
    double mean_loss = done ? loss_sum / (double)done : 0, mean_acc = done ? acc_sum / (double)done : 0;
    printf("%sepoch %d/%d: train loss %.4f, train accuracy %.4f, test accuracy %.4f, %.1f s, %.0f img/s\n",
           tty ? "\n" : "", e + 1, c.epochs, mean_loss, mean_acc, acc, secs, ips);
    fflush(stdout);
    if (csv) {
      fprintf(csv, "%d,%lld,%g,%.6f,%.6f,%.6f,%.3f,%.1f\n", e + 1, (long long)L.step(m), lr, mean_loss, mean_acc, acc, secs, ips);
      fflush(csv);
    }
    if (c.save && L.save(m, c.save) != SQ_OK) {
      fprintf(stderr, "sqtrain: error: %s\n", L.last_error(m));
      status = 1;
    }
  }
  if (csv) fclose(csv);
  csv = NULL;
  if (!status && c.plot) {
    if (!c.csv) fprintf(stderr, "sqtrain: error: --plot needs --csv (the curves are drawn from the log)\n"), status = 1;
    else if (!plot(c.plot, c.csv)) fprintf(stderr, "sqtrain: error: gnuplot could not draw %s (is gnuplot installed?)\n", c.plot), status = 1;
    else printf("curves written to %s\n", c.plot);
  }
done:
  if (csv) fclose(csv);
  free(order), free(x), free(y);
  if (m) L.destroy(m);
  fmnist_free(&train);
  fmnist_free(&test);
  config_free(&c);
  dlclose(handle);
  return status;
}
