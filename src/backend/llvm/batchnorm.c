/* batchnorm.c: the kernels of batchnorm with saved statistics, L1 or L2, as runtime/numerics.c
 * defines them: batchnorm_stats (nm_bn_stats, or the integer sums of nm_bn_stats_s16),
 * l1_/l2_batchnorm (nm_bn_forward with the batch's statistics and a running update, or the
 * running statistics in inference), batchnorm_dparams (nm_bn_dparams) and batchnorm_dx (nm_bn_dx).
 * A unit of work is one channel: its sums run in one vector of NM_LANES doubles, lane
 * k % NM_LANES taking element k of each row as the reference's lanes do, and its elementwise
 * passes are scalar loops that the vectorizer widens. Where a row holds one element (inner = 1,
 * a batchnorm after a linear layer) all of a channel's elements fall in lane 0, so a unit is
 * NM_LANES channels instead, one per lane, read contiguously along the rows: per-channel values
 * are then vectors, and each lane's sum is the reference's lane 0 (adding the other lanes' zeros
 * changes no bits). */
#include <math.h>
#include "../../../runtime/numerics.h"
#include "gen.h"

typedef struct {
  Gen *g;
  const ChanKernel *k;
  LLVMTypeRef vf, vd, vl; /* NM_LANES floats, doubles, integers (sign counts) */
  int cw;                 /* channels per unit of work: 1, or NM_LANES when inner = 1 */
  LLVMValueRef cmask;     /* cw > 1: the lanes that are channels */
  LLVMValueRef xscale;    /* x is s16 (a convolution's sums): their scale; NULL when floats */
  int dx_pass;            /* batchnorm dx's rows: DX_STORE, or with sq_out DX_TOPS then DX_QUANTIZE */
  LLVMValueRef on;        /* row_vectors' body: the lanes in the row, NULL where all are */
} Bn;
enum { DX_STORE, DX_TOPS, DX_QUANTIZE };

#define B (b->g->b)
static LLVMValueRef ext(Bn *b, LLVMValueRef v) { return LLVMBuildFPExt(B, v, b->vd, ""); }
/* per-channel values: a scalar, or a vector of the unit's cw channels */
static LLVMTypeRef ct(Bn *b, LLVMTypeRef t) { return b->cw > 1 ? LLVMVectorType(t, (unsigned)b->cw) : t; }
static LLVMValueRef f64(Bn *b, LLVMValueRef v) { return LLVMBuildFPExt(B, v, ct(b, b->g->f64), ""); }
static LLVMValueRef f32(Bn *b, LLVMValueRef v) { return LLVMBuildFPTrunc(B, v, ct(b, b->g->f32), ""); }
static LLVMValueRef dconst(Bn *b, double v) {
  return b->cw > 1 ? gen_splat(b->g, gen_f64c(b->g, v), (unsigned)b->cw) : gen_f64c(b->g, v);
}
static LLVMValueRef fconst(Bn *b, float v) {
  return b->cw > 1 ? gen_splat(b->g, gen_f32c(b->g, v), (unsigned)b->cw) : gen_f32c(b->g, v);
}
/* the unit's channels (or elements) at base[i]: one float, or cw of them, masked to the channels */
static LLVMValueRef cload(Bn *b, LLVMValueRef base, LLVMValueRef i) {
  if (b->cw == 1) return gen_load(b->g, b->g->f32, base, i);
  LLVMTypeRef vt = ct(b, b->g->f32);
  return gen_masked_load(b->g, vt, gen_at(b->g, b->g->f32, base, i), b->cmask, LLVMConstNull(vt));
}
static void cstore(Bn *b, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i) {
  if (b->cw == 1) gen_store(b->g, v, base, i);
  else gen_masked_store(b->g, v, gen_at(b->g, b->g->f32, base, i), b->cmask);
}
/* row r of the statistics tensor, channel c */
static LLVMValueRef stat(Bn *b, LLVMValueRef stats, int row, LLVMValueRef c) {
  return cload(b, stats, LLVMBuildAdd(B, c, gen_i64(b->g, row * b->k->channels), ""));
}
static void stat_store(Bn *b, LLVMValueRef v, LLVMValueRef out, int row, LLVMValueRef c) {
  cstore(b, v, out, LLVMBuildAdd(B, c, gen_i64(b->g, row * b->k->channels), ""));
}
/* a per-channel value in every lane of a sum's vector (one channel), or as it is (cw lanes) */
static LLVMValueRef lift(Bn *b, LLVMValueRef v) { return b->cw > 1 ? v : gen_splat(b->g, v, NM_LANES); }

/* The lanes' sum as the reference adds them: lane l + lane l + w for w = 8, 4, 2, 1; with
 * channels in the lanes, each lane is its channel's sum already. */
static LLVMValueRef lanes_sum(Bn *b, LLVMValueRef v) {
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
static LLVMTypeRef x_elem(Bn *b) { return b->xscale ? LLVMInt16TypeInContext(b->g->ctx) : b->g->f32; }
static LLVMValueRef x_at(Bn *b, LLVMValueRef x, LLVMValueRef e) { return gen_at(b->g, x_elem(b), x, e); }
static LLVMValueRef s16_values(Bn *b, LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  int vec = LLVMGetTypeKind(t) == LLVMVectorTypeKind;
  LLVMValueRef f = LLVMBuildSIToFP(B, v, vec ? LLVMVectorType(b->g->f32, LLVMGetVectorSize(t)) : b->g->f32, "");
  f = LLVMBuildFMul(B, f, gen_splat_like(b->g, b->xscale, f), "");
  return LLVMBuildFAdd(B, f, gen_splat_like(b->g, gen_f32c(b->g, 0.0f), f), "x");
}
static LLVMValueRef x_load(Bn *b, LLVMValueRef x, LLVMValueRef e) {
  LLVMValueRef v = LLVMBuildLoad2(B, x_elem(b), x_at(b, x, e), "");
  return b->xscale ? s16_values(b, v) : v;
}

/* L1 with s16 x: signs of x - mean from integer thresholds (store_thresholds) */
static int int_signs(const Bn *b) { return b->xscale && !b->k->l2; }

/* the mask of a vector's first n lanes */
static LLVMValueRef first_lanes(Bn *b, int64_t n) {
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
    return s16 ? s16_values(b, v) : v;
  }
  LLVMValueRef on = first_lanes(b, n), passv = gen_splat(b->g, pass, NM_LANES);
  if (!s16) return gen_masked_load(b->g, vt, at, on, passv);
  return LLVMBuildSelect(B, on, s16_values(b, gen_masked_load(b->g, vt, at, on, LLVMConstNull(vt))), passv, "");
}

/* body(v) for the vectors of a row, each stream read from its pointer to the row's first
 * element: the full vectors, then the last inner % NM_LANES elements with the other lanes
 * `pass` (values that add nothing) and b->on their mask; with channels in the lanes (cw > 1),
 * the unit's channels of the row. The streams (x first, and g in dparams) are read at the
 * same elements. */
