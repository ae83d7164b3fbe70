/* args.c: the kernel calling convention as LLVM sees it: void k(KernelArgs *a, i64 phase,
 * i64 part, i64 nparts), with KernelArgs laid out as in src/interp/interp.h (the same natural
 * alignment on every target we build for), and the phases a kernel's body is split into. */
#include <math.h>
#include <string.h>
#include "gen.h"

void gen_args_init(Gen *g) {
  LLVMTypeRef fields[KA_COUNT] = {
      [KA_IN] = g->ptr,    [KA_SCALES] = g->ptr, [KA_OUT] = g->ptr,       [KA_SCRATCH] = g->ptr,
      [KA_SEED] = g->i64,  [KA_STEP] = g->i64,   [KA_LR] = g->f32,        [KA_TRAINING] = g->i32,
      [KA_FAILED] = g->i32, [KA_OUT_SCALE] = g->f32, [KA_OUT_UNSIGNED] = g->i32};
  g->args_type = LLVMStructTypeInContext(g->ctx, fields, KA_COUNT, 0);
  LLVMTypeRef params[4] = {g->ptr, g->i64, g->i64, g->i64};
  g->kernel_type = LLVMFunctionType(LLVMVoidTypeInContext(g->ctx), params, 4, 0);
}

static LLVMValueRef current_fn(Gen *g) { return LLVMGetBasicBlockParent(LLVMGetInsertBlock(g->b)); }

LLVMValueRef gen_kernel_function(Gen *g, const char *name) {
  LLVMValueRef fn = LLVMAddFunction(g->mod, name, g->kernel_type);
  LLVMSetLinkage(fn, LLVMInternalLinkage);
  LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->ctx, fn, "entry"));
  return fn;
}

LLVMValueRef gen_arg_addr(Gen *g, KernelArg a) {
  return LLVMBuildStructGEP2(g->b, g->args_type, LLVMGetParam(current_fn(g), 0), (unsigned)a, "");
}

LLVMValueRef gen_arg(Gen *g, KernelArg a) {
  return LLVMBuildLoad2(g->b, LLVMStructGetTypeAtIndex(g->args_type, (unsigned)a), gen_arg_addr(g, a), "");
}

LLVMValueRef gen_part(Gen *g) { return g->part ? g->part : LLVMGetParam(current_fn(g), 2); }
LLVMValueRef gen_nparts(Gen *g) { return g->nparts ? g->nparts : LLVMGetParam(current_fn(g), 3); }

/* in[i] and scales[i] */
LLVMValueRef gen_input(Gen *g, int i) {
  LLVMValueRef idx = gen_i64(g, i);
  return LLVMBuildLoad2(g->b, g->ptr, LLVMBuildGEP2(g->b, g->ptr, gen_arg(g, KA_IN), &idx, 1, ""), "in");
}

LLVMValueRef gen_input_scale(Gen *g, int i) {
  LLVMValueRef idx = gen_i64(g, i);
  return LLVMBuildLoad2(g->b, g->f32, LLVMBuildGEP2(g->b, g->f32, gen_arg(g, KA_SCALES), &idx, 1, ""), "scale");
}

/* Several parts may report at once: a relaxed atomic store, so that is not a race. */
void gen_out_scale(Gen *g, LLVMValueRef scale) {
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(g->b));
  LLVMBasicBlockRef set = LLVMAppendBasicBlockInContext(g->ctx, fn, "out_scale"), after = LLVMAppendBasicBlockInContext(g->ctx, fn, "");
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, gen_part(g), gen_i64(g, 0), ""), set, after);
  LLVMPositionBuilderAtEnd(g->b, set);
  LLVMBuildStore(g->b, scale, gen_arg_addr(g, KA_OUT_SCALE));
  LLVMBuildBr(g->b, after);
  LLVMPositionBuilderAtEnd(g->b, after);
}

void gen_fail_if(Gen *g, LLVMValueRef cond) {
  LLVMValueRef fn = current_fn(g);
  LLVMBasicBlockRef bad = LLVMAppendBasicBlockInContext(g->ctx, fn, "reject"), ok = LLVMAppendBasicBlockInContext(g->ctx, fn, "ok");
  LLVMBuildCondBr(g->b, cond, bad, ok);
  LLVMPositionBuilderAtEnd(g->b, bad);
  LLVMValueRef st = LLVMBuildStore(g->b, LLVMConstInt(g->i32, 1, 0), gen_arg_addr(g, KA_FAILED));
  LLVMSetOrdering(st, LLVMAtomicOrderingMonotonic);
  LLVMBuildBr(g->b, ok);
  LLVMPositionBuilderAtEnd(g->b, ok);
}

