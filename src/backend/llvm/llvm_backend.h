/* llvm_backend.h: the LLVM backend. It translates a kernel plan into an LLVM module through the
 * LLVM C API (never printed IR run through llc), verifies it, optimises it with LLVMRunPasses,
 * and emits assembly or an object file with the target's TargetMachine. The module also holds
 * the graph IR text (sq__graph_ir), the target name (sq__target) and the kernel table
 * (sq__kernels: per graph node a kernel, its phases and scratch bytes; NULL where the
 * reference body runs). */
#ifndef SQ_BACKEND_LLVM_H
#define SQ_BACKEND_LLVM_H
#include <stdio.h>
#include "../../ir/graph.h"
#include "../../lower/kir.h"

typedef struct {
  const char *name;     /* as given to --target */
  const char *triple, *cpu, *features;
  const char *isa;      /* for people: "AVX2", "AVX-512 VNNI", "NEON + dotprod" */
  int vec_f32;          /* f32 lanes per vector register */
  DotIsa dot;           /* its int8 dot-product instruction */
  int links_here;       /* libraries for it can be linked and run on this machine */
} LlvmTarget;

/* Resolves a --target name ("host" included); NULL for an unknown name. Free with target_free. */
LlvmTarget *llvm_target(const char *name);
void llvm_target_free(LlvmTarget *t);
/* Names of the targets for diagnostics and --print-targets (NULL-terminated). */
extern const char *const llvm_target_names[];
void llvm_print_targets(FILE *out);

typedef enum { EMIT_LLVM, EMIT_ASM, EMIT_OBJ } LlvmEmit;
/* Writes the module for g (kernels from plan) to path. Returns 1, or 0 after printing to err. */
int llvm_emit(const Graph *g, const KernelPlan *plan, const LlvmTarget *t, LlvmEmit what, const char *path, FILE *err);
#endif
