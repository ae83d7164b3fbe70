/* gemm_dot.c: integer GEMMs on the target's 4-byte dot-product instruction, emitted
 * explicitly (LLVM does not form vpdpbusd or sdot from loops). Phase 0 packs both operands into
 * scratch: the broadcast side U as rows of kp bytes (+128 when it is signed and the ISA wants it
 * unsigned), the vector side S as blocks of `lanes` columns holding 4 consecutive k of a column
 * in each i32 lane, and the correction 128 * column sum of S. Phase 1: each part takes blocks
 * of mr rows; a tile of mr x nr vector accumulators walks k four bytes at a time; the epilogue
 * subtracts the correction and dequantizes as the reference does ((float)acc * scale + bias, or
 * + 0.0). Integer sums are exact in any order, so the bits equal the reference's. */
#include <string.h>
#include <llvm-c/Core.h>
#include "gen.h"

#define B (g->b)
static LLVMValueRef add(Gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }
static LLVMValueRef mul(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildMul(B, a, gen_i64(g, b), ""); }
static LLVMValueRef lt(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildICmp(B, LLVMIntSLT, a, gen_i64(g, b), ""); }

typedef struct {
  Gen *g;
  const GemmKernel *k;
  LLVMValueRef A, Bm, packU, packS, corr; /* packU/packS/corr: this batch entry's */
  int64_t rows, cols;                     /* of the computed product (transposed when swap) */
} Dot;

/* element (m, k) of U and (k, n) of S as i32, for valid indices of batch entry bt */
static LLVMValueRef operand(Dot *d, int u_side, LLVMValueRef bt, LLVMValueRef r, LLVMValueRef kk) {
  Gen *g = d->g;
  const GemmKernel *k = d->k;
  int from_a = u_side != k->swap; /* U is A unless swapped; S is B unless swapped */
  LLVMValueRef idx = from_a ? add(g, add(g, mul(g, bt, k->a_bs), mul(g, r, k->a_sm)), mul(g, kk, k->a_sk))
                            : add(g, add(g, mul(g, bt, k->b_bs), mul(g, kk, k->b_sk)), mul(g, r, k->b_sn));
  KElem e = from_a ? k->a : k->b;
  LLVMValueRef v = gen_load(g, g->i8, from_a ? d->A : d->Bm, idx);
  return e == KE_U8 ? LLVMBuildZExt(B, v, g->i32, "") : LLVMBuildSExt(B, v, g->i32, "");
}

/* operand or 0 outside [0, rows) x [0, K) */
static LLVMValueRef operand_or0(Dot *d, int u_side, LLVMValueRef bt, LLVMValueRef r, int64_t nr, LLVMValueRef kk) {
  Gen *g = d->g;
  LLVMValueRef ok = LLVMBuildAnd(B, lt(g, r, nr), lt(g, kk, d->k->K), "");
  LLVMValueRef v = operand(d, u_side, bt, LLVMBuildSelect(B, ok, r, gen_i64(g, 0), ""), LLVMBuildSelect(B, ok, kk, gen_i64(g, 0), ""));
  return LLVMBuildSelect(B, ok, v, LLVMConstInt(g->i32, 0, 0), "");
}

static void batch_views(Dot *d, LLVMValueRef bt) {
  Gen *g = d->g;
  const GemmKernel *k = d->k;
  LLVMValueRef base = LLVMBuildGEP2(B, g->i8, gen_arg(g, KA_SCRATCH), (LLVMValueRef[]){mul(g, bt, k->scratch / k->batch)}, 1, "");
  d->packU = base;
  d->packS = gen_at(g, g->i8, base, gen_i64(g, k->mp * k->kp));
  d->corr = gen_at(g, g->i8, base, gen_i64(g, k->mp * k->kp + k->np * k->kp));
}

