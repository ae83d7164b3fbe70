/* elementwise.c: LLVM code for EwKernels with the reference's exact float operations:
 * relu keeps NaN (x > 0 or unordered), relu_grad passes dy where x > 0 (ordered), add/mul
 * repeat the second operand, sgd_update is PyTorch's SGD as in src/ops/optim.c (each product
 * and sum rounded to float32 on its own, never fused). */
#include <llvm-c/Core.h>
#include "gen.h"

static LLVMValueRef at(Gen *g, LLVMValueRef base, LLVMValueRef i) { return LLVMBuildGEP2(g->b, g->f32, base, &i, 1, ""); }
static LLVMValueRef ld(Gen *g, LLVMValueRef base, LLVMValueRef i) { return LLVMBuildLoad2(g->b, g->f32, at(g, base, i), ""); }
static LLVMValueRef cf(Gen *g, float v) { return LLVMConstReal(g->f32, (double)v); }

LLVMValueRef gen_elementwise(Gen *g, const EwKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name);
  LLVMValueRef in = LLVMGetParam(fn, 0), out = LLVMGetParam(fn, 1), lr = LLVMGetParam(fn, 3);
  LLVMValueRef p[3];
  int nin = k->op == OP_relu ? 1 : k->op == OP_sgd_update ? 3 : 2;
  for (int i = 0; i < nin; i++) {
    LLVMValueRef idx = gen_i64(g, i);
    p[i] = LLVMBuildLoad2(g->b, g->ptr, LLVMBuildGEP2(g->b, g->ptr, in, &idx, 1, ""), "in");
  }
  Loop lo, li; /* parts split the outer loop, or the only loop when the second operand does not repeat */
  int flat = k->inner == k->n;
  LLVMValueRef o = flat ? gen_loop_begin(g, &lo, gen_i64(g, 1), "outer") : gen_loop_part(g, &lo, k->n / k->inner, "outer");
  LLVMValueRef j = flat ? gen_loop_part(g, &li, k->inner, "j") : gen_loop_begin(g, &li, gen_i64(g, k->inner), "j");
  LLVMValueRef i = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, o, gen_i64(g, k->inner), ""), j, "i");
  LLVMValueRef zero = cf(g, 0);
  switch (k->op) {
  case OP_relu: {
    LLVMValueRef x = ld(g, p[0], i);
    LLVMBuildStore(g->b, LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealUGT, x, zero, ""), x, zero, ""), at(g, out, i));
    break;
  }
  case OP_relu_grad: {
    LLVMValueRef dy = ld(g, p[0], i), x = ld(g, p[1], i);
    LLVMBuildStore(g->b, LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, x, zero, ""), dy, zero, ""), at(g, out, i));
    break;
  }
  case OP_add:
  case OP_mul: {
    LLVMValueRef a = ld(g, p[0], i), b = ld(g, p[1], j);
    LLVMBuildStore(g->b, k->op == OP_add ? LLVMBuildFAdd(g->b, a, b, "") : LLVMBuildFMul(g->b, a, b, ""), at(g, out, i));
    break;
  }
  case OP_sgd_update: { /* d = g + wd*p; buf = mom*buf + d; p -= lr * (nesterov ? d + mom*buf : buf) */
    LLVMValueRef pv = ld(g, p[0], i), gv = ld(g, p[1], i), bv = ld(g, p[2], i);
    LLVMValueRef d = LLVMBuildFAdd(g->b, gv, LLVMBuildFMul(g->b, cf(g, k->weight_decay), pv, ""), "d");
    LLVMValueRef buf = LLVMBuildFAdd(g->b, LLVMBuildFMul(g->b, cf(g, k->momentum), bv, ""), d, "buf");
    LLVMBuildStore(g->b, buf, at(g, p[2], i));
    LLVMValueRef step = k->nesterov ? LLVMBuildFAdd(g->b, d, LLVMBuildFMul(g->b, cf(g, k->momentum), buf, ""), "") : buf;
    LLVMBuildStore(g->b, LLVMBuildFSub(g->b, pv, LLVMBuildFMul(g->b, lr, step, ""), ""), at(g, p[0], i));
    break;
  }
  default: SQ_INTERNAL("no elementwise code for %s", op_info[k->op].name);
  }
  gen_loop_end(g, &li, k->vec);
  gen_loop_end(g, &lo, 0);
  LLVMBuildRetVoid(g->b);
  return fn;
}
