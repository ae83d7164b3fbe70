/* dot_operands.c: the dot-product GEMM's operands: reading an element of A or B (strided
 * GEMM operands, convolution weights), walking a U row or S column element by element
 * (visit), the channels-last copy that forward and dx gather their patches from, and the
 * packing of U rows and S blocks (S: blocks of `lanes` columns, 4 consecutive k of a column in
 * each i32 lane, with the correction 128 * column sum when U is biased). */
#include <string.h>
#include "dot.h"

#define B (g->b)

/* ---- a GemmKernel: strided operands ---- */
LLVMValueRef dot_gemm_elem(Dot *d, int which, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef kk, LLVMValueRef *valid) {
  Gen *g = d->g;
  const GemmKernel *k = d->gk;
  *valid = NULL;
  if (which == 0) return gen_load_q(g, k->a, d->A, add(g, add(g, mul(g, bt, k->a_bs), mul(g, i, k->a_sm)), mul(g, kk, k->a_sk)));
  return gen_load_q(g, k->b, d->Bm, add(g, add(g, mul(g, bt, k->b_bs), mul(g, kk, k->b_sk)), mul(g, i, k->b_sn)));
}
LLVMValueRef dot_gemm_out(Dot *d, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef j) {
  Gen *g = d->g;
  return add(g, mul(g, bt, d->M * d->N), add(g, mul(g, i, d->N), j));
}

/* ---- a ConvKernel (one group): patches read the padding as zeros ---- */

LLVMValueRef dot_conv_elem(Dot *d, int which, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef kk, LLVMValueRef *valid) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  (void)bt;
  *valid = NULL;
  /* Only the weights come through here: the patches of forward and dx are packed from the
   * channels-last copy, and both operands of dw by their own walkers (walk()). */
  SQ_ASSERT(which == 1 && k->kind != CONV_DW);
  int64_t cin = k->kind == CONV_FWD ? k->C : k->O;
  /* forward: (kk = (kh, kw, c), o = i); dx: (kk = (kh, kw, o), c = i) */
  LLVMValueRef t = div_(g, kk, cin), ch = rem_(g, kk, cin); /* t = kh * k + kw */
  if (d->p->run) { /* kk = (kernel row i, j * cin + ch) in runs of `run` bytes: zero past k * cin */
    LLVMValueRef kr = div_(g, kk, d->p->run), r = rem_(g, kk, d->p->run);
    *valid = lt(g, r, k->k * cin);
    r = LLVMBuildSelect(B, *valid, r, gen_i64(g, 0), "");
    LLVMValueRef j = div_(g, r, cin);
    ch = rem_(g, r, cin);
    if (k->kind == CONV_DX) /* the padded dy's rows and columns run against the kernel's */
      kr = LLVMBuildSub(B, gen_i64(g, k->k - 1), kr, ""), j = LLVMBuildSub(B, gen_i64(g, k->k - 1), j, "");
    t = add(g, mul(g, kr, k->k), j);
  }
  LLVMValueRef oc = k->kind == CONV_FWD ? add(g, mul(g, i, k->C), ch) : add(g, mul(g, ch, k->C), i); /* o * C + c */
  return gen_load_q(g, k->b, d->Bm, add(g, mul(g, oc, k->k * k->k), t));
}

LLVMValueRef dot_conv_out(Dot *d, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef j) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  (void)bt;
  if (k->kind == CONV_DW) return add(g, mul(g, i, d->N), j); /* dw[o, (c, kh, kw)] */
  int fwd = k->kind == CONV_FWD;
  int64_t C = fwd ? k->O : k->C, HW = fwd ? k->Ho * k->Wo : k->H * k->W;
  return add(g, mul(g, add(g, mul(g, div_(g, i, HW), C), j), HW), rem_(g, i, HW)); /* [n, j, pixel] */
}

void dot_batch_views(Dot *d, LLVMValueRef bt) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  int64_t params = d->ck && d->ck->dy_bits ? kir_sq_params(d->ck->O) : 0; /* at the end, shared */
  LLVMValueRef off = d->slice ? mul(g, d->slice, (k->scratch - params) / k->slices) : mul(g, bt, k->scratch / d->batch);
  LLVMValueRef base = LLVMBuildGEP2(B, g->i8, gen_arg(g, KA_SCRATCH), &off, 1, "");
  int64_t u = k->u_tile || k->run ? 0 : k->mp * k->kp; /* bytes of packed U in scratch */
  d->packU = base;
  d->packS = gen_at(g, g->i8, base, gen_i64(g, u));
  d->corr = gen_at(g, g->i8, base, gen_i64(g, u + k->np * k->kp));
  d->accs = gen_at(g, g->i8, base, gen_i64(g, u + k->np * k->kp + 4 * k->np));
  d->xbytes = gen_at(g, g->i8, base, gen_i64(g, u + k->np * k->kp + 4 * k->np + 4 * k->mp * k->np));
  d->dybytes = gen_at(g, g->i8, d->xbytes, gen_i64(g, k->unpacked));
}

/* ---- walking one U row or S column: visit(kk, v) for kk in [0, K), v = 0 in the padding ---- */

