/* elementwise.c: LLVM code for EwKernels with the reference's exact operations: relu keeps NaN
 * (x > 0 or unordered), relu_grad passes dy where x > 0 (ordered), gelu and its gradient in
 * double through libm's erf and exp as src/ops/elementwise.c, add/mul repeat the second
 * operand, mse sums in double in index order, sgd_update is PyTorch's SGD as in
 * src/ops/optim.c (each product and sum rounded on its own, never fused). sgd_update writes
 * in place, or where the runtime passes destinations (its output pointer: an array laid out as
 * its inputs, new parameter at [0] and new momentum at [2]) there, and then fails when a new
 * value is a NaN or an Inf: the runtime keeps the old buffers (runtime transaction). */
#include <math.h>
#include <llvm-c/Core.h>
#include "gen.h"

static LLVMValueRef at(Gen *g, LLVMValueRef base, LLVMValueRef i) { return gen_at(g, g->f32, base, i); }
static LLVMValueRef ld(Gen *g, LLVMValueRef base, LLVMValueRef i) { return gen_load(g, g->f32, base, i); }

/* softmax over rows of D (as softmax_row in src/ops/loss.c): the float max, a double sum of
 * exp(x - max), then each exp / sum; softmax_grad(dy, y): y * (dy - sum(dy * y)) in double.
 * Parts split the rows. */
static void softmax_rows(Gen *g, const EwKernel *k, LLVMValueRef a, LLVMValueRef b, LLVMValueRef out) {
  LLVMTypeRef f64 = LLVMDoubleTypeInContext(g->ctx);
  int64_t D = k->inner;
  LLVMValueRef mx = gen_entry_alloca(g, g->f32, "mx"), sum = gen_entry_alloca(g, f64, "s");
  Loop lr, lj;
  LLVMValueRef r = gen_loop_part(g, &lr, k->n / D, "row"), base = LLVMBuildMul(g->b, r, gen_i64(g, D), "base");
  LLVMBuildStore(g->b, gen_f64c(g, 0.0), sum);
  if (k->op == OP_softmax) {
    LLVMBuildStore(g->b, ld(g, a, base), mx);
    LLVMValueRef j = gen_loop_begin(g, &lj, gen_i64(g, D), "j"), x = ld(g, a, LLVMBuildAdd(g->b, base, j, ""));
    LLVMValueRef m = LLVMBuildLoad2(g->b, g->f32, mx, "");
    LLVMBuildStore(g->b, LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, x, m, ""), x, m, ""), mx);
    gen_loop_end(g, &lj, 0);
    LLVMValueRef md = LLVMBuildFPExt(g->b, LLVMBuildLoad2(g->b, g->f32, mx, ""), f64, "md");
    for (int pass = 0; pass < 2; pass++) {
      j = gen_loop_begin(g, &lj, gen_i64(g, D), "j");
      LLVMValueRef i = LLVMBuildAdd(g->b, base, j, "");
      LLVMValueRef e = gen_libm(g, "exp", LLVMBuildFSub(g->b, LLVMBuildFPExt(g->b, ld(g, a, i), f64, ""), md, ""));
      if (pass == 0) LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, f64, sum, ""), e, ""), sum);
      else LLVMBuildStore(g->b, LLVMBuildFPTrunc(g->b, LLVMBuildFDiv(g->b, e, LLVMBuildLoad2(g->b, f64, sum, ""), ""), g->f32, ""), at(g, out, i));
      gen_loop_end(g, &lj, 0);
    }
  } else { /* a = dy, b = y */
    for (int pass = 0; pass < 2; pass++) {
      LLVMValueRef j = gen_loop_begin(g, &lj, gen_i64(g, D), "j"), i = LLVMBuildAdd(g->b, base, j, "");
      LLVMValueRef dy = LLVMBuildFPExt(g->b, ld(g, a, i), f64, ""), y = LLVMBuildFPExt(g->b, ld(g, b, i), f64, "");
      if (pass == 0) {
        LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, f64, sum, ""), LLVMBuildFMul(g->b, dy, y, ""), ""), sum);
      } else {
        LLVMValueRef d = LLVMBuildFMul(g->b, y, LLVMBuildFSub(g->b, dy, LLVMBuildLoad2(g->b, f64, sum, ""), ""), "");
        LLVMBuildStore(g->b, LLVMBuildFPTrunc(g->b, d, g->f32, ""), at(g, out, i));
      }
      gen_loop_end(g, &lj, 0);
    }
  }
  gen_loop_end(g, &lr, 0);
}

