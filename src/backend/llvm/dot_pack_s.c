/* dot_pack_s.c: S blocks (lanes = 16 columns, 4 consecutive k of a column in each i32 lane)
 * from columns that run along k in memory: 16 column loads of 64 k, a 16 x 16 transpose of
 * i32s in registers, 16 vector stores, instead of a byte store per element (and instead of the
 * gathers the vectorizer makes of that). Also the transpose itself, which dW's dy packing
 * shares. */
#include "dot.h"

#define B (g->b)


static LLVMValueRef splat_i32(Gen *g, int v, unsigned n) {
  LLVMValueRef c[DOT_TR];
  for (unsigned i = 0; i < n; i++) c[i] = LLVMConstInt(g->i32, (unsigned long long)v, 0);
  return LLVMConstVector(c, n);
}

LLVMValueRef dot_byte_sums(Gen *g, LLVMValueRef v) {
  unsigned n = LLVMGetVectorSize(LLVMTypeOf(v));
  LLVMValueRef s = NULL;
  for (int b = 0; b < 4; b++) {
    LLVMValueRef up = LLVMBuildShl(B, v, splat_i32(g, 24 - 8 * b, n), "");
    LLVMValueRef x = LLVMBuildAShr(B, up, splat_i32(g, 24, n), "");
    s = s ? LLVMBuildAdd(B, s, x, "") : x;
  }
  return s;
}

/* four rounds of two-vector shuffles; round b swaps the off-diagonal b x b blocks of each
 * 2b x 2b block */
void dot_transpose16(Gen *g, LLVMValueRef *v) {
  LLVMValueRef m0[DOT_TR], m1[DOT_TR];
  for (int b = 1; b < DOT_TR; b *= 2) {
    for (int j = 0; j < DOT_TR; j++) {
      m0[j] = LLVMConstInt(g->i32, (unsigned long long)(j & b ? DOT_TR + j - b : j), 0);
      m1[j] = LLVMConstInt(g->i32, (unsigned long long)(j & b ? DOT_TR + j : j + b), 0);
    }
    for (int i = 0; i < DOT_TR; i++) {
      if (i & b) continue;
      LLVMValueRef lo = v[i], hi = v[i + b];
      v[i] = LLVMBuildShuffleVector(B, lo, hi, LLVMConstVector(m0, DOT_TR), "");
      v[i + b] = LLVMBuildShuffleVector(B, lo, hi, LLVMConstVector(m1, DOT_TR), "");
    }
  }
}

/* S is GEMM operand `which` (B, or A when swapped): its element type, batch stride, stride
 * between columns and stride along k */
static void s_operand(const Dot *d, KElem *e, int64_t *bs, int64_t *stride, int64_t *sk) {
  const GemmKernel *k = d->gk;
  int which = d->p->swap ? 0 : 1;
  *e = which ? k->b : k->a, *bs = which ? k->b_bs : k->a_bs;
  *stride = which ? k->b_sn : k->a_sm, *sk = which ? k->b_sk : k->a_sk;
}

/* S columns by transposes (k contiguous), or by rows (columns contiguous, k strided): 16
 * columns of 4 rows of k are then 4 row loads and one byte shuffle per k4 */
enum { S_COLUMNS = 1, S_ROWS = 2 };
static int s_layout(const Dot *d) {
  KElem e;
  int64_t bs, stride, sk;
  if (!d->gk || d->p->lanes != DOT_TR) return 0;
  s_operand(d, &e, &bs, &stride, &sk);
  if (e != KE_I8 && e != KE_I4) return 0; /* S is vpdpbusd's signed side */
  if (sk == 1 && d->K >= 4 * DOT_TR) return !kelem_packed(e) || (bs % 2 == 0 && stride % 2 == 0) ? S_COLUMNS : 0;
  if (stride == 1) return !kelem_packed(e) || (bs % 2 == 0 && sk % 2 == 0) ? S_ROWS : 0; /* q4 rows start on a byte */
  return 0;
}
int dot_s_by_transpose(const Dot *d) { return s_layout(d) != 0; }

