/* main.c: the sqc command line. Options follow compiler habits (-o, --flag=value or
 * --flag value); an unknown option or a bad value is an error that names it, with a
 * "did you mean" where one is close. Exit status: 0 success, 1 user error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../ir/print.h"
#include "../passes/passes.h"
#include "compile.h"
#include "tuning.h"
#include "../lower/kir.h"
#include "emit_so.h"

#define SQC_VERSION "0.1.0"

typedef struct {
  const char *input, *output, *emit, *target, *tune;
  CompileOptions co;
} Args;

static const char *const option_names[] = {"-o", "--batch", "--bits", "--norm", "--emit", "--dump-after", "--target", "--tune",
                                           "--print-targets", "--help", "--version", NULL};
static const char *const emit_kinds[] = {"ir", "kir", "llvm", "asm", "obj", "so", NULL};

static void usage(FILE *f) {
  fputs("usage: sqc MODEL.sq [-o OUT] [options]\n"
        "\n"
        "Compiles a .sq network description for sub-8-bit integer training.\n"
        "\n"
        "options:\n"
        "  -o FILE              write the result to FILE; NAME.so makes the model library\n"
        "                       NAME.so and its header NAME.h (default: the IR to standard output)\n"
        "  --batch N            batch size B, fixed at compile time (default 128)\n"
        "  --bits N             default bit width of the GEMMs, 2..8 (overrides quant { bits });\n"
        "                       32 trains in float everywhere, layer overrides included\n"
        "  --norm l1|l2         normalization layers (overrides quant { norm })\n"
        "  --emit=KIND          what to write: ir (graph IR), kir (kernel IR), llvm, asm, obj,\n"
        "                       so (default: so when -o names a .so file, else ir)\n"
        "  --target=NAME        host (default), x86-64-v3, x86-64-v4, znver4, aarch64, or\n"
        "                       reference (no generated kernels); see --print-targets\n"
        "  --print-targets      list the targets and what this machine supports\n"
        "  --tune FILE          register tiles of the integer kernels from a YAML file, e.g.\n"
        "                       'vpdpbusd: {mr: 6, nr: 4}' (see --emit=kir for the tiles used)\n"
        "  --dump-after=PASS    print the graph IR after PASS (or 'all'):\n"
        "                       shapes, l1norm, quantize, autodiff, groups\n"
        "  --help               show this help\n"
        "  --version            show the version\n",
        f);
}

static int count(const char *const *names) {
  int n = 0;
  while (names[n]) n++;
  return n;
}

static int bad_value(const char *opt, const char *val, const char *want, const char *const *choices) {
  const char *near = choices ? sq_closest_name(val, choices, count(choices)) : NULL;
  fprintf(stderr, "sqc: error: invalid value '%s' for %s: expected %s", val, opt, want);
  if (near) fprintf(stderr, "; did you mean '%s'?", near);
  fputc('\n', stderr);
  return 0;
}

static int parse_int(const char *opt, const char *val, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(val, &end, 10);
  if (!*val || *end || errno || v < lo || v > hi) {
    char want[96];
    snprintf(want, sizeof want, "an integer from %ld to %ld", lo, hi);
    return bad_value(opt, val, want, NULL);
  }
  *out = v;
  return 1;
}

static int one_of(const char *val, const char *const *choices) {
  for (int i = 0; choices[i]; i++)
    if (!strcmp(val, choices[i])) return i;
  return -1;
}

static int apply_option(Args *a, const char *opt, const char *val) {
  long v;
  if (!strcmp(opt, "-o")) a->output = val;
  else if (!strcmp(opt, "--batch")) {
    if (!parse_int(opt, val, 1, 1L << 24, &v)) return 0;
    a->co.batch = v;
  } else if (!strcmp(opt, "--bits")) {
    if (!parse_int(opt, val, 2, 32, &v) || (v > 8 && v != 32))
      return v > 8 && v < 32 ? bad_value(opt, val, "2..8, or 32 for float", NULL) : 0;
    a->co.bits = (int)v;
  } else if (!strcmp(opt, "--norm")) {
    static const char *const norms[] = {"l1", "l2", NULL};
    int k = one_of(val, norms);
    if (k < 0) return bad_value(opt, val, "l1 or l2", norms);
    a->co.norm = k == 0 ? NORM_L1 : NORM_L2;
  } else if (!strcmp(opt, "--emit")) {
    if (one_of(val, emit_kinds) < 0) return bad_value(opt, val, "ir, kir, llvm, asm, obj or so", emit_kinds);
    a->emit = val;
  } else if (!strcmp(opt, "--tune")) {
    a->tune = val;
  } else if (!strcmp(opt, "--target")) {
    if (strcmp(val, "reference") && one_of(val, llvm_target_names) < 0)
      return bad_value(opt, val, "host, x86-64-v3, x86-64-v4, znver4, aarch64 or reference", llvm_target_names);
    a->target = val;
  } else if (!strcmp(opt, "--dump-after")) {
    if (strcmp(val, "all") && one_of(val, pipeline_pass_names) < 0)
      return bad_value(opt, val, "a pass name (shapes, l1norm, quantize, autodiff, groups) or all", pipeline_pass_names);
    a->co.dump_after = val;
  }
  return 1;
}

/* Returns 1 to go on, 0 on a usage error, 2 when --help or --version was handled. */
static int parse_args(Args *a, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (arg[0] != '-' || !arg[1]) {
      if (a->input) {
        fprintf(stderr, "sqc: error: more than one input file ('%s' and '%s')\n", a->input, arg);
        return 0;
      }
      a->input = arg;
      continue;
    }
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return usage(stdout), 2;
    if (!strcmp(arg, "--version")) return puts("sqc " SQC_VERSION), 2;
    if (!strcmp(arg, "--print-targets")) return llvm_print_targets(stdout), 2;
    char opt[64];
    const char *eq = strchr(arg, '='), *val = NULL;
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (!strncmp(arg, "-o", 2) && arg[2] && arg[1] == 'o') len = 2, val = arg + 2; /* -oFILE */
    if (len >= sizeof opt || one_of((snprintf(opt, sizeof opt, "%.*s", (int)len, arg), opt), option_names) < 0) {
      const char *near = sq_closest_name(len < sizeof opt ? opt : arg, option_names, count(option_names));
      fprintf(stderr, "sqc: error: unknown option '%s'", arg);
      if (near) fprintf(stderr, "; did you mean '%s'?", near);
      fputc('\n', stderr);
      return 0;
    }
    if (eq && !val) val = eq + 1;
    if (!val) {
      if (i + 1 >= argc) {
        fprintf(stderr, "sqc: error: option '%s' needs a value\n", opt);
        return 0;
      }
      val = argv[++i];
    }
    if (!apply_option(a, opt, val)) return 0;
  }
  if (!a->input) {
    fprintf(stderr, "sqc: error: no input file (try 'sqc --help')\n");
    return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  Args a = {0};
  compile_options_default(&a.co);
  int r = parse_args(&a, argc, argv);
  if (r != 1) return r == 2 ? 0 : 1;
  size_t olen = a.output ? strlen(a.output) : 0;
  if (!a.emit) a.emit = olen > 3 && !strcmp(a.output + olen - 3, ".so") ? "so" : "ir";
  if ((!strcmp(a.emit, "so") || !strcmp(a.emit, "obj")) && !a.output) {
    fprintf(stderr, "sqc: error: --emit=%s needs -o FILE\n", a.emit);
    return 1;
  }
  Graph *g = compile_file(a.input, &a.co, stderr);
  if (!g) return 1;
  if (a.co.dump_after && !a.output) { /* the dump is what was asked for */
    ir_free(g);
    return 0;
  }
  if (strcmp(a.emit, "ir")) {
    int reference = a.target && !strcmp(a.target, "reference");
    LlvmTarget *t = llvm_target(reference || !a.target ? "host" : a.target);
    Tuning tune;
    tuning_defaults(&tune);
    char *terr = NULL;
    if (a.tune && !tuning_load(&tune, a.tune, &terr)) {
      fprintf(stderr, "%s\n", terr);
      free(terr);
      llvm_target_free(t);
      ir_free(g);
      return 1;
    }
    KernelPlan *plan = reference ? NULL : lower_graph(g, t->vec_f32, t->dot, &tune);
    const char *out = a.output && strcmp(a.output, "-") ? a.output : "/dev/stdout";
    int ok;
    if (!strcmp(a.emit, "kir")) {
      char *text = plan ? kir_print(g, plan) : xstrdup("kernels: none (--target=reference)\n");
      FILE *f = fopen(out, "w");
      ok = f && fputs(text, f) >= 0;
      ok = (f && fclose(f) == 0) && ok;
      if (!ok) fprintf(stderr, "sqc: error: cannot write '%s'\n", out);
      free(text);
    } else if (!strcmp(a.emit, "so")) {
      ok = emit_library(g, plan, t, a.output, stderr);
    } else {
      LlvmEmit what = !strcmp(a.emit, "llvm") ? EMIT_LLVM : !strcmp(a.emit, "asm") ? EMIT_ASM : EMIT_OBJ;
      ok = llvm_emit(g, plan, t, what, out, stderr);
    }
    kir_free(plan);
    llvm_target_free(t);
    ir_free(g);
    return ok ? 0 : 1;
  }
  char *text = ir_print(g);
  ir_free(g);
  FILE *out = stdout;
  if (a.output && strcmp(a.output, "-") && !(out = fopen(a.output, "w"))) {
    fprintf(stderr, "sqc: error: cannot write '%s': %s\n", a.output, strerror(errno));
    free(text);
    return 1;
  }
  int ok = fputs(text, out) >= 0;
  ok &= out == stdout ? fflush(out) == 0 : fclose(out) == 0;
  free(text);
  if (!ok) {
    fprintf(stderr, "sqc: error: writing '%s' failed\n", a.output ? a.output : "standard output");
    return 1;
  }
  return 0;
}
