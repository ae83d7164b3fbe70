/* quant.c: quantize and shiftquant as runtime/numerics.c defines them (nm_quantize,
 * nm_shiftquant), in three phases: the ranges (parts over blocks or channels), the scale and
 * the groups (part 0), then the rounding (parts over elements or rows). Non-finite input or a
 * range float32 cannot scale sets the failure flag (the reference body then says which). */
#include <math.h>
#include "gen.h"

static LLVMValueRef scratch_f32(Gen *g, int64_t i) {
  return gen_at(g, g->f32, gen_arg(g, KA_SCRATCH), gen_i64(g, i));
}

enum { AMAX_LANES = 16 };

/* max |x[i]| over i in [lo, lo + n); fails on a NaN or Inf. AMAX_LANES at a time, then the
 * rest: a max is exact, so the order is free. */
static LLVMValueRef absmax(Gen *g, LLVMValueRef x, LLVMValueRef lo, LLVMValueRef n) {
  LLVMTypeRef i1 = LLVMInt1TypeInContext(g->ctx), vt = LLVMVectorType(g->f32, AMAX_LANES);
  LLVMValueRef m = gen_var(g, gen_f32c(g, 0), "m"), bad = gen_var(g, LLVMConstInt(i1, 0, 0), "bad");
  LLVMValueRef vm = gen_var(g, LLVMConstNull(vt), "vm"), vbad = gen_var(g, LLVMConstNull(LLVMVectorType(i1, AMAX_LANES)), "vbad");
  LLVMValueRef infs[AMAX_LANES];
  for (int j = 0; j < AMAX_LANES; j++) infs[j] = LLVMConstReal(g->f32, INFINITY);
  LLVMValueRef inf = LLVMConstVector(infs, AMAX_LANES);
  Loop lv, li;
  LLVMValueRef base = lo;
  LLVMValueRef nv = LLVMBuildSDiv(g->b, n, gen_i64(g, AMAX_LANES), "nv"), done = LLVMBuildMul(g->b, nv, gen_i64(g, AMAX_LANES), "");
  LLVMValueRef v = gen_loop_begin(g, &lv, nv, "v");
  LLVMValueRef at = gen_at(g, g->f32, x, LLVMBuildAdd(g->b, base, LLVMBuildMul(g->b, v, gen_i64(g, AMAX_LANES), ""), ""));
  LLVMValueRef xv = LLVMBuildLoad2(g->b, vt, at, "");
  LLVMSetAlignment(xv, 4);
  LLVMValueRef a = gen_intrinsic(g, "llvm.fabs", xv);
  LLVMBuildStore(g->b, LLVMBuildOr(g->b, gen_get(g, vbad), LLVMBuildFCmp(g->b, LLVMRealUGE, a, inf, ""), ""), vbad);
  LLVMBuildStore(g->b, gen_fmax(g, a, gen_get(g, vm)), vm);
  gen_loop_end(g, &lv, 0);
  LLVMValueRef i = gen_loop_begin(g, &li, LLVMBuildSub(g->b, n, done, ""), "i");
  LLVMValueRef e = gen_load(g, g->f32, x, LLVMBuildAdd(g->b, base, LLVMBuildAdd(g->b, done, i, ""), ""));
  LLVMBuildStore(g->b, LLVMBuildOr(g->b, gen_get(g, bad), LLVMBuildNot(g->b, gen_finite(g, e), ""), ""), bad);
  LLVMBuildStore(g->b, gen_fmax(g, gen_intrinsic(g, "llvm.fabs", e), gen_get(g, m)), m);
  gen_loop_end(g, &li, 0);
  LLVMValueRef lanes = gen_get(g, vm), flags = gen_get(g, vbad), mx = gen_get(g, m), b = gen_get(g, bad);
  for (int j = 0; j < AMAX_LANES; j++) {
    LLVMValueRef at_j = LLVMConstInt(g->i32, (unsigned)j, 0);
    mx = gen_fmax(g, LLVMBuildExtractElement(g->b, lanes, at_j, ""), mx);
    b = LLVMBuildOr(g->b, b, LLVMBuildExtractElement(g->b, flags, at_j, ""), "");
  }
  gen_fail_if(g, b);
  return mx;
}

