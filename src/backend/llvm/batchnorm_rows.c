/* batchnorm_rows.c: the batchnorm kernels' machinery: per-channel loads and stores, x's
 * values, a row's vectors, the per-channel reductions over parts, the phases over rows, the
 * normalization and the fused max pooling's planes. */
#include "batchnorm_gen.h"

/* the unit's channels (or elements) at base[i]: one float, or cw of them, masked to the channels */
LLVMValueRef bn_cload(Bn *b, LLVMValueRef base, LLVMValueRef i) {
  if (b->cw == 1) return gen_load(b->g, b->g->f32, base, i);
  LLVMTypeRef vt = ct(b, b->g->f32);
  return gen_masked_load(b->g, vt, gen_at(b->g, b->g->f32, base, i), b->cmask, LLVMConstNull(vt));
}
void bn_cstore(Bn *b, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i) {
  if (b->cw == 1) gen_store(b->g, v, base, i);
  else gen_masked_store(b->g, v, gen_at(b->g, b->g->f32, base, i), b->cmask);
}
/* row r of the statistics tensor, channel c */
LLVMValueRef bn_stat(Bn *b, LLVMValueRef stats, int row, LLVMValueRef c) {
  return bn_cload(b, stats, LLVMBuildAdd(B, c, gen_i64(b->g, row * b->k->channels), ""));
}
void bn_stat_store(Bn *b, LLVMValueRef v, LLVMValueRef out, int row, LLVMValueRef c) {
  bn_cstore(b, v, out, LLVMBuildAdd(B, c, gen_i64(b->g, row * b->k->channels), ""));
}
/* a per-channel value in every lane of a sum's vector (one channel), or as it is (cw lanes) */


/* The lanes' sum as the reference adds them: lane l + lane l + w for w = 8, 4, 2, 1; with
 * channels in the lanes, each lane is its channel's sum already. */
LLVMValueRef bn_lanes_sum(Bn *b, LLVMValueRef v) {
  if (b->cw > 1) return v;
  for (int w = NM_LANES / 2; w >= 1; w /= 2) {
    LLVMValueRef lo[NM_LANES / 2], hi[NM_LANES / 2];
    for (int l = 0; l < w; l++) lo[l] = LLVMConstInt(b->g->i32, (unsigned)l, 0), hi[l] = LLVMConstInt(b->g->i32, (unsigned)(l + w), 0);
    LLVMValueRef a = LLVMBuildShuffleVector(B, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(lo, (unsigned)w), "");
    LLVMValueRef c = LLVMBuildShuffleVector(B, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(hi, (unsigned)w), "");
    v = LLVMBuildFAdd(B, a, c, "");
  }
  return LLVMBuildExtractElement(B, v, LLVMConstInt(b->g->i32, 0, 0), "");
}


/* x's values: floats, or s16 sums converted as nm_s16_value does, (float)v * scale + 0.0 */
LLVMValueRef bn_s16_values(Bn *b, LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  int vec = LLVMGetTypeKind(t) == LLVMVectorTypeKind;
  LLVMValueRef f = LLVMBuildSIToFP(B, v, vec ? LLVMVectorType(b->g->f32, LLVMGetVectorSize(t)) : b->g->f32, "");
  f = LLVMBuildFMul(B, f, gen_splat_like(b->g, b->xscale, f), "");
  return LLVMBuildFAdd(B, f, gen_splat_like(b->g, gen_f32c(b->g, 0.0f), f), "x");
}
LLVMValueRef bn_x_load(Bn *b, LLVMValueRef x, LLVMValueRef e) {
  LLVMValueRef v = LLVMBuildLoad2(B, x_elem(b), x_at(b, x, e), "");
  return b->xscale ? bn_s16_values(b, v) : v;
}

