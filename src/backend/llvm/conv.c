/* conv.c: LLVM code for convolutions (ConvKernel), one dot product per output, i32 for
 * integer operands and f32 (in the reference's order, see kir.h) for float ones. Taps in the
 * padding contribute 0: their index is clamped to 0 (a valid address) and the product is
 * selected away (+0.0 never changes a float sum that started at +0.0), so the loops have no
 * branches. Integer outputs dequantize as the reference: (float)acc * (scale_a * scale_b) +
 * bias (or + 0.0); float ones add the bias. Parts split the outermost loop. With chansums, a
 * first phase zeroes the channel sums and each output plane adds its sum to its channel's. */
#include <llvm-c/Core.h>
#include "gen.h"

typedef struct { Gen *g; LLVMValueRef acc, a, b; KElem ea, eb; int flt, s16; } Dot;

static LLVMValueRef c64(Gen *g, int64_t v) { return gen_i64(g, v); }
static LLVMValueRef add(Gen *g, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildAdd(g->b, x, y, ""); }
static LLVMValueRef mul(Gen *g, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildMul(g->b, x, y, ""); }
static LLVMValueRef lin(Gen *g, LLVMValueRef i, int64_t n, LLVMValueRef j) { return add(g, mul(g, i, c64(g, n)), j); }
static LLVMValueRef land(Gen *g, LLVMValueRef x, LLVMValueRef y) { return LLVMBuildAnd(g->b, x, y, ""); }
static LLVMValueRef in_range(Gen *g, LLVMValueRef v, int64_t hi) { /* 0 <= v < hi */
  return land(g, LLVMBuildICmp(g->b, LLVMIntSGE, v, c64(g, 0), ""), LLVMBuildICmp(g->b, LLVMIntSLT, v, c64(g, hi), ""));
}


static LLVMValueRef load_f(Gen *g, LLVMValueRef base, LLVMValueRef index) {
  return LLVMBuildLoad2(g->b, g->f32, LLVMBuildGEP2(g->b, g->f32, base, &index, 1, ""), "f");
}

/* acc += valid ? a[ai] * b[bi] : 0, with out-of-range indices replaced by 0 */
static void accumulate(Dot *d, LLVMValueRef valid, LLVMValueRef ai, LLVMValueRef bi) {
  Gen *g = d->g;
  LLVMValueRef zero = c64(g, 0);
  ai = LLVMBuildSelect(g->b, valid, ai, zero, "");
  bi = LLVMBuildSelect(g->b, valid, bi, zero, "");
  LLVMTypeRef t = d->flt ? g->f32 : g->i32;
  LLVMValueRef p = d->flt ? LLVMBuildFMul(g->b, load_f(g, d->a, ai), load_f(g, d->b, bi), "")
                          : mul(g, gen_load_q(g, d->ea, d->a, ai), gen_load_q(g, d->eb, d->b, bi));
  p = LLVMBuildSelect(g->b, valid, p, d->flt ? LLVMConstReal(g->f32, 0.0) : LLVMConstInt(g->i32, 0, 0), "");
  LLVMValueRef cur = LLVMBuildLoad2(g->b, t, d->acc, "");
  LLVMBuildStore(g->b, d->flt ? LLVMBuildFAdd(g->b, cur, p, "") : add(g, cur, p), d->acc);
}

static void store_output(Dot *d, LLVMValueRef out, LLVMValueRef index, LLVMValueRef scale, LLVMValueRef bias_value) {
  Gen *g = d->g;
  LLVMValueRef y;
  if (d->s16) { /* the sum itself (the fuse pass proved it fits) */
    LLVMTypeRef i16 = LLVMInt16TypeInContext(g->ctx);
    y = LLVMBuildTrunc(g->b, LLVMBuildLoad2(g->b, g->i32, d->acc, ""), i16, "");
    LLVMBuildStore(g->b, y, LLVMBuildGEP2(g->b, i16, out, &index, 1, ""));
    return;
  }
  if (d->flt) {
    y = LLVMBuildLoad2(g->b, g->f32, d->acc, "");
    if (bias_value) y = LLVMBuildFAdd(g->b, y, bias_value, "");
  } else {
    y = LLVMBuildFMul(g->b, LLVMBuildSIToFP(g->b, LLVMBuildLoad2(g->b, g->i32, d->acc, ""), g->f32, ""), scale, "");
    y = LLVMBuildFAdd(g->b, y, bias_value ? bias_value : LLVMConstReal(g->f32, 0.0), "");
  }
  LLVMBuildStore(g->b, y, LLVMBuildGEP2(g->b, g->f32, out, &index, 1, ""));
}