/* ranges[c] = max(ranges[c], max |x[o][c]|) for c in [lo, hi) of x[outer][C] (a gradient with
 * one element per row and channel): AMAX_LANES channels a vector, each vector's maxima over
 * the rows in a register and stored once (neighbouring parts' ranges share cache lines: a
 * store per row made the two cores trade the line 128 times); fails on a NaN or Inf */
static void column_ranges(Gen *g, LLVMValueRef x, LLVMValueRef ranges, LLVMValueRef lo, LLVMValueRef hi, int64_t C,
                          int64_t outer) {
  LLVMTypeRef vt = LLVMVectorType(g->f32, AMAX_LANES), i1 = LLVMInt1TypeInContext(g->ctx);
  LLVMValueRef vbad = gen_var(g, LLVMConstNull(LLVMVectorType(i1, AMAX_LANES)), "vbad"), zero = LLVMConstNull(vt);
  LLVMValueRef inf = gen_splat(g, LLVMConstReal(g->f32, INFINITY), AMAX_LANES);
  LLVMValueRef blocks = LLVMBuildSDiv(g->b, LLVMBuildAdd(g->b, LLVMBuildSub(g->b, hi, lo, ""), gen_i64(g, AMAX_LANES - 1), ""),
                                      gen_i64(g, AMAX_LANES), "blocks");
  Loop lo_, lb;
  LLVMValueRef c = LLVMBuildAdd(g->b, lo, LLVMBuildMul(g->b, gen_loop_begin(g, &lb, blocks, "cb"), gen_i64(g, AMAX_LANES), ""), "c");
  LLVMValueRef mask = LLVMBuildICmp(g->b, LLVMIntSLT, gen_iota(g, AMAX_LANES), gen_splat(g, LLVMBuildSub(g->b, hi, c, ""), AMAX_LANES), "");
  LLVMValueRef top = gen_var(g, zero, "top");
  LLVMBuildStore(g->b, zero, top);
  LLVMValueRef o = gen_loop_begin(g, &lo_, gen_i64(g, outer), "o");
  LLVMValueRef xat = gen_at(g, g->f32, x, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, o, gen_i64(g, C), ""), c, ""));
  LLVMValueRef a = gen_intrinsic(g, "llvm.fabs", gen_masked_load(g, vt, xat, mask, zero));
  LLVMBuildStore(g->b, LLVMBuildOr(g->b, gen_get(g, vbad), LLVMBuildFCmp(g->b, LLVMRealUGE, a, inf, ""), ""), vbad);
  LLVMBuildStore(g->b, gen_fmax(g, a, gen_get(g, top)), top);
  gen_loop_end(g, &lo_, 0);
  LLVMValueRef rat = gen_at(g, g->f32, ranges, c);
  gen_masked_store(g, gen_fmax(g, gen_get(g, top), gen_masked_load(g, vt, rat, mask, zero)), rat, mask);
  gen_loop_end(g, &lb, 0);
  gen_fail_if(g, gen_intrinsic(g, "llvm.vector.reduce.or", gen_get(g, vbad)));
}

static LLVMValueRef clamp(Gen *g, LLVMValueRef v, float lo, float hi) {
  LLVMValueRef l = gen_splat_like(g, gen_f32c(g, lo), v), h = gen_splat_like(g, gen_f32c(g, hi), v);
  LLVMValueRef up = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, v, h, ""), h, v, "");
  return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOLT, v, l, ""), l, up, "");
}