static LLVMValueRef masked(Gen *g, LLVMValueRef valid, LLVMValueRef v) {
  return valid ? LLVMBuildSelect(B, valid, v, LLVMConstInt(g->i32, 0, 0), "") : v;
}

/* the two values of a q4 byte (numerics.h's nm_q4_get) as i32: element 2j, then 2j + 1 */
static void nibbles(Gen *g, KElem e, LLVMValueRef byte, LLVMValueRef v[2]) {
  LLVMValueRef b = LLVMBuildZExt(B, byte, g->i32, "");
  v[0] = gen_q4_value(g, e, LLVMBuildAnd(B, b, LLVMConstInt(g->i32, 15, 0), ""));
  v[1] = gen_q4_value(g, e, LLVMBuildLShr(B, b, LLVMConstInt(g->i32, 4, 0), ""));
}

/* any operand: one element function call per k; a q4 operand whose rows start on a byte and
 * run along k a byte at a time */
static void walk_generic(Dot *d, int which, LLVMValueRef bt, LLVMValueRef r, Visit visit, void *ctx) {
  Gen *g = d->g;
  Loop l;
  const GemmKernel *k = d->gk;
  if (k) {
    KElem e = which ? k->b : k->a;
    int64_t bs = which ? k->b_bs : k->a_bs, sr = which ? k->b_sn : k->a_sm, sk = which ? k->b_sk : k->a_sk;
    if (kelem_packed(e) && sk == 1 && d->K % 2 == 0 && bs % 2 == 0 && sr % 2 == 0) {
      LLVMValueRef row = gen_at(g, g->i8, which ? d->Bm : d->A, add(g, mul(g, bt, bs / 2), mul(g, r, sr / 2)));
      LLVMValueRef j = gen_loop_begin(g, &l, gen_i64(g, d->K / 2), "kpair"), v[2];
      nibbles(g, e, gen_load(g, g->i8, row, j), v);
      for (int i = 0; i < 2; i++) visit(d, ctx, add(g, mul(g, j, 2), gen_i64(g, i)), v[i]);
      gen_loop_end(g, &l, 0);
      return;
    }
  }
  LLVMValueRef kk = gen_loop_begin(g, &l, gen_i64(g, d->K), "k"), valid;
  LLVMValueRef v = d->elem(d, which, bt, r, kk, &valid);
  visit(d, ctx, kk, masked(g, valid, v));
  gen_loop_end(g, &l, 0);
}

/* dW's images in the chunk; *n0 is the first, the count is returned */
LLVMValueRef dot_images(Dot *d, LLVMValueRef *n0) {
  Gen *g = d->g;
  int64_t N = d->ck->N, per = d->p->chunk_images;
  *n0 = mul(g, d->chunk, per);
  LLVMValueRef left = LLVMBuildSub(B, gen_i64(g, N), *n0, "");
  return LLVMBuildSelect(B, lt(g, left, per), left, gen_i64(g, per), "");
}

/* output pixels (n, oh, ow) of x's tap t = (c, kh, kw): dw's patches along k */
static void walk_pixels(Dot *d, KElem e, LLVMValueRef x, LLVMValueRef t, Visit visit, void *ctx) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  LLVMValueRef c = div_(g, t, k->k * k->k), kh = rem_(g, div_(g, t, k->k), k->k), kw = rem_(g, t, k->k);
  Loop ln, lh, lw;
  LLVMValueRef n0, nl = gen_loop_begin(g, &ln, dot_images(d, &n0), "n"), n = add(g, n0, nl);
  if (d->p->unpacked) { /* the chunk's images as bytes */
    x = d->xbytes, n = nl;
    e = kelem_unsigned(e) ? KE_U8 : KE_I8;
  }
  LLVMValueRef plane = mul(g, add(g, mul(g, n, k->C), c), k->H);
  LLVMValueRef oh = gen_loop_begin(g, &lh, gen_i64(g, k->Ho), "oh");
  LLVMValueRef ih = add(g, mul(g, oh, k->s), add(g, kh, gen_i64(g, -k->p))), hv = in_range(g, ih, k->H);
  LLVMValueRef ow = gen_loop_begin(g, &lw, gen_i64(g, k->Wo), "ow");
  LLVMValueRef iw = add(g, mul(g, ow, k->s), add(g, kw, gen_i64(g, -k->p))), valid = and_(g, hv, in_range(g, iw, k->W));
  LLVMValueRef idx = LLVMBuildSelect(B, valid, add(g, mul(g, add(g, plane, ih), k->W), iw), gen_i64(g, 0), "");
  visit(d, ctx, add(g, mul(g, add(g, mul(g, nl, k->Ho), oh), k->Wo), ow), masked(g, valid, gen_load_q(g, e, x, idx)));
  gen_loop_end(g, &lw, 0);
  gen_loop_end(g, &lh, 0);
  gen_loop_end(g, &ln, 0);
}