LLVMValueRef gen_conv(Gen *g, const ConvKernel *k, const char *name) {
  if (k->dp.dot) return gen_conv_dot(g, k, name);
  LLVMValueRef fn = gen_kernel_function(g, name);
  LLVMValueRef in = gen_arg(g, KA_IN), out = gen_arg(g, KA_OUT), scales = gen_arg(g, KA_SCALES);
  LLVMValueRef ptrs[3];
  for (int i = 0; i < 3; i++) {
    LLVMValueRef idx = c64(g, i);
    ptrs[i] = LLVMBuildLoad2(g->b, g->ptr, LLVMBuildGEP2(g->b, g->ptr, in, &idx, 1, ""), "in");
  }
  LLVMValueRef s0 = c64(g, 0), s1 = c64(g, 1);
  LLVMValueRef scale = LLVMBuildFMul(g->b, LLVMBuildLoad2(g->b, g->f32, LLVMBuildGEP2(g->b, g->f32, scales, &s0, 1, ""), ""),
                                     LLVMBuildLoad2(g->b, g->f32, LLVMBuildGEP2(g->b, g->f32, scales, &s1, 1, ""), ""), "scale");
  int flt = k->a == KE_F32;
  Dot d = {g, gen_entry_alloca(g, flt ? g->f32 : g->i32, "acc"), ptrs[0], ptrs[1], k->a, k->b, flt, k->out_s16};
  if (k->out_s16) gen_out_scale(g, scale); /* the sums' scale is the tensor's */
  LLVMValueRef acc_zero = flt ? LLVMConstReal(g->f32, 0.0) : LLVMConstInt(g->i32, 0, 0);
  int64_t cpg = k->C / k->g, opg = k->O / k->g;
  Loop l1, l2, l3, l4, r1, r2, r3;
  if (k->dy_bits) { /* a dW ShiftQuanting dy: the ranges, the groups, then all of dy into bytes in scratch */
    int64_t hw = k->Ho * k->Wo;
    Phases ph;
    g->scratch = k->dp.scratch;
    LLVMValueRef params = gen_at(g, g->i8, gen_arg(g, KA_SCRATCH), c64(g, k->dp.scratch - kir_sq_params(k->O)));
    LLVMValueRef ranges = gen_at(g, g->f32, params, c64(g, 2 + k->O)); /* params and ranges: in the entry block */
    gen_phases(g, &ph, 4);
    gen_sq_ranges(g, ptrs[0], k->N, k->O, hw, k->dy_ranges, ranges);
    gen_next_phase(g, &ph);
    gen_only_part0(g);
    gen_sq_groups(g, ranges, k->O, k->dy_groups, k->dy_bits, params);
    gen_next_phase(g, &ph);
    SqRows r = {ptrs[0], gen_arg(g, KA_SCRATCH), c64(g, 0), params, k->O, hw, k->dy_groups, k->dy_bits, NULL};
    LLVMValueRef key = gen_rng_key(g, k->dy_stream);
    gen_sq_row(g, &r, gen_loop_part(g, &l1, k->N * k->O, "row"), key);
    gen_loop_end(g, &l1, 0);
    gen_next_phase(g, &ph);
    d.a = gen_arg(g, KA_SCRATCH);
    scale = LLVMBuildFMul(g->b, LLVMBuildLoad2(g->b, g->f32, gen_at(g, g->f32, params, c64(g, 1)), "dy_scale"),
                          LLVMBuildLoad2(g->b, g->f32, LLVMBuildGEP2(g->b, g->f32, scales, &s1, 1, ""), ""), "scale");
  }
  if (k->kind == CONV_FWD) { /* a = x, b = w, in[2] = the bias if any */
    LLVMValueRef sums = NULL, plane = NULL;
    if (k->chansums) {
      Phases ph;
      sums = gen_conv_sums(g, k, out); /* in the entry block: both phases use it */
      gen_phases(g, &ph, 2);
      gen_conv_sums_zero(g, k, out);
      gen_next_phase(g, &ph);
      plane = gen_entry_alloca(g, g->i64, "plane");
    }
    LLVMValueRef nn = gen_loop_part(g, &l1, k->N, "n"), o = gen_loop_begin(g, &l2, c64(g, k->O), "o");
    if (plane) LLVMBuildStore(g->b, c64(g, 0), plane);
    LLVMValueRef g0 = mul(g, LLVMBuildSDiv(g->b, o, c64(g, opg), ""), c64(g, cpg));
    LLVMValueRef oh = gen_loop_begin(g, &l3, c64(g, k->Ho), "oh"), ow = gen_loop_begin(g, &l4, c64(g, k->Wo), "ow");
    LLVMBuildStore(g->b, acc_zero, d.acc);
    LLVMValueRef ci = gen_loop_begin(g, &r1, c64(g, cpg), "ci"), kh = gen_loop_begin(g, &r2, c64(g, k->k), "kh");
    LLVMValueRef kw = gen_loop_begin(g, &r3, c64(g, k->k), "kw");
    LLVMValueRef ih = add(g, mul(g, oh, c64(g, k->s)), add(g, kh, c64(g, -k->p)));
    LLVMValueRef iw = add(g, mul(g, ow, c64(g, k->s)), add(g, kw, c64(g, -k->p)));
    LLVMValueRef valid = land(g, in_range(g, ih, k->H), in_range(g, iw, k->W));
    LLVMValueRef xi = lin(g, lin(g, lin(g, nn, k->C, add(g, g0, ci)), k->H, ih), k->W, iw);
    LLVMValueRef wi = lin(g, lin(g, lin(g, o, cpg, ci), k->k, kh), k->k, kw);
    accumulate(&d, valid, xi, wi);
    gen_loop_end(g, &r3, 0), gen_loop_end(g, &r2, 0), gen_loop_end(g, &r1, 0);
    LLVMValueRef bias = k->bias ? LLVMBuildLoad2(g->b, g->f32, LLVMBuildGEP2(g->b, g->f32, ptrs[2], &o, 1, ""), "bias") : NULL;
    store_output(&d, out, lin(g, lin(g, lin(g, nn, k->O, o), k->Ho, oh), k->Wo, ow), scale, bias);
    if (plane) {
      LLVMValueRef v = LLVMBuildSExt(g->b, LLVMBuildLoad2(g->b, g->i32, d.acc, ""), g->i64, "");
      LLVMBuildStore(g->b, add(g, LLVMBuildLoad2(g->b, g->i64, plane, ""), v), plane);
    }
    gen_loop_end(g, &l4, 0), gen_loop_end(g, &l3, 0);
    if (plane) /* integer adds: exact in any order, whichever part comes first */
      LLVMBuildAtomicRMW(g->b, LLVMAtomicRMWBinOpAdd, LLVMBuildGEP2(g->b, g->i64, sums, &o, 1, ""),
                         LLVMBuildLoad2(g->b, g->i64, plane, ""), LLVMAtomicOrderingMonotonic, 0);
    gen_loop_end(g, &l2, 0), gen_loop_end(g, &l1, 0);
  } else if (k->kind == CONV_DX) { /* a = dy, b = w: gather every output tap that reads x[n,c,ih,iw] */
    LLVMValueRef nn = gen_loop_part(g, &l1, k->N, "n"), c = gen_loop_begin(g, &l2, c64(g, k->C), "c");
    LLVMValueRef grp = LLVMBuildSDiv(g->b, c, c64(g, cpg), ""), ci = LLVMBuildSRem(g->b, c, c64(g, cpg), "");
    LLVMValueRef ih = gen_loop_begin(g, &l3, c64(g, k->H), "ih"), iw = gen_loop_begin(g, &l4, c64(g, k->W), "iw");
    LLVMBuildStore(g->b, acc_zero, d.acc);
    /* kh and kw run downwards, so output rows and columns come in ascending order */
    LLVMValueRef oo = gen_loop_begin(g, &r1, c64(g, opg), "oo");
    LLVMValueRef kh = LLVMBuildSub(g->b, c64(g, k->k - 1), gen_loop_begin(g, &r2, c64(g, k->k), "rkh"), "kh");
    LLVMValueRef kw = LLVMBuildSub(g->b, c64(g, k->k - 1), gen_loop_begin(g, &r3, c64(g, k->k), "rkw"), "kw");
    LLVMValueRef o = add(g, mul(g, grp, c64(g, opg)), oo);
    LLVMValueRef th = add(g, ih, add(g, c64(g, k->p), LLVMBuildNeg(g->b, kh, ""))), tw = add(g, iw, add(g, c64(g, k->p), LLVMBuildNeg(g->b, kw, "")));
    LLVMValueRef nonneg = land(g, LLVMBuildICmp(g->b, LLVMIntSGE, th, c64(g, 0), ""), LLVMBuildICmp(g->b, LLVMIntSGE, tw, c64(g, 0), ""));
    th = LLVMBuildSelect(g->b, nonneg, th, c64(g, 0), ""), tw = LLVMBuildSelect(g->b, nonneg, tw, c64(g, 0), "");
    LLVMValueRef oh = LLVMBuildSDiv(g->b, th, c64(g, k->s), ""), ow = LLVMBuildSDiv(g->b, tw, c64(g, k->s), "");
    LLVMValueRef exact = land(g, LLVMBuildICmp(g->b, LLVMIntEQ, LLVMBuildSRem(g->b, th, c64(g, k->s), ""), c64(g, 0), ""),
                              LLVMBuildICmp(g->b, LLVMIntEQ, LLVMBuildSRem(g->b, tw, c64(g, k->s), ""), c64(g, 0), ""));
    LLVMValueRef valid = land(g, land(g, nonneg, exact), land(g, in_range(g, oh, k->Ho), in_range(g, ow, k->Wo)));
    LLVMValueRef yi = lin(g, lin(g, lin(g, nn, k->O, o), k->Ho, oh), k->Wo, ow);
    LLVMValueRef wi = lin(g, lin(g, lin(g, o, cpg, ci), k->k, kh), k->k, kw);
    accumulate(&d, valid, yi, wi);
    gen_loop_end(g, &r3, 0), gen_loop_end(g, &r2, 0), gen_loop_end(g, &r1, 0);
    store_output(&d, out, lin(g, lin(g, lin(g, nn, k->C, c), k->H, ih), k->W, iw), scale, NULL);
    gen_loop_end(g, &l4, 0), gen_loop_end(g, &l3, 0), gen_loop_end(g, &l2, 0), gen_loop_end(g, &l1, 0);
  } else { /* CONV_DW: a = dy, b = x */
    LLVMValueRef o = gen_loop_part(g, &l1, k->O, "o"), ci = gen_loop_begin(g, &l2, c64(g, cpg), "ci");
    LLVMValueRef g0 = mul(g, LLVMBuildSDiv(g->b, o, c64(g, opg), ""), c64(g, cpg));
    LLVMValueRef kh = gen_loop_begin(g, &l3, c64(g, k->k), "kh"), kw = gen_loop_begin(g, &l4, c64(g, k->k), "kw");
    LLVMBuildStore(g->b, acc_zero, d.acc);
    LLVMValueRef nn = gen_loop_begin(g, &r1, c64(g, k->N), "n"), oh = gen_loop_begin(g, &r2, c64(g, k->Ho), "oh");
    LLVMValueRef ow = gen_loop_begin(g, &r3, c64(g, k->Wo), "ow");
    LLVMValueRef ih = add(g, mul(g, oh, c64(g, k->s)), add(g, kh, c64(g, -k->p)));
    LLVMValueRef iw = add(g, mul(g, ow, c64(g, k->s)), add(g, kw, c64(g, -k->p)));
    LLVMValueRef valid = land(g, in_range(g, ih, k->H), in_range(g, iw, k->W));
    LLVMValueRef yi = lin(g, lin(g, lin(g, nn, k->O, o), k->Ho, oh), k->Wo, ow);
    LLVMValueRef xi = lin(g, lin(g, lin(g, nn, k->C, add(g, g0, ci)), k->H, ih), k->W, iw);
    accumulate(&d, valid, yi, xi);
    gen_loop_end(g, &r3, 0), gen_loop_end(g, &r2, 0), gen_loop_end(g, &r1, 0);
    store_output(&d, out, lin(g, lin(g, lin(g, o, cpg, ci), k->k, kh), k->k, kw), scale, NULL);
    gen_loop_end(g, &l4, 0), gen_loop_end(g, &l3, 0), gen_loop_end(g, &l2, 0), gen_loop_end(g, &l1, 0);
  }
  LLVMBuildRetVoid(g->b);
  return fn;
}
