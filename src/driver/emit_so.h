/* emit_so.h: writes NAME.so (the model library) and NAME.h (its header) for a compiled graph. */
#ifndef SQ_DRIVER_EMIT_SO_H
#define SQ_DRIVER_EMIT_SO_H
#include <stdio.h>
#include "../backend/llvm/llvm_backend.h"

/* Emits the module's object with the LLVM backend (plan NULL: no generated kernels, the
 * "reference" target), links it with the runtime into so_path and writes the header beside it.
 * Returns 1 on success; 0 after printing why to err. */
int emit_library(const Graph *g, const KernelPlan *plan, const LlvmTarget *t, const char *so_path, FILE *err);
#endif