typedef void (*LaneBody)(Bn *b, LLVMValueRef *v, void *ctx);
static void row_vectors(Bn *b, int ns, const LLVMValueRef *row, const LLVMValueRef *pass, LaneBody body, void *ctx) {
  Gen *g = b->g;
  int64_t full = b->k->inner / NM_LANES, rest = b->k->inner % NM_LANES;
  LLVMValueRef v[2];
  if (b->cw > 1) {
    for (int s = 0; s < ns; s++) v[s] = cload(b, row[s], gen_i64(g, 0));
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
    b->on = first_lanes(b, rest);
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
static int64_t units(const Bn *b) { return (b->k->channels + b->cw - 1) / b->cw; }

/* scratch (kir_bn_scratch): accumulator j of channel c, and the per-channel floats of region j */
static LLVMValueRef acc_slot(Bn *b, int j, LLVMValueRef c) {
  int64_t region = (int64_t)j * kir_bn_channels(b->k->channels) * KIR_BN_ACC_BYTES;
  LLVMValueRef at = LLVMBuildAdd(B, gen_i64(b->g, region), LLVMBuildMul(B, c, gen_i64(b->g, KIR_BN_ACC_BYTES), ""), "");
  return gen_at(b->g, b->g->i8, gen_arg(b->g, KA_SCRATCH), at);
}
static LLVMValueRef consts(Bn *b, int j) {
  int64_t c16 = kir_bn_channels(b->k->channels);
  return gen_at(b->g, b->g->i8, gen_arg(b->g, KA_SCRATCH), gen_i64(b->g, c16 * (KIR_BN_ACCS * KIR_BN_ACC_BYTES + 4 * j)));
}

/* A per-channel reduction over this part's units: row(c, row) for every row of each channel,
 * rows ascending within a channel, then done(c) with the accumulators' totals in acc[].
 * One channel per unit: the rows are read in memory order (o outer, the part's channels
 * inner; a channel's runs are too short for the prefetchers to stream them one channel at a
 * time) and each channel's accumulators wait in scratch between its rows. Channels in the
 * lanes: unit after unit, the accumulators in registers. Either way each channel adds its
 * elements in the same order, so the bits are the same. */
typedef struct { int n; LLVMValueRef var[KIR_BN_ACCS], init[KIR_BN_ACCS]; } Accs; /* init: NULL for zeros */
static LLVMValueRef acc_init(const Accs *a, int j) {
  return a->init[j] ? a->init[j] : LLVMConstNull(LLVMGetAllocatedType(a->var[j]));
}
typedef void (*RowFn)(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx);
typedef void (*UnitFn)(Bn *b, LLVMValueRef c, void *ctx);
static void reduce_units(Bn *b, const Accs *a, RowFn row, UnitFn done, void *ctx) {
  Gen *g = b->g;
  LLVMValueRef lo, hi;
  gen_part_range(g, units(b), &lo, &hi);
  Loop lu, lo_;
  if (b->cw > 1) {
    LLVMValueRef c = unit_channel(b, gen_loop_range(g, &lu, lo, hi, "unit"));
    for (int j = 0; j < a->n; j++) LLVMBuildStore(B, acc_init(a, j), a->var[j]);
    LLVMValueRef o = gen_loop_begin(g, &lo_, gen_i64(g, b->k->outer), "o");
    row(b, c, row_start(b, o, c), ctx);
    gen_loop_end(g, &lo_, 0);
    done(b, c, ctx);
    gen_loop_end(g, &lu, 0);
    return;
  }
  LLVMValueRef c = gen_loop_range(g, &lu, lo, hi, "c");
  for (int j = 0; j < a->n; j++) LLVMBuildStore(B, acc_init(a, j), acc_slot(b, j, c));
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
static void channel_ranges(Bn *b, LLVMValueRef dst, int check);
static void check_ranges(Bn *b);
static LLVMValueRef row_tops(Bn *b);
static LLVMValueRef sq_params(Bn *b);
static LLVMValueRef sq_range_bits(Bn *b);
static void each_row(Bn *b, RowFn row, void *ctx) {
  Gen *g = b->g;
  Loop lr;
  LLVMValueRef r = gen_loop_part(g, &lr, b->k->outer * units(b), "rows");
  LLVMValueRef c = unit_channel(b, LLVMBuildSRem(B, r, gen_i64(g, units(b)), ""));
  row(b, c, row_start(b, LLVMBuildSDiv(B, r, gen_i64(g, units(b)), ""), c), ctx);
  gen_loop_end(g, &lr, 0);
}
static void by_rows(Bn *b, UnitFn constants, RowFn row, void *ctx) {
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
    channel_ranges(b, gen_at(g, g->i32, gen_arg(g, KA_OUT), gen_i64(g, k->outer * k->channels * k->inner)), 0);
  }
  if (k->sq_out) { /* part 0: the channels' ranges (a few thousand row maxima), the scale and the groups */
    gen_next_phase(g, &ph);
    gen_only_part0(g);
    LLVMValueRef params = sq_params(b);
    g->part = gen_i64(g, 0), g->nparts = gen_i64(g, 1);
    if (k->extremes) check_ranges(b);
    else channel_ranges(b, sq_range_bits(b), 1);
    g->part = g->nparts = NULL;
    gen_sq_groups(g, gen_at(g, g->f32, params, gen_i64(g, 2 + k->channels)), k->channels, k->groups, k->bits, params);
    gen_sq_set_scale(g, params);
    gen_next_phase(g, &ph);
    b->dx_pass = DX_QUANTIZE;
    each_row(b, row, ctx);
  }
}

/* the per-channel constants of the row kernels, float regions of the scratch */
enum { K_MEAN, K_INV, K_GAMMA, K_BETA, K_A, K_B, K_C, K_UP, K_DOWN, K_COUNT };
_Static_assert((int)K_COUNT <= (int)KIR_BN_CONSTS, "the scratch holds the constants");
typedef struct {
  Bn *b;
  LLVMValueRef x, dy; /* the inputs (dy: of dx and dparams) */
  LLVMValueRef k[K_COUNT]; /* the row's channel's constants, those its kernel uses */
  LLVMValueRef grad;       /* a pooled gradient routed to the row's elements (a plane on the stack) */
  LLVMValueRef out;
  Accs a;                  /* reductions */
  LLVMValueRef mu, mud;    /* statistics and dparams: the mean in every lane, as floats and doubles */
  LLVMValueRef inv;        /* dparams: the divisor in every lane */
} RowCtx;
static void load_constants(Bn *b, LLVMValueRef c, RowCtx *r, int first, int last) {
  for (int j = first; j <= last; j++) r->k[j] = cload(b, consts(b, j), c);
}
/* the forward pass's output from x: gamma * ((x - mean) * inv) + beta, then the folded relu */
static LLVMValueRef normalize(Bn *b, const RowCtx *r, LLVMValueRef x) {
  LLVMValueRef xh = LLVMBuildFMul(B, LLVMBuildFSub(B, x, gen_splat_like(b->g, r->k[K_MEAN], x), ""), gen_splat_like(b->g, r->k[K_INV], x), "");
  LLVMValueRef y = LLVMBuildFAdd(B, LLVMBuildFMul(B, gen_splat_like(b->g, r->k[K_GAMMA], x), xh, ""), gen_splat_like(b->g, r->k[K_BETA], x), "");
  return b->k->relu ? gen_relu(b->g, y) : y;
}

/* ---- the fused max pooling (batchnorm_pool and its gradients), one plane at a time: the
 * forward pass normalizes x as the pooling loads it and writes each window's code after the
 * pooled values; the gradients route dp by the codes ---- */
static int pooled(const Bn *b) { return b->k->pool_k > 0; }
static LLVMValueRef normalized_load(Gen *g, const PoolPlane *pp, LLVMTypeRef t, LLVMValueRef e, LLVMValueRef mask) {
  const RowCtx *r = pp->ctx;
  Bn *b = r->b;
  if (!b->xscale) return normalize(b, r, gen_pool_load_plain(g, pp, t, e, mask));
  if (!mask) return normalize(b, r, x_load(b, pp->x, e));
  LLVMTypeRef vt = LLVMVectorType(x_elem(b), LLVMGetVectorSize(t));
  return normalize(b, r, s16_values(b, gen_masked_load(g, vt, x_at(b, pp->x, e), mask, LLVMConstNull(vt))));
}
static PoolPlane plane(Bn *b, RowCtx *r, LLVMValueRef row) {
  const ChanKernel *k = b->k;
  return (PoolPlane){k->H, k->W, k->Ho, k->Wo, k->pool_k, k->pool_s, normalized_load, x_at(b, r->x, row), r};
}
/* the plane at `row` of the pooled tensor p (its index times Ho * Wo) */
static LLVMValueRef pooled_plane(Bn *b, LLVMValueRef p, LLVMValueRef row) {
  const ChanKernel *k = b->k;
  LLVMValueRef i = LLVMBuildMul(B, LLVMBuildSDiv(B, row, gen_i64(b->g, k->inner), ""), gen_i64(b->g, k->Ho * k->Wo), "");
  return gen_at(b->g, b->g->f32, p, i);
}
/* the codes of the plane at `row` in batchnorm_pool tensor p: after all its pooled values */
static LLVMValueRef plane_codes(Bn *b, LLVMValueRef p, LLVMValueRef row) {
  const ChanKernel *k = b->k;
  int64_t hw = k->Ho * k->Wo;
  LLVMValueRef i = LLVMBuildMul(B, LLVMBuildSDiv(B, row, gen_i64(b->g, k->inner), ""), gen_i64(b->g, hw), "");
  return gen_at(b->g, b->g->i8, p, LLVMBuildAdd(B, gen_i64(b->g, 4 * k->outer * k->channels * hw), i, ""));
}
/* r->grad = dp routed onto the plane at `row` by the codes of batchnorm_pool input `pool` */
static void route_gradient(Bn *b, RowCtx *r, LLVMValueRef row, int pool) {
  Gen *g = b->g;
  r->grad = gen_entry_alloca(g, LLVMArrayType(g->f32, (unsigned)b->k->inner), "grad");
  LLVMSetAlignment(r->grad, 64);
  PoolPlane pp = plane(b, r, row);
  gen_maxpool_plane(g, &pp, pooled_plane(b, r->dy, row), b->k->relu, r->grad, plane_codes(b, gen_input(g, pool), row));
}

/* nm_l1_inv or nm_l2_inv of a float spread: 1 / (kappa * s + eps) or 1 / sqrt(s + eps) in double */
static LLVMValueRef divisor_inv(Bn *b, LLVMValueRef spread) {
  LLVMValueRef s = f64(b, spread), eps = dconst(b, (double)(float)b->k->eps);
  LLVMValueRef den = b->k->l2 ? gen_intrinsic(b->g, "llvm.sqrt", LLVMBuildFAdd(B, s, eps, ""))
                              : LLVMBuildFAdd(B, LLVMBuildFMul(B, dconst(b, NM_KAPPA), s, ""), eps, "");
  return f32(b, LLVMBuildFDiv(B, dconst(b, 1.0), den, "inv"));
}

/* ---- batchnorm_stats ---- */
/* pass 1 sums x (acc 0) and stores the means in float region K_MEAN; pass 2 sums the
 * deviations from them (acc 0) and counts their signs (acc 1, L1) */
static void add_x(Bn *b, LLVMValueRef *v, void *ctx) {
  RowCtx *r = ctx;
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, r->a.var[0]), ext(b, v[0]), ""), r->a.var[0]);
}
static void add_dev(Bn *b, LLVMValueRef *v, void *ctx) {
  RowCtx *r = ctx;
  LLVMValueRef d = LLVMBuildFSub(B, ext(b, v[0]), r->mud, "");
  LLVMValueRef dev = b->k->l2 ? LLVMBuildFMul(B, d, d, "") : gen_intrinsic(b->g, "llvm.fabs", d);
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, r->a.var[0]), dev, ""), r->a.var[0]);
  if (b->k->l2) return;
  LLVMValueRef up = LLVMBuildZExt(B, LLVMBuildFCmp(B, LLVMRealOGT, v[0], r->mu, ""), b->vl, "");
  LLVMValueRef down = LLVMBuildZExt(B, LLVMBuildFCmp(B, LLVMRealOLT, v[0], r->mu, ""), b->vl, "");
  LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(b->g, r->a.var[1]), LLVMBuildSub(B, up, down, ""), ""), r->a.var[1]);
}
static double count(const Bn *b) { return (double)(b->k->outer * b->k->inner); }
static LLVMValueRef at_row(Bn *b, LLVMValueRef base, LLVMValueRef row) { return gen_at(b->g, b->g->f32, base, row); }
static void sum_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  (void)c;
  LLVMValueRef x = x_at(b, ((RowCtx *)ctx)->x, row), zero = gen_f32c(b->g, 0);
  row_vectors(b, 1, &x, &zero, add_x, ctx);
}
static void store_mean(Bn *b, LLVMValueRef c, void *ctx) {
  RowCtx *r = ctx;
  LLVMValueRef mu = f32(b, LLVMBuildFDiv(B, lanes_sum(b, gen_get(b->g, r->a.var[0])), dconst(b, count(b)), "mean"));
  cstore(b, mu, consts(b, K_MEAN), c);
}
static void dev_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  RowCtx *r = ctx;
  LLVMValueRef mu = cload(b, consts(b, K_MEAN), c), x = x_at(b, r->x, row);
  r->mu = lift(b, mu), r->mud = ext(b, r->mu);
  row_vectors(b, 1, &x, &mu, add_dev, ctx); /* x = mean in the unused lanes: no deviation, no sign */
}
static void store_stats(Bn *b, LLVMValueRef c, void *ctx) {
  RowCtx *r = ctx;
  Gen *g = b->g;
  LLVMValueRef spread = f32(b, LLVMBuildFDiv(B, lanes_sum(b, gen_get(g, r->a.var[0])), dconst(b, count(b)), "spread"));
  LLVMValueRef sign = LLVMBuildSExt(B, gen_get(g, r->a.var[1]), LLVMVectorType(g->i64, NM_LANES), "");
  if (b->cw == 1) sign = gen_intrinsic(g, "llvm.vector.reduce.add", sign); /* exact in any order */
  LLVMValueRef msign = f32(b, LLVMBuildFDiv(B, LLVMBuildSIToFP(B, sign, ct(b, g->f64), ""), dconst(b, count(b)), ""));
  LLVMValueRef row[NM_BN_STATS] = {[NM_BN_MEAN] = cload(b, consts(b, K_MEAN), c), [NM_BN_SPREAD] = spread,
                                   [NM_BN_INV] = divisor_inv(b, spread), [NM_BN_MSIGN] = msign};
  for (int i = 0; i < NM_BN_STATS; i++) stat_store(b, row[i], r->out, i, c);
}
static void stats(Bn *b, LLVMValueRef out) {
  Gen *g = b->g;
  RowCtx r = {.b = b, .x = gen_input(g, 0), .out = out, .a = {1, {gen_var(g, LLVMConstNull(b->vd), "sum")}, {0}}};
  reduce_units(b, &r.a, sum_row, store_mean, &r);
  r.a = (Accs){2, {gen_var(g, LLVMConstNull(b->vd), "dev"), gen_var(g, LLVMConstNull(b->vl), "sign")}, {0}};
  reduce_units(b, &r.a, dev_row, store_stats, &r);
}

