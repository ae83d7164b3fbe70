/* target.c: the targets sqc knows, as data. CPU names are checked here, because LLVM only warns
 * about an unknown -mcpu and then silently generates generic code. */
#include <stdlib.h>
#include <string.h>
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include "llvm_backend.h"

static const LlvmTarget known[] = {
    {"x86-64-v3", "x86_64-pc-linux-gnu", "x86-64-v3", "", "AVX2", 8, DOT_AVX2, 1},
    {"x86-64-v4", "x86_64-pc-linux-gnu", "x86-64-v4", "+avx512vnni", "AVX-512 VNNI", 16, DOT_VNNI, 1},
    {"znver4", "x86_64-pc-linux-gnu", "znver4", "", "AVX-512 VNNI", 16, DOT_VNNI, 1},
    {"aarch64", "aarch64-unknown-linux-gnu", "generic", "+neon,+dotprod", "NEON + dotprod", 4, DOT_SDOT, 0},
};
const char *const llvm_target_names[] = {"host", "x86-64-v3", "x86-64-v4", "znver4", "aarch64", NULL};

static void init_llvm(void) {
  static int done;
  if (done) return;
  LLVMInitializeX86TargetInfo();
  LLVMInitializeX86Target();
  LLVMInitializeX86TargetMC();
  LLVMInitializeX86AsmPrinter();
  LLVMInitializeAArch64TargetInfo();
  LLVMInitializeAArch64Target();
  LLVMInitializeAArch64TargetMC();
  LLVMInitializeAArch64AsmPrinter();
  done = 1;
}

LlvmTarget *llvm_target(const char *name) {
  init_llvm();
  LlvmTarget *t = xcalloc(1, sizeof *t);
  if (!strcmp(name, "host")) {
    char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName(), *feat = LLVMGetHostCPUFeatures();
    t->name = "host";
    t->triple = xstrdup(triple);
    t->cpu = xstrdup(cpu);
    t->features = xstrdup(feat);
    int avx512 = strstr(feat, "+avx512f") != NULL, avx2 = strstr(feat, "+avx2") != NULL;
    t->isa = avx512 ? (strstr(feat, "+avx512vnni") ? "AVX-512 VNNI" : "AVX-512") : avx2 ? "AVX2" : "SSE/NEON";
    t->vec_f32 = avx512 ? 16 : avx2 ? 8 : 4;
    t->dot = strstr(feat, "+avx512vnni") ? DOT_VNNI : strstr(feat, "+dotprod") ? DOT_SDOT : avx2 ? DOT_AVX2 : DOT_NONE;
    t->links_here = 1;
    LLVMDisposeMessage(triple), LLVMDisposeMessage(cpu), LLVMDisposeMessage(feat);
    return t;
  }
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    if (!strcmp(name, known[i].name)) {
      *t = known[i];
      t->triple = xstrdup(known[i].triple);
      t->cpu = xstrdup(known[i].cpu);
      t->features = xstrdup(known[i].features);
      return t;
    }
  free(t);
  return NULL;
}

void llvm_target_free(LlvmTarget *t) {
  if (!t) return;
  free((char *)t->triple), free((char *)t->cpu), free((char *)t->features);
  free(t);
}

void llvm_print_targets(FILE *out) {
  LlvmTarget *h = llvm_target("host");
  fprintf(out, "targets (--target=NAME):\n");
  fprintf(out, "  %-10s %s, cpu %s: %s, f32 vectors of %d  (this machine)\n", "host", h->triple, h->cpu, h->isa, h->vec_f32);
  for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
    int runs = !strcmp(known[i].triple, h->triple) && (strcmp(known[i].isa, "AVX-512 VNNI") || strstr(h->features, "+avx512vnni")) &&
               (strcmp(known[i].isa, "AVX2") || strstr(h->features, "+avx2"));
    fprintf(out, "  %-10s %s, cpu %s: %s, f32 vectors of %d  (%s)\n", known[i].name, known[i].triple, known[i].cpu,
            known[i].isa, known[i].vec_f32, runs ? "runs on this machine" : "does not run on this machine");
  }
  fprintf(out, "  %-10s the reference executor behind the same ABI (no generated code)\n", "reference");
  llvm_target_free(h);
}