/* the mask of a vector's first n lanes */
LLVMValueRef bn_first_lanes(Bn *b, int64_t n) {
  LLVMValueRef mask[NM_LANES];
  for (int j = 0; j < NM_LANES; j++) mask[j] = LLVMConstInt(LLVMInt1TypeInContext(b->g->ctx), j < n, 0);
  return LLVMConstVector(mask, NM_LANES);
}

/* NM_LANES floats at &base[e] (x's values when s16); the first `n` of them when n < NM_LANES,
 * the other lanes `pass` */
static LLVMValueRef load_lanes(Bn *b, LLVMValueRef base, LLVMValueRef e, int n, LLVMValueRef pass, int s16) {
  LLVMTypeRef et = s16 ? x_elem(b) : b->g->f32, vt = LLVMVectorType(et, NM_LANES);
  LLVMValueRef at = gen_at(b->g, et, base, e), v;
  if (n == NM_LANES) {
    v = LLVMBuildLoad2(B, vt, at, "");
    LLVMSetAlignment(v, s16 ? 2 : 4);
    return s16 ? bn_s16_values(b, v) : v;
  }
  LLVMValueRef on = bn_first_lanes(b, n), passv = gen_splat(b->g, pass, NM_LANES);
  if (!s16) return gen_masked_load(b->g, vt, at, on, passv);
  return LLVMBuildSelect(B, on, bn_s16_values(b, gen_masked_load(b->g, vt, at, on, LLVMConstNull(vt))), passv, "");
}

/* body(v) for the vectors of a row, each stream read from its pointer to the row's first
 * element: the full vectors, then the last inner % NM_LANES elements with the other lanes
 * `pass` (values that add nothing) and b->on their mask; with channels in the lanes (cw > 1),
 * the unit's channels of the row. The streams (x first, and g in dparams) are read at the
 * same elements. */
typedef void (*LaneBody)(Bn *b, LLVMValueRef *v, void *ctx);
void bn_row_vectors(Bn *b, int ns, const LLVMValueRef *row, const LLVMValueRef *pass, LaneBody body, void *ctx) {
  Gen *g = b->g;
  int64_t full = b->k->inner / NM_LANES, rest = b->k->inner % NM_LANES;
  LLVMValueRef v[2];
  if (b->cw > 1) {
    for (int s = 0; s < ns; s++) v[s] = bn_cload(b, row[s], gen_i64(g, 0));
    body(b, v, ctx);
    return;
  }
  b->on = NULL;
  if (full) {
    Loop lv;
    LLVMValueRef e = LLVMBuildMul(B, gen_loop_begin(g, &lv, gen_i64(g, full), "v"), gen_i64(g, NM_LANES), "");
    for (int s = 0; s < ns; s++) v[s] = load_lanes(b, row[s], e, NM_LANES, NULL, s == 0 && b->xscale);
    body(b, v, ctx);
    gen_loop_end(g, &lv, 0);
  }
  if (rest) {
    for (int s = 0; s < ns; s++) v[s] = load_lanes(b, row[s], gen_i64(g, full * NM_LANES), (int)rest, pass[s], s == 0 && b->xscale);
    b->on = bn_first_lanes(b, rest);
    body(b, v, ctx);
    b->on = NULL;
  }
}

/* the first element of row o of channel c */
static LLVMValueRef row_start(Bn *b, LLVMValueRef o, LLVMValueRef c) {
  const ChanKernel *k = b->k;
  return LLVMBuildMul(B, LLVMBuildAdd(B, LLVMBuildMul(B, o, gen_i64(b->g, k->channels), ""), c, ""), gen_i64(b->g, k->inner), "row");
}

/* unit u's first channel; with channels in the lanes, also the mask of its lanes that are channels */
static LLVMValueRef unit_channel(Bn *b, LLVMValueRef u) {
  if (b->cw == 1) return u;
  LLVMValueRef c = LLVMBuildMul(B, u, gen_i64(b->g, b->cw), "c");
  LLVMValueRef left = LLVMBuildSub(B, gen_i64(b->g, b->k->channels), c, "");
  b->cmask = LLVMBuildICmp(B, LLVMIntSLT, gen_iota(b->g, NM_LANES), gen_splat(b->g, left, NM_LANES), "");
  return c;
}