LLVMValueRef gen_elementwise(Gen *g, const EwKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name);
  LLVMValueRef in = gen_arg(g, KA_IN), out = gen_arg(g, KA_OUT), lr = gen_arg(g, KA_LR);
  LLVMValueRef p[3];
  int nin = k->op == OP_relu || k->op == OP_gelu || k->op == OP_softmax ? 1 : k->op == OP_sgd_update || k->op == OP_mse_grad ? 3 : 2;
  for (int i = 0; i < nin; i++) {
    LLVMValueRef idx = gen_i64(g, i);
    p[i] = LLVMBuildLoad2(g->b, g->ptr, LLVMBuildGEP2(g->b, g->ptr, in, &idx, 1, ""), "in");
  }
  if (k->op == OP_softmax || k->op == OP_softmax_grad) {
    softmax_rows(g, k, p[0], k->op == OP_softmax_grad ? p[1] : NULL, out);
    LLVMBuildRetVoid(g->b);
    return fn;
  }
  LLVMTypeRef f64 = LLVMDoubleTypeInContext(g->ctx);
  LLVMValueRef sum = NULL, kscale = NULL, dst[3] = {0}, bad = NULL, tx = NULL;
  if (k->op == OP_sgd_update) { /* destinations: out[0] and out[2], or the inputs themselves */
    tx = LLVMBuildICmp(g->b, LLVMIntNE, out, LLVMConstNull(g->ptr), "tx");
    LLVMValueRef outs = LLVMBuildSelect(g->b, tx, out, in, "");
    for (int i = 0; i < 3; i += 2) {
      LLVMValueRef idx = gen_i64(g, i);
      dst[i] = LLVMBuildLoad2(g->b, g->ptr, LLVMBuildGEP2(g->b, g->ptr, outs, &idx, 1, ""), "dst");
    }
    bad = gen_var(g, LLVMConstInt(g->i32, 0, 0), "bad");
  }
  if (k->op == OP_mse) { /* a sum: all of it in part 0 */
    gen_only_part0(g);
    sum = gen_entry_alloca(g, f64, "s");
    LLVMBuildStore(g->b, gen_f64c(g, 0.0), sum);
  }
  if (k->op == OP_mse_grad) { /* (float)(sign * 2 / n) * dl */
    LLVMValueRef dl = LLVMBuildLoad2(g->b, g->f32, p[0], "dl");
    kscale = LLVMBuildFMul(g->b, gen_f32c(g, (float)(k->sign * 2.0 / (double)k->n)), dl, "k");
  }
  Loop lo, li; /* parts split the outer loop, or the only loop when the second operand does not repeat */
  int flat = k->inner == k->n;
  LLVMValueRef o = flat ? gen_loop_begin(g, &lo, gen_i64(g, 1), "outer") : gen_loop_part(g, &lo, k->n / k->inner, "outer");
  LLVMValueRef j = flat && k->op != OP_mse ? gen_loop_part(g, &li, k->inner, "j")
                                          : gen_loop_begin(g, &li, gen_i64(g, k->inner), "j");
  LLVMValueRef i = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, o, gen_i64(g, k->inner), ""), j, "i");
  switch (k->op) {
  case OP_relu: {
    LLVMBuildStore(g->b, gen_relu(g, ld(g, p[0], i)), at(g, out, i));
    break;
  }
  case OP_relu_grad: {
    LLVMBuildStore(g->b, gen_relu_grad(g, ld(g, p[0], i), ld(g, p[1], i)), at(g, out, i));
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
    LLVMValueRef d = LLVMBuildFAdd(g->b, gv, LLVMBuildFMul(g->b, gen_f32c(g, k->weight_decay), pv, ""), "d");
    LLVMValueRef buf = LLVMBuildFAdd(g->b, LLVMBuildFMul(g->b, gen_f32c(g, k->momentum), bv, ""), d, "buf");
    LLVMBuildStore(g->b, buf, at(g, dst[2], i));
    LLVMValueRef step = k->nesterov ? LLVMBuildFAdd(g->b, d, LLVMBuildFMul(g->b, gen_f32c(g, k->momentum), buf, ""), "") : buf;
    LLVMValueRef np = LLVMBuildFSub(g->b, pv, LLVMBuildFMul(g->b, lr, step, ""), "");
    LLVMBuildStore(g->b, np, at(g, dst[0], i));
    LLVMValueRef inf = gen_f32c(g, INFINITY); /* NaN or Inf: |v| >= Inf, or unordered */
    LLVMValueRef nf = LLVMBuildOr(g->b, LLVMBuildFCmp(g->b, LLVMRealUGE, gen_intrinsic(g, "llvm.fabs", np), inf, ""),
                                  LLVMBuildFCmp(g->b, LLVMRealUGE, gen_intrinsic(g, "llvm.fabs", buf), inf, ""), "");
    LLVMBuildStore(g->b, LLVMBuildOr(g->b, gen_get(g, bad), LLVMBuildZExt(g->b, nf, g->i32, ""), ""), bad);
    break;
  }
  case OP_gelu: { /* (float)(0.5 * v * (1 + erf(v / sqrt 2))) */
    LLVMValueRef v = LLVMBuildFPExt(g->b, ld(g, p[0], i), f64, "v");
    LLVMValueRef e = gen_libm(g, "erf", LLVMBuildFMul(g->b, v, gen_f64c(g, 0.70710678118654752), ""));
    LLVMValueRef y = LLVMBuildFMul(g->b, LLVMBuildFMul(g->b, gen_f64c(g, 0.5), v, ""), LLVMBuildFAdd(g->b, gen_f64c(g, 1.0), e, ""), "");
    LLVMBuildStore(g->b, LLVMBuildFPTrunc(g->b, y, g->f32, ""), at(g, out, i));
    break;
  }
  case OP_gelu_grad: { /* (float)(dy * (cdf + v * pdf)) */
    LLVMValueRef dy = LLVMBuildFPExt(g->b, ld(g, p[0], i), f64, ""), v = LLVMBuildFPExt(g->b, ld(g, p[1], i), f64, "v");
    LLVMValueRef e = gen_libm(g, "erf", LLVMBuildFMul(g->b, v, gen_f64c(g, 0.70710678118654752), ""));
    LLVMValueRef cdf = LLVMBuildFMul(g->b, gen_f64c(g, 0.5), LLVMBuildFAdd(g->b, gen_f64c(g, 1.0), e, ""), "cdf");
    LLVMValueRef ex = gen_libm(g, "exp", LLVMBuildFMul(g->b, LLVMBuildFMul(g->b, gen_f64c(g, -0.5), v, ""), v, ""));
    LLVMValueRef pdf = LLVMBuildFMul(g->b, ex, gen_f64c(g, 0.3989422804014327), "pdf");
    LLVMValueRef dx = LLVMBuildFMul(g->b, dy, LLVMBuildFAdd(g->b, cdf, LLVMBuildFMul(g->b, v, pdf, ""), ""), "");
    LLVMBuildStore(g->b, LLVMBuildFPTrunc(g->b, dx, g->f32, ""), at(g, out, i));
    break;
  }
  case OP_mse: { /* s += ((double)a - b) * ((double)a - b) */
    LLVMValueRef d = LLVMBuildFSub(g->b, LLVMBuildFPExt(g->b, ld(g, p[0], i), f64, ""), LLVMBuildFPExt(g->b, ld(g, p[1], i), f64, ""), "");
    LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, f64, sum, ""), LLVMBuildFMul(g->b, d, d, ""), ""), sum);
    break;
  }
  case OP_mse_grad: { /* k * (a - b) */
    LLVMValueRef d = LLVMBuildFSub(g->b, ld(g, p[1], i), ld(g, p[2], i), "");
    LLVMBuildStore(g->b, LLVMBuildFMul(g->b, kscale, d, ""), at(g, out, i));
    break;
  }
  default: SQ_INTERNAL("no elementwise code for %s", op_info[k->op].name);
  }
  gen_loop_end(g, &li, k->vec);
  gen_loop_end(g, &lo, 0);
  if (tx) gen_fail_if(g, LLVMBuildAnd(g->b, tx, LLVMBuildICmp(g->b, LLVMIntNE, gen_get(g, bad), LLVMConstInt(g->i32, 0, 0), ""), ""));
  if (k->op == OP_mse) {
    LLVMValueRef mean = LLVMBuildFDiv(g->b, LLVMBuildLoad2(g->b, f64, sum, ""), gen_f64c(g, (double)k->n), "");
    LLVMBuildStore(g->b, LLVMBuildFPTrunc(g->b, mean, g->f32, ""), out);
  }
  LLVMBuildRetVoid(g->b);
  return fn;
}
