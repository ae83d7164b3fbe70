/* gemm_dot.c: integer GEMMs and convolutions on the target's 4-byte dot-product instruction,
 * emitted explicitly (LLVM does not form vpdpbusd, vpmaddubsw + vpmaddwd or sdot from loops).
 * Convolutions forward and dx first copy their activation channels-last (a phase of its own).
 * A phase packs the vector side S as blocks of `lanes` columns holding 4 consecutive k of a
 * column in each i32 lane, with the correction 128 * column sum of S when U is biased. The
 * broadcast side U (rows of kp bytes, +128 when it is signed and the ISA wants it unsigned) is
 * packed in that phase too, or, when mr of its rows fit on the stack, per block of mr rows
 * right before the block's tiles (an implicit GEMM: no patch matrix). The last phase: each part
 * takes blocks of mr rows; a tile of mr x nr vector accumulators walks k four bytes at a time;
 * the epilogue subtracts the correction and dequantizes as the reference does ((float)acc *
 * scale + bias, or + 0.0, then the relu the fuse pass folded in). Convolution dW runs these
 * phases once per chunk of images, keeping its accumulators in scratch. Integer sums are exact
 * in any order, so the bits equal the reference's. */
#include <string.h>
#include <llvm-c/Core.h>
#include "gen.h"

#define B (g->b)
static LLVMValueRef add(Gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(B, a, b, ""); }
static LLVMValueRef mul(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildMul(B, a, gen_i64(g, b), ""); }
static LLVMValueRef lt(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildICmp(B, LLVMIntSLT, a, gen_i64(g, b), ""); }
static LLVMValueRef lt_v(Gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildICmp(B, LLVMIntSLT, a, b, ""); }

/* only when cond: the builder continues after it */
static void if_begin(Gen *g, LLVMValueRef cond, LLVMBasicBlockRef *after) {
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(B));
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(g->ctx, fn, "then");
  *after = LLVMAppendBasicBlockInContext(g->ctx, fn, "after");
  LLVMBuildCondBr(B, cond, then, *after);
  LLVMPositionBuilderAtEnd(B, then);
}
static void if_end(Gen *g, LLVMBasicBlockRef after) {
  LLVMBuildBr(B, after);
  LLVMPositionBuilderAtEnd(B, after);
}

/* C[b] = A[b] (M x K) * B[b] (K x N): how to read an operand element and where C goes */
typedef struct Dot Dot;
struct Dot {
  Gen *g;
  const DotPlan *p;
  int64_t batch, M, N, K;
  /* A(i, kk) (which = 0) or B(kk, i) (which = 1) of entry bt as i32, for indices in range;
   * *valid, when set, says whether the element exists (a patch tap in the padding does not) */
  LLVMValueRef (*elem)(Dot *d, int which, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef kk, LLVMValueRef *valid);
  LLVMValueRef (*out_index)(Dot *d, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef j); /* of C(i, j) */
  const GemmKernel *gk; /* the kernel: one of the two */
  const ConvKernel *ck;
  LLVMValueRef A, Bm, packU, packS, corr; /* packU/packS/corr: this batch entry's */
  LLVMValueRef accs;                      /* dW's int32 accumulators, tile after tile */
  LLVMValueRef xbytes;                    /* dW's chunk of x unpacked from q4 */
  LLVMValueRef chunk;                     /* i64: dW's chunk, else NULL */
  int64_t rows, cols;                     /* of the computed product (transposed when swap) */
};

/* ---- a GemmKernel: strided operands ---- */
static LLVMValueRef gemm_elem(Dot *d, int which, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef kk, LLVMValueRef *valid) {
  Gen *g = d->g;
  const GemmKernel *k = d->gk;
  *valid = NULL;
  if (which == 0) return gen_load_q(g, k->a, d->A, add(g, add(g, mul(g, bt, k->a_bs), mul(g, i, k->a_sm)), mul(g, kk, k->a_sk)));
  return gen_load_q(g, k->b, d->Bm, add(g, add(g, mul(g, bt, k->b_bs), mul(g, kk, k->b_sk)), mul(g, i, k->b_sn)));
}
static LLVMValueRef gemm_out(Dot *d, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef j) {
  Gen *g = d->g;
  return add(g, mul(g, bt, d->M * d->N), add(g, mul(g, i, d->N), j));
}

/* ---- a ConvKernel (one group): patches read the padding as zeros ---- */
static LLVMValueRef in_range(Gen *g, LLVMValueRef v, int64_t n) {
  return LLVMBuildAnd(B, LLVMBuildICmp(B, LLVMIntSGE, v, gen_i64(g, 0), ""), lt(g, v, n), "");
}
static LLVMValueRef and_(Gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAnd(B, a, b, ""); }
static LLVMValueRef div_(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildSDiv(B, a, gen_i64(g, b), ""); }
static LLVMValueRef rem_(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildSRem(B, a, gen_i64(g, b), ""); }

static LLVMValueRef conv_elem(Dot *d, int which, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef kk, LLVMValueRef *valid) {
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
  LLVMValueRef oc = k->kind == CONV_FWD ? add(g, mul(g, i, k->C), ch) : add(g, mul(g, ch, k->C), i); /* o * C + c */
  return gen_load_q(g, k->b, d->Bm, add(g, mul(g, oc, k->k * k->k), t));
}