LLVMValueRef dot_unpack_nibbles(Gen *g, KElem e, LLVMValueRef v, unsigned nbytes) {
  LLVMValueRef lo = LLVMBuildAnd(B, v, gen_splat(g, LLVMConstInt(g->i8, 15, 0), nbytes), "");
  LLVMValueRef hi = LLVMBuildLShr(B, v, gen_splat(g, LLVMConstInt(g->i8, 4, 0), nbytes), "");
  LLVMValueRef idx[4 * DOT_TR];
  SQ_ASSERT(2 * nbytes <= 4 * DOT_TR);
  for (unsigned i = 0; i < 2 * nbytes; i++) idx[i] = LLVMConstInt(g->i32, (unsigned long long)(i / 2 + (i % 2) * nbytes), 0);
  v = LLVMBuildShuffleVector(B, lo, hi, LLVMConstVector(idx, 2 * nbytes), "");
  if (kelem_unsigned(e)) return v;
  LLVMValueRef eight = gen_splat(g, LLVMConstInt(g->i8, 8, 0), 2 * nbytes);
  return LLVMBuildSub(B, LLVMBuildXor(B, v, eight, ""), eight, "");
}

/* 64 k of column i from element `at` on: 64 bytes, or 32 q4 bytes as 64 signed nibbles */
static LLVMValueRef column_run(Dot *d, KElem e, LLVMValueRef src, LLVMValueRef at, LLVMValueRef in) {
  Gen *g = d->g;
  int packed = kelem_packed(e);
  LLVMTypeRef vt = LLVMVectorType(g->i8, packed ? 2 * DOT_TR : 4 * DOT_TR);
  LLVMValueRef byte = packed ? LLVMBuildSDiv(B, at, gen_i64(g, 2), "") : at;
  LLVMValueRef v = gen_masked_load(g, vt, gen_at(g, g->i8, src, LLVMBuildSelect(B, in, byte, gen_i64(g, 0), "")),
                                   gen_splat(g, in, LLVMGetVectorSize(vt)), LLVMConstNull(vt));
  if (packed) v = dot_unpack_nibbles(g, e, v, 2 * DOT_TR);
  return LLVMBuildBitCast(B, v, LLVMVectorType(g->i32, DOT_TR), "");
}

LLVMValueRef dot_row_run(Dot *d, KElem e, LLVMValueRef src, LLVMValueRef at, LLVMValueRef n) {
  Gen *g = d->g;
  LLVMTypeRef v16 = LLVMVectorType(g->i8, DOT_TR);
  LLVMValueRef lane = gen_iota(g, DOT_TR);
  if (!kelem_packed(e)) {
    LLVMValueRef mask = LLVMBuildICmp(B, LLVMIntSLT, lane, gen_splat(g, n, DOT_TR), "");
    return gen_masked_load(g, v16, gen_at(g, g->i8, src, at), mask, LLVMConstNull(v16));
  }
  LLVMTypeRef v8 = LLVMVectorType(g->i8, DOT_TR / 2);
  LLVMValueRef pairs = LLVMBuildSDiv(B, LLVMBuildAdd(B, n, gen_i64(g, 1), ""), gen_i64(g, 2), "");
  LLVMValueRef mask = LLVMBuildICmp(B, LLVMIntSLT, gen_iota(g, DOT_TR / 2), gen_splat(g, pairs, DOT_TR / 2), "");
  LLVMValueRef v = gen_masked_load(g, v8, gen_at(g, g->i8, src, LLVMBuildSDiv(B, at, gen_i64(g, 2), "")), mask, LLVMConstNull(v8));
  v = dot_unpack_nibbles(g, e, v, DOT_TR / 2);
  return LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, lane, gen_splat(g, n, DOT_TR), ""), v, LLVMConstNull(v16), "");
}

/* S_ROWS: k4 by k4, rows 4 k4 .. 4 k4 + 3 of the block's 16 columns, interleaved so that lane c
 * holds column c's four k */