static void set_output_scale(Gen *g, LLVMValueRef scale, int is_unsigned) {
  LLVMBuildStore(g->b, scale, gen_arg_addr(g, KA_OUT_SCALE));
  LLVMBuildStore(g->b, LLVMConstInt(g->i32, (unsigned)is_unsigned, 0), gen_arg_addr(g, KA_OUT_UNSIGNED));
}

/* clamp(round(v * inv)) as a byte: int8, or uint8 when unsigned (v a float, or a vector) */
static LLVMValueRef round_q(Gen *g, const ChanKernel *k, LLVMValueRef v, LLVMValueRef inv, float Q) {
  LLVMValueRef r = gen_intrinsic(g, "llvm.round", LLVMBuildFMul(g->b, v, gen_splat_like(g, inv, v), ""));
  r = clamp(g, r, k->is_unsigned ? 0 : -Q, Q);
  LLVMTypeRef t = LLVMGetTypeKind(LLVMTypeOf(v)) == LLVMVectorTypeKind ? LLVMVectorType(g->i8, LLVMGetVectorSize(LLVMTypeOf(v))) : g->i8;
  return k->is_unsigned ? LLVMBuildFPToUI(g->b, r, t, "") : LLVMBuildFPToSI(g->b, r, t, "");
}

static void quantize(Gen *g, const ChanKernel *k, LLVMValueRef x, LLVMValueRef q) {
  int64_t n = k->inner;
  float Q = (float)(k->is_unsigned ? (1 << k->bits) - 1 : (1 << (k->bits - 1)) - 1);
  Phases ph;
  gen_phases(g, &ph, 3);
  Loop l;
  LLVMValueRef b = gen_loop_part(g, &l, k->blocks, "block"), lo = LLVMBuildMul(g->b, b, gen_i64(g, k->block), "lo");
  LLVMValueRef rest = LLVMBuildSub(g->b, gen_i64(g, n), lo, "");
  LLVMValueRef len = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, rest, gen_i64(g, k->block), ""), rest, gen_i64(g, k->block), "");
  LLVMValueRef m = absmax(g, x, lo, len);
  LLVMBuildStore(g->b, m, gen_at(g, g->f32, scratch_f32(g, 1), b));
  gen_loop_end(g, &l, 0);

  gen_next_phase(g, &ph); /* the scale: s = max / Q (1 when max = 0), inv = Q / max */
  gen_only_part0(g);
  LLVMValueRef mv = gen_var(g, gen_f32c(g, 0), "max");
  b = gen_loop_begin(g, &l, gen_i64(g, k->blocks), "block");
  LLVMBuildStore(g->b, gen_fmax(g, gen_load(g, g->f32, scratch_f32(g, 1), b), gen_get(g, mv)), mv);
  gen_loop_end(g, &l, 0);
  m = gen_get(g, mv);
  LLVMValueRef zero = LLVMBuildFCmp(g->b, LLVMRealOEQ, m, gen_f32c(g, 0), "zero");
  LLVMValueRef inv = LLVMBuildFDiv(g->b, gen_f32c(g, Q), m, "inv"), s = LLVMBuildFDiv(g->b, m, gen_f32c(g, Q), "s");
  LLVMValueRef unscalable = LLVMBuildOr(g->b, LLVMBuildNot(g->b, gen_finite(g, inv), ""),
                                        LLVMBuildFCmp(g->b, LLVMRealOEQ, s, gen_f32c(g, 0), ""), "");
  gen_fail_if(g, LLVMBuildAnd(g->b, LLVMBuildNot(g->b, zero, ""), unscalable, ""));
  LLVMBuildStore(g->b, LLVMBuildSelect(g->b, zero, gen_f32c(g, 0), inv, ""), scratch_f32(g, 0));
  set_output_scale(g, LLVMBuildSelect(g->b, zero, gen_f32c(g, 1), s, ""), k->is_unsigned);

  gen_next_phase(g, &ph); /* q = clamp(round(x * inv)): C's round, half away from zero */
  inv = LLVMBuildLoad2(g->b, g->f32, scratch_f32(g, 0), "inv");
  if (!k->packed) {
    LLVMValueRef i = gen_loop_part(g, &l, n, "e");
    gen_store(g, round_q(g, k, gen_load(g, g->f32, x, i), inv, Q), q, i);
    gen_loop_end(g, &l, 0);
    return;
  }
  /* q4: byte j holds elements 2j (low nibble) and 2j + 1 (high; 0 past the end): PACK_BYTES
   * bytes a vector from 2 * PACK_BYTES contiguous elements (the vectorizer made gathers of
   * the even and odd elements), then byte by byte */
  enum { PACK_BYTES = 16 };
  LLVMValueRef first, end;
  gen_part_range(g, (n + 1) / 2, &first, &end);
  LLVMValueRef whole = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, end, gen_i64(g, n / 2), ""), end, gen_i64(g, n / 2), "");
  LLVMValueRef vecs = LLVMBuildSDiv(g->b, LLVMBuildSub(g->b, whole, first, ""), gen_i64(g, PACK_BYTES), "");
  vecs = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, vecs, gen_i64(g, 0), ""), vecs, gen_i64(g, 0), "");
  LLVMValueRef jv = LLVMBuildAdd(g->b, first, LLVMBuildMul(g->b, gen_loop_begin(g, &l, vecs, "vbyte"), gen_i64(g, PACK_BYTES), ""), "");
  LLVMTypeRef vx = LLVMVectorType(g->f32, 2 * PACK_BYTES);
  LLVMValueRef xv = LLVMBuildLoad2(g->b, vx, gen_at(g, g->f32, x, LLVMBuildMul(g->b, jv, gen_i64(g, 2), "")), "");
  LLVMSetAlignment(xv, 4);
  LLVMValueRef qv = round_q(g, k, xv, inv, Q), even[PACK_BYTES], odd[PACK_BYTES];
  for (int t = 0; t < PACK_BYTES; t++) even[t] = LLVMConstInt(g->i32, (unsigned)(2 * t), 0), odd[t] = LLVMConstInt(g->i32, (unsigned)(2 * t + 1), 0);
  LLVMValueRef qe = LLVMBuildShuffleVector(g->b, qv, LLVMGetUndef(LLVMTypeOf(qv)), LLVMConstVector(even, PACK_BYTES), "");
  LLVMValueRef qo = LLVMBuildShuffleVector(g->b, qv, LLVMGetUndef(LLVMTypeOf(qv)), LLVMConstVector(odd, PACK_BYTES), "");
  LLVMValueRef packed = LLVMBuildOr(g->b, LLVMBuildAnd(g->b, qe, gen_splat(g, LLVMConstInt(g->i8, 15, 0), PACK_BYTES), ""),
                                    LLVMBuildShl(g->b, qo, gen_splat(g, LLVMConstInt(g->i8, 4, 0), PACK_BYTES), ""), "");
  LLVMSetAlignment(LLVMBuildStore(g->b, packed, gen_at(g, g->i8, q, jv)), 1);
  gen_loop_end(g, &l, 0);
  LLVMValueRef j = gen_loop_range(g, &l, LLVMBuildAdd(g->b, first, LLVMBuildMul(g->b, vecs, gen_i64(g, PACK_BYTES), ""), ""), end, "byte");
  LLVMValueRef i = LLVMBuildMul(g->b, j, gen_i64(g, 2), "");
  LLVMValueRef low = LLVMBuildAnd(g->b, round_q(g, k, gen_load(g, g->f32, x, i), inv, Q), LLVMConstInt(g->i8, 15, 0), "");
  LLVMValueRef i1 = LLVMBuildAdd(g->b, i, gen_i64(g, 1), ""), in = LLVMBuildICmp(g->b, LLVMIntSLT, i1, gen_i64(g, n), "");
  LLVMValueRef x1 = gen_load(g, g->f32, x, LLVMBuildSelect(g->b, in, i1, i, "")); /* in range either way */
  LLVMValueRef hi = LLVMBuildShl(g->b, round_q(g, k, x1, inv, Q), LLVMConstInt(g->i8, 4, 0), "");
  gen_store(g, LLVMBuildOr(g->b, low, LLVMBuildSelect(g->b, in, hi, LLVMConstInt(g->i8, 0, 0), ""), ""), q, j);
  gen_loop_end(g, &l, 0);
}

