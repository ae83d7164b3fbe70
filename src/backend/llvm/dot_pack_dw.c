/* dot_pack_dw.c: convolution dW with x's patches on the U side (swap): U rows from runs of
 * input rows by masked vector loads and stores, S blocks of dy by one gather of 4 pixels per
 * lane. */
#include "dot.h"

#define B (g->b)

static LLVMValueRef splat_i32(Gen *g, int v, unsigned n) {
  LLVMValueRef c[64];
  for (unsigned i = 0; i < n; i++) c[i] = LLVMConstInt(g->i32, (unsigned long long)v, 0);
  return LLVMConstVector(c, n);
}

/* Stride 1, x as bytes: U row t = tap (c, kh, kw) over the chunk's pixels is, per output
 * row, a run of input row ih = oh + kh - p shifted by kw - p: one masked load and store of up
 * to ROW_LANES pixels (+128 when U is biased; the taps in the padding keep the row's 0 or 128). */
enum { ROW_LANES = 16 };
int dot_dw_rows_by_vector(const Dot *d) {
  const ConvKernel *k = d->ck;
  return k && k->kind == CONV_DW && d->p->swap && k->s == 1 && (d->p->unpacked || !kelem_packed(k->b));
}
void dot_pack_dw_patch_row(Dot *d, LLVMValueRef t, LLVMValueRef dst) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  LLVMTypeRef vb = LLVMVectorType(g->i8, ROW_LANES);
  LLVMValueRef c = div_(g, t, k->k * k->k), kh = rem_(g, div_(g, t, k->k), k->k), kw = rem_(g, t, k->k);
  LLVMValueRef lane = gen_iota(g, ROW_LANES), shift = add(g, kw, gen_i64(g, -k->p));
  Loop ln, lh;
  LLVMValueRef n0, nl = gen_loop_begin(g, &ln, dot_images(d, &n0), "n");
  LLVMValueRef x = d->p->unpacked ? d->xbytes : d->Bm, n = d->p->unpacked ? nl : add(g, n0, nl);
  LLVMValueRef plane = mul(g, add(g, mul(g, n, k->C), c), k->H);
  LLVMValueRef oh = gen_loop_begin(g, &lh, gen_i64(g, k->Ho), "oh"), ih = add(g, oh, add(g, kh, gen_i64(g, -k->p)));
  LLVMBasicBlockRef after;
  if_begin(g, in_range(g, ih, k->H), &after);
  for (int64_t w0 = 0; w0 < k->Wo; w0 += ROW_LANES) {
    LLVMValueRef iw = LLVMBuildAdd(B, gen_splat(g, add(g, shift, gen_i64(g, w0)), ROW_LANES), lane, "iw");
    LLVMValueRef zero = LLVMConstNull(LLVMVectorType(g->i64, ROW_LANES));
    LLVMValueRef inside = LLVMBuildICmp(B, LLVMIntSLT, lane, gen_splat(g, gen_i64(g, k->Wo - w0), ROW_LANES), "");
    LLVMValueRef from = and_(g, inside, and_(g, LLVMBuildICmp(B, LLVMIntSGE, iw, zero, ""),
                                             LLVMBuildICmp(B, LLVMIntSLT, iw, gen_splat(g, gen_i64(g, k->W), ROW_LANES), "")));
    LLVMValueRef src = gen_at(g, g->i8, x, add(g, mul(g, add(g, plane, ih), k->W), add(g, shift, gen_i64(g, w0))));
    LLVMValueRef v = gen_masked_load(g, vb, src, from, LLVMConstNull(vb));
    if (d->p->bias_u) v = LLVMBuildAdd(B, v, LLVMConstTrunc(splat_i32(g, 128, ROW_LANES), vb), "");
    gen_masked_store(g, v, gen_at(g, g->i8, dst, add(g, mul(g, add(g, mul(g, nl, k->Ho), oh), k->Wo), gen_i64(g, w0))), inside);
  }
  if_end(g, after);
  gen_loop_end(g, &lh, 0);
  gen_loop_end(g, &ln, 0);
}

/* dy (bytes) on the S side with whole groups of 4 pixels in an image: S block blk holds dy
 * channels blk * lanes + l, each k4 an i32 of 4 pixels per lane. With 16 lanes, every run of
 * 64 pixels of an image is 16 row loads (one per channel) and a 16 x 16 transpose of i32s in
 * registers; the rest of an image's pixels is one gather per k4 (Zen 4's gathers are slow). */