/* dW, x in q4: the chunk's images of x as bytes, planes (image, channel) in parts */
void dot_unpack_x(Dot *d) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  int64_t hw = k->H * k->W;
  LLVMValueRef n0;
  LLVMValueRef count = dot_images(d, &n0);
  dot_batch_views(d, gen_i64(g, 0)); /* a convolution is one batch entry */
  Loop lp, le;
  LLVMBasicBlockRef after;
  if (kelem_packed(k->b) && k->C * hw % 2 == 0) { /* the chunk is one run of bytes: 32 at a time */
    enum { RUN = 64 }; /* elements a vector */
    LLVMTypeRef v32 = LLVMVectorType(g->i8, RUN / 2);
    LLVMValueRef total = mul(g, count, k->C * hw);
    LLVMValueRef e0 = mul(g, gen_loop_part(g, &lp, (d->p->chunk_images * k->C * hw + RUN - 1) / RUN, "run"), RUN);
    if_begin(g, lt_v(g, e0, total), &after);
    LLVMValueRef left = LLVMBuildSub(B, total, e0, ""), n = LLVMBuildSelect(B, lt(g, left, RUN), left, gen_i64(g, RUN), "");
    LLVMValueRef src = add(g, mul(g, n0, k->C * hw), e0);
    LLVMValueRef bytes = LLVMBuildSDiv(B, add(g, n, gen_i64(g, 1)), gen_i64(g, 2), "");
    LLVMValueRef v = gen_masked_load(g, v32, gen_at(g, g->i8, d->Bm, LLVMBuildSDiv(B, src, gen_i64(g, 2), "")),
                                     lt_v(g, gen_iota(g, RUN / 2), gen_splat(g, bytes, RUN / 2)), LLVMConstNull(v32));
    v = dot_unpack_nibbles(g, k->b, v, RUN / 2);
    gen_masked_store(g, v, gen_at(g, g->i8, d->xbytes, e0), lt_v(g, gen_iota(g, RUN), gen_splat(g, n, RUN)));
    if_end(g, after);
    gen_loop_end(g, &lp, 0);
    return;
  }
  LLVMValueRef pl = gen_loop_part(g, &lp, d->p->chunk_images * k->C, "plane");
  if_begin(g, lt_v(g, div_(g, pl, k->C), count), &after);
  LLVMValueRef src = mul(g, add(g, mul(g, n0, k->C), pl), hw), dst = mul(g, pl, hw);
  LLVMValueRef e = gen_loop_begin(g, &le, gen_i64(g, hw), "e");
  gen_store(g, LLVMBuildTrunc(B, gen_load_q(g, k->b, d->Bm, add(g, src, e)), g->i8, ""), d->xbytes, add(g, dst, e));
  gen_loop_end(g, &le, 0);
  if_end(g, after);
  gen_loop_end(g, &lp, 0);
}

/* dy of channel o at every output pixel: dw's other operand along k */
static void walk_dy_channel(Dot *d, LLVMValueRef o, Visit visit, void *ctx) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  int64_t hw = k->Ho * k->Wo;
  Loop ln, lp;
  LLVMValueRef n0, nl = gen_loop_begin(g, &ln, dot_images(d, &n0), "n"), n;
  LLVMValueRef dy = dot_dy_source(d, n0, nl, &n), base = mul(g, add(g, mul(g, n, k->O), o), hw);
  LLVMValueRef pix = gen_loop_begin(g, &lp, gen_i64(g, hw), "pix");
  visit(d, ctx, add(g, mul(g, nl, hw), pix), gen_load_q(g, k->a, dy, add(g, base, pix)));
  gen_loop_end(g, &lp, 0);
  gen_loop_end(g, &ln, 0);
}


/* ---- convolution forward and dx: patches from a channels-last copy ---- */
/* the activation whose patches U holds: x [N, C, H, W] (forward) or dy [N, O, Ho, Wo] (dx) */
static void patch_source(const ConvKernel *k, int64_t *cin, int64_t *hs, int64_t *ws) {
  int fwd = k->kind == CONV_FWD;
  *cin = fwd ? k->C : k->O, *hs = fwd ? k->H : k->Ho, *ws = fwd ? k->W : k->Wo;
}

static LLVMValueRef channels_last_copy(Dot *d) {
  Gen *g = d->g;
  return gen_at(g, g->i8, gen_arg(g, KA_SCRATCH), gen_i64(g, d->p->scratch - d->p->chlast));
}
/* byte offset of pixel (n, h, w) of the copy, which has `pad` pixels of padding on every side */
static LLVMValueRef copy_at(Dot *d, LLVMValueRef n, LLVMValueRef h, LLVMValueRef w) {
  Gen *g = d->g;
  int64_t cin, hs, ws, pad = d->p->pad;
  patch_source(d->ck, &cin, &hs, &ws);
  return mul(g, add(g, mul(g, add(g, mul(g, n, hs + 2 * pad), h), ws + 2 * pad), w), cin);
}