/* q[qe] = clamp(SR(x[e] * inv * 2^g)) << shift (shift = G-1-g), u = rng_uniform_halves(key, e):
 * one element, or (vec) elements e .. e + 15 from an even e, whose 16 draws take 8 hashes */
static LLVMValueRef sr_value(Gen *g, LLVMValueRef x, LLVMValueRef e, LLVMValueRef inv, LLVMValueRef pow2, LLVMValueRef shift,
                             LLVMValueRef key, float qmax, int vec) {
  LLVMValueRef xe, u;
  if (vec) {
    xe = LLVMBuildLoad2(g->b, LLVMVectorType(g->f32, 16), gen_at(g, g->f32, x, e), "x");
    LLVMSetAlignment(xe, 4);
    u = gen_rng_uniform_halves16(g, key, e);
  } else {
    xe = gen_load(g, g->f32, x, e);
    u = gen_rng_uniform_halves(g, key, e);
  }
  LLVMValueRef v = LLVMBuildFMul(g->b, LLVMBuildFMul(g->b, xe, gen_splat_like(g, inv, xe), ""), gen_splat_like(g, pow2, xe), "v");
  /* |v| <= Qmax (plus rounding) by the choice of the groups, so floor(v) converts exactly and
   * the rounding up and the clamp are integer work: fewer vector instructions than in floats */
  LLVMValueRef f = gen_intrinsic(g, "llvm.floor", v);
  LLVMValueRef up = LLVMBuildFCmp(g->b, LLVMRealOLT, u, LLVMBuildFSub(g->b, v, f, ""), "");
  LLVMTypeRef ti = vec ? LLVMVectorType(g->i32, 16) : g->i32, t8 = vec ? LLVMVectorType(g->i8, 16) : g->i8;
  LLVMValueRef qi = LLVMBuildAdd(g->b, LLVMBuildFPToSI(g->b, f, ti, ""), LLVMBuildZExt(g->b, up, ti, ""), "sr");
  LLVMValueRef hi = gen_splat_like(g, LLVMConstInt(g->i32, (unsigned)qmax, 0), qi);
  LLVMValueRef lo = gen_splat_like(g, LLVMConstInt(g->i32, (unsigned long long)-(long long)qmax, 1), qi);
  qi = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, qi, hi, ""), hi, qi, "");
  qi = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, qi, lo, ""), lo, qi, "");
  return LLVMBuildTrunc(g->b, LLVMBuildShl(g->b, qi, gen_splat_like(g, shift, qi), ""), t8, ""); /* * 2^shift */
}
static void sr_store(Gen *g, LLVMValueRef x, LLVMValueRef q, LLVMValueRef qe, LLVMValueRef e, LLVMValueRef inv, LLVMValueRef pow2,
                     LLVMValueRef shift, LLVMValueRef key, float qmax, int vec) {
  LLVMSetAlignment(LLVMBuildStore(g->b, sr_value(g, x, e, inv, pow2, shift, key, qmax, vec), gen_at(g, g->i8, q, qe)), 1);
}
/* elements e .. e + 63 (e even) as one 64-byte store: four of Zen 4's vpmovdb stores to memory
 * took longer than the rounding itself */
