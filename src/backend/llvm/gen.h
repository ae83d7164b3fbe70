/* gen.h: what the LLVM backend's files share: the context, common types, counted loops. */
#ifndef SQ_BACKEND_LLVM_GEN_H
#define SQ_BACKEND_LLVM_GEN_H
#include <llvm-c/Core.h>
#include "llvm_backend.h"

typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef i8, i32, i64, f32, ptr, kernel_type;
} Gen;

typedef struct { LLVMBasicBlockRef head, exit; LLVMValueRef iv; } Loop;

LLVMValueRef gen_i64(Gen *g, int64_t v);
/* A function void(ptr in, ptr out, ptr scales, float lr, i64 part, i64 nparts) with internal
 * linkage; the builder is at its entry. The runtime calls it once per part (in parallel); each
 * call computes a fixed share of the outputs, so the bits never depend on nparts. */
LLVMValueRef gen_kernel_function(Gen *g, const char *name);
/* A stack slot in the function's entry block (promoted to a register by the optimizer). */
LLVMValueRef gen_entry_alloca(Gen *g, LLVMTypeRef t, const char *name);
/* for (iv = 0; iv < n; iv++): returns iv with the builder in the body. */
LLVMValueRef gen_loop_begin(Gen *g, Loop *l, LLVMValueRef n, const char *name);
/* for (iv = n*part/nparts; iv < n*(part+1)/nparts; iv++): this call's share of the loop. */
LLVMValueRef gen_loop_part(Gen *g, Loop *l, int64_t n, const char *name);
/* Kernels whose outputs cannot be split (sums into shared outputs) do all the work in part 0. */
void gen_only_part0(Gen *g);
/* Closes the loop; vec > 1 asks the vectorizer for that width (llvm.loop metadata). */
void gen_loop_end(Gen *g, Loop *l, int vec);

LLVMValueRef gen_gemm(Gen *g, const GemmKernel *k, const char *name);
LLVMValueRef gen_conv(Gen *g, const ConvKernel *k, const char *name);
LLVMValueRef gen_elementwise(Gen *g, const EwKernel *k, const char *name);
LLVMValueRef gen_reduce(Gen *g, const RedKernel *k, const char *name);
#endif