/* the 16 x 16 bytes v[i][j] as v[j][i]: four rounds of interleaving rows i and i + 8 */
static void transpose_bytes(Gen *g, LLVMValueRef *v) {
  LLVMValueRef lo[DOT_TR], hi[DOT_TR], t[DOT_TR];
  for (int i = 0; i < DOT_TR; i++) { /* a0 b0 a1 b1 ... a7 b7, then a8 b8 ... a15 b15 */
    lo[i] = LLVMConstInt(g->i32, (unsigned long long)(i / 2 + (i % 2) * DOT_TR), 0);
    hi[i] = LLVMConstInt(g->i32, (unsigned long long)(DOT_TR / 2 + i / 2 + (i % 2) * DOT_TR), 0);
  }
  LLVMValueRef mlo = LLVMConstVector(lo, DOT_TR), mhi = LLVMConstVector(hi, DOT_TR);
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < DOT_TR / 2; i++) {
      t[2 * i] = LLVMBuildShuffleVector(B, v[i], v[i + DOT_TR / 2], mlo, "");
      t[2 * i + 1] = LLVMBuildShuffleVector(B, v[i], v[i + DOT_TR / 2], mhi, "");
    }
    memcpy(v, t, sizeof t);
  }
}

/* row (n, h) of the source, copied to row hc of the copy by blocks of 16 channels x 16 pixels:
 * a vector load per channel, then a transpose in registers, a vector store per pixel */
static void channels_last_blocks(Dot *d, LLVMValueRef n, LLVMValueRef h, LLVMValueRef hc) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  int64_t cin, hs, ws, pad = d->p->pad;
  patch_source(k, &cin, &hs, &ws);
  LLVMValueRef dst = channels_last_copy(d);
  LLVMTypeRef v16 = LLVMVectorType(g->i8, DOT_TR);
  Loop lc, lw;
  LLVMValueRef c0 = mul(g, gen_loop_begin(g, &lc, gen_i64(g, cin / DOT_TR), "cblock"), DOT_TR);
  LLVMValueRef w0 = mul(g, gen_loop_begin(g, &lw, gen_i64(g, (ws + DOT_TR - 1) / DOT_TR), "wblock"), DOT_TR);
  LLVMValueRef left = LLVMBuildSub(B, gen_i64(g, ws), w0, "");
  LLVMValueRef count = LLVMBuildSelect(B, lt(g, left, DOT_TR), left, gen_i64(g, DOT_TR), "");
  LLVMValueRef v[DOT_TR];
  for (int c = 0; c < DOT_TR; c++) {
    LLVMValueRef at = add(g, mul(g, add(g, mul(g, add(g, mul(g, n, cin), add(g, c0, gen_i64(g, c))), hs), h), ws), w0);
    v[c] = dot_row_run(d, k->a, d->A, at, count);
    if (d->p->bias_u) v[c] = LLVMBuildAdd(B, v[c], gen_splat(g, LLVMConstInt(g->i8, 128, 0), DOT_TR), "");
  }
  transpose_bytes(g, v);
  for (int w = 0; w < DOT_TR; w++) {
    LLVMBasicBlockRef after;
    LLVMValueRef pw = add(g, w0, gen_i64(g, w));
    if_begin(g, lt(g, pw, ws), &after);
    LLVMValueRef to = gen_at(g, g->i8, dst, add(g, copy_at(d, n, hc, add(g, pw, gen_i64(g, pad))), c0));
    LLVMSetAlignment(LLVMBuildStore(B, LLVMBuildBitCast(B, v[w], v16, ""), to), 1);
    if_end(g, after);
  }
  gen_loop_end(g, &lw, 0);
  gen_loop_end(g, &lc, 0);
}

/* phase 0: src[n, c, h, w] -> copy[n, h + pad, w + pad, c] (+128 when U is biased), rows (n, h)
 * in parts; each row writes its padding on the left and right, the first and last rows of an
 * image the padding rows above and below */