static void sr_store64(Gen *g, LLVMValueRef x, LLVMValueRef q, LLVMValueRef qe, LLVMValueRef e, LLVMValueRef inv, LLVMValueRef pow2,
                       LLVMValueRef shift, LLVMValueRef key, float qmax) {
  LLVMValueRef part[4], cat[64];
  for (int i = 0; i < 4; i++)
    part[i] = sr_value(g, x, LLVMBuildAdd(g->b, e, gen_i64(g, 16 * i), ""), inv, pow2, shift, key, qmax, 1);
  for (int i = 0; i < 64; i++) cat[i] = LLVMConstInt(g->i32, (unsigned)i, 0);
  LLVMValueRef lo = LLVMBuildShuffleVector(g->b, part[0], part[1], LLVMConstVector(cat, 32), "");
  LLVMValueRef hi = LLVMBuildShuffleVector(g->b, part[2], part[3], LLVMConstVector(cat, 32), "");
  LLVMValueRef all = LLVMBuildShuffleVector(g->b, lo, hi, LLVMConstVector(cat, 64), "");
  LLVMSetAlignment(LLVMBuildStore(g->b, all, gen_at(g, g->i8, q, qe)), 1);
}

/* 2^g as a float (exact, so the multiply is ldexpf's exact scaling) and the shift G-1-g of
 * group gi */
