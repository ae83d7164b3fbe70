/* module.c: builds the library module (graph IR, target name, kernel table, kernels), checks
 * it with LLVMVerifyModule, optimises it with LLVMRunPasses and emits it through the target's
 * TargetMachine. */
#include <stdlib.h>
#include <string.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include "../../ir/print.h"
#include "gen.h"

LLVMValueRef gen_entry_alloca(Gen *g, LLVMTypeRef t, const char *name) {
  LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(LLVMGetBasicBlockParent(LLVMGetInsertBlock(g->b)));
  LLVMBuilderRef tmp = LLVMCreateBuilderInContext(g->ctx);
  LLVMValueRef first = LLVMGetFirstInstruction(entry);
  if (first) LLVMPositionBuilderBefore(tmp, first);
  else LLVMPositionBuilderAtEnd(tmp, entry);
  LLVMValueRef slot = LLVMBuildAlloca(tmp, t, name);
  LLVMDisposeBuilder(tmp);
  return slot;
}

static LLVMValueRef loop_range(Gen *g, Loop *l, LLVMValueRef lo, LLVMValueRef n, const char *name) {
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(g->b));
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b);
  l->head = LLVMAppendBasicBlockInContext(g->ctx, fn, name);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(g->ctx, fn, "body");
  l->exit = LLVMAppendBasicBlockInContext(g->ctx, fn, "exit");
  LLVMBuildBr(g->b, l->head);
  LLVMPositionBuilderAtEnd(g->b, l->head);
  l->iv = LLVMBuildPhi(g->b, g->i64, name);
  LLVMAddIncoming(l->iv, &lo, &pre, 1);
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, l->iv, n, "more"), body, l->exit);
  LLVMPositionBuilderAtEnd(g->b, body);
  return l->iv;
}

LLVMValueRef gen_loop_begin(Gen *g, Loop *l, LLVMValueRef n, const char *name) { return loop_range(g, l, gen_i64(g, 0), n, name); }

static LLVMValueRef current_fn(Gen *g) { return LLVMGetBasicBlockParent(LLVMGetInsertBlock(g->b)); }

LLVMValueRef gen_loop_range(Gen *g, Loop *l, LLVMValueRef lo, LLVMValueRef hi, const char *name) {
  return loop_range(g, l, lo, hi, name);
}

void gen_part_range(Gen *g, int64_t n, LLVMValueRef *lo, LLVMValueRef *hi) {
  LLVMValueRef part = gen_part(g), nparts = gen_nparts(g), N = gen_i64(g, n);
  *lo = LLVMBuildSDiv(g->b, LLVMBuildMul(g->b, N, part, ""), nparts, "lo");
  *hi = LLVMBuildSDiv(g->b, LLVMBuildMul(g->b, N, LLVMBuildAdd(g->b, part, gen_i64(g, 1), ""), ""), nparts, "hi");
}

LLVMValueRef gen_loop_part(Gen *g, Loop *l, int64_t n, const char *name) {
  LLVMValueRef lo, hi;
  gen_part_range(g, n, &lo, &hi);
  return loop_range(g, l, lo, hi, name);
}

void gen_only_part0(Gen *g) {
  LLVMValueRef fn = current_fn(g);
  LLVMBasicBlockRef work = LLVMAppendBasicBlockInContext(g->ctx, fn, "part0"), skip = LLVMAppendBasicBlockInContext(g->ctx, fn, "other");
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, gen_part(g), gen_i64(g, 0), ""), work, skip);
  LLVMPositionBuilderAtEnd(g->b, skip);
  LLVMBuildRetVoid(g->b);
  LLVMPositionBuilderAtEnd(g->b, work);
}

/* llvm.loop metadata asking for vectorize.width = vec (a self-referencing node) */
static void vector_width_hint(Gen *g, LLVMValueRef br, int vec) {
  LLVMMetadataRef width[2] = {LLVMMDStringInContext2(g->ctx, "llvm.loop.vectorize.width", 25),
                              LLVMValueAsMetadata(LLVMConstInt(g->i32, (unsigned)vec, 0))};
  LLVMMetadataRef enable[2] = {LLVMMDStringInContext2(g->ctx, "llvm.loop.vectorize.enable", 26),
                               LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(g->ctx), 1, 0))};
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(g->ctx, NULL, 0);
  LLVMMetadataRef ops[3] = {tmp, LLVMMDNodeInContext2(g->ctx, width, 2), LLVMMDNodeInContext2(g->ctx, enable, 2)};
  LLVMMetadataRef loop = LLVMMDNodeInContext2(g->ctx, ops, 3);
  LLVMMetadataReplaceAllUsesWith(tmp, loop);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(g->ctx, "llvm.loop", 9), LLVMMetadataAsValue(g->ctx, loop));
}

void gen_loop_end(Gen *g, Loop *l, int vec) {
  LLVMValueRef next = LLVMBuildAdd(g->b, l->iv, gen_i64(g, 1), "next");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->b);
  LLVMValueRef br = LLVMBuildBr(g->b, l->head);
  if (vec > 1) vector_width_hint(g, br, vec);
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(g->b, l->exit);
}

static LLVMValueRef const_string(Gen *g, const char *name, const char *text) {
  LLVMValueRef init = LLVMConstStringInContext(g->ctx, text, (unsigned)strlen(text), 0);
  LLVMValueRef gv = LLVMAddGlobal(g->mod, LLVMTypeOf(init), name);
  LLVMSetInitializer(gv, init);
  LLVMSetGlobalConstant(gv, 1);
  return gv;
}