void dot_channels_last(Dot *d) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  int64_t cin, hs, ws, pad = d->p->pad;
  patch_source(k, &cin, &hs, &ws);
  LLVMValueRef dst = channels_last_copy(d);
  Loop lr, lw, lc;
  LLVMValueRef nh = gen_loop_part(g, &lr, k->N * hs, "nh"), n = div_(g, nh, hs), h = rem_(g, nh, hs);
  if (pad) {
    LLVMValueRef padv = LLVMConstInt(g->i8, d->p->bias_u ? 128 : 0, 0), P = gen_i64(g, pad), hp = add(g, h, P);
    LLVMBuildMemSet(B, gen_at(g, g->i8, dst, copy_at(d, n, hp, gen_i64(g, 0))), padv, gen_i64(g, pad * cin), 1);
    LLVMBuildMemSet(B, gen_at(g, g->i8, dst, copy_at(d, n, hp, gen_i64(g, pad + ws))), padv, gen_i64(g, pad * cin), 1);
    int64_t rows = pad * (ws + 2 * pad) * cin;
    LLVMBasicBlockRef after;
    if_begin(g, LLVMBuildICmp(B, LLVMIntEQ, h, gen_i64(g, 0), ""), &after);
    LLVMBuildMemSet(B, gen_at(g, g->i8, dst, copy_at(d, n, gen_i64(g, 0), gen_i64(g, 0))), padv, gen_i64(g, rows), 1);
    if_end(g, after);
    if_begin(g, LLVMBuildICmp(B, LLVMIntEQ, h, gen_i64(g, hs - 1), ""), &after);
    LLVMBuildMemSet(B, gen_at(g, g->i8, dst, copy_at(d, n, gen_i64(g, pad + hs), gen_i64(g, 0))), padv, gen_i64(g, rows), 1);
    if_end(g, after);
  }
  LLVMValueRef hc = add(g, h, gen_i64(g, pad)); /* the row in the copy */
  if (cin % DOT_TR == 0 && (!kelem_packed(k->a) || ws % 2 == 0)) {
    channels_last_blocks(d, n, h, hc);
    gen_loop_end(g, &lr, 0);
    return;
  }
  if (kelem_packed(k->a) && ws % 2 == 0) { /* q4 rows of even width: a byte holds pixels w, w + 1 */
    LLVMValueRef c = gen_loop_begin(g, &lc, gen_i64(g, cin), "c"), v[2];
    LLVMValueRef src = gen_at(g, g->i8, d->A, mul(g, add(g, mul(g, add(g, mul(g, n, cin), c), hs), h), ws / 2));
    LLVMValueRef w2 = gen_loop_begin(g, &lw, gen_i64(g, ws / 2), "wpair");
    nibbles(g, k->a, gen_load(g, g->i8, src, w2), v);
    for (int i = 0; i < 2; i++) {
      LLVMValueRef b = LLVMBuildTrunc(B, v[i], g->i8, "");
      if (d->p->bias_u) b = LLVMBuildAdd(B, b, LLVMConstInt(g->i8, 128, 0), "");
      gen_store(g, b, dst, add(g, copy_at(d, n, hc, add(g, mul(g, w2, 2), gen_i64(g, pad + i))), c));
    }
    gen_loop_end(g, &lw, 0);
    gen_loop_end(g, &lc, 0);
    gen_loop_end(g, &lr, 0);
    return;
  }
  LLVMValueRef w = gen_loop_begin(g, &lw, gen_i64(g, ws), "w");
  LLVMValueRef out = copy_at(d, n, hc, add(g, w, gen_i64(g, pad)));
  LLVMValueRef c = gen_loop_begin(g, &lc, gen_i64(g, cin), "c");
  LLVMValueRef v = LLVMBuildTrunc(B, gen_load_q(g, k->a, d->A, add(g, mul(g, add(g, mul(g, add(g, mul(g, n, cin), c), hs), h), ws), w)), g->i8, "");
  if (d->p->bias_u) v = LLVMBuildAdd(B, v, LLVMConstInt(g->i8, 128, 0), ""); /* int8 + 128 as uint8, mod 256 */
  gen_store(g, v, dst, add(g, out, c));
  gen_loop_end(g, &lc, 0);
  gen_loop_end(g, &lw, 0);
  gen_loop_end(g, &lr, 0);
}

/* U row m: for each tap (kh, kw) whose source pixel exists, its cin channels, copied; taps in
 * the padding keep the row's padding value */
static void pack_patch_row(Dot *d, LLVMValueRef m, LLVMValueRef row) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  int64_t cin, hs, ws;
  patch_source(k, &cin, &hs, &ws);
  LLVMValueRef src = channels_last_copy(d);
  int fwd = k->kind == CONV_FWD;
  int64_t oh_n = fwd ? k->Ho : k->H, ow_n = fwd ? k->Wo : k->W; /* the row's pixel grid */
  LLVMValueRef n = div_(g, m, oh_n * ow_n), ph = rem_(g, div_(g, m, ow_n), oh_n), pw = rem_(g, m, ow_n);
  Loop lh, lw;
  LLVMValueRef kh = gen_loop_begin(g, &lh, gen_i64(g, k->k), "kh");
  LLVMValueRef kw = gen_loop_begin(g, &lw, gen_i64(g, k->k), "kw");
  LLVMValueRef sh, sw, valid;
  if (fwd) {
    sh = add(g, mul(g, ph, k->s), add(g, kh, gen_i64(g, -k->p)));
    sw = add(g, mul(g, pw, k->s), add(g, kw, gen_i64(g, -k->p)));
    valid = and_(g, in_range(g, sh, hs), in_range(g, sw, ws));
  } else { /* the output pixel (th, tw) / s whose window puts tap (kh, kw) on this input pixel */
    LLVMValueRef th = LLVMBuildSub(B, add(g, ph, gen_i64(g, k->p)), kh, ""), tw = LLVMBuildSub(B, add(g, pw, gen_i64(g, k->p)), kw, "");
    LLVMValueRef ge0 = and_(g, LLVMBuildICmp(B, LLVMIntSGE, th, gen_i64(g, 0), ""), LLVMBuildICmp(B, LLVMIntSGE, tw, gen_i64(g, 0), ""));
    LLVMValueRef on = and_(g, LLVMBuildICmp(B, LLVMIntEQ, rem_(g, th, k->s), gen_i64(g, 0), ""),
                           LLVMBuildICmp(B, LLVMIntEQ, rem_(g, tw, k->s), gen_i64(g, 0), ""));
    sh = div_(g, th, k->s), sw = div_(g, tw, k->s);
    valid = and_(g, and_(g, ge0, on), and_(g, lt(g, sh, hs), lt(g, sw, ws)));
  }
  LLVMBasicBlockRef after;
  if_begin(g, valid, &after);
  LLVMValueRef from = gen_at(g, g->i8, src, mul(g, add(g, mul(g, add(g, mul(g, n, hs), sh), ws), sw), cin));
  LLVMValueRef to = gen_at(g, g->i8, row, mul(g, add(g, mul(g, kh, k->k), kw), cin));
  LLVMBuildMemCpy(B, to, 1, from, 1, gen_i64(g, cin));
  if_end(g, after);
  gen_loop_end(g, &lw, 0);
  gen_loop_end(g, &lh, 0);
}