/* scratch (kir_bn_scratch): accumulator j of channel c (the constants' regions follow, consts) */
static LLVMValueRef acc_slot(Bn *b, int j, LLVMValueRef c) {
  int64_t region = (int64_t)j * kir_bn_channels(b->k->channels) * KIR_BN_ACC_BYTES;
  LLVMValueRef at = LLVMBuildAdd(B, gen_i64(b->g, region), LLVMBuildMul(B, c, gen_i64(b->g, KIR_BN_ACC_BYTES), ""), "");
  return gen_at(b->g, b->g->i8, gen_arg(b->g, KA_SCRATCH), at);
}

/* A per-channel reduction over this part's units: start(c) (when given) before its rows,
 * row(c, row) for every row of each channel, rows ascending within a channel, then done(c)
 * with the accumulators' totals in acc[].
 * One channel per unit: the rows are read in memory order (o outer, the part's channels
 * inner; a channel's runs are too short for the prefetchers to stream them one channel at a
 * time) and each channel's accumulators wait in scratch between its rows. Channels in the
 * lanes: unit after unit, the accumulators in registers. Either way each channel adds its
 * elements in the same order, so the bits are the same. */
static LLVMValueRef acc_init(const Accs *a, int j) {
  return a->init[j] ? a->init[j] : LLVMConstNull(LLVMGetAllocatedType(a->var[j]));
}
void bn_reduce_units(Bn *b, const Accs *a, UnitFn start, RowFn row, UnitFn done, void *ctx) {
  Gen *g = b->g;
  LLVMValueRef lo, hi;
  gen_part_range(g, units(b), &lo, &hi);
  Loop lu, lo_;
  if (b->cw > 1) {
    LLVMValueRef c = unit_channel(b, gen_loop_range(g, &lu, lo, hi, "unit"));
    for (int j = 0; j < a->n; j++) LLVMBuildStore(B, acc_init(a, j), a->var[j]);
    if (start) start(b, c, ctx);
    LLVMValueRef o = gen_loop_begin(g, &lo_, gen_i64(g, b->k->outer), "o");
    row(b, c, row_start(b, o, c), ctx);
    gen_loop_end(g, &lo_, 0);
    done(b, c, ctx);
    gen_loop_end(g, &lu, 0);
    return;
  }
  LLVMValueRef c = gen_loop_range(g, &lu, lo, hi, "c");
  for (int j = 0; j < a->n; j++) LLVMBuildStore(B, acc_init(a, j), acc_slot(b, j, c));
  if (start) start(b, c, ctx);
  gen_loop_end(g, &lu, 0);
  Loop lc;
  LLVMValueRef o = gen_loop_begin(g, &lo_, gen_i64(g, b->k->outer), "o");
  c = gen_loop_range(g, &lc, lo, hi, "c");
  for (int j = 0; j < a->n; j++)
    LLVMBuildStore(B, LLVMBuildLoad2(B, LLVMGetAllocatedType(a->var[j]), acc_slot(b, j, c), ""), a->var[j]);
  row(b, c, row_start(b, o, c), ctx);
  for (int j = 0; j < a->n; j++) LLVMBuildStore(B, gen_get(g, a->var[j]), acc_slot(b, j, c));
  gen_loop_end(g, &lc, 0);
  gen_loop_end(g, &lo_, 0);
  c = gen_loop_range(g, &lu, lo, hi, "c");
  for (int j = 0; j < a->n; j++)
    LLVMBuildStore(B, LLVMBuildLoad2(B, LLVMGetAllocatedType(a->var[j]), acc_slot(b, j, c), ""), a->var[j]);
  done(b, c, ctx);
  gen_loop_end(g, &lu, 0);
}