void gen_phases(Gen *g, Phases *p, int n) {
  SQ_ASSERT(n >= 1 && n <= GEN_MAX_PHASES);
  LLVMValueRef fn = current_fn(g);
  p->n = n;
  p->current = 0;
  g->phases = n;
  LLVMBasicBlockRef none = LLVMAppendBasicBlockInContext(g->ctx, fn, "no_phase");
  for (int i = 0; i < n; i++) p->block[i] = LLVMAppendBasicBlockInContext(g->ctx, fn, "phase");
  LLVMValueRef sw = LLVMBuildSwitch(g->b, LLVMGetParam(fn, 1), none, (unsigned)n);
  for (int i = 0; i < n; i++) LLVMAddCase(sw, gen_i64(g, i), p->block[i]);
  LLVMPositionBuilderAtEnd(g->b, none);
  LLVMBuildRetVoid(g->b);
  LLVMPositionBuilderAtEnd(g->b, p->block[0]);
}

void gen_next_phase(Gen *g, Phases *p) {
  LLVMBuildRetVoid(g->b);
  SQ_ASSERT(++p->current < p->n);
  LLVMPositionBuilderAtEnd(g->b, p->block[p->current]);
}

/* ---- values ---- */
LLVMValueRef gen_relu_grad(Gen *g, LLVMValueRef dy, LLVMValueRef x) {
  LLVMValueRef zero = LLVMConstNull(LLVMTypeOf(x));
  return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, x, zero, ""), dy, zero, "relu_grad");
}
LLVMValueRef gen_relu(Gen *g, LLVMValueRef x) {
  LLVMValueRef zero = LLVMConstNull(LLVMTypeOf(x));
  return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealUGT, x, zero, ""), x, zero, "relu");
}
LLVMValueRef gen_load_q(Gen *g, KElem e, LLVMValueRef base, LLVMValueRef idx) {
  if (!kelem_packed(e)) {
    LLVMValueRef v = gen_load(g, g->i8, base, idx);
    return kelem_unsigned(e) ? LLVMBuildZExt(g->b, v, g->i32, "") : LLVMBuildSExt(g->b, v, g->i32, "");
  }
  /* nm_q4_get: the nibble (idx & 1) of byte idx / 2 */
  LLVMValueRef byte = LLVMBuildZExt(g->b, gen_load(g, g->i8, base, LLVMBuildAShr(g->b, idx, gen_i64(g, 1), "")), g->i32, "");
  LLVMValueRef sh = LLVMBuildTrunc(g->b, LLVMBuildShl(g->b, LLVMBuildAnd(g->b, idx, gen_i64(g, 1), ""), gen_i64(g, 2), ""), g->i32, "");
  return gen_q4_value(g, e, LLVMBuildAnd(g->b, LLVMBuildLShr(g->b, byte, sh, ""), LLVMConstInt(g->i32, 15, 0), ""));
}
LLVMValueRef gen_q4_value(Gen *g, KElem e, LLVMValueRef nibble) { /* nm_q4_get: (v ^ 8) - 8 when signed */
  if (kelem_unsigned(e)) return nibble;
  LLVMValueRef eight = LLVMConstInt(g->i32, 8, 0);
  return LLVMBuildSub(g->b, LLVMBuildXor(g->b, nibble, eight, ""), eight, "");
}
LLVMValueRef gen_i64(Gen *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }
LLVMValueRef gen_f32c(Gen *g, float v) { return LLVMConstReal(g->f32, (double)v); }
LLVMValueRef gen_f64c(Gen *g, double v) { return LLVMConstReal(g->f64, v); }
LLVMValueRef gen_at(Gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef i) { return LLVMBuildGEP2(g->b, t, base, &i, 1, ""); }
LLVMValueRef gen_load(Gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef i) {
  return LLVMBuildLoad2(g->b, t, gen_at(g, t, base, i), "");
}
void gen_store(Gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i) {
  LLVMBuildStore(g->b, v, gen_at(g, LLVMTypeOf(v), base, i));
}
LLVMValueRef gen_libm(Gen *g, const char *name, LLVMValueRef arg) {
  LLVMTypeRef ft = LLVMFunctionType(g->f64, &g->f64, 1, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(g->mod, name);
  if (!fn) fn = LLVMAddFunction(g->mod, name, ft);
  return LLVMBuildCall2(g->b, ft, fn, &arg, 1, name);
}

LLVMValueRef gen_ldexpf(Gen *g, LLVMValueRef x, int e) {
  LLVMTypeRef params[2] = {g->f32, g->i32}, ft = LLVMFunctionType(g->f32, params, 2, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(g->mod, "ldexpf");
  if (!fn) fn = LLVMAddFunction(g->mod, "ldexpf", ft);
  LLVMValueRef args[2] = {x, LLVMConstInt(g->i32, (unsigned long long)(int64_t)e, 1)};
  return LLVMBuildCall2(g->b, ft, fn, args, 2, "");
}

LLVMValueRef gen_intrinsic(Gen *g, const char *name, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  SQ_ASSERT(id != 0);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, &t, 1);
  return LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->ctx, id, &t, 1), fn, &x, 1, "");
}