/* ---- L1 with s16 x: sign(x - mean) from the int16 sums themselves ----
 * x = nm_s16_value(v, scale) never decreases as v grows (scale >= 0: a product of quantization
 * scales), so x > mean exactly where v >= up, the first v with x > mean, and x < mean exactly
 * where v <= down, the last v with x < mean (one before the first v where x < mean fails,
 * which a NaN mean makes every v). Both are found per channel by bisection over the int16
 * range, with the same float compares; the rows then compare integers, and L1's dx never
 * converts x. */
static LLVMValueRef first_where(Bn *b, LLVMValueRef mu, int above) {
  Gen *g = b->g;
  LLVMValueRef lo = LLVMConstInt(g->i32, (unsigned long long)-32768, 1), hi = LLVMConstInt(g->i32, 32768, 0);
  for (int i = 0; i < 17; i++) { /* [lo, hi) holds the answer; 2^16 + 1 candidates */
    LLVMValueRef one = LLVMConstInt(g->i32, 1, 0), live = LLVMBuildICmp(B, LLVMIntSLT, lo, hi, "");
    LLVMValueRef mid = LLVMBuildAShr(B, LLVMBuildAdd(B, lo, hi, ""), one, "");
    LLVMValueRef x = s16_values(b, mid);
    LLVMValueRef p = above ? LLVMBuildFCmp(B, LLVMRealOGT, x, mu, "") : LLVMBuildNot(B, LLVMBuildFCmp(B, LLVMRealOLT, x, mu, ""), "");
    hi = LLVMBuildSelect(B, LLVMBuildAnd(B, live, p, ""), mid, hi, "");
    lo = LLVMBuildSelect(B, LLVMBuildAnd(B, live, LLVMBuildNot(B, p, ""), ""), LLVMBuildAdd(B, mid, one, ""), lo, "");
  }
  return lo;
}
/* channel c's int32 in constant region j */
static LLVMValueRef int_const(Bn *b, int j, LLVMValueRef c) { return gen_at(b->g, b->g->i32, consts(b, j), c); }
static void store_thresholds(Bn *b, LLVMValueRef mu, LLVMValueRef c) {
  LLVMBuildStore(B, first_where(b, mu, 1), int_const(b, K_UP, c));
  LLVMValueRef down = LLVMBuildSub(B, first_where(b, mu, 0), LLVMConstInt(b->g->i32, 1, 0), "down");
  LLVMBuildStore(B, down, int_const(b, K_DOWN, c));
}
/* whether v (int32 lanes or a scalar) is above or below the mean, by the thresholds */
static LLVMValueRef above_mean(Bn *b, LLVMValueRef v, LLVMValueRef up) {
  return LLVMBuildICmp(B, LLVMIntSGE, v, gen_splat_like(b->g, up, v), "");
}
static LLVMValueRef below_mean(Bn *b, LLVMValueRef v, LLVMValueRef down) {
  return LLVMBuildICmp(B, LLVMIntSLE, v, gen_splat_like(b->g, down, v), "");
}