static void group_scaling(Gen *g, LLVMValueRef gi, int G, LLVMValueRef *pow2, LLVMValueRef *shift) {
  *pow2 = LLVMBuildBitCast(g->b, LLVMBuildShl(g->b, LLVMBuildAdd(g->b, gi, LLVMConstInt(g->i32, 127, 0), ""),
                                              LLVMConstInt(g->i32, 23, 0), ""), g->f32, "pow2");
  *shift = LLVMBuildSub(g->b, LLVMConstInt(g->i32, (unsigned)(G - 1), 0), gi, "shift");
}

static LLVMValueRef params_f32(Gen *g, LLVMValueRef params, int64_t i) { return gen_at(g, g->f32, params, gen_i64(g, i)); }

void gen_sq_row(Gen *g, const SqRows *r, LLVMValueRef row, LLVMValueRef key) {
  int64_t inner = r->inner;
  LLVMValueRef x = r->xfirst ? gen_at(g, g->f32, r->x, LLVMBuildNeg(g->b, r->xfirst, "")) : r->x; /* x[e] for any e of the row */
  LLVMValueRef inv = LLVMBuildLoad2(g->b, g->f32, params_f32(g, r->params, 0), "inv");
  LLVMValueRef gi = gen_load(g, g->i32, params_f32(g, r->params, 2), LLVMBuildSRem(g->b, row, gen_i64(g, r->channels), ""));
  LLVMValueRef pow2, shift;
  group_scaling(g, gi, r->groups, &pow2, &shift);
  float qmax = (float)((1 << (r->bits - 1)) - 1);
  int64_t vecs = inner % 2 == 0 ? inner / 16 : 0; /* an even row length: rows start on a pair */
  LLVMValueRef first = LLVMBuildMul(g->b, row, gen_i64(g, inner), "first"), qfirst = LLVMBuildSub(g->b, first, r->qfirst, "");
  Loop l;
  if (vecs / 4) {
    LLVMValueRef at = LLVMBuildMul(g->b, gen_loop_begin(g, &l, gen_i64(g, vecs / 4), "j64"), gen_i64(g, 64), "");
    sr_store64(g, x, r->q, LLVMBuildAdd(g->b, qfirst, at, ""), LLVMBuildAdd(g->b, first, at, "e"), inv, pow2, shift, key, qmax);
    gen_loop_end(g, &l, 0);
  }
  if (vecs % 4) {
    LLVMValueRef at = LLVMBuildMul(g->b, gen_loop_range(g, &l, gen_i64(g, vecs / 4 * 4), gen_i64(g, vecs), "j16"), gen_i64(g, 16), "");
    sr_store(g, x, r->q, LLVMBuildAdd(g->b, qfirst, at, ""), LLVMBuildAdd(g->b, first, at, "e"), inv, pow2, shift, key, qmax, 1);
    gen_loop_end(g, &l, 0);
  }
  LLVMValueRef j = gen_loop_range(g, &l, gen_i64(g, vecs * 16), gen_i64(g, inner), "j");
  sr_store(g, x, r->q, LLVMBuildAdd(g->b, qfirst, j, ""), LLVMBuildAdd(g->b, first, j, "e"), inv, pow2, shift, key, qmax, 0);
  gen_loop_end(g, &l, 0);
}