static LLVMValueRef conv_out(Dot *d, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef j) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  (void)bt;
  if (k->kind == CONV_DW) return add(g, mul(g, i, d->N), j); /* dw[o, (c, kh, kw)] */
  int fwd = k->kind == CONV_FWD;
  int64_t C = fwd ? k->O : k->C, HW = fwd ? k->Ho * k->Wo : k->H * k->W;
  return add(g, mul(g, add(g, mul(g, div_(g, i, HW), C), j), HW), rem_(g, i, HW)); /* [n, j, pixel] */
}

static void batch_views(Dot *d, LLVMValueRef bt) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  LLVMValueRef off = mul(g, bt, k->scratch / d->batch);
  LLVMValueRef base = LLVMBuildGEP2(B, g->i8, gen_arg(g, KA_SCRATCH), &off, 1, "");
  int64_t u = k->u_tile ? 0 : k->mp * k->kp; /* bytes of packed U in scratch */
  d->packU = base;
  d->packS = gen_at(g, g->i8, base, gen_i64(g, u));
  d->corr = gen_at(g, g->i8, base, gen_i64(g, u + k->np * k->kp));
  d->accs = gen_at(g, g->i8, base, gen_i64(g, u + k->np * k->kp + 4 * k->np));
  d->xbytes = gen_at(g, g->i8, base, gen_i64(g, u + k->np * k->kp + 4 * k->np + 4 * k->mp * k->np));
}

/* ---- walking one U row or S column: visit(kk, v) for kk in [0, K), v = 0 in the padding ---- */
typedef void (*Visit)(Dot *d, void *ctx, LLVMValueRef kk, LLVMValueRef v);

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
static LLVMValueRef images(Dot *d, LLVMValueRef *n0) {
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
  LLVMValueRef n0, nl = gen_loop_begin(g, &ln, images(d, &n0), "n"), n = add(g, n0, nl);
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
static void unpack_x(Dot *d) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  int64_t hw = k->H * k->W;
  LLVMValueRef n0;
  LLVMValueRef count = images(d, &n0);
  batch_views(d, gen_i64(g, 0)); /* a convolution is one batch entry */
  Loop lp, le;
  LLVMBasicBlockRef after;
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
  LLVMValueRef n0, nl = gen_loop_begin(g, &ln, images(d, &n0), "n"), n = add(g, n0, nl);
  LLVMValueRef base = mul(g, add(g, mul(g, n, k->O), o), hw);
  LLVMValueRef pix = gen_loop_begin(g, &lp, gen_i64(g, hw), "pix");
  visit(d, ctx, add(g, mul(g, nl, hw), pix), gen_load_q(g, k->a, d->A, add(g, base, pix)));
  gen_loop_end(g, &lp, 0);
  gen_loop_end(g, &ln, 0);
}


/* ---- convolution forward and dx: patches from a channels-last copy ---- */
/* the activation whose patches U holds: x [N, C, H, W] (forward) or dy [N, O, Ho, Wo] (dx) */
static void patch_source(const ConvKernel *k, int64_t *cin, int64_t *hs, int64_t *ws) {
  int fwd = k->kind == CONV_FWD;
  *cin = fwd ? k->C : k->O, *hs = fwd ? k->H : k->Ho, *ws = fwd ? k->W : k->Wo;
}

/* phase 0: src[n, c, h, w] -> copy[n, h, w, c] (+128 when U is biased), rows (n, h) in parts */
static void channels_last(Dot *d) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  int64_t cin, hs, ws;
  patch_source(k, &cin, &hs, &ws);
  LLVMValueRef dst = gen_at(g, g->i8, gen_arg(g, KA_SCRATCH), gen_i64(g, d->p->scratch - d->p->chlast));
  Loop lr, lw, lc;
  LLVMValueRef nh = gen_loop_part(g, &lr, k->N * hs, "nh"), n = div_(g, nh, hs), h = rem_(g, nh, hs);
  if (kelem_packed(k->a) && ws % 2 == 0) { /* q4 rows of even width: a byte holds pixels w, w + 1 */
    LLVMValueRef c = gen_loop_begin(g, &lc, gen_i64(g, cin), "c"), v[2];
    LLVMValueRef src = gen_at(g, g->i8, d->A, mul(g, add(g, mul(g, add(g, mul(g, n, cin), c), hs), h), ws / 2));
    LLVMValueRef w2 = gen_loop_begin(g, &lw, gen_i64(g, ws / 2), "wpair");
    nibbles(g, k->a, gen_load(g, g->i8, src, w2), v);
    for (int i = 0; i < 2; i++) {
      LLVMValueRef b = LLVMBuildTrunc(B, v[i], g->i8, "");
      if (d->p->bias_u) b = LLVMBuildAdd(B, b, LLVMConstInt(g->i8, 128, 0), "");
      gen_store(g, b, dst, add(g, mul(g, add(g, mul(g, nh, ws), add(g, mul(g, w2, 2), gen_i64(g, i))), cin), c));
    }
    gen_loop_end(g, &lw, 0);
    gen_loop_end(g, &lc, 0);
    gen_loop_end(g, &lr, 0);
    return;
  }
  LLVMValueRef w = gen_loop_begin(g, &lw, gen_i64(g, ws), "w");
  LLVMValueRef out = mul(g, add(g, mul(g, nh, ws), w), cin);
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
  LLVMValueRef src = gen_at(g, g->i8, gen_arg(g, KA_SCRATCH), gen_i64(g, d->p->scratch - d->p->chlast));
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