/* Elementwise work in two phases: per unit (parts over units), constants(c) stores per-channel
 * constants in the scratch's float regions (K_*); then row(c, row) for every row in memory
 * order (parts over rows). A batchnorm dx keeping its ranges adds a phase for them; one
 * ShiftQuanting dx (sq_out) takes the rows' ranges, then (part 0) the channels', the scale and
 * the groups, then goes over the rows again, rounding. An L1 one with extremes has each
 * channel's range from its constants already and goes over the rows once, rounding. */
static void each_row(Bn *b, RowFn row, void *ctx) {
  Gen *g = b->g;
  Loop lr;
  LLVMValueRef r = gen_loop_part(g, &lr, b->k->outer * units(b), "rows");
  LLVMValueRef c = unit_channel(b, LLVMBuildSRem(B, r, gen_i64(g, units(b)), ""));
  row(b, c, row_start(b, LLVMBuildSDiv(B, r, gen_i64(g, units(b)), ""), c), ctx);
  gen_loop_end(g, &lr, 0);
}
void bn_by_rows(Bn *b, UnitFn constants, RowFn row, void *ctx) {
  Gen *g = b->g;
  const ChanKernel *k = b->k;
  Phases ph;
  gen_phases(g, &ph, k->sq_out ? (k->extremes ? 3 : 4) : k->ranges ? 3 : 2);
  Loop lu;
  LLVMValueRef c = unit_channel(b, gen_loop_part(g, &lu, units(b), "unit"));
  constants(b, c, ctx); /* with extremes, also the ranges */
  gen_loop_end(g, &lu, 0);
  if (!k->extremes) {
    gen_next_phase(g, &ph);
    b->dx_pass = k->sq_out ? DX_TOPS : DX_STORE;
    each_row(b, row, ctx);
  }
  if (k->ranges) { /* each channel's range from its rows', after dx */
    gen_next_phase(g, &ph);
    bn_channel_ranges(b, gen_at(g, g->i32, gen_arg(g, KA_OUT), gen_i64(g, k->outer * k->channels * k->inner)), 0);
  }
  if (k->sq_out) { /* part 0: the channels' ranges (a few thousand row maxima), the scale and the groups */
    gen_next_phase(g, &ph);
    gen_only_part0(g);
    LLVMValueRef params = bn_sq_params(b);
    g->part = gen_i64(g, 0), g->nparts = gen_i64(g, 1);
    if (k->extremes) bn_check_ranges(b);
    else bn_channel_ranges(b, bn_sq_range_bits(b), 1);
    g->part = g->nparts = NULL;
    gen_sq_groups(g, gen_at(g, g->f32, params, gen_i64(g, 2 + k->channels)), k->channels, k->groups, k->bits, params);
    gen_sq_set_scale(g, params);
    gen_next_phase(g, &ph);
    b->dx_pass = DX_QUANTIZE;
    each_row(b, row, ctx);
  }
}

void bn_load_constants(Bn *b, LLVMValueRef c, RowCtx *r, int first, int last) {
  for (int j = first; j <= last; j++) r->k[j] = bn_cload(b, consts(b, j), c);
}
/* the forward pass's output from x: gamma * ((x - mean) * inv) + beta, then the folded relu */
LLVMValueRef bn_normalize(Bn *b, const RowCtx *r, LLVMValueRef x) {
  LLVMValueRef xh = LLVMBuildFMul(B, LLVMBuildFSub(B, x, gen_splat_like(b->g, r->k[K_MEAN], x), ""), gen_splat_like(b->g, r->k[K_INV], x), "");
  LLVMValueRef y = LLVMBuildFAdd(B, LLVMBuildFMul(B, gen_splat_like(b->g, r->k[K_GAMMA], x), xh, ""), gen_splat_like(b->g, r->k[K_BETA], x), "");
  return b->k->relu ? gen_relu(b->g, y) : y;
}