LLVMValueRef gen_fmuladd(Gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMTypeRef t = LLVMTypeOf(a);
  unsigned id = LLVMLookupIntrinsicID("llvm.fmuladd", 12);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, &t, 1), args[3] = {a, b, c};
  return LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->ctx, id, &t, 1), fn, args, 3, "");
}

LLVMValueRef gen_finite(Gen *g, LLVMValueRef x) {
  LLVMValueRef a = gen_intrinsic(g, "llvm.fabs", x);
  return LLVMBuildFCmp(g->b, LLVMRealOLT, a, LLVMConstReal(LLVMTypeOf(x), INFINITY), "finite");
}

LLVMValueRef gen_fmax(Gen *g, LLVMValueRef a, LLVMValueRef m) {
  return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, a, m, ""), a, m, "");
}

LLVMValueRef gen_var(Gen *g, LLVMValueRef init, const char *name) {
  LLVMValueRef v = gen_entry_alloca(g, LLVMTypeOf(init), name);
  LLVMBuildStore(g->b, init, v);
  return v;
}

LLVMValueRef gen_get(Gen *g, LLVMValueRef var) { return LLVMBuildLoad2(g->b, LLVMGetAllocatedType(var), var, ""); }

/* llvm.masked.* with alignment 1: lanes off in the mask are neither read nor written */
static LLVMValueRef masked_call(Gen *g, const char *name, LLVMTypeRef t0, LLVMTypeRef t1, LLVMValueRef *args, unsigned n) {
  LLVMTypeRef types[2] = {t0, t1};
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  SQ_ASSERT(id != 0);
  return LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->ctx, id, types, 2), LLVMGetIntrinsicDeclaration(g->mod, id, types, 2), args, n, "");
}
LLVMValueRef gen_masked_load(Gen *g, LLVMTypeRef vt, LLVMValueRef ptr, LLVMValueRef mask, LLVMValueRef pass) {
  LLVMValueRef args[4] = {ptr, LLVMConstInt(g->i32, 1, 0), mask, pass};
  return masked_call(g, "llvm.masked.load", vt, g->ptr, args, 4);
}
void gen_masked_store(Gen *g, LLVMValueRef v, LLVMValueRef ptr, LLVMValueRef mask) {
  LLVMValueRef args[4] = {v, ptr, LLVMConstInt(g->i32, 1, 0), mask};
  masked_call(g, "llvm.masked.store", LLVMTypeOf(v), g->ptr, args, 4);
}
LLVMValueRef gen_masked_gather(Gen *g, LLVMTypeRef vt, LLVMValueRef ptrs, LLVMValueRef mask, LLVMValueRef pass) {
  LLVMValueRef args[4] = {ptrs, LLVMConstInt(g->i32, 1, 0), mask, pass};
  return masked_call(g, "llvm.masked.gather", vt, LLVMTypeOf(ptrs), args, 4);
}

LLVMValueRef gen_splat(Gen *g, LLVMValueRef v, unsigned n) {
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(v), n);
  LLVMValueRef one = LLVMBuildInsertElement(g->b, LLVMGetUndef(vt), v, LLVMConstInt(g->i32, 0, 0), "");
  return LLVMBuildShuffleVector(g->b, one, LLVMGetUndef(vt), LLVMConstNull(LLVMVectorType(g->i32, n)), "");
}

LLVMValueRef gen_splat_like(Gen *g, LLVMValueRef c, LLVMValueRef like) {
  LLVMTypeRef t = LLVMTypeOf(like);
  if (LLVMGetTypeKind(t) != LLVMVectorTypeKind || LLVMGetTypeKind(LLVMTypeOf(c)) == LLVMVectorTypeKind) return c;
  return gen_splat(g, c, LLVMGetVectorSize(t));
}

LLVMValueRef gen_iota(Gen *g, unsigned n) {
  LLVMValueRef v[64];
  SQ_ASSERT(n <= 64);
  for (unsigned i = 0; i < n; i++) v[i] = gen_i64(g, i);
  return LLVMConstVector(v, n);
}