/* ---- dW with x on the U side (swap): vector packing ---- */
static LLVMValueRef iota(Gen *g, int n) {
  LLVMValueRef v[64];
  for (int i = 0; i < n; i++) v[i] = gen_i64(g, i);
  return LLVMConstVector(v, (unsigned)n);
}
static LLVMValueRef splat_i32(Gen *g, int v, unsigned n) {
  LLVMValueRef c[64];
  for (unsigned i = 0; i < n; i++) c[i] = LLVMConstInt(g->i32, (unsigned long long)v, 0);
  return LLVMConstVector(c, n);
}
static LLVMValueRef splat_i64(Gen *g, LLVMValueRef v, int n) {
  LLVMTypeRef vt = LLVMVectorType(g->i64, (unsigned)n);
  LLVMValueRef one = LLVMBuildInsertElement(B, LLVMGetUndef(vt), v, LLVMConstInt(g->i32, 0, 0), "");
  return LLVMBuildShuffleVector(B, one, LLVMGetUndef(vt), LLVMConstNull(LLVMVectorType(g->i32, (unsigned)n)), "");
}

/* Stride 1, x as bytes: U row t = tap (c, kh, kw) over the chunk's pixels is, per output
 * row, a run of input row ih = oh + kh - p shifted by kw - p: one masked load and store of up
 * to ROW_LANES pixels (+128 when U is biased; the taps in the padding keep the row's 0 or 128). */
enum { ROW_LANES = 16 };
static int dw_rows_by_vector(const Dot *d) {
  const ConvKernel *k = d->ck;
  return k && k->kind == CONV_DW && d->p->swap && k->s == 1 && (d->p->unpacked || !kelem_packed(k->b));
}
static void pack_dw_patch_row(Dot *d, LLVMValueRef t, LLVMValueRef dst) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  LLVMTypeRef vb = LLVMVectorType(g->i8, ROW_LANES);
  LLVMValueRef c = div_(g, t, k->k * k->k), kh = rem_(g, div_(g, t, k->k), k->k), kw = rem_(g, t, k->k);
  LLVMValueRef lane = iota(g, ROW_LANES), shift = add(g, kw, gen_i64(g, -k->p));
  Loop ln, lh;
  LLVMValueRef n0, nl = gen_loop_begin(g, &ln, images(d, &n0), "n");
  LLVMValueRef x = d->p->unpacked ? d->xbytes : d->Bm, n = d->p->unpacked ? nl : add(g, n0, nl);
  LLVMValueRef plane = mul(g, add(g, mul(g, n, k->C), c), k->H);
  LLVMValueRef oh = gen_loop_begin(g, &lh, gen_i64(g, k->Ho), "oh"), ih = add(g, oh, add(g, kh, gen_i64(g, -k->p)));
  LLVMBasicBlockRef after;
  if_begin(g, in_range(g, ih, k->H), &after);
  for (int64_t w0 = 0; w0 < k->Wo; w0 += ROW_LANES) {
    LLVMValueRef iw = LLVMBuildAdd(B, splat_i64(g, add(g, shift, gen_i64(g, w0)), ROW_LANES), lane, "iw");
    LLVMValueRef zero = LLVMConstNull(LLVMVectorType(g->i64, ROW_LANES));
    LLVMValueRef inside = LLVMBuildICmp(B, LLVMIntSLT, lane, splat_i64(g, gen_i64(g, k->Wo - w0), ROW_LANES), "");
    LLVMValueRef from = and_(g, inside, and_(g, LLVMBuildICmp(B, LLVMIntSGE, iw, zero, ""),
                                             LLVMBuildICmp(B, LLVMIntSLT, iw, splat_i64(g, gen_i64(g, k->W), ROW_LANES), "")));
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
 * channels blk * lanes + l; each k4 is one gather of an i32 (4 pixels) per lane. */
static int dw_dy_by_gather(const Dot *d) {
  const ConvKernel *k = d->ck;
  return k && k->kind == CONV_DW && d->p->swap && !kelem_packed(k->a) && (k->Ho * k->Wo) % 4 == 0;
}
/* the sum of an i32's four signed bytes, per lane */
static LLVMValueRef byte_sums(Gen *g, LLVMValueRef v) {
  LLVMTypeRef vt = LLVMTypeOf(v);
  unsigned n = LLVMGetVectorSize(vt);
  LLVMValueRef s = NULL;
  for (int b = 0; b < 4; b++) {
    LLVMValueRef up = LLVMBuildShl(B, v, splat_i32(g, 24 - 8 * b, n), "");
    LLVMValueRef x = LLVMBuildAShr(B, up, splat_i32(g, 24, n), "");
    s = s ? LLVMBuildAdd(B, s, x, "") : x;
  }
  return s;
}
static void pack_dw_dy_block(Dot *d, LLVMValueRef blk) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  const DotPlan *p = d->p;
  int L = p->lanes;
  int64_t hw = k->Ho * k->Wo;
  LLVMTypeRef vi = LLVMVectorType(g->i32, (unsigned)L);
  LLVMValueRef lane = iota(g, L), o = LLVMBuildAdd(B, splat_i64(g, mul(g, blk, L), L), lane, "o");
  LLVMValueRef real = LLVMBuildICmp(B, LLVMIntSLT, o, splat_i64(g, gen_i64(g, k->O), L), "");
  LLVMValueRef rows = LLVMBuildMul(B, o, splat_i64(g, gen_i64(g, hw), L), ""); /* channel o's offset in an image */
  LLVMValueRef sum = gen_var(g, LLVMConstNull(vi), "colsum");
  LLVMBuildStore(B, LLVMConstNull(vi), sum);
  Loop l;
  LLVMValueRef n0, count = images(d, &n0);
  LLVMValueRef k4 = gen_loop_begin(g, &l, gen_i64(g, p->kp / 4), "k4"), nl = div_(g, k4, hw / 4);
  LLVMValueRef base = add(g, mul(g, mul(g, add(g, n0, nl), k->O), hw), mul(g, rem_(g, k4, hw / 4), 4));
  LLVMValueRef mask = LLVMBuildAnd(B, real, LLVMBuildICmp(B, LLVMIntSLT, splat_i64(g, nl, L), splat_i64(g, count, L), ""), "");
  LLVMValueRef off = LLVMBuildAdd(B, splat_i64(g, base, L), rows, "");
  LLVMValueRef ptrs = LLVMBuildGEP2(B, g->i8, d->A, &off, 1, "");
  LLVMValueRef v = gen_masked_gather(g, vi, ptrs, mask, LLVMConstNull(vi));
  LLVMValueRef to = gen_at(g, g->i8, d->packS, mul(g, add(g, mul(g, blk, p->kp / 4), k4), 4 * L));
  LLVMSetAlignment(LLVMBuildStore(B, v, to), 1);
  LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(g, sum), byte_sums(g, v), ""), sum);
  gen_loop_end(g, &l, 0);
  LLVMValueRef total = gen_get(g, sum);
  for (int j = 0; j < L; j++) { /* the correction per column, as pack() stores it */
    LLVMValueRef n = add(g, mul(g, blk, L), gen_i64(g, j));
    LLVMValueRef corr = LLVMBuildMul(B, LLVMBuildExtractElement(B, total, LLVMConstInt(g->i32, (unsigned)j, 0), ""),
                                     LLVMConstInt(g->i32, p->bias_u ? 128 : 0, 0), "");
    LLVMValueRef before = gen_load(g, g->i32, d->corr, n);
    corr = LLVMBuildAdd(B, corr, LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntEQ, d->chunk, gen_i64(g, 0), ""),
                                                 LLVMConstInt(g->i32, 0, 0), before, ""), "");
    gen_store(g, corr, d->corr, n);
  }
}