/* ---- the fused max pooling (batchnorm_pool and its gradients), one plane at a time: the
 * forward pass normalizes x as the pooling loads it and writes each window's code after the
 * pooled values; the gradients route dp by the codes ---- */
static LLVMValueRef normalized_load(Gen *g, const PoolPlane *pp, LLVMTypeRef t, LLVMValueRef e, LLVMValueRef mask) {
  const RowCtx *r = pp->ctx;
  Bn *b = r->b;
  if (!b->xscale) return bn_normalize(b, r, gen_pool_load_plain(g, pp, t, e, mask));
  if (!mask) return bn_normalize(b, r, bn_x_load(b, pp->x, e));
  LLVMTypeRef vt = LLVMVectorType(x_elem(b), LLVMGetVectorSize(t));
  return bn_normalize(b, r, bn_s16_values(b, gen_masked_load(g, vt, x_at(b, pp->x, e), mask, LLVMConstNull(vt))));
}
PoolPlane bn_plane(Bn *b, RowCtx *r, LLVMValueRef row) {
  const ChanKernel *k = b->k;
  return (PoolPlane){k->H, k->W, k->Ho, k->Wo, k->pool_k, k->pool_s, normalized_load, x_at(b, r->x, row), r};
}
/* the plane at `row` of the pooled tensor p (its index times Ho * Wo) */
LLVMValueRef bn_pooled_plane(Bn *b, LLVMValueRef p, LLVMValueRef row) {
  const ChanKernel *k = b->k;
  LLVMValueRef i = LLVMBuildMul(B, LLVMBuildSDiv(B, row, gen_i64(b->g, k->inner), ""), gen_i64(b->g, k->Ho * k->Wo), "");
  return gen_at(b->g, b->g->f32, p, i);
}
/* the codes of the plane at `row` in batchnorm_pool tensor p: after all its pooled values */
LLVMValueRef bn_plane_codes(Bn *b, LLVMValueRef p, LLVMValueRef row) {
  const ChanKernel *k = b->k;
  int64_t hw = k->Ho * k->Wo;
  LLVMValueRef i = LLVMBuildMul(B, LLVMBuildSDiv(B, row, gen_i64(b->g, k->inner), ""), gen_i64(b->g, hw), "");
  return gen_at(b->g, b->g->i8, p, LLVMBuildAdd(B, gen_i64(b->g, 4 * k->outer * k->channels * hw), i, ""));
}
/* r->grad = dp routed onto the plane at `row` by the codes of batchnorm_pool input `pool` */
void bn_route_gradient(Bn *b, RowCtx *r, LLVMValueRef row, int pool) {
  Gen *g = b->g;
  r->grad = gen_entry_alloca(g, LLVMArrayType(g->f32, (unsigned)b->k->inner), "grad");
  LLVMSetAlignment(r->grad, 64);
  PoolPlane pp = bn_plane(b, r, row);
  gen_maxpool_plane(g, &pp, bn_pooled_plane(b, r->dy, row), b->k->relu, r->grad, bn_plane_codes(b, gen_input(g, pool), row));
}

/* nm_l1_inv or nm_l2_inv of a float spread: 1 / (kappa * s + eps) or 1 / sqrt(s + eps) in double */
LLVMValueRef bn_divisor_inv(Bn *b, LLVMValueRef spread) {
  LLVMValueRef s = f64(b, spread), eps = dconst(b, (double)(float)b->k->eps);
  LLVMValueRef den = b->k->l2 ? gen_intrinsic(b->g, "llvm.sqrt", LLVMBuildFAdd(B, s, eps, ""))
                              : LLVMBuildFAdd(B, LLVMBuildFMul(B, dconst(b, NM_KAPPA), s, ""), eps, "");
  return f32(b, LLVMBuildFDiv(B, dconst(b, 1.0), den, "inv"));
}