/* ---- batchnorm_stats of s16 sums, L1: integer statistics (nm_bn_stats_s16) ----
 * Pass 1 sums v (acc 0; with chansums the convolution's epilogue has, given_means) and keeps,
 * per channel, the float mean (K_MEAN), q = floor(S / m) (K_A) and r = S - q*m (K_B) as
 * int32, and the sign thresholds; pass 2 sums |v - q| (acc 0), counts
 * v > q (acc 2) and the signs of x - mean (acc 1). A row's integer sums run in int32 lanes
 * (nm_bn_int_stats bounds them) and join the channel's int64 lanes at its end; integers add
 * exactly in any order. */
typedef void (*IntBody)(Bn *b, LLVMValueRef v, LLVMValueRef on, void *ctx);
/* body(v, on) for the row's vectors of 16 int16 widened to int32; on: the lanes in the row
 * (NULL where all are) */
static void int_row_vectors(Bn *b, LLVMValueRef row, IntBody body, void *ctx) {
  Gen *g = b->g;
  int64_t full = b->k->inner / NM_LANES, rest = b->k->inner % NM_LANES;
  LLVMTypeRef vs = LLVMVectorType(x_elem(b), NM_LANES), vi = LLVMVectorType(g->i32, NM_LANES);
  if (full) {
    Loop lv;
    LLVMValueRef e = LLVMBuildMul(B, gen_loop_begin(g, &lv, gen_i64(g, full), "v"), gen_i64(g, NM_LANES), "");
    LLVMValueRef v = LLVMBuildLoad2(B, vs, x_at(b, row, e), "");
    LLVMSetAlignment(v, 2);
    body(b, LLVMBuildSExt(B, v, vi, ""), NULL, ctx);
    gen_loop_end(g, &lv, 0);
  }
  if (rest) {
    LLVMValueRef on = first_lanes(b, rest);
    LLVMValueRef v = gen_masked_load(g, vs, x_at(b, row, gen_i64(g, full * NM_LANES)), on, LLVMConstNull(vs));
    body(b, LLVMBuildSExt(B, v, vi, ""), on, ctx);
  }
}
static LLVMValueRef lanes_on(Bn *b, LLVMValueRef on, LLVMValueRef v) {
  return on ? LLVMBuildSelect(B, on, v, LLVMConstNull(LLVMTypeOf(v)), "") : v;
}
/* var += v's lanes widened to int64 */
static void add_wide(Bn *b, LLVMValueRef var, LLVMValueRef v) {
  LLVMValueRef w = LLVMBuildSExt(B, v, LLVMVectorType(b->g->i64, NM_LANES), "");
  LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(b->g, var), w, ""), var);
}
static void add_lanes(Bn *b, LLVMValueRef var, LLVMValueRef v) { LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(b->g, var), v, ""), var); }
typedef struct {
  RowCtx *r;
  LLVMValueRef row_sum, row_gt; /* int32 lanes of the row */
  LLVMValueRef q, up, down;     /* pass 2: q, and the sign thresholds */
} IntCtx;
static void int_add_v(Bn *b, LLVMValueRef v, LLVMValueRef on, void *ctx) {
  (void)on; /* the lanes past the row loaded 0 */
  add_lanes(b, ((IntCtx *)ctx)->row_sum, v);
}
static void int_sum_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  (void)c;
  IntCtx *ic = ctx;
  LLVMBuildStore(B, LLVMConstNull(LLVMVectorType(b->g->i32, NM_LANES)), ic->row_sum);
  int_row_vectors(b, x_at(b, ic->r->x, row), int_add_v, ic);
  add_wide(b, ic->r->a.var[0], gen_get(b->g, ic->row_sum));
}
/* channel c's constants from its sum S (int64) */
static void int_mean(Bn *b, LLVMValueRef c, LLVMValueRef S) {
  Gen *g = b->g;
  LLVMValueRef m = gen_i64(g, (int64_t)count(b));
  LLVMValueRef sx = LLVMBuildFMul(B, LLVMBuildSIToFP(B, S, g->f64, ""), LLVMBuildFPExt(B, b->xscale, g->f64, ""), "");
  LLVMValueRef mean = LLVMBuildFPTrunc(B, LLVMBuildFDiv(B, sx, gen_f64c(g, count(b)), ""), g->f32, "mean");
  cstore(b, mean, consts(b, K_MEAN), c);
  store_thresholds(b, mean, c);
  LLVMValueRef q = LLVMBuildSDiv(B, S, m, ""), r = LLVMBuildSRem(B, S, m, "");
  LLVMValueRef neg = LLVMBuildICmp(B, LLVMIntSLT, r, gen_i64(g, 0), ""); /* floor */
  q = LLVMBuildSelect(B, neg, LLVMBuildSub(B, q, gen_i64(g, 1), ""), q, "q");
  r = LLVMBuildSelect(B, neg, LLVMBuildAdd(B, r, m, ""), r, "r");
  LLVMBuildStore(B, LLVMBuildTrunc(B, q, g->i32, ""), int_const(b, K_A, c));
  LLVMBuildStore(B, LLVMBuildTrunc(B, r, g->i32, ""), int_const(b, K_B, c));
}
static void store_int_mean(Bn *b, LLVMValueRef c, void *ctx) {
  int_mean(b, c, gen_intrinsic(b->g, "llvm.vector.reduce.add", gen_get(b->g, ((IntCtx *)ctx)->r->a.var[0])));
}
/* chansums: each channel's S is given after x (the convolution's epilogue added them up) */
static void given_means(Bn *b, LLVMValueRef x) {
  Gen *g = b->g;
  const ChanKernel *k = b->k;
  LLVMValueRef lo, hi, sums = gen_at(g, g->i8, x, gen_i64(g, ir_s16_sums_at(k->outer * k->channels * k->inner)));
  gen_part_range(g, units(b), &lo, &hi);
  Loop l;
  LLVMValueRef c = gen_loop_range(g, &l, lo, hi, "c");
  int_mean(b, c, gen_load(g, g->i64, sums, c));
  gen_loop_end(g, &l, 0);
}
static void int_dev_v(Bn *b, LLVMValueRef v, LLVMValueRef on, void *ctx) {
  IntCtx *ic = ctx;
  RowCtx *r = ic->r;
  LLVMValueRef d = LLVMBuildSub(B, v, ic->q, "");
  LLVMValueRef ad = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntSLT, d, LLVMConstNull(LLVMTypeOf(d)), ""), LLVMBuildNeg(B, d, ""), d, "");
  add_lanes(b, ic->row_sum, lanes_on(b, on, ad));
  LLVMValueRef gt = LLVMBuildZExt(B, LLVMBuildICmp(B, LLVMIntSGT, v, ic->q, ""), LLVMTypeOf(v), "");
  add_lanes(b, ic->row_gt, lanes_on(b, on, gt));
  LLVMValueRef up = above_mean(b, v, ic->up), down = below_mean(b, v, ic->down);
  LLVMValueRef sign = LLVMBuildSub(B, LLVMBuildZExt(B, up, b->vl, ""), LLVMBuildZExt(B, down, b->vl, ""), "");
  add_lanes(b, r->a.var[1], lanes_on(b, on, sign));
}
static void int_dev_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  Gen *g = b->g;
  IntCtx *ic = ctx;
  LLVMTypeRef vi = LLVMVectorType(g->i32, NM_LANES);
  ic->q = gen_splat(g, LLVMBuildLoad2(B, g->i32, int_const(b, K_A, c), "q"), NM_LANES);
  ic->up = LLVMBuildLoad2(B, g->i32, int_const(b, K_UP, c), "up");
  ic->down = LLVMBuildLoad2(B, g->i32, int_const(b, K_DOWN, c), "down");
  LLVMBuildStore(B, LLVMConstNull(vi), ic->row_sum);
  LLVMBuildStore(B, LLVMConstNull(vi), ic->row_gt);
  int_row_vectors(b, x_at(b, ic->r->x, row), int_dev_v, ic);
  add_wide(b, ic->r->a.var[0], gen_get(g, ic->row_sum));
  add_wide(b, ic->r->a.var[2], gen_get(g, ic->row_gt));
}
static void store_int_stats(Bn *b, LLVMValueRef c, void *ctx) {
  Gen *g = b->g;
  RowCtx *r = ((IntCtx *)ctx)->r;
  int64_t m = (int64_t)count(b);
  LLVMValueRef A = gen_intrinsic(g, "llvm.vector.reduce.add", gen_get(g, r->a.var[0]));
  LLVMValueRef gt = gen_intrinsic(g, "llvm.vector.reduce.add", gen_get(g, r->a.var[2]));
  LLVMValueRef rr = LLVMBuildSExt(B, LLVMBuildLoad2(B, g->i32, int_const(b, K_B, c), ""), g->i64, "r");
  /* D = m*A + r*(m - 2*gt) */
  LLVMValueRef D = LLVMBuildAdd(B, LLVMBuildMul(B, gen_i64(g, m), A, ""),
                                LLVMBuildMul(B, rr, LLVMBuildSub(B, gen_i64(g, m), LLVMBuildMul(B, gen_i64(g, 2), gt, ""), ""), ""), "D");
  LLVMValueRef dx = LLVMBuildFMul(B, LLVMBuildSIToFP(B, D, g->f64, ""), LLVMBuildFPExt(B, b->xscale, g->f64, ""), "");
  LLVMValueRef spread = LLVMBuildFPTrunc(B, LLVMBuildFDiv(B, dx, gen_f64c(g, (double)m * (double)m), ""), g->f32, "spread");
  LLVMValueRef signs = LLVMBuildSExt(B, gen_get(g, r->a.var[1]), LLVMVectorType(g->i64, NM_LANES), "");
  LLVMValueRef sign = gen_intrinsic(g, "llvm.vector.reduce.add", signs);
  LLVMValueRef msign = f32(b, LLVMBuildFDiv(B, LLVMBuildSIToFP(B, sign, g->f64, ""), dconst(b, count(b)), ""));
  LLVMValueRef row[NM_BN_STATS] = {[NM_BN_MEAN] = cload(b, consts(b, K_MEAN), c), [NM_BN_SPREAD] = spread,
                                   [NM_BN_INV] = divisor_inv(b, spread), [NM_BN_MSIGN] = msign};
  for (int i = 0; i < NM_BN_STATS; i++) stat_store(b, row[i], r->out, i, c);
}
static void stats_int(Bn *b, LLVMValueRef out) {
  Gen *g = b->g;
  LLVMTypeRef vi = LLVMVectorType(g->i32, NM_LANES), vq = LLVMVectorType(g->i64, NM_LANES);
  RowCtx r = {.b = b, .x = gen_input(g, 0), .out = out, .a = {1, {gen_var(g, LLVMConstNull(vq), "sum")}, {0}}};
  IntCtx ic = {&r, gen_var(g, LLVMConstNull(vi), "row_sum"), gen_var(g, LLVMConstNull(vi), "row_gt"), NULL, NULL, NULL};
  if (b->k->chansums) given_means(b, r.x);
  else reduce_units(b, &r.a, int_sum_row, store_int_mean, &ic);
  r.a = (Accs){3, {gen_var(g, LLVMConstNull(vq), "dev"), gen_var(g, LLVMConstNull(b->vl), "sign"), gen_var(g, LLVMConstNull(vq), "gt")}, {0}};
  reduce_units(b, &r.a, int_dev_row, store_int_stats, &ic);
}