void gen_sq_groups(Gen *g, LLVMValueRef ranges, int64_t C, int G, int bits, LLVMValueRef params) {
  float qmax = (float)((1 << (bits - 1)) - 1);
  Loop l;
  LLVMValueRef Rv = gen_var(g, gen_f32c(g, 0), "R");
  LLVMValueRef c = gen_loop_begin(g, &l, gen_i64(g, C), "c");
  LLVMBuildStore(g->b, gen_fmax(g, gen_load(g, g->f32, ranges, c), gen_get(g, Rv)), Rv);
  gen_loop_end(g, &l, 0);
  LLVMValueRef R = gen_get(g, Rv), zero = LLVMBuildFCmp(g->b, LLVMRealOEQ, R, gen_f32c(g, 0), "zero");
  LLVMValueRef inv = LLVMBuildFDiv(g->b, gen_f32c(g, qmax), R, "inv");
  LLVMValueRef smin = gen_ldexpf(g, LLVMBuildFDiv(g->b, R, gen_f32c(g, qmax), "s0"), -(G - 1));
  LLVMValueRef bad = LLVMBuildOr(g->b, LLVMBuildNot(g->b, gen_finite(g, inv), ""),
                                 LLVMBuildOr(g->b, LLVMBuildFCmp(g->b, LLVMRealOEQ, smin, gen_f32c(g, 0), ""),
                                             LLVMBuildNot(g->b, gen_finite(g, gen_ldexpf(g, inv, G - 1)), ""), ""), "");
  gen_fail_if(g, LLVMBuildAnd(g->b, LLVMBuildNot(g->b, zero, ""), bad, ""));
  LLVMValueRef th[8];
  for (int j = 0; j + 1 < G; j++) th[j] = gen_ldexpf(g, R, -(j + 1));
  LLVMValueRef groups = params_f32(g, params, 2); /* i32 per channel */
  c = gen_loop_begin(g, &l, gen_i64(g, C), "c");
  LLVMValueRef r = gen_load(g, g->f32, ranges, c), grp = LLVMConstInt(g->i32, (unsigned)(G - 1), 0);
  for (int j = G - 2; j >= 0; j--) /* the smallest j with r > R * 2^-(j+1) */
    grp = LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, r, th[j], ""), LLVMConstInt(g->i32, (unsigned)j, 0), grp, "");
  gen_store(g, LLVMBuildSelect(g->b, zero, LLVMConstInt(g->i32, (unsigned)(G - 1), 0), grp, ""), groups, c);
  gen_loop_end(g, &l, 0);
  LLVMBuildStore(g->b, LLVMBuildSelect(g->b, zero, gen_f32c(g, 0), inv, ""), params_f32(g, params, 0));
  LLVMBuildStore(g->b, LLVMBuildSelect(g->b, zero, gen_f32c(g, 1), smin, ""), params_f32(g, params, 1));
}