/* U in place: the copy's bytes where rows m0 .. m0 + mr - 1 start their first runs, stepping
 * (image, row, column) from m0's (one division a tile); rows past the last read the last:
 * their products are never stored */
void dot_run_starts(Dot *d, LLVMValueRef m0, int mr, LLVMValueRef *start) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  int64_t ho = k->kind == CONV_FWD ? k->Ho : k->H, wo = k->kind == CONV_FWD ? k->Wo : k->W; /* the rows' pixel grid */
  int64_t last = d->rows - 1;
  LLVMValueRef copy = channels_last_copy(d);
  LLVMValueRef at_last = copy_at(d, gen_i64(g, last / (ho * wo)), gen_i64(g, last / wo % ho), gen_i64(g, last % wo));
  LLVMValueRef n = div_(g, m0, ho * wo), ph = rem_(g, div_(g, m0, wo), ho), pw = rem_(g, m0, wo), zero = gen_i64(g, 0);
  for (int r = 0; r < mr; r++) {
    LLVMValueRef at = LLVMBuildSelect(B, lt(g, add(g, m0, gen_i64(g, r)), d->rows), copy_at(d, n, ph, pw), at_last, "");
    start[r] = gen_at(g, g->i8, copy, at);
    pw = add(g, pw, gen_i64(g, 1));
    LLVMValueRef wrap = LLVMBuildICmp(B, LLVMIntEQ, pw, gen_i64(g, wo), "");
    pw = LLVMBuildSelect(B, wrap, zero, pw, ""), ph = add(g, ph, LLVMBuildZExt(B, wrap, g->i64, ""));
    wrap = LLVMBuildICmp(B, LLVMIntEQ, ph, gen_i64(g, ho), "");
    ph = LLVMBuildSelect(B, wrap, zero, ph, ""), n = add(g, n, LLVMBuildZExt(B, wrap, g->i64, ""));
  }
}
int64_t dot_run_stride(const Dot *d) {
  int64_t cin, hs, ws;
  patch_source(d->ck, &cin, &hs, &ws);
  return (ws + 2 * d->p->pad) * cin;
}

/* U row r (u_side) or S column r of entry bt, r in range */
static void walk(Dot *d, int u_side, LLVMValueRef bt, LLVMValueRef r, Visit visit, void *ctx) {
  int which = u_side != d->p->swap ? 0 : 1; /* U is A unless swapped; S is B unless swapped */
  const ConvKernel *k = d->ck;
  if (k && k->kind == CONV_DW && which == 1) walk_pixels(d, k->b, d->Bm, r, visit, ctx);
  else if (k && k->kind == CONV_DW && which == 0) walk_dy_channel(d, r, visit, ctx);
  else walk_generic(d, which, bt, r, visit, ctx);
}


typedef struct { LLVMValueRef dst; } URow;
static void visit_u(Dot *d, void *ctx, LLVMValueRef kk, LLVMValueRef v) {
  Gen *g = d->g;
  if (d->p->bias_u) v = LLVMBuildAdd(B, v, LLVMConstInt(g->i32, 128, 0), "");
  gen_store(g, LLVMBuildTrunc(B, v, g->i8, ""), ((URow *)ctx)->dst, kk);
}

typedef struct { LLVMValueRef blk, lane, sum; } SCol;
/* column n, k = 4*k4 + t goes to ((n / lanes * kp/4 + k4) * lanes + n % lanes) * 4 + t */
static LLVMValueRef s_at(Dot *d, const SCol *s, LLVMValueRef kk) {
  Gen *g = d->g;
  LLVMValueRef k4 = LLVMBuildLShr(B, kk, gen_i64(g, 2), ""), t = LLVMBuildAnd(B, kk, gen_i64(g, 3), "");
  return add(g, mul(g, add(g, mul(g, add(g, mul(g, s->blk, d->p->kp / 4), k4), d->p->lanes), s->lane), 4), t);
}
static void visit_s(Dot *d, void *ctx, LLVMValueRef kk, LLVMValueRef v) {
  Gen *g = d->g;
  SCol *s = ctx;
  gen_store(g, LLVMBuildTrunc(B, v, g->i8, ""), d->packS, s_at(d, s, kk));
  LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(g, s->sum), v, ""), s->sum);
}

/* A forward patch row of small taps (cin * k <= 4 bytes a kernel row, a first layer's) whose
 * window lies inside the image: each kernel row is one 4-byte load and store (the bytes past
 * the run are overwritten by the next run or the padding), instead of a copy per tap */