/* ---- l1_/l2_batchnorm, batchnorm_pool ---- */
/* per channel: the mean and divisor (the batch's in training, where the running statistics
 * move towards them, else the running ones), gamma and beta */
static void forward_constants(Bn *b, LLVMValueRef c, void *ctx) {
  (void)ctx;
  Gen *g = b->g;
  const ChanKernel *k = b->k;
  LLVMValueRef gamma = gen_input(g, 1), beta = gen_input(g, 2), rm = gen_input(g, 3), rs = gen_input(g, 4), st = gen_input(g, 5);
  LLVMValueRef train = LLVMBuildICmp(B, LLVMIntNE, gen_arg(g, KA_TRAINING), LLVMConstInt(g->i32, 0, 0), "");
  LLVMValueRef rmv = cload(b, rm, c), rsv = cload(b, rs, c);
  /* training: the batch's statistics, and the running ones move towards them ((1 - mom) * r +
   * mom * stat in float; L2's variance unbiased first) */
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(B));
  LLVMBasicBlockRef batch = LLVMAppendBasicBlockInContext(g->ctx, fn, "batch"), running = LLVMAppendBasicBlockInContext(g->ctx, fn, "running");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(g->ctx, fn, "normalize");
  LLVMBuildCondBr(B, train, batch, running);
  LLVMPositionBuilderAtEnd(B, batch);
  LLVMValueRef mom = fconst(b, (float)k->momentum), keep = fconst(b, 1.0f - (float)k->momentum);
  LLVMValueRef bmu = stat(b, st, NM_BN_MEAN, c), bs = stat(b, st, NM_BN_SPREAD, c), binv = stat(b, st, NM_BN_INV, c);
  double m = count(b);
  if (k->l2 && m > 1) bs = f32(b, LLVMBuildFDiv(B, LLVMBuildFMul(B, f64(b, bs), dconst(b, m), ""), dconst(b, m - 1), "")); /* unbiased */
  cstore(b, LLVMBuildFAdd(B, LLVMBuildFMul(B, keep, rmv, ""), LLVMBuildFMul(B, mom, bmu, ""), ""), rm, c);
  cstore(b, LLVMBuildFAdd(B, LLVMBuildFMul(B, keep, rsv, ""), LLVMBuildFMul(B, mom, bs, ""), ""), rs, c);
  LLVMBuildBr(B, join);
  LLVMPositionBuilderAtEnd(B, running);
  LLVMValueRef rinv = divisor_inv(b, rsv);
  LLVMBuildBr(B, join);
  LLVMPositionBuilderAtEnd(B, join);
  LLVMValueRef mu = LLVMBuildPhi(B, ct(b, g->f32), "mu"), inv = LLVMBuildPhi(B, ct(b, g->f32), "inv");
  LLVMBasicBlockRef from[2] = {batch, running};
  LLVMAddIncoming(mu, (LLVMValueRef[]){bmu, rmv}, from, 2);
  LLVMAddIncoming(inv, (LLVMValueRef[]){binv, rinv}, from, 2);
  LLVMValueRef v[K_COUNT] = {[K_MEAN] = mu, [K_INV] = inv, [K_GAMMA] = cload(b, gamma, c), [K_BETA] = cload(b, beta, c)};
  for (int j = K_MEAN; j <= K_BETA; j++) cstore(b, v[j], consts(b, j), c);
}
static void forward_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  RowCtx *r = ctx;
  Gen *g = b->g;
  load_constants(b, c, r, K_MEAN, K_BETA);
  if (pooled(b)) { /* batchnorm_pool: the plane's pooled values only */
    PoolPlane pp = plane(b, r, row);
    gen_maxpool_plane(g, &pp, NULL, b->k->relu, pooled_plane(b, r->out, row), plane_codes(b, r->out, row));
    return;
  }
  if (b->cw > 1) {
    cstore(b, normalize(b, r, cload(b, r->x, row)), r->out, row);
    return;
  }
  Loop l; /* the vectorizer widens it */
  LLVMValueRef e = LLVMBuildAdd(B, row, gen_loop_begin(g, &l, gen_i64(g, b->k->inner), "j"), "e");
  gen_store(g, normalize(b, r, x_load(b, r->x, e)), r->out, e);
  gen_loop_end(g, &l, 0);
}
static void forward(Bn *b, LLVMValueRef out) {
  RowCtx r = {.b = b, .x = gen_input(b->g, 0), .out = out};
  by_rows(b, forward_constants, forward_row, &r);
}