static void pack(Dot *d) {
  Gen *g = d->g;
  const GemmKernel *k = d->k;
  Loop l1, l2, l3;
  /* U rows */
  LLVMValueRef row = gen_loop_part(g, &l1, k->batch * k->mp, "urow");
  LLVMValueRef bt = LLVMBuildSDiv(B, row, gen_i64(g, k->mp), "bt"), m = LLVMBuildSRem(B, row, gen_i64(g, k->mp), "m");
  batch_views(d, bt);
  LLVMValueRef dst = gen_at(g, g->i8, d->packU, mul(g, m, k->kp));
  LLVMValueRef kk = gen_loop_begin(g, &l2, gen_i64(g, k->kp), "k");
  LLVMValueRef v = operand_or0(d, 1, bt, m, d->rows, kk);
  if (k->bias_u) v = LLVMBuildAdd(B, v, LLVMConstInt(g->i32, 128, 0), "");
  gen_store(g, LLVMBuildTrunc(B, v, g->i8, ""), dst, kk);
  gen_loop_end(g, &l2, 0);
  gen_loop_end(g, &l1, 0);
  /* S columns: column n, k = 4*k4 + t goes to ((n / lanes * kp/4 + k4) * lanes + n % lanes) * 4 + t */
  LLVMValueRef col = gen_loop_part(g, &l1, k->batch * k->np, "scol");
  bt = LLVMBuildSDiv(B, col, gen_i64(g, k->np), "bt");
  LLVMValueRef n = LLVMBuildSRem(B, col, gen_i64(g, k->np), "n");
  batch_views(d, bt);
  LLVMValueRef blk = LLVMBuildSDiv(B, n, gen_i64(g, k->lanes), ""), lane = LLVMBuildSRem(B, n, gen_i64(g, k->lanes), "");
  LLVMValueRef sum = gen_var(g, LLVMConstInt(g->i32, 0, 0), "colsum");
  LLVMBuildStore(B, LLVMConstInt(g->i32, 0, 0), sum);
  kk = gen_loop_begin(g, &l3, gen_i64(g, k->kp), "k");
  v = operand_or0(d, 0, bt, n, d->cols, kk);
  LLVMValueRef k4 = LLVMBuildSDiv(B, kk, gen_i64(g, 4), ""), t = LLVMBuildSRem(B, kk, gen_i64(g, 4), "");
  LLVMValueRef at = add(g, mul(g, add(g, mul(g, add(g, mul(g, blk, k->kp / 4), k4), k->lanes), lane), 4), t);
  gen_store(g, LLVMBuildTrunc(B, v, g->i8, ""), d->packS, at);
  LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(g, sum), v, ""), sum);
  gen_loop_end(g, &l3, 0);
  gen_store(g, LLVMBuildMul(B, gen_get(g, sum), LLVMConstInt(g->i32, k->bias_u ? 128 : 0, 0), ""), d->corr, n);
  gen_loop_end(g, &l1, 0);
}

/* acc + dot4(u, s) per lane */
static LLVMValueRef dot4(Gen *g, const GemmKernel *k, LLVMValueRef acc, LLVMValueRef u, LLVMValueRef s) {
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, (unsigned)k->lanes);
  if (k->dot == DOT_VNNI) {
    LLVMValueRef args[3] = {acc, u, s};
    const char *name = "llvm.x86.avx512.vpdpbusd.512";
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    return LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id, NULL, 0), LLVMGetIntrinsicDeclaration(g->mod, id, NULL, 0), args, 3, "");
  }
  LLVMTypeRef vi8 = LLVMVectorType(g->i8, 16), over[2] = {vi32, vi8};
  LLVMValueRef args[3] = {acc, LLVMBuildBitCast(B, u, vi8, ""), LLVMBuildBitCast(B, s, vi8, "")};
  const char *name = "llvm.aarch64.neon.sdot";
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  return LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id, over, 2), LLVMGetIntrinsicDeclaration(g->mod, id, over, 2), args, 3, "");
}

enum { MAX_MR = 8, MAX_NR = 8 };

