/* gemm.c: LLVM code for a GemmKernel, with the reference's arithmetic order: each output starts
 * at 0 and adds A*B in ascending k (float32 mul then add, never contracted to FMA), then the
 * bias; integer operands accumulate in i32 and are dequantized with one multiply by
 * scale_a*scale_b, then + bias (or + 0.0, as the reference does). So results are bit-exact.
 * Signature: void k(ptr in, ptr out, ptr scales): in holds the data pointers of A, B and the
 * bias, scales the scales of A and B. */
#include <llvm-c/Core.h>
#include "gen.h"

static LLVMValueRef elem_ptr(Gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef index) {
  return LLVMBuildGEP2(g->b, t, base, &index, 1, "p");
}


static LLVMValueRef mad(Gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) { /* a*b + c */
  return LLVMBuildAdd(g->b, LLVMBuildMul(g->b, a, b, ""), c, "");
}

LLVMValueRef gen_gemm(Gen *g, const GemmKernel *k, const char *name) {
  if (k->dp.dot) return gen_gemm_dot(g, k, name);
  LLVMValueRef fn = gen_kernel_function(g, name);
  LLVMValueRef in = gen_arg(g, KA_IN), out = gen_arg(g, KA_OUT), scales = gen_arg(g, KA_SCALES);
  LLVMValueRef A = LLVMBuildLoad2(g->b, g->ptr, elem_ptr(g, g->ptr, in, gen_i64(g, 0)), "A");
  LLVMValueRef B = LLVMBuildLoad2(g->b, g->ptr, elem_ptr(g, g->ptr, in, gen_i64(g, 1)), "B");
  LLVMValueRef bias = k->bias ? LLVMBuildLoad2(g->b, g->ptr, elem_ptr(g, g->ptr, in, gen_i64(g, 2)), "bias") : NULL;
  int integer = k->a != KE_F32;
  LLVMValueRef scale = NULL;
  if (integer) {
    LLVMValueRef sa = LLVMBuildLoad2(g->b, g->f32, elem_ptr(g, g->f32, scales, gen_i64(g, 0)), "sa");
    LLVMValueRef sb = LLVMBuildLoad2(g->b, g->f32, elem_ptr(g, g->f32, scales, gen_i64(g, 1)), "sb");
    scale = LLVMBuildFMul(g->b, sa, sb, "scale");
  }
  Loop lb, lm, ln, lk;
  LLVMValueRef b = gen_loop_begin(g, &lb, gen_i64(g, k->batch), "b");
  LLVMValueRef abase = LLVMBuildMul(g->b, b, gen_i64(g, k->a_bs), "ab"), bbase = LLVMBuildMul(g->b, b, gen_i64(g, k->b_bs), "bb");
  LLVMValueRef m = gen_loop_part(g, &lm, k->M, "m"); /* each part: its own rows of every batch entry */
  LLVMValueRef arow = LLVMBuildAdd(g->b, abase, LLVMBuildMul(g->b, m, gen_i64(g, k->a_sm), ""), "arow");
  LLVMValueRef orow = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, b, gen_i64(g, k->M), ""), m, ""),
                                   gen_i64(g, k->N), "orow");
  if (!integer && k->b_sn == 1) {
    /* i-k-j: the n loop is contiguous in B and the output, so it vectorizes without reordering
     * any sum (each output element still adds its products in ascending k) */
    LLVMValueRef n0 = gen_loop_begin(g, &ln, gen_i64(g, k->N), "n0");
    LLVMBuildStore(g->b, LLVMConstReal(g->f32, 0.0), elem_ptr(g, g->f32, out, LLVMBuildAdd(g->b, orow, n0, "")));
    gen_loop_end(g, &ln, k->vec);
    LLVMValueRef kk = gen_loop_begin(g, &lk, gen_i64(g, k->K), "k");
    LLVMValueRef av = LLVMBuildLoad2(g->b, g->f32,
                                     elem_ptr(g, g->f32, A, LLVMBuildAdd(g->b, arow, LLVMBuildMul(g->b, kk, gen_i64(g, k->a_sk), ""), "")), "a");
    LLVMValueRef brow = LLVMBuildAdd(g->b, bbase, LLVMBuildMul(g->b, kk, gen_i64(g, k->b_sk), ""), "brow");
    LLVMValueRef n = gen_loop_begin(g, &ln, gen_i64(g, k->N), "n");
    LLVMValueRef bv = LLVMBuildLoad2(g->b, g->f32, elem_ptr(g, g->f32, B, LLVMBuildAdd(g->b, brow, n, "")), "bv");
    LLVMValueRef op = elem_ptr(g, g->f32, out, LLVMBuildAdd(g->b, orow, n, ""));
    LLVMValueRef c = LLVMBuildLoad2(g->b, g->f32, op, "c");
    LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, c, LLVMBuildFMul(g->b, av, bv, ""), ""), op);
    gen_loop_end(g, &ln, k->vec);
    gen_loop_end(g, &lk, 0);
    if (bias) {
      LLVMValueRef nb = gen_loop_begin(g, &ln, gen_i64(g, k->N), "nb");
      LLVMValueRef p = elem_ptr(g, g->f32, out, LLVMBuildAdd(g->b, orow, nb, ""));
      LLVMValueRef bb = LLVMBuildLoad2(g->b, g->f32, elem_ptr(g, g->f32, bias, nb), "bias_n");
      LLVMValueRef y = LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, g->f32, p, ""), bb, "");
      LLVMBuildStore(g->b, k->relu ? gen_relu(g, y) : y, p);
      gen_loop_end(g, &ln, k->vec);
    }
  } else {
    /* i-j-k: a dot product per output (strided B, or integer operands) */
    LLVMValueRef n = gen_loop_begin(g, &ln, gen_i64(g, k->N), "n");
    LLVMValueRef bcol = LLVMBuildAdd(g->b, bbase, LLVMBuildMul(g->b, n, gen_i64(g, k->b_sn), ""), "bcol");
    LLVMTypeRef acc_t = integer ? g->i32 : g->f32;
    LLVMValueRef acc = gen_entry_alloca(g, acc_t, "acc");
    LLVMBuildStore(g->b, integer ? LLVMConstInt(g->i32, 0, 0) : LLVMConstReal(g->f32, 0.0), acc);
    LLVMValueRef kk = gen_loop_begin(g, &lk, gen_i64(g, k->K), "k");
    LLVMValueRef ai = LLVMBuildAdd(g->b, arow, LLVMBuildMul(g->b, kk, gen_i64(g, k->a_sk), ""), "ai");
    LLVMValueRef bi = LLVMBuildAdd(g->b, bcol, LLVMBuildMul(g->b, kk, gen_i64(g, k->b_sk), ""), "bi");
    LLVMValueRef cur = LLVMBuildLoad2(g->b, acc_t, acc, "cur"), next;
    if (integer) {
      next = mad(g, gen_load_q(g, k->a, A, ai), gen_load_q(g, k->b, B, bi), cur);
    } else {
      LLVMValueRef av = LLVMBuildLoad2(g->b, g->f32, elem_ptr(g, g->f32, A, ai), "a");
      LLVMValueRef bv = LLVMBuildLoad2(g->b, g->f32, elem_ptr(g, g->f32, B, bi), "b");
      next = LLVMBuildFAdd(g->b, cur, LLVMBuildFMul(g->b, av, bv, ""), "");
    }
    LLVMBuildStore(g->b, next, acc);
    gen_loop_end(g, &lk, integer ? k->vec : 0); /* integer sums are exact in any order */
    LLVMValueRef sum = LLVMBuildLoad2(g->b, acc_t, acc, "sum"), y;
    if (integer) {
      y = LLVMBuildFMul(g->b, LLVMBuildSIToFP(g->b, sum, g->f32, ""), scale, "deq");
      LLVMValueRef add = bias ? LLVMBuildLoad2(g->b, g->f32, elem_ptr(g, g->f32, bias, n), "bias_n") : LLVMConstReal(g->f32, 0.0);
      y = LLVMBuildFAdd(g->b, y, add, "y");
    } else {
      y = sum;
      if (bias) y = LLVMBuildFAdd(g->b, y, LLVMBuildLoad2(g->b, g->f32, elem_ptr(g, g->f32, bias, n), "bias_n"), "y");
    }
    if (k->relu) y = gen_relu(g, y);
    LLVMBuildStore(g->b, y, elem_ptr(g, g->f32, out, LLVMBuildAdd(g->b, orow, n, "")));
    gen_loop_end(g, &ln, 0);
  }
  gen_loop_end(g, &lm, 0);
  gen_loop_end(g, &lb, 0);
  LLVMBuildRetVoid(g->b);
  return fn;
}