/* ---- batchnorm_dparams, batchnorm_pool_dparams ---- */
/* nm_order_key of floats' bits (vectors or scalars): the same map takes keys back to bits */
static LLVMValueRef order_key(Bn *b, LLVMValueRef bits) {
  LLVMValueRef sign = LLVMBuildAShr(B, bits, gen_splat_like(b->g, LLVMConstInt(b->g->i32, 31, 0), bits), "");
  return LLVMBuildXor(B, bits, LLVMBuildAnd(B, sign, gen_splat_like(b->g, LLVMConstInt(b->g->i32, 0x7fffffff, 0), bits), ""), "key");
}
static LLVMValueRef float_key(Bn *b, LLVMValueRef f) {
  LLVMTypeRef t = LLVMTypeOf(f);
  LLVMTypeRef it = LLVMGetTypeKind(t) == LLVMVectorTypeKind ? LLVMVectorType(b->g->i32, LLVMGetVectorSize(t)) : b->g->i32;
  return order_key(b, LLVMBuildBitCast(B, f, it, ""));
}
/* the least or largest of two keys (a signed min or max, one instruction) */
static LLVMValueRef key_extreme(Bn *b, LLVMValueRef x, LLVMValueRef y, int hi) {
  return LLVMBuildSelect(B, LLVMBuildICmp(B, hi ? LLVMIntSGT : LLVMIntSLT, x, y, ""), x, y, "");
}
/* with extremes, accs 2 + 2*class and 3 + 2*class: each lane's least and largest key of g in
 * each class of x against the mean (nm_bn_class_extremes): integer min and max under the
 * class's mask, no float compares */
static void class_extremes(Bn *b, RowCtx *r, LLVMValueRef x, LLVMValueRef gv) {
  LLVMValueRef up = LLVMBuildFCmp(B, LLVMRealOGT, x, r->mu, ""), down = LLVMBuildFCmp(B, LLVMRealOLT, x, r->mu, "");
  LLVMValueRef in[NM_BN_CLASSES] = {up, down, LLVMBuildNot(B, LLVMBuildOr(B, up, down, ""), "")}, key = float_key(b, gv);
  for (int cl = 0; cl < NM_BN_CLASSES; cl++) {
    LLVMValueRef on = b->on ? LLVMBuildAnd(B, in[cl], b->on, "") : in[cl];
    for (int hi = 0; hi < 2; hi++) {
      LLVMValueRef var = r->a.var[NM_BN_DPARAMS + 2 * cl + hi], e = gen_get(b->g, var);
      LLVMBuildStore(B, LLVMBuildSelect(B, on, key_extreme(b, key, e, hi), e, ""), var);
    }
  }
}
/* acc 0: the sum of g * xhat, acc 1: of g; g is dy, or dp routed through the pooling */
static void add_g(Bn *b, LLVMValueRef *v, void *ctx) {
  RowCtx *r = ctx;
  LLVMValueRef xh = LLVMBuildFMul(B, LLVMBuildFSub(B, v[0], r->mu, ""), r->inv, ""), gd = ext(b, v[1]);
  /* g * xhat is exact in double (two floats' 24-bit significands): a fused add is the same */
  LLVMBuildStore(B, gen_fmuladd(b->g, gd, ext(b, xh), gen_get(b->g, r->a.var[0])), r->a.var[0]);
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, r->a.var[1]), gd, ""), r->a.var[1]);
  if (b->k->extremes) class_extremes(b, r, v[0], v[1]);
}
/* the least (or largest) key of a vector's lanes */
static LLVMValueRef lanes_extreme(Bn *b, LLVMValueRef v, int hi) {
  for (int w = NM_LANES / 2; w >= 1; w /= 2) {
    LLVMValueRef lo[NM_LANES / 2], up[NM_LANES / 2];
    for (int l = 0; l < w; l++) lo[l] = LLVMConstInt(b->g->i32, (unsigned)l, 0), up[l] = LLVMConstInt(b->g->i32, (unsigned)(l + w), 0);
    LLVMValueRef a = LLVMBuildShuffleVector(B, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(lo, (unsigned)w), "");
    LLVMValueRef c = LLVMBuildShuffleVector(B, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(up, (unsigned)w), "");
    v = key_extreme(b, c, a, hi);
  }
  return LLVMBuildExtractElement(B, v, LLVMConstInt(b->g->i32, 0, 0), "");
}
static void dparams_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  RowCtx *r = ctx;
  LLVMValueRef st = gen_input(b->g, 2), mu = stat(b, st, NM_BN_MEAN, c), inv = stat(b, st, NM_BN_INV, c);
  LLVMValueRef g = at_row(b, r->dy, row);
  if (pooled(b)) {
    route_gradient(b, r, row, 3);
    g = r->grad;
  }
  r->mu = lift(b, mu), r->inv = lift(b, inv);
  LLVMValueRef rows[2] = {x_at(b, r->x, row), g}, pass[2] = {mu, gen_f32c(b->g, 0)};
  row_vectors(b, 2, rows, pass, add_g, ctx);
}
static void store_dparams(Bn *b, LLVMValueRef c, void *ctx) {
  RowCtx *r = ctx;
  stat_store(b, f32(b, lanes_sum(b, gen_get(b->g, r->a.var[0]))), r->out, 0, c);
  stat_store(b, f32(b, lanes_sum(b, gen_get(b->g, r->a.var[1]))), r->out, 1, c);
  for (int j = NM_BN_DPARAMS; j < r->a.n; j++) {
    LLVMValueRef key = lanes_extreme(b, gen_get(b->g, r->a.var[j]), (j - NM_BN_DPARAMS) % 2);
    stat_store(b, LLVMBuildBitCast(B, order_key(b, key), b->g->f32, ""), r->out, j, c);
  }
}
static void dparams(Bn *b, LLVMValueRef out) {
  Gen *g = b->g;
  RowCtx r = {.b = b, .x = gen_input(g, 1), .dy = gen_input(g, 0), .out = out,
              .a = {2, {gen_var(g, LLVMConstNull(b->vd), "gxh"), gen_var(g, LLVMConstNull(b->vd), "g")}, {0}}};
  if (b->k->extremes) { /* the keys start at +Inf's for the least, at -Inf's for the largest */
    SQ_ASSERT(b->cw == 1);
    for (int j = NM_BN_DPARAMS; j < NM_BN_DPARAMS_EXTREMES; j++) {
      LLVMValueRef inf = float_key(b, gen_f32c(g, (j - NM_BN_DPARAMS) % 2 ? -INFINITY : INFINITY));
      r.a.init[j] = gen_splat(g, inf, NM_LANES);
      r.a.var[j] = gen_var(g, r.a.init[j], (j - NM_BN_DPARAMS) % 2 ? "largest" : "least");
    }
    r.a.n = NM_BN_DPARAMS_EXTREMES;
  }
  reduce_units(b, &r.a, dparams_row, store_dparams, &r);
}