static int small_taps(const Dot *d) {
  const ConvKernel *k = d->ck;
  return d->p->chlast && k->kind == CONV_FWD && k->C * k->k <= 4 && (k->k - 1) * k->k * k->C + 4 <= d->p->kp;
}
/* the top left input pixel (h0, w0) of patch row m's window, padding included */
static void window_origin(Dot *d, LLVMValueRef m, LLVMValueRef *h0, LLVMValueRef *w0) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  *h0 = add(g, mul(g, rem_(g, div_(g, m, k->Wo), k->Ho), k->s), gen_i64(g, -k->p));
  *w0 = add(g, mul(g, rem_(g, m, k->Wo), k->s), gen_i64(g, -k->p));
}
static LLVMValueRef window_inside(Dot *d, LLVMValueRef m) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  LLVMValueRef h0, w0;
  window_origin(d, m, &h0, &w0);
  return and_(g, and_(g, in_range(g, h0, k->H), in_range(g, add(g, h0, gen_i64(g, k->k - 1)), k->H)),
              and_(g, in_range(g, w0, k->W), in_range(g, add(g, w0, gen_i64(g, k->k - 1)), k->W)));
}
static void pack_small_taps(Dot *d, LLVMValueRef m, LLVMValueRef dst) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  LLVMValueRef src = channels_last_copy(d);
  LLVMValueRef n = div_(g, m, k->Ho * k->Wo), h0, w0;
  window_origin(d, m, &h0, &w0);
  for (int64_t kh = 0; kh < k->k; kh++) {
    LLVMValueRef at = mul(g, add(g, mul(g, add(g, mul(g, n, k->H), add(g, h0, gen_i64(g, kh))), k->W), w0), k->C);
    LLVMValueRef v = LLVMBuildLoad2(B, g->i32, gen_at(g, g->i8, src, at), "");
    LLVMSetAlignment(v, 1);
    LLVMSetAlignment(LLVMBuildStore(B, v, gen_at(g, g->i8, dst, gen_i64(g, kh * k->k * k->C))), 1);
  }
  for (int64_t i = d->K; i < d->p->kp; i++) gen_store(g, LLVMConstInt(g->i8, d->p->bias_u ? 128 : 0, 0), dst, gen_i64(g, i));
}

/* U row m of entry bt into dst (kp bytes): the padding value (0, or 128 when biased)
 * everywhere, then the row's elements when the row exists */
void dot_pack_u_row(Dot *d, LLVMValueRef bt, LLVMValueRef m, LLVMValueRef dst) {
  Gen *g = d->g;
  Loop l;
  LLVMBasicBlockRef after, done = NULL;
  if (small_taps(d)) {
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(B));
    LLVMBasicBlockRef fast = LLVMAppendBasicBlockInContext(g->ctx, fn, "inside"), slow = LLVMAppendBasicBlockInContext(g->ctx, fn, "edge");
    done = LLVMAppendBasicBlockInContext(g->ctx, fn, "packed");
    LLVMBuildCondBr(B, and_(g, lt(g, m, d->rows), window_inside(d, m)), fast, slow);
    LLVMPositionBuilderAtEnd(B, fast);
    pack_small_taps(d, m, dst);
    LLVMBuildBr(B, done);
    LLVMPositionBuilderAtEnd(B, slow);
  }
  LLVMValueRef kk = gen_loop_begin(g, &l, gen_i64(g, d->p->kp), "k");
  gen_store(g, LLVMConstInt(g->i8, d->p->bias_u ? 128 : 0, 0), dst, kk);
  gen_loop_end(g, &l, 0);
  if_begin(g, lt(g, m, d->rows), &after);
  URow u = {dst};
  if (d->p->chlast) pack_patch_row(d, m, dst);
  else if (dot_dw_rows_by_vector(d)) dot_pack_dw_patch_row(d, m, dst);
  else walk(d, 1, bt, m, visit_u, &u);
  if_end(g, after);
  if (done) {
    LLVMBuildBr(B, done);
    LLVMPositionBuilderAtEnd(B, done);
  }
}

void dot_store_correction(Dot *d, LLVMValueRef n, LLVMValueRef colsum) {
  Gen *g = d->g;
  LLVMValueRef corr = LLVMBuildMul(B, colsum, LLVMConstInt(g->i32, d->p->bias_u ? 128 : 0, 0), "");
  if (d->chunk) { /* a slice's chunks' corrections add up, as their products do */
    LLVMValueRef before = gen_load(g, g->i32, d->corr, n);
    corr = LLVMBuildAdd(B, corr, LLVMBuildSelect(B, d->first, LLVMConstInt(g->i32, 0, 0), before, ""), "");
  }
  gen_store(g, corr, d->corr, n);
}

/* U_transposed: U rows r0 .. r0 + 15 of entry bt, whose elements lie side by side in memory:
 * per 16 k, a load of the 16 rows' elements at each k and a byte transpose in registers, then
 * a store of 16 k per row (rows past the last hold the padding value) */