static void pack_s_rows(Dot *d, LLVMValueRef blk, KElem e, int64_t bs, int64_t sk) {
  Gen *g = d->g;
  const DotPlan *p = d->p;
  int64_t blocks = p->np / DOT_TR;
  LLVMValueRef bt = div_(g, blk, blocks), nb = rem_(g, blk, blocks);
  dot_batch_views(d, bt);
  LLVMValueRef src = p->swap ? d->A : d->Bm, n0 = mul(g, nb, DOT_TR);
  LLVMValueRef left = LLVMBuildSub(B, gen_i64(g, d->cols), n0, "");
  LLVMValueRef n = LLVMBuildSelect(B, lt(g, left, DOT_TR), left, gen_i64(g, DOT_TR), ""); /* the block's real columns */
  n = LLVMBuildSelect(B, lt(g, n, 0), gen_i64(g, 0), n, "");
  LLVMTypeRef vi = LLVMVectorType(g->i32, DOT_TR);
  LLVMValueRef sum = gen_var(g, LLVMConstNull(vi), "colsum");
  LLVMBuildStore(B, LLVMConstNull(vi), sum);
  LLVMValueRef idx[4 * DOT_TR];
  for (int i = 0; i < 4 * DOT_TR; i++) idx[i] = LLVMConstInt(g->i32, (unsigned long long)((i % 4) * DOT_TR + i / 4), 0);
  Loop l;
  LLVMValueRef k4 = gen_loop_begin(g, &l, gen_i64(g, p->kp / 4), "k4"), r[4];
  for (int t = 0; t < 4; t++) { /* row k = 4 k4 + t, none past K */
    LLVMValueRef k = add(g, mul(g, k4, 4), gen_i64(g, t)), in = lt(g, k, d->K);
    LLVMValueRef at = add(g, add(g, mul(g, bt, bs), mul(g, LLVMBuildSelect(B, in, k, gen_i64(g, 0), ""), sk)), n0);
    r[t] = dot_row_run(d, e, src, at, LLVMBuildSelect(B, in, n, gen_i64(g, 0), ""));
  }
  LLVMValueRef cat[4 * DOT_TR];
  for (int i = 0; i < 4 * DOT_TR; i++) cat[i] = LLVMConstInt(g->i32, (unsigned long long)i, 0);
  LLVMValueRef r01 = LLVMBuildShuffleVector(B, r[0], r[1], LLVMConstVector(cat, 2 * DOT_TR), "");
  LLVMValueRef r23 = LLVMBuildShuffleVector(B, r[2], r[3], LLVMConstVector(cat, 2 * DOT_TR), "");
  LLVMValueRef rows = LLVMBuildShuffleVector(B, r01, r23, LLVMConstVector(cat, 4 * DOT_TR), "");
  LLVMValueRef v = LLVMBuildShuffleVector(B, rows, LLVMGetUndef(LLVMTypeOf(rows)), LLVMConstVector(idx, 4 * DOT_TR), "");
  v = LLVMBuildBitCast(B, v, vi, "");
  LLVMValueRef to = gen_at(g, g->i8, d->packS, mul(g, add(g, mul(g, nb, p->kp / 4), k4), 4 * DOT_TR));
  LLVMSetAlignment(LLVMBuildStore(B, v, to), 1);
  LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(g, sum), dot_byte_sums(g, v), ""), sum);
  gen_loop_end(g, &l, 0);
  LLVMValueRef total = gen_get(g, sum);
  for (int c = 0; c < DOT_TR; c++)
    dot_store_correction(d, add(g, n0, gen_i64(g, c)), LLVMBuildExtractElement(B, total, LLVMConstInt(g->i32, (unsigned)c, 0), ""));
}