/* ---- batchnorm_dx, batchnorm_pool_dx ---- */
/* sq_out: ShiftQuant's ranges in its parameters, channel c's largest |dx| as bits at [c] */
static LLVMValueRef sq_range_bits(Bn *b) { return gen_at(b->g, b->g->i32, sq_params(b), gen_i64(b->g, 2 + b->k->channels)); }
/* extremes (an L1 dx): channel c's range from its dparams' classes' extremes, as
 * nm_bn_l1_dx_range takes it, with dx_value's arithmetic and its s (b, -b, 0) */
static LLVMValueRef class_range(Bn *b, LLVMValueRef dp, LLVMValueRef c, LLVMValueRef av, LLVMValueRef bv, LLVMValueRef cv) {
  Gen *g = b->g;
  LLVMValueRef s[NM_BN_CLASSES] = {bv, LLVMBuildFNeg(B, bv, ""), fconst(b, 0)}, top = LLVMConstInt(g->i32, 0, 0);
  for (int cl = 0; cl < NM_BN_CLASSES; cl++) {
    LLVMValueRef lo = stat(b, dp, NM_BN_DPARAMS + 2 * cl, c), hi = stat(b, dp, NM_BN_DPARAMS + 2 * cl + 1, c);
    LLVMValueRef some = LLVMBuildICmp(B, LLVMIntSLE, float_key(b, lo), float_key(b, hi), "");
    for (int e = 0; e < 2; e++) {
      LLVMValueRef v = LLVMBuildFAdd(B, LLVMBuildFAdd(B, LLVMBuildFMul(B, av, e ? hi : lo, ""), s[cl], ""), cv, "");
      LLVMValueRef u = LLVMBuildAnd(B, LLVMBuildBitCast(B, v, g->i32, ""), LLVMConstInt(g->i32, 0x7fffffff, 0), "");
      top = LLVMBuildSelect(B, LLVMBuildAnd(B, some, LLVMBuildICmp(B, LLVMIntUGT, u, top, ""), ""), u, top, "");
    }
  }
  return top;
}
/* per channel: a, b and c of dx = (a*g + s) + c and the mean */
static void dx_constants(Bn *b, LLVMValueRef c, void *ctx) {
  (void)ctx;
  Gen *g = b->g;
  LLVMValueRef st = gen_input(g, 3), dp = gen_input(g, 4); /* dp: [dgamma; dbeta] */
  LLVMValueRef m = dconst(b, count(b)), kappa = dconst(b, NM_KAPPA), gamma = cload(b, gen_input(g, 2), c);
  LLVMValueRef gam = f64(b, gamma), inv = f64(b, stat(b, st, NM_BN_INV, c));
  LLVMValueRef mg = LLVMBuildFDiv(B, LLVMBuildFMul(B, gam, f64(b, stat(b, dp, 1, c)), ""), m, "mg");
  LLVMValueRef mgx = LLVMBuildFDiv(B, LLVMBuildFMul(B, gam, f64(b, stat(b, dp, 0, c)), ""), m, "mgx");
  LLVMValueRef msign = f64(b, stat(b, st, NM_BN_MSIGN, c));
  LLVMValueRef av = f32(b, LLVMBuildFMul(B, gam, inv, "")), bv, cv;
  if (b->k->l2) { /* b = -mgx*inv*inv, c = -mg*inv */
    bv = f32(b, LLVMBuildFMul(B, LLVMBuildFMul(B, LLVMBuildFNeg(B, mgx, ""), inv, ""), inv, ""));
    cv = f32(b, LLVMBuildFMul(B, LLVMBuildFNeg(B, mg, ""), inv, ""));
  } else { /* b = -kappa*mgx*inv, c = (kappa*mgx*msign - mg)*inv */
    bv = f32(b, LLVMBuildFMul(B, LLVMBuildFMul(B, dconst(b, -NM_KAPPA), mgx, ""), inv, ""));
    cv = f32(b, LLVMBuildFMul(B, LLVMBuildFSub(B, LLVMBuildFMul(B, LLVMBuildFMul(B, kappa, mgx, ""), msign, ""), mg, ""), inv, ""));
  }
  LLVMValueRef v[K_COUNT] = {[K_MEAN] = stat(b, st, NM_BN_MEAN, c), [K_A] = av, [K_B] = bv, [K_C] = cv};
  for (int j = 0; j < K_COUNT; j++)
    if (v[j]) cstore(b, v[j], consts(b, j), c);
  if (int_signs(b)) store_thresholds(b, v[K_MEAN], c);
  if (b->k->extremes) gen_store(g, class_range(b, dp, c, av, bv, cv), sq_range_bits(b), c);
}
/* xv: x's value, or with int_signs its int16 sum widened */
static LLVMValueRef dx_value(Bn *b, const RowCtx *r, LLVMValueRef xv, LLVMValueRef gv) {
  LLVMValueRef mu = r->k[K_MEAN], bv = r->k[K_B], s;
  if (b->k->l2) { /* b * (x - mean) */
    s = LLVMBuildFMul(B, bv, LLVMBuildFSub(B, xv, mu, ""), "");
  } else { /* b where x > mean, -b where x < mean, else 0 */
    LLVMValueRef up = int_signs(b) ? above_mean(b, xv, r->k[K_UP]) : LLVMBuildFCmp(B, LLVMRealOGT, xv, mu, "");
    LLVMValueRef down = int_signs(b) ? below_mean(b, xv, r->k[K_DOWN]) : LLVMBuildFCmp(B, LLVMRealOLT, xv, mu, "");
    s = LLVMBuildSelect(B, up, bv, LLVMBuildSelect(B, down, LLVMBuildFNeg(B, bv, ""), fconst(b, 0), ""), "");
  }
  return LLVMBuildFAdd(B, LLVMBuildFAdd(B, LLVMBuildFMul(B, r->k[K_A], gv, ""), s, ""), r->k[K_C], "");
}
static void dx_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  RowCtx *r = ctx;
  Gen *g = b->g;
  load_constants(b, c, r, K_MEAN, K_MEAN);
  load_constants(b, c, r, K_A, K_C);
  if (int_signs(b))
    for (int j = K_UP; j <= K_DOWN; j++) r->k[j] = LLVMBuildLoad2(B, g->i32, int_const(b, j, c), "");
  if (b->cw > 1) {
    cstore(b, dx_value(b, r, cload(b, r->x, row), cload(b, r->dy, row)), r->out, row);
    return;
  }
  if (pooled(b)) route_gradient(b, r, row, 5);
  int pass = b->dx_pass;
  LLVMValueRef top = (b->k->ranges && pass == DX_STORE) || pass == DX_TOPS ? gen_var(g, LLVMConstInt(g->i32, 0, 0), "top") : NULL;
  if (top) LLVMBuildStore(B, LLVMConstInt(g->i32, 0, 0), top);
  LLVMValueRef buf = NULL; /* DX_QUANTIZE: the row, on the stack, for the rounding */
  if (pass == DX_QUANTIZE) {
    buf = gen_entry_alloca(g, LLVMArrayType(g->f32, (unsigned)b->k->inner), "dxrow");
    LLVMSetAlignment(buf, 64);
  }
  Loop l; /* the vectorizer widens it */
  LLVMValueRef j = gen_loop_begin(g, &l, gen_i64(g, b->k->inner), "j"), e = LLVMBuildAdd(B, row, j, "e");
  LLVMValueRef gv = pooled(b) ? gen_load(g, g->f32, r->grad, j) : gen_load(g, g->f32, r->dy, e);
  LLVMValueRef xv = int_signs(b) ? LLVMBuildSExt(B, LLVMBuildLoad2(B, x_elem(b), x_at(b, r->x, e), ""), g->i32, "") : x_load(b, r->x, e);
  LLVMValueRef v = dx_value(b, r, xv, gv);
  if (pass == DX_STORE) gen_store(g, v, r->out, e);
  if (buf) gen_store(g, v, buf, j);
  if (top) { /* the row's largest |dx| as bits: a NaN above an Inf above every finite value */
    LLVMValueRef u = LLVMBuildAnd(B, LLVMBuildBitCast(B, v, g->i32, ""), LLVMConstInt(g->i32, 0x7fffffff, 0), "");
    LLVMValueRef t = gen_get(g, top);
    LLVMBuildStore(B, LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntUGT, u, t, ""), u, t, ""), top);
  }
  gen_loop_end(g, &l, 0);
  if (top) gen_store(g, gen_get(g, top), row_tops(b), LLVMBuildSDiv(B, row, gen_i64(g, b->k->inner), ""));
  if (buf) { /* ShiftQuant's rounding of the row, with the draws of its elements' indices */
    const ChanKernel *k = b->k;
    SqRows q = {buf, r->out, gen_i64(g, 0), sq_params(b), k->channels, k->inner, k->groups, k->bits, row};
    gen_sq_row(g, &q, LLVMBuildSDiv(B, row, gen_i64(g, k->inner), ""), gen_rng_key(g, k->stream));
  }
}
/* ranges = 1: each row's largest |dx| bits in scratch after the constants, then each
 * channel's, the largest of its rows', after dx's values */