/* U row m of entry bt into dst (kp bytes): the padding value (0, or 128 when biased)
 * everywhere, then the row's elements when the row exists */
static void pack_u_row(Dot *d, LLVMValueRef bt, LLVMValueRef m, LLVMValueRef dst) {
  Gen *g = d->g;
  Loop l;
  LLVMBasicBlockRef after;
  LLVMValueRef kk = gen_loop_begin(g, &l, gen_i64(g, d->p->kp), "k");
  gen_store(g, LLVMConstInt(g->i8, d->p->bias_u ? 128 : 0, 0), dst, kk);
  gen_loop_end(g, &l, 0);
  if_begin(g, lt(g, m, d->rows), &after);
  URow u = {dst};
  if (d->p->chlast) pack_patch_row(d, m, dst);
  else if (dw_rows_by_vector(d)) pack_dw_patch_row(d, m, dst);
  else walk(d, 1, bt, m, visit_u, &u);
  if_end(g, after);
}

static void pack(Dot *d) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  Loop l1, l2;
  LLVMBasicBlockRef after;
  if (!k->u_tile) { /* U rows, all of them, before any tile */
    LLVMValueRef row = gen_loop_part(g, &l1, d->batch * k->mp, "urow");
    LLVMValueRef bt = LLVMBuildSDiv(B, row, gen_i64(g, k->mp), "bt"), m = LLVMBuildSRem(B, row, gen_i64(g, k->mp), "m");
    batch_views(d, bt);
    pack_u_row(d, bt, m, gen_at(g, g->i8, d->packU, mul(g, m, k->kp)));
    gen_loop_end(g, &l1, 0);
  }
  /* S columns: zeros, then the column's elements and their sum. Parts take whole blocks of
   * `lanes` columns: a block's columns interleave in the same cache lines. */
  Loop l3;
  LLVMValueRef blk = gen_loop_part(g, &l1, d->batch * (k->np / k->lanes), "sblock");
  if (dw_dy_by_gather(d)) {
    batch_views(d, gen_i64(g, 0)); /* a convolution is one batch entry */
    pack_dw_dy_block(d, blk);
    gen_loop_end(g, &l1, 0);
    return;
  }
  LLVMValueRef col = add(g, mul(g, blk, k->lanes), gen_loop_begin(g, &l3, gen_i64(g, k->lanes), "lane"));
  LLVMValueRef bt = LLVMBuildSDiv(B, col, gen_i64(g, k->np), "bt");
  LLVMValueRef n = LLVMBuildSRem(B, col, gen_i64(g, k->np), "n");
  batch_views(d, bt);
  SCol s = {LLVMBuildSDiv(B, n, gen_i64(g, k->lanes), ""), LLVMBuildSRem(B, n, gen_i64(g, k->lanes), ""), NULL};
  s.sum = gen_var(g, LLVMConstInt(g->i32, 0, 0), "colsum");
  LLVMBuildStore(B, LLVMConstInt(g->i32, 0, 0), s.sum);
  LLVMValueRef kk = gen_loop_begin(g, &l2, gen_i64(g, k->kp), "k");
  gen_store(g, LLVMConstInt(g->i8, 0, 0), d->packS, s_at(d, &s, kk));
  gen_loop_end(g, &l2, 0);
  if_begin(g, lt(g, n, d->cols), &after);
  walk(d, 0, bt, n, visit_s, &s);
  if_end(g, after);
  LLVMValueRef corr = LLVMBuildMul(B, gen_get(g, s.sum), LLVMConstInt(g->i32, k->bias_u ? 128 : 0, 0), "");
  if (d->chunk) { /* the chunks' corrections add up, as their products do */
    LLVMValueRef before = gen_load(g, g->i32, d->corr, n);
    corr = LLVMBuildAdd(B, corr, LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntEQ, d->chunk, gen_i64(g, 0), ""),
                                                 LLVMConstInt(g->i32, 0, 0), before, ""), "");
  }
  gen_store(g, corr, d->corr, n);
  gen_loop_end(g, &l3, 0);
  gen_loop_end(g, &l1, 0);
}