/* the kernels may ask the layout (its byte order), so it is set before they are built */
static LLVMModuleRef build_module(Gen *g, const Graph *gr, const KernelPlan *plan, const LlvmTarget *t, LLVMTargetDataRef layout) {
  g->mod = LLVMModuleCreateWithNameInContext(gr->name, g->ctx);
  LLVMSetTarget(g->mod, t->triple);
  LLVMSetModuleDataLayout(g->mod, layout);
  char *ir = ir_print(gr);
  const_string(g, "sq__graph_ir", ir);
  free(ir);
  char *target = plan ? xasprintf("llvm %s (%s, %s)", t->name, t->cpu, t->isa) : xstrdup("reference");
  const_string(g, "sq__target", target);
  free(target);
  int n = gr->nodes.n;
  LLVMTypeRef entry_fields[3] = {g->ptr, g->i64, g->i64}; /* InterpKernel: fn, phases, scratch */
  LLVMTypeRef entry_type = LLVMStructTypeInContext(g->ctx, entry_fields, 3, 0);
  LLVMValueRef *table = xmalloc(sizeof(LLVMValueRef) * (size_t)(n ? n : 1));
  LLVMValueRef none[3] = {LLVMConstPointerNull(g->ptr), gen_i64(g, 0), gen_i64(g, 0)};
  for (int i = 0; i < n; i++) table[i] = LLVMConstNamedStruct(entry_type, none, 3);
  /* every kernel of the plan, named after its node, in its node's slot of the table */
#define EMIT_KERNELS(list, gen) \
  for (int i = 0; plan && i < plan->list.n; i++) { \
    char *name = xasprintf("sq_kernel_%s", ir_node(gr, plan->list.v[i].node)->name); \
    g->phases = 1, g->scratch = 0; \
    LLVMValueRef fields[3] = {gen(g, &plan->list.v[i], name), NULL, NULL}; \
    fields[1] = gen_i64(g, g->phases), fields[2] = gen_i64(g, g->scratch); \
    table[plan->list.v[i].node] = LLVMConstNamedStruct(entry_type, fields, 3); \
    free(name); \
  }
  EMIT_KERNELS(gemm, gen_gemm)
  EMIT_KERNELS(ew, gen_elementwise)
  EMIT_KERNELS(red, gen_reduce)
  EMIT_KERNELS(conv, gen_conv)
  EMIT_KERNELS(chan, gen_chan)
#undef EMIT_KERNELS
  LLVMValueRef arr = LLVMConstArray2(entry_type, table, (uint64_t)n);
  LLVMValueRef kt = LLVMAddGlobal(g->mod, LLVMTypeOf(arr), "sq__kernels");
  LLVMSetInitializer(kt, arr);
  LLVMSetGlobalConstant(kt, 1);
  LLVMValueRef nk = LLVMAddGlobal(g->mod, g->i64, "sq__nkernels");
  LLVMSetInitializer(nk, gen_i64(g, n));
  LLVMSetGlobalConstant(nk, 1);
  free(table);
  return g->mod;
}

int llvm_emit(const Graph *gr, const KernelPlan *plan, const LlvmTarget *t, LlvmEmit what, const char *path, FILE *err) {
  Gen g = {0};
  g.ctx = LLVMContextCreate();
  g.b = LLVMCreateBuilderInContext(g.ctx);
  g.i8 = LLVMInt8TypeInContext(g.ctx), g.i32 = LLVMInt32TypeInContext(g.ctx), g.i64 = LLVMInt64TypeInContext(g.ctx);
  g.f32 = LLVMFloatTypeInContext(g.ctx), g.ptr = LLVMPointerTypeInContext(g.ctx, 0);
  g.f64 = LLVMDoubleTypeInContext(g.ctx);
  gen_args_init(&g);
  char *msg = NULL;
  LLVMTargetRef target;
  if (LLVMGetTargetFromTriple(t->triple, &target, &msg)) {
    fprintf(err, "sqc: error: LLVM has no target for %s: %s\n", t->triple, msg);
    LLVMDisposeMessage(msg);
    LLVMDisposeBuilder(g.b);
    LLVMContextDispose(g.ctx);
    return 0;
  }
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, t->triple, t->cpu, t->features, LLVMCodeGenLevelAggressive,
                                                    LLVMRelocPIC, LLVMCodeModelDefault);
  LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(tm);
  LLVMModuleRef mod = build_module(&g, gr, plan, t, layout);
  LLVMDisposeTargetData(layout);
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    char *dump = LLVMPrintModuleToString(mod);
    fprintf(err, "%s\n", dump);
    SQ_INTERNAL("the generated LLVM module is invalid: %s", msg);
  }
  LLVMDisposeMessage(msg);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e) SQ_INTERNAL("LLVMRunPasses failed: %s", LLVMGetErrorMessage(e));
  int ok = 1;
  if (what == EMIT_LLVM) {
    if (LLVMPrintModuleToFile(mod, path, &msg)) ok = 0;
  } else if (LLVMTargetMachineEmitToFile(tm, mod, path, what == EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile, &msg)) {
    ok = 0;
  }
  if (!ok) {
    fprintf(err, "sqc: error: cannot write '%s': %s\n", path, msg ? msg : "LLVM error");
    LLVMDisposeMessage(msg);
  }
  LLVMDisposeTargetMachine(tm);
  LLVMDisposeBuilder(g.b);
  LLVMDisposeModule(mod);
  LLVMContextDispose(g.ctx);
  return ok;
}