void gen_sq_ranges(Gen *g, LLVMValueRef x, int64_t outer, int64_t C, int64_t inner, int given, LLVMValueRef ranges) {
  Loop l, lo_;
  LLVMValueRef lo, hi, c;
  gen_part_range(g, C, &lo, &hi);
  if (given) { /* as float bits after x's values: copied */
    c = gen_loop_range(g, &l, lo, hi, "c");
    LLVMValueRef u = gen_load(g, g->i32, gen_at(g, g->i32, x, gen_i64(g, outer * C * inner)), c);
    gen_fail_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, u, LLVMConstInt(g->i32, 0x7f800000, 0), "")); /* NaN or Inf */
    gen_store(g, LLVMBuildBitCast(g->b, u, g->f32, ""), ranges, c);
    gen_loop_end(g, &l, 0);
    return;
  }
  c = gen_loop_range(g, &l, lo, hi, "c");
  gen_store(g, gen_f32c(g, 0), ranges, c);
  gen_loop_end(g, &l, 0);
  if (inner == 1) {
    column_ranges(g, x, ranges, lo, hi, C, outer);
    return;
  }
  /* rows in memory order (o outer): one channel's rows alone are runs too short for the prefetchers */
  LLVMValueRef o = gen_loop_begin(g, &lo_, gen_i64(g, outer), "o");
  c = gen_loop_range(g, &l, lo, hi, "c");
  LLVMValueRef first = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, o, gen_i64(g, C), ""), c, ""), gen_i64(g, inner), "");
  LLVMValueRef m = absmax(g, x, first, gen_i64(g, inner));
  gen_store(g, gen_fmax(g, m, gen_load(g, g->f32, ranges, c)), ranges, c);
  gen_loop_end(g, &l, 0);
  gen_loop_end(g, &lo_, 0);
}

void gen_sq_set_scale(Gen *g, LLVMValueRef params) {
  set_output_scale(g, LLVMBuildLoad2(g->b, g->f32, params_f32(g, params, 1), "scale"), 0);
}

static void shiftquant(Gen *g, const ChanKernel *k, LLVMValueRef x, LLVMValueRef q) {
  int64_t C = k->channels, inner = k->inner, G = k->groups;
  float qmax = (float)((1 << (k->bits - 1)) - 1);
  LLVMValueRef params = gen_arg(g, KA_SCRATCH), ranges = params_f32(g, params, 2 + C);
  Phases ph;
  gen_phases(g, &ph, 3);
  gen_sq_ranges(g, x, k->outer, C, inner, k->ranges, ranges); /* r_c = max |x[., c, .]| */
  Loop l;
  gen_next_phase(g, &ph); /* R = max r_c; groups by exact ldexp thresholds; s = ldexp(R / Qmax, -(G-1)) */
  gen_only_part0(g);
  gen_sq_groups(g, ranges, C, (int)G, k->bits, params);
  gen_sq_set_scale(g, params);

  /* q~ = clamp(SR(x * inv * 2^g)) * 2^(G-1-g): rows of inner elements, or with one element per
   * row and channel (inner = 1) rows of the channels, so that the inner loop vectorizes */
  gen_next_phase(g, &ph);
  LLVMValueRef key = gen_rng_key(g, k->stream);
  if (inner > 1) {
    SqRows r = {x, q, gen_i64(g, 0), params, C, inner, (int)G, k->bits, NULL};
    gen_sq_row(g, &r, gen_loop_part(g, &l, k->outer * C, "row"), key);
    gen_loop_end(g, &l, 0);
    return;
  }
  LLVMValueRef inv = LLVMBuildLoad2(g->b, g->f32, params_f32(g, params, 0), "inv"), pow2, shift;
  LLVMValueRef row = gen_loop_part(g, &l, k->outer, "o");
  Loop li;
  LLVMValueRef j = gen_loop_begin(g, &li, gen_i64(g, C), "c");
  LLVMValueRef e = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, row, gen_i64(g, C), ""), j, "e");
  group_scaling(g, gen_load(g, g->i32, params_f32(g, params, 2), j), (int)G, &pow2, &shift);
  sr_store(g, x, q, e, e, inv, pow2, shift, key, qmax, 0);
  gen_loop_end(g, &li, 0);
  gen_loop_end(g, &l, 0);
}

LLVMValueRef gen_quant(Gen *g, const ChanKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name);
  LLVMValueRef x = gen_input(g, 0), q = gen_arg(g, KA_OUT);
  g->scratch = k->scratch;
  if (k->op == OP_quantize) quantize(g, k, x, q);
  else shiftquant(g, k, x, q);
  LLVMBuildRetVoid(g->b);
  return fn;
}