/* acc + dot4(u, s) per lane */
static LLVMValueRef dot4(Gen *g, const DotPlan *k, LLVMValueRef acc, LLVMValueRef u, LLVMValueRef s) {
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, (unsigned)k->lanes);
  if (k->dot == DOT_VNNI) {
    LLVMValueRef args[3] = {acc, u, s};
    const char *name = "llvm.x86.avx512.vpdpbusd.512";
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    return LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id, NULL, 0), LLVMGetIntrinsicDeclaration(g->mod, id, NULL, 0), args, 3, "");
  }
  if (k->dot == DOT_AVX2) { /* u8 x s8 pairs into i16 (they cannot saturate: lower checked), then pairs of i16 */
    LLVMTypeRef v32 = LLVMVectorType(g->i8, 32), i16 = LLVMInt16TypeInContext(g->ctx);
    LLVMValueRef pair[2] = {LLVMBuildBitCast(B, u, v32, ""), LLVMBuildBitCast(B, s, v32, "")}, ones[16];
    const char *n1 = "llvm.x86.avx2.pmadd.ub.sw", *n2 = "llvm.x86.avx2.pmadd.wd";
    unsigned id1 = LLVMLookupIntrinsicID(n1, strlen(n1)), id2 = LLVMLookupIntrinsicID(n2, strlen(n2));
    LLVMValueRef h = LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id1, NULL, 0), LLVMGetIntrinsicDeclaration(g->mod, id1, NULL, 0), pair, 2, "");
    for (int i = 0; i < 16; i++) ones[i] = LLVMConstInt(i16, 1, 0);
    LLVMValueRef w[2] = {h, LLVMConstVector(ones, 16)};
    LLVMValueRef q = LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id2, NULL, 0), LLVMGetIntrinsicDeclaration(g->mod, id2, NULL, 0), w, 2, "");
    return LLVMBuildAdd(B, acc, q, "");
  }
  LLVMTypeRef vi8 = LLVMVectorType(g->i8, 16), over[2] = {vi32, vi8};
  LLVMValueRef args[3] = {acc, LLVMBuildBitCast(B, u, vi8, ""), LLVMBuildBitCast(B, s, vi8, "")};
  const char *name = "llvm.aarch64.neon.sdot";
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  return LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id, over, 2), LLVMGetIntrinsicDeclaration(g->mod, id, over, 2), args, 3, "");
}

enum { MAX_MR = 8, MAX_NR = 8 };

/* The epilogue of one accumulator vector: row m, columns n .. n + lanes - 1 of the product, all
 * inside it. Each lane computes what the element epilogue does, (float)(acc - corr) * scale +
 * bias (+ 0.0 without one), then the folded relu; lanes that are consecutive in the output
 * (a row-major product, not transposed) go out in one store, others one by one. */
/* An accumulator vector's outputs: row m, columns n .. n + lanes - 1 of the product, all inside
 * it. Each lane computes what the element epilogue does, (float)(acc - corr) * scale + bias
 * (or + 0.0), then the folded relu. */
static LLVMValueRef epilogue_values(Dot *d, LLVMValueRef m, LLVMValueRef n, LLVMValueRef acc, LLVMValueRef scale, LLVMValueRef bias) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  unsigned lanes = (unsigned)k->lanes;
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, lanes), vf32 = LLVMVectorType(g->f32, lanes);
  LLVMValueRef corr = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, d->corr, n), "corr");
  LLVMSetAlignment(corr, 4);
  LLVMValueRef zero = LLVMConstNull(vf32), splat_idx = LLVMConstNull(vi32);
  LLVMValueRef sv = LLVMBuildShuffleVector(B, LLVMBuildInsertElement(B, LLVMGetUndef(vf32), scale, LLVMConstInt(g->i32, 0, 0), ""),
                                           LLVMGetUndef(vf32), splat_idx, "");
  LLVMValueRef y = LLVMBuildFMul(B, LLVMBuildSIToFP(B, LLVMBuildSub(B, acc, corr, ""), vf32, ""), sv, "deq");
  LLVMValueRef b = zero; /* +0.0 in every lane, as the element epilogue adds */
  if (bias && !k->swap) { /* the bias runs along the columns: the lanes */
    b = LLVMBuildLoad2(B, vf32, gen_at(g, g->f32, bias, n), "bias");
    LLVMSetAlignment(b, 4);
  } else if (bias) { /* transposed: one output column, m */
    b = LLVMBuildShuffleVector(B, LLVMBuildInsertElement(B, LLVMGetUndef(vf32), gen_load(g, g->f32, bias, m), LLVMConstInt(g->i32, 0, 0), ""),
                               LLVMGetUndef(vf32), splat_idx, "");
  }
  y = LLVMBuildFAdd(B, y, b, "y");
  return d->gk && d->gk->relu ? gen_relu(g, y) : y;
}