void dot_pack_s_block(Dot *d, LLVMValueRef blk) {
  Gen *g = d->g;
  const DotPlan *p = d->p;
  KElem e;
  int64_t bs, stride, sk, runs = d->K / (4 * DOT_TR), blocks = p->np / DOT_TR;
  s_operand(d, &e, &bs, &stride, &sk);
  if (s_layout(d) == S_ROWS) {
    pack_s_rows(d, blk, e, bs, sk);
    return;
  }
  LLVMValueRef bt = div_(g, blk, blocks), nb = rem_(g, blk, blocks);
  dot_batch_views(d, bt);
  LLVMValueRef src = p->swap ? d->A : d->Bm;
  LLVMTypeRef vi = LLVMVectorType(g->i32, DOT_TR);
  LLVMValueRef sum = gen_var(g, LLVMConstNull(vi), "colsum"), at[DOT_TR], in[DOT_TR];
  LLVMBuildStore(B, LLVMConstNull(vi), sum);
  for (int c = 0; c < DOT_TR; c++) { /* column nb * 16 + c: where its k = 0 is, and whether it exists */
    LLVMValueRef i = add(g, mul(g, nb, DOT_TR), gen_i64(g, c));
    in[c] = lt(g, i, d->cols);
    at[c] = add(g, mul(g, bt, bs), mul(g, i, stride));
  }
  Loop lr, lk;
  LLVMValueRef r = gen_loop_begin(g, &lr, gen_i64(g, runs), "run"), v[DOT_TR];
  for (int c = 0; c < DOT_TR; c++) v[c] = column_run(d, e, src, add(g, at[c], mul(g, r, 4 * DOT_TR)), in[c]);
  dot_transpose16(g, v);
  for (int j = 0; j < DOT_TR; j++) { /* k4 = 16 r + j */
    LLVMValueRef k4 = add(g, mul(g, r, DOT_TR), gen_i64(g, j));
    LLVMValueRef to = gen_at(g, g->i8, d->packS, mul(g, add(g, mul(g, nb, p->kp / 4), k4), 4 * DOT_TR));
    LLVMSetAlignment(LLVMBuildStore(B, v[j], to), 1);
    LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(g, sum), dot_byte_sums(g, v[j]), ""), sum);
  }
  gen_loop_end(g, &lr, 0);
  LLVMValueRef total = gen_get(g, sum);
  for (int c = 0; c < DOT_TR; c++) { /* the rest of k element by element, 0 in the padding */
    LLVMValueRef i = add(g, mul(g, nb, DOT_TR), gen_i64(g, c)), s = gen_var(g, LLVMConstInt(g->i32, 0, 0), "rest");
    LLVMBuildStore(B, LLVMConstInt(g->i32, 0, 0), s);
    LLVMValueRef kk = add(g, gen_loop_begin(g, &lk, gen_i64(g, p->kp - runs * 4 * DOT_TR), "k"), gen_i64(g, runs * 4 * DOT_TR)), valid;
    LLVMValueRef have = and_(g, in[c], lt(g, kk, d->K));
    LLVMValueRef x = d->elem(d, p->swap ? 0 : 1, bt, LLVMBuildSelect(B, in[c], i, gen_i64(g, 0), ""),
                             LLVMBuildSelect(B, have, kk, gen_i64(g, 0), ""), &valid);
    x = LLVMBuildSelect(B, have, x, LLVMConstInt(g->i32, 0, 0), "");
    LLVMValueRef idx = add(g, mul(g, add(g, mul(g, add(g, mul(g, nb, p->kp / 4), LLVMBuildLShr(B, kk, gen_i64(g, 2), "")), DOT_TR),
                                        gen_i64(g, c)), 4), LLVMBuildAnd(B, kk, gen_i64(g, 3), ""));
    gen_store(g, LLVMBuildTrunc(B, x, g->i8, ""), d->packS, idx);
    LLVMBuildStore(B, add(g, gen_get(g, s), x), s);
    gen_loop_end(g, &lk, 0);
    LLVMValueRef col = add(g, LLVMBuildExtractElement(B, total, LLVMConstInt(g->i32, (unsigned)c, 0), ""), gen_get(g, s));
    dot_store_correction(d, i, col);
  }
}
#undef B