static LLVMValueRef row_tops(Bn *b) {
  return gen_at(b->g, b->g->i8, gen_arg(b->g, KA_SCRATCH), gen_i64(b->g, kir_bn_scratch(b->k->channels)));
}
/* sq_out: ShiftQuant's parameters (kir_sq_params), after the rows' ranges */
static LLVMValueRef sq_params(Bn *b) {
  const ChanKernel *k = b->k;
  return gen_at(b->g, b->g->i8, gen_arg(b->g, KA_SCRATCH), gen_i64(b->g, kir_bn_scratch(k->channels) + 4 * k->outer * k->channels));
}
/* extremes: a NaN or an Inf among the ranges the constants left fails the kernel */
static void check_ranges(Bn *b) {
  Loop lc;
  LLVMValueRef c = gen_loop_part(b->g, &lc, b->k->channels, "c");
  LLVMValueRef u = gen_load(b->g, b->g->i32, sq_range_bits(b), c);
  gen_fail_if(b->g, LLVMBuildICmp(B, LLVMIntUGE, u, LLVMConstInt(b->g->i32, 0x7f800000, 0), ""));
  gen_loop_end(b->g, &lc, 0);
}
/* dst[c] = channel c's range, as bits; with check, a NaN or an Inf fails the kernel */
static void channel_ranges(Bn *b, LLVMValueRef dst, int check) {
  Gen *g = b->g;
  const ChanKernel *k = b->k;
  Loop lc, lo;
  LLVMValueRef c = gen_loop_part(g, &lc, k->channels, "c"), top = gen_var(g, LLVMConstInt(g->i32, 0, 0), "top");
  LLVMBuildStore(B, LLVMConstInt(g->i32, 0, 0), top);
  LLVMValueRef o = gen_loop_begin(g, &lo, gen_i64(g, k->outer), "o");
  LLVMValueRef u = gen_load(g, g->i32, row_tops(b), LLVMBuildAdd(B, LLVMBuildMul(B, o, gen_i64(g, k->channels), ""), c, "")), t = gen_get(g, top);
  LLVMBuildStore(B, LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntUGT, u, t, ""), u, t, ""), top);
  gen_loop_end(g, &lo, 0);
  LLVMValueRef m = gen_get(g, top);
  if (check) gen_fail_if(g, LLVMBuildICmp(B, LLVMIntUGE, m, LLVMConstInt(g->i32, 0x7f800000, 0), "")); /* NaN or Inf */
  gen_store(g, m, dst, c);
  gen_loop_end(g, &lc, 0);
}
static void dx(Bn *b, LLVMValueRef out) {
  RowCtx r = {.b = b, .x = gen_input(b->g, 1), .dy = gen_input(b->g, 0), .out = out};
  by_rows(b, dx_constants, dx_row, &r);
}
#undef B

LLVMValueRef gen_batchnorm(Gen *g, const ChanKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name), out = gen_arg(g, KA_OUT);
  /* a lane counts at most outer * ceil(inner / NM_LANES) signs: i32 unless that could overflow */
  LLVMTypeRef count = k->outer * ((k->inner + NM_LANES - 1) / NM_LANES) < INT32_MAX ? g->i32 : g->i64;
  Bn b = {g, k, LLVMVectorType(g->f32, NM_LANES), LLVMVectorType(g->f64, NM_LANES), LLVMVectorType(count, NM_LANES),
          k->inner == 1 ? NM_LANES : 1, NULL, NULL, DX_STORE, NULL};
  g->scratch = k->scratch;
  if (k->x_s16) { /* x: input 0 of the statistics and the forward pass, input 1 of the gradients */
    SQ_ASSERT(b.cw == 1); /* the fuse pass keeps s16 for feature maps */
    int xi = k->op == OP_batchnorm_stats || k->op == OP_l1_batchnorm || k->op == OP_l2_batchnorm || k->op == OP_batchnorm_pool ? 0 : 1;
    b.xscale = gen_input_scale(g, xi);
  }
  if (k->op == OP_batchnorm_stats) { /* inference normalizes with the running statistics */
    LLVMBasicBlockRef work = LLVMAppendBasicBlockInContext(g->ctx, fn, "training"), skip = LLVMAppendBasicBlockInContext(g->ctx, fn, "inference");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntNE, gen_arg(g, KA_TRAINING), LLVMConstInt(g->i32, 0, 0), ""), work, skip);
    LLVMPositionBuilderAtEnd(g->b, skip);
    LLVMBuildRetVoid(g->b);
    LLVMPositionBuilderAtEnd(g->b, work);
  }
  switch (k->op) {
  case OP_batchnorm_stats: k->int_stats ? stats_int(&b, out) : stats(&b, out); break;
  case OP_l1_batchnorm: case OP_l2_batchnorm: case OP_batchnorm_pool: forward(&b, out); break;
  case OP_batchnorm_dparams: case OP_batchnorm_pool_dparams: dparams(&b, out); break;
  case OP_batchnorm_dx: case OP_batchnorm_pool_dx: dx(&b, out); break;
  default: SQ_INTERNAL("not a batchnorm op: %s", op_info[k->op].name);
  }
  LLVMBuildRetVoid(g->b);
  return fn;
}