/* ...stored: a row of the output (GEMM, dW), or lane by lane (each lane another output plane) */
static void epilogue_vector(Dot *d, LLVMValueRef bt, LLVMValueRef m, LLVMValueRef n, LLVMValueRef acc, LLVMValueRef out,
                            LLVMValueRef scale, LLVMValueRef bias) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  LLVMValueRef y = epilogue_values(d, m, n, acc, scale, bias);
  int contiguous = !k->swap && (d->gk || d->ck->kind == CONV_DW);
  if (contiguous) {
    LLVMSetAlignment(LLVMBuildStore(B, y, gen_at(g, g->f32, out, d->out_index(d, bt, m, n))), 4);
    return;
  }
  for (unsigned l = 0; l < (unsigned)k->lanes; l++) {
    LLVMValueRef nl = add(g, n, gen_i64(g, l));
    LLVMValueRef at = k->swap ? d->out_index(d, bt, nl, m) : d->out_index(d, bt, m, nl);
    gen_store(g, LLVMBuildExtractElement(B, y, LLVMConstInt(g->i32, l, 0), ""), out, at);
  }
}

/* Convolution forward and dx, a whole tile whose mr pixels lie in one image: each output
 * channel's mr values are contiguous, so the tile's 16-lane vectors (pixel r, channels) are
 * transposed in registers into (channel, pixels 0..7) halves, one masked store of mr floats
 * per channel instead of a store per element. Three rounds of two-vector shuffles; round t
 * pairs up rows (or row groups) 2^t apart. */
enum { TR_ROWS = 8 };
static int epilogue_transposes(const Dot *d) {
  return d->ck && d->ck->kind != CONV_DW && !d->p->swap && d->p->lanes == 16 && d->p->mr <= TR_ROWS;
}
static LLVMValueRef shuffle2(Gen *g, LLVMValueRef a, LLVMValueRef b, const int *idx) {
  LLVMValueRef m[16];
  for (int i = 0; i < 16; i++) m[i] = LLVMConstInt(g->i32, (unsigned long long)idx[i], 0);
  return LLVMBuildShuffleVector(B, a, b, LLVMConstVector(m, 16), "");
}
static void epilogue_transposed(Dot *d, LLVMValueRef bt, LLVMValueRef m0, LLVMValueRef n, LLVMValueRef *y, LLVMValueRef out) {
  Gen *g = d->g;
  int mr = d->p->mr, idx[16];
  LLVMTypeRef vf = LLVMVectorType(g->f32, 16);
  LLVMValueRef r[TR_ROWS], a[TR_ROWS], b[TR_ROWS], c[TR_ROWS];
  for (int i = 0; i < TR_ROWS; i++) r[i] = i < mr ? y[i] : LLVMGetUndef(vf);
  /* a[2p + h]: channels 8h + i/2, rows 2p + i%2 */
  for (int p = 0; p < 4; p++)
    for (int h = 0; h < 2; h++) {
      for (int i = 0; i < 16; i++) idx[i] = (i % 2) * 16 + 8 * h + i / 2;
      a[2 * p + h] = shuffle2(g, r[2 * p], r[2 * p + 1], idx);
    }
  /* b[4q + 2h + s]: channels 8h + 4s + i/4, rows 4q + i%4 (from a[2(2q) + h], a[2(2q+1) + h]) */
  for (int q = 0; q < 2; q++)
    for (int h = 0; h < 2; h++)
      for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 16; i++) idx[i] = ((i % 4) / 2) * 16 + (4 * s + i / 4) * 2 + i % 2;
        b[4 * q + 2 * h + s] = shuffle2(g, a[2 * (2 * q) + h], a[2 * (2 * q + 1) + h], idx);
      }
  /* c[4h + 2s + t]: channels 8h + 4s + 2t + i/8, rows i%8 (from b[2h + s] and b[4 + 2h + s]) */
  for (int h = 0; h < 2; h++)
    for (int s = 0; s < 2; s++)
      for (int t = 0; t < 2; t++) {
        for (int i = 0; i < 16; i++) idx[i] = ((i % 8) / 4) * 16 + (2 * t + i / 8) * 4 + i % 4;
        c[4 * h + 2 * s + t] = shuffle2(g, b[2 * h + s], b[4 + 2 * h + s], idx);
      }
  LLVMValueRef on[TR_ROWS], half[2][TR_ROWS];
  for (int i = 0; i < TR_ROWS; i++) {
    on[i] = LLVMConstInt(LLVMInt1TypeInContext(g->ctx), i < mr, 0);
    half[0][i] = LLVMConstInt(g->i32, (unsigned long long)i, 0), half[1][i] = LLVMConstInt(g->i32, (unsigned long long)(i + TR_ROWS), 0);
  }
  LLVMValueRef mask = LLVMConstVector(on, TR_ROWS);
  for (int v = 0; v < TR_ROWS; v++)
    for (int e = 0; e < 2; e++) { /* channel 2v + e of the 16 */
      LLVMValueRef vals = LLVMBuildShuffleVector(B, c[v], LLVMGetUndef(vf), LLVMConstVector(half[e], TR_ROWS), "");
      LLVMValueRef at = d->out_index(d, bt, m0, add(g, n, gen_i64(g, 2 * v + e)));
      gen_masked_store(g, vals, gen_at(g, g->f32, out, at), mask);
    }
}