static void compute(Dot *d, LLVMValueRef out, LLVMValueRef scale, LLVMValueRef bias) {
  Gen *g = d->g;
  const GemmKernel *k = d->k;
  int mr = k->mr, nr = k->nr, lanes = k->lanes;
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, (unsigned)lanes);
  LLVMValueRef zero = LLVMConstNull(vi32);
  LLVMValueRef tile = gen_entry_alloca(g, LLVMArrayType(g->i32, (unsigned)(mr * nr * lanes)), "tile");
  Loop lrb, lnb, lk, lr, lc;
  int64_t rblocks = k->mp / mr;
  LLVMValueRef rb = gen_loop_part(g, &lrb, k->batch * rblocks, "rowblock");
  LLVMValueRef bt = LLVMBuildSDiv(B, rb, gen_i64(g, rblocks), "bt"), m0 = mul(g, LLVMBuildSRem(B, rb, gen_i64(g, rblocks), ""), mr);
  batch_views(d, bt);
  LLVMValueRef nb = gen_loop_begin(g, &lnb, gen_i64(g, k->np / (lanes * nr)), "colblock");
  LLVMValueRef n0 = mul(g, nb, lanes * nr);
  LLVMValueRef acc[MAX_MR][MAX_NR];
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) acc[r][j] = gen_var(g, zero, "acc");
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) LLVMBuildStore(B, zero, acc[r][j]);
  LLVMValueRef k4 = gen_loop_begin(g, &lk, gen_i64(g, k->kp / 4), "k4");
  LLVMValueRef s[MAX_NR];
  for (int j = 0; j < nr; j++) { /* block nb*nr + j, k group k4: lanes i32 */
    LLVMValueRef at = mul(g, add(g, mul(g, add(g, mul(g, nb, nr), gen_i64(g, j)), k->kp / 4), k4), lanes);
    s[j] = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, d->packS, at), "s");
    LLVMSetAlignment(s[j], 4);
  }
  for (int r = 0; r < mr; r++) {
    LLVMValueRef at = add(g, mul(g, add(g, m0, gen_i64(g, r)), k->kp / 4), k4);
    LLVMValueRef u32 = gen_load(g, g->i32, d->packU, at);
    LLVMValueRef u = LLVMBuildShuffleVector(B, LLVMBuildInsertElement(B, LLVMGetUndef(vi32), u32, LLVMConstInt(g->i32, 0, 0), ""),
                                            LLVMGetUndef(vi32), LLVMConstNull(vi32), "bcast");
    for (int j = 0; j < nr; j++) LLVMBuildStore(B, dot4(g, k, gen_get(g, acc[r][j]), u, s[j]), acc[r][j]);
  }
  gen_loop_end(g, &lk, 0);
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) {
      LLVMValueRef p = gen_at(g, g->i32, tile, gen_i64(g, (int64_t)(r * nr + j) * lanes));
      LLVMSetAlignment(LLVMBuildStore(B, gen_get(g, acc[r][j]), p), 4);
    }
  /* epilogue over the valid part of the tile */
  LLVMValueRef r = gen_loop_begin(g, &lr, gen_i64(g, mr), "r"), m = add(g, m0, r);
  LLVMValueRef c = gen_loop_begin(g, &lc, gen_i64(g, nr * lanes), "c"), n = add(g, n0, c);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(g->ctx, LLVMGetBasicBlockParent(LLVMGetInsertBlock(B)), "store");
  LLVMBasicBlockRef skip = LLVMAppendBasicBlockInContext(g->ctx, LLVMGetBasicBlockParent(LLVMGetInsertBlock(B)), "next");
  LLVMBuildCondBr(B, LLVMBuildAnd(B, lt(g, m, d->rows), lt(g, n, d->cols), ""), body, skip);
  LLVMPositionBuilderAtEnd(B, body);
  LLVMValueRef v = gen_load(g, g->i32, tile, add(g, mul(g, r, nr * lanes), c));
  v = LLVMBuildSub(B, v, gen_load(g, g->i32, d->corr, n), "");
  LLVMValueRef row = k->swap ? n : m, colx = k->swap ? m : n; /* of the product as stored */
  LLVMValueRef y = LLVMBuildFMul(B, LLVMBuildSIToFP(B, v, g->f32, ""), scale, "deq");
  y = LLVMBuildFAdd(B, y, bias ? gen_load(g, g->f32, bias, colx) : gen_f32c(g, 0.0f), "y");
  gen_store(g, y, out, add(g, mul(g, bt, k->M * k->N), add(g, mul(g, row, k->N), colx)));
  LLVMBuildBr(B, skip);
  LLVMPositionBuilderAtEnd(B, skip);
  gen_loop_end(g, &lc, 0);
  gen_loop_end(g, &lr, 0);
  gen_loop_end(g, &lnb, 0);
  gen_loop_end(g, &lrb, 0);
}
#undef B

LLVMValueRef gen_gemm_dot(Gen *g, const GemmKernel *k, const char *name) {
  SQ_ASSERT(k->mr <= MAX_MR && k->nr <= MAX_NR);
  LLVMValueRef fn = gen_kernel_function(g, name);
  Dot d = {g, k, gen_input(g, 0), gen_input(g, 1), NULL, NULL, NULL, k->swap ? k->N : k->M, k->swap ? k->M : k->N};
  LLVMValueRef out = gen_arg(g, KA_OUT), bias = k->bias ? gen_input(g, 2) : NULL;
  LLVMValueRef scale = LLVMBuildFMul(g->b, gen_input_scale(g, 0), gen_input_scale(g, 1), "scale");
  g->scratch = k->scratch;
  Phases ph;
  gen_phases(g, &ph, 2);
  pack(&d);
  gen_next_phase(g, &ph);
  compute(&d, out, scale, bias);
  LLVMBuildRetVoid(g->b);
  return fn;
}