static void pack_u_block(Dot *d, LLVMValueRef bt, LLVMValueRef r0) {
  Gen *g = d->g;
  const GemmKernel *k = d->gk;
  int b = d->p->swap; /* U is B transposed when swapped, else A */
  KElem e = b ? k->b : k->a;
  int64_t bs = b ? k->b_bs : k->a_bs, sk = b ? k->b_sk : k->a_sk;
  LLVMValueRef src = b ? d->Bm : d->A, left = LLVMBuildSub(B, gen_i64(g, d->rows), r0, "");
  LLVMValueRef count = LLVMBuildSelect(B, lt(g, left, DOT_TR), left, gen_i64(g, DOT_TR), "");
  count = LLVMBuildSelect(B, lt(g, count, 0), gen_i64(g, 0), count, "");
  LLVMTypeRef v16 = LLVMVectorType(g->i8, DOT_TR);
  Loop lk;
  /* the block's first element at k = 0 (a block past the rows reads row 0, none of it kept) */
  LLVMValueRef first = add(g, mul(g, bt, bs), LLVMBuildSelect(B, lt(g, left, 1), gen_i64(g, 0), r0, ""));
  LLVMValueRef k0 = mul(g, gen_loop_begin(g, &lk, gen_i64(g, d->K / DOT_TR), "k16"), DOT_TR), v[DOT_TR];
  for (int i = 0; i < DOT_TR; i++) {
    LLVMValueRef at = add(g, first, mul(g, add(g, k0, gen_i64(g, i)), sk));
    v[i] = dot_row_run(d, e, src, at, count);
    if (d->p->bias_u) v[i] = LLVMBuildAdd(B, v[i], gen_splat(g, LLVMConstInt(g->i8, 128, 0), DOT_TR), "");
  }
  transpose_bytes(g, v);
  for (int j = 0; j < DOT_TR; j++) {
    LLVMBasicBlockRef after;
    LLVMValueRef r = add(g, r0, gen_i64(g, j));
    if_begin(g, lt(g, r, d->p->mp), &after);
    LLVMValueRef to = gen_at(g, g->i8, d->packU, add(g, mul(g, r, d->p->kp), k0));
    LLVMSetAlignment(LLVMBuildStore(B, LLVMBuildBitCast(B, v[j], v16, ""), to), 1);
    if_end(g, after);
  }
  gen_loop_end(g, &lk, 0);
}

void dot_pack(Dot *d) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  Loop l1, l2;
  LLVMBasicBlockRef after;
  if (k->u_transposed) { /* all of U, 16 rows at a time */
    int64_t blocks = (k->mp + DOT_TR - 1) / DOT_TR;
    LLVMValueRef blk = gen_loop_part(g, &l1, d->batch * blocks, "ublock");
    LLVMValueRef bt = LLVMBuildSDiv(B, blk, gen_i64(g, blocks), "bt");
    dot_batch_views(d, bt);
    pack_u_block(d, bt, mul(g, LLVMBuildSRem(B, blk, gen_i64(g, blocks), ""), DOT_TR));
    gen_loop_end(g, &l1, 0);
  } else if (!k->u_tile && !k->run) { /* U rows, all of them, before any tile */
    LLVMValueRef row = gen_loop_part(g, &l1, d->batch * k->mp, "urow");
    LLVMValueRef bt = LLVMBuildSDiv(B, row, gen_i64(g, k->mp), "bt"), m = LLVMBuildSRem(B, row, gen_i64(g, k->mp), "m");
    dot_batch_views(d, bt);
    dot_pack_u_row(d, bt, m, gen_at(g, g->i8, d->packU, mul(g, m, k->kp)));
    gen_loop_end(g, &l1, 0);
  }
  /* S columns: zeros, then the column's elements and their sum. Parts take whole blocks of
   * `lanes` columns: a block's columns interleave in the same cache lines. */
  Loop l3;
  LLVMValueRef blk = gen_loop_part(g, &l1, d->batch * (k->np / k->lanes), "sblock");
  if (dot_dw_dy_by_gather(d)) {
    dot_batch_views(d, gen_i64(g, 0)); /* a convolution is one batch entry */
    dot_pack_dw_dy_block(d, blk);
    gen_loop_end(g, &l1, 0);
    return;
  }
  if (dot_s_by_transpose(d)) {
    dot_pack_s_block(d, blk);
    gen_loop_end(g, &l1, 0);
    return;
  }
  LLVMValueRef col = add(g, mul(g, blk, k->lanes), gen_loop_begin(g, &l3, gen_i64(g, k->lanes), "lane"));
  LLVMValueRef bt = LLVMBuildSDiv(B, col, gen_i64(g, k->np), "bt");
  LLVMValueRef n = LLVMBuildSRem(B, col, gen_i64(g, k->np), "n");
  dot_batch_views(d, bt);
  SCol s = {LLVMBuildSDiv(B, n, gen_i64(g, k->lanes), ""), LLVMBuildSRem(B, n, gen_i64(g, k->lanes), ""), NULL};
  s.sum = gen_var(g, LLVMConstInt(g->i32, 0, 0), "colsum");
  LLVMBuildStore(B, LLVMConstInt(g->i32, 0, 0), s.sum);
  LLVMValueRef kk = gen_loop_begin(g, &l2, gen_i64(g, k->kp), "k");
  gen_store(g, LLVMConstInt(g->i8, 0, 0), d->packS, s_at(d, &s, kk));
  gen_loop_end(g, &l2, 0);
  if_begin(g, lt(g, n, d->cols), &after);
  walk(d, 0, bt, n, visit_s, &s);
  if_end(g, after);
  dot_store_correction(d, n, gen_get(g, s.sum));
  gen_loop_end(g, &l3, 0);
  gen_loop_end(g, &l1, 0);
}
#undef B