static void compute(Dot *d, LLVMValueRef out, LLVMValueRef scale, LLVMValueRef bias) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  int mr = k->mr, nr = k->nr, lanes = k->lanes;
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, (unsigned)lanes);
  LLVMValueRef zero = LLVMConstNull(vi32);
  LLVMValueRef tile = gen_entry_alloca(g, LLVMArrayType(g->i32, (unsigned)(mr * nr * lanes)), "tile");
  Loop lrb, lnb, lk, lr, lc;
  int64_t rblocks = k->mp / mr;
  LLVMValueRef rb = gen_loop_part(g, &lrb, d->batch * rblocks, "rowblock");
  LLVMValueRef bt = LLVMBuildSDiv(B, rb, gen_i64(g, rblocks), "bt"), m0 = mul(g, LLVMBuildSRem(B, rb, gen_i64(g, rblocks), ""), mr);
  batch_views(d, bt);
  LLVMValueRef urows = d->packU; /* the block's U rows: packed here when per tile */
  int64_t u0 = 1;                /* whether urows starts at row 0 of U, not at row m0 */
  if (k->u_tile) {
    LLVMValueRef buf = gen_entry_alloca(g, LLVMArrayType(g->i8, (unsigned)(mr * k->kp)), "urows");
    LLVMSetAlignment(buf, 64);
    urows = buf, u0 = 0;
    Loop lu;
    LLVMValueRef r = gen_loop_begin(g, &lu, gen_i64(g, mr), "urow");
    pack_u_row(d, bt, add(g, m0, r), gen_at(g, g->i8, urows, mul(g, r, k->kp)));
    gen_loop_end(g, &lu, 0);
  }
  LLVMValueRef nb = gen_loop_begin(g, &lnb, gen_i64(g, k->np / (lanes * nr)), "colblock");
  LLVMValueRef n0 = mul(g, nb, lanes * nr);
  LLVMValueRef acc[MAX_MR][MAX_NR];
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) acc[r][j] = gen_var(g, zero, "acc");
  if (d->chunk) { /* a chunked dW goes on from the earlier chunks' sums, kept tile by tile */
    LLVMValueRef at = mul(g, add(g, mul(g, LLVMBuildSRem(B, rb, gen_i64(g, rblocks), ""), k->np / (lanes * nr)), nb), mr * nr * lanes);
    tile = gen_at(g, g->i32, d->accs, at);
  }
  LLVMValueRef first = d->chunk ? LLVMBuildICmp(B, LLVMIntEQ, d->chunk, gen_i64(g, 0), "") : NULL;
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) {
      LLVMValueRef init = zero;
      if (first) {
        LLVMValueRef v = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, tile, gen_i64(g, (int64_t)(r * nr + j) * lanes)), "");
        LLVMSetAlignment(v, 4);
        init = LLVMBuildSelect(B, first, zero, v, "");
      }
      LLVMBuildStore(B, init, acc[r][j]);
    }
  LLVMValueRef k4 = gen_loop_begin(g, &lk, gen_i64(g, k->kp / 4), "k4");
  LLVMValueRef s[MAX_NR];
  for (int j = 0; j < nr; j++) { /* block nb*nr + j, k group k4: lanes i32 */
    LLVMValueRef at = mul(g, add(g, mul(g, add(g, mul(g, nb, nr), gen_i64(g, j)), k->kp / 4), k4), lanes);
    s[j] = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, d->packS, at), "s");
    LLVMSetAlignment(s[j], 4);
  }
  for (int r = 0; r < mr; r++) {
    LLVMValueRef at = add(g, mul(g, add(g, u0 ? m0 : gen_i64(g, 0), gen_i64(g, r)), k->kp / 4), k4);
    LLVMValueRef u32 = gen_load(g, g->i32, urows, at);
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
  LLVMBasicBlockRef after_epilogue = NULL, edge, done;
  if (d->chunk) if_begin(g, LLVMBuildICmp(B, LLVMIntEQ, d->chunk, gen_i64(g, k->chunks - 1), ""), &after_epilogue);
  /* a tile wholly inside the product: its vectors go out straight from the accumulators */
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(B));
  LLVMBasicBlockRef whole = LLVMAppendBasicBlockInContext(g->ctx, fn, "whole");
  edge = LLVMAppendBasicBlockInContext(g->ctx, fn, "edge"), done = LLVMAppendBasicBlockInContext(g->ctx, fn, "written");
  LLVMBuildCondBr(B, LLVMBuildAnd(B, lt(g, m0, d->rows - mr + 1), lt(g, n0, d->cols - nr * lanes + 1), ""), whole, edge);
  LLVMPositionBuilderAtEnd(B, whole);
  if (epilogue_transposes(d)) { /* the tile's pixels in one image: transposed stores */
    int64_t hw = d->ck->kind == CONV_FWD ? d->ck->Ho * d->ck->Wo : d->ck->H * d->ck->W;
    LLVMBasicBlockRef one = LLVMAppendBasicBlockInContext(g->ctx, fn, "one_image"), split = LLVMAppendBasicBlockInContext(g->ctx, fn, "two_images");
    LLVMBuildCondBr(B, lt(g, rem_(g, m0, hw), hw - mr + 1), one, split);
    LLVMPositionBuilderAtEnd(B, one);
    for (int j = 0; j < nr; j++) {
      LLVMValueRef y[MAX_MR], n = add(g, n0, gen_i64(g, j * lanes));
      for (int rr = 0; rr < mr; rr++) y[rr] = epilogue_values(d, add(g, m0, gen_i64(g, rr)), n, gen_get(g, acc[rr][j]), scale, bias);
      epilogue_transposed(d, bt, m0, n, y, out);
    }
    LLVMBuildBr(B, done);
    LLVMPositionBuilderAtEnd(B, split);
  }
  for (int rr = 0; rr < mr; rr++)
    for (int j = 0; j < nr; j++) epilogue_vector(d, bt, add(g, m0, gen_i64(g, rr)), add(g, n0, gen_i64(g, j * lanes)), gen_get(g, acc[rr][j]), out, scale, bias);
  LLVMBuildBr(B, done);
  LLVMPositionBuilderAtEnd(B, edge);
  /* the edge tiles: element by element over the valid part */
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
  if (d->gk && d->gk->relu) y = gen_relu(g, y);
  gen_store(g, y, out, d->out_index(d, bt, row, colx));
  LLVMBuildBr(B, skip);
  LLVMPositionBuilderAtEnd(B, skip);
  gen_loop_end(g, &lc, 0);
  gen_loop_end(g, &lr, 0);
  LLVMBuildBr(B, done);
  LLVMPositionBuilderAtEnd(B, done);
  if (after_epilogue) if_end(g, after_epilogue);
  gen_loop_end(g, &lnb, 0);
  gen_loop_end(g, &lrb, 0);
}
#undef B