int dot_dw_dy_by_gather(const Dot *d) {
  const ConvKernel *k = d->ck;
  return k && k->kind == CONV_DW && d->p->swap && !kelem_packed(k->a) && (k->Ho * k->Wo) % 4 == 0;
}
/* S's k4 (of this block) = v, and its bytes into the column sums */
static void store_k4(Dot *d, LLVMValueRef blk, LLVMValueRef k4, LLVMValueRef v, LLVMValueRef sum) {
  Gen *g = d->g;
  LLVMValueRef to = gen_at(g, g->i8, d->packS, mul(g, add(g, mul(g, blk, d->p->kp / 4), k4), 4 * d->p->lanes));
  LLVMSetAlignment(LLVMBuildStore(B, v, to), 1);
  LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(g, sum), dot_byte_sums(g, v), ""), sum);
}
void dot_pack_dw_dy_block(Dot *d, LLVMValueRef blk) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  const DotPlan *p = d->p;
  int L = p->lanes;
  int64_t hw = k->Ho * k->Wo, per = hw / 4, runs = L == DOT_TR ? hw / (4 * DOT_TR) : 0; /* k4s an image, transposed runs */
  LLVMTypeRef vi = LLVMVectorType(g->i32, (unsigned)L);
  LLVMValueRef lane = gen_iota(g, (unsigned)L), o = LLVMBuildAdd(B, gen_splat(g, mul(g, blk, L), L), lane, "o");
  LLVMValueRef real = LLVMBuildICmp(B, LLVMIntSLT, o, gen_splat(g, gen_i64(g, k->O), L), "");
  LLVMValueRef rows = LLVMBuildMul(B, o, gen_splat(g, gen_i64(g, hw), L), ""); /* channel o's offset in an image */
  LLVMValueRef sum = gen_var(g, LLVMConstNull(vi), "colsum");
  LLVMBuildStore(B, LLVMConstNull(vi), sum);
  Loop ln, lr, l;
  LLVMValueRef n0, count = dot_images(d, &n0);
  LLVMValueRef nl = gen_loop_begin(g, &ln, count, "n"), n, dy = dot_dy_source(d, n0, nl, &n), image = mul(g, mul(g, n, k->O), hw);
  if (runs) {
    LLVMValueRef r = gen_loop_begin(g, &lr, gen_i64(g, runs), "run"), v[DOT_TR];
    LLVMValueRef first = add(g, image, mul(g, r, 4 * DOT_TR)); /* channel 0's pixel of the run */
    for (int c = 0; c < DOT_TR; c++) { /* channel blk * 16 + c, or zeros past the channels */
      LLVMValueRef oc = add(g, mul(g, blk, L), gen_i64(g, c)), in = lt(g, oc, k->O);
      LLVMValueRef at = gen_at(g, g->i8, dy, LLVMBuildSelect(B, in, add(g, first, mul(g, oc, hw)), gen_i64(g, 0), ""));
      v[c] = gen_masked_load(g, vi, at, gen_splat(g, in, (unsigned)L), LLVMConstNull(vi));
    }
    dot_transpose16(g, v);
    for (int j = 0; j < DOT_TR; j++) store_k4(d, blk, add(g, mul(g, nl, per), add(g, mul(g, r, DOT_TR), gen_i64(g, j))), v[j], sum);
    gen_loop_end(g, &lr, 0);
  }
  /* the image's other k4s: a gather each */
  LLVMValueRef k4 = add(g, gen_loop_begin(g, &l, gen_i64(g, per - runs * DOT_TR), "k4"), gen_i64(g, runs * DOT_TR));
  LLVMValueRef off = LLVMBuildAdd(B, gen_splat(g, add(g, image, mul(g, k4, 4)), L), rows, "");
  LLVMValueRef v = gen_masked_gather(g, vi, LLVMBuildGEP2(B, g->i8, dy, &off, 1, ""), real, LLVMConstNull(vi));
  store_k4(d, blk, add(g, mul(g, nl, per), k4), v, sum);
  gen_loop_end(g, &l, 0);
  gen_loop_end(g, &ln, 0);
  /* the chunk's k4s past its images (a partial last chunk): zeros */
  LLVMValueRef z = gen_loop_range(g, &l, mul(g, count, per), gen_i64(g, p->kp / 4), "k4");
  store_k4(d, blk, z, LLVMConstNull(vi), sum);
  gen_loop_end(g, &l, 0);
  LLVMValueRef total = gen_get(g, sum);
  for (int j = 0; j < L; j++)
    dot_store_correction(d, add(g, mul(g, blk, L), gen_i64(g, j)), LLVMBuildExtractElement(B, total, LLVMConstInt(g->i32, (unsigned)j, 0), ""));
}
#undef B