static LLVMValueRef generate(Dot *d, int has_bias, const char *name) {
  Gen *g = d->g;
  SQ_ASSERT(d->p->mr <= MAX_MR && d->p->nr <= MAX_NR);
  LLVMValueRef fn = gen_kernel_function(g, name);
  d->A = gen_input(g, 0), d->Bm = gen_input(g, 1);
  d->rows = d->p->swap ? d->N : d->M, d->cols = d->p->swap ? d->M : d->N;
  LLVMValueRef out = gen_arg(g, KA_OUT), bias = has_bias ? gen_input(g, 2) : NULL;
  LLVMValueRef scale = LLVMBuildFMul(g->b, gen_input_scale(g, 0), gen_input_scale(g, 1), "scale");
  g->scratch = d->p->scratch;
  if (d->p->chunks) { /* dW, per chunk c: (unpack x,) pack, add the products */
    int steps = d->p->unpacked ? 3 : 2;
    LLVMValueRef phase = LLVMGetParam(fn, 1), step = rem_(g, phase, steps);
    LLVMBasicBlockRef after;
    g->phases = steps * d->p->chunks;
    d->chunk = div_(g, phase, steps);
    if (d->p->unpacked) {
      if_begin(g, LLVMBuildICmp(g->b, LLVMIntEQ, step, gen_i64(g, 0), ""), &after);
      unpack_x(d);
      LLVMBuildRetVoid(g->b);
      LLVMPositionBuilderAtEnd(g->b, after);
    }
    if_begin(g, LLVMBuildICmp(g->b, LLVMIntEQ, step, gen_i64(g, steps - 2), ""), &after);
    pack(d);
    LLVMBuildRetVoid(g->b);
    LLVMPositionBuilderAtEnd(g->b, after);
    compute(d, out, scale, bias);
    LLVMBuildRetVoid(g->b);
    return fn;
  }
  Phases ph;
  gen_phases(g, &ph, d->p->chlast ? 3 : 2);
  if (d->p->chlast) {
    channels_last(d);
    gen_next_phase(g, &ph);
  }
  pack(d);
  gen_next_phase(g, &ph);
  compute(d, out, scale, bias);
  LLVMBuildRetVoid(g->b);
  return fn;
}

LLVMValueRef gen_gemm_dot(Gen *g, const GemmKernel *k, const char *name) {
  Dot d = {.g = g, .p = &k->dp, .batch = k->batch, .M = k->M, .N = k->N, .K = k->K, .elem = gemm_elem, .out_index = gemm_out, .gk = k};
  return generate(&d, k->bias, name);
}

LLVMValueRef gen_conv_dot(Gen *g, const ConvKernel *k, const char *name) {
  Dot d = {.g = g, .p = &k->dp, .batch = 1, .M = k->gm, .N = k->gn, .K = k->gk, .elem = conv_elem, .out_index = conv_out, .ck = k};
  return generate(&d, k->kind == CONV_FWD, name);
}
