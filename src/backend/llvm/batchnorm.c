/* batchnorm.c: the kernels of batchnorm with saved statistics, L1 or L2, as runtime/numerics.c
 * defines them: batchnorm_stats (nm_bn_stats), l1_/l2_batchnorm (nm_bn_forward with the
 * batch's statistics and a running update, or the running statistics in inference),
 * batchnorm_dparams (nm_bn_dparams) and batchnorm_dx (nm_bn_dx).
 * A unit of work is one channel: its sums run in one vector of NM_LANES doubles, lane
 * k % NM_LANES taking element k of each row as the reference's lanes do, and its elementwise
 * passes are scalar loops that the vectorizer widens. Where a row holds one element (inner = 1,
 * a batchnorm after a linear layer) all of a channel's elements fall in lane 0, so a unit is
 * NM_LANES channels instead, one per lane, read contiguously along the rows: per-channel values
 * are then vectors, and each lane's sum is the reference's lane 0 (adding the other lanes' zeros
 * changes no bits). */
#include "../../../runtime/numerics.h"
#include "gen.h"

typedef struct {
  Gen *g;
  const ChanKernel *k;
  LLVMTypeRef vf, vd, vl; /* NM_LANES floats, doubles, integers (sign counts) */
  int cw;                 /* channels per unit of work: 1, or NM_LANES when inner = 1 */
  LLVMValueRef cmask;     /* cw > 1: the lanes that are channels */
} Bn;

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

/* NM_LANES floats at &base[e]; the first `n` of them when n < NM_LANES, the other lanes `pass` */
static LLVMValueRef load_lanes(Bn *b, LLVMValueRef base, LLVMValueRef e, int n, LLVMValueRef pass) {
  LLVMValueRef at = gen_at(b->g, b->g->f32, base, e);
  if (n == NM_LANES) {
    LLVMValueRef v = LLVMBuildLoad2(B, b->vf, at, "");
    LLVMSetAlignment(v, 4);
    return v;
  }
  LLVMTypeRef i1 = LLVMInt1TypeInContext(b->g->ctx);
  LLVMValueRef mask[NM_LANES];
  for (int j = 0; j < NM_LANES; j++) mask[j] = LLVMConstInt(i1, j < n, 0);
  return gen_masked_load(b->g, b->vf, at, LLVMConstVector(mask, NM_LANES), gen_splat(b->g, pass, NM_LANES));
}

/* body(v) for the vectors of the row that starts at element `row`: its full vectors, then its
 * last inner % NM_LANES elements with the other lanes `pass` (values that add nothing); with
 * channels in the lanes (cw > 1), the unit's channels of the row. Streams (x, and g in dparams)
 * are read at the same elements. */
typedef void (*LaneBody)(Bn *b, LLVMValueRef *v, void *ctx);
static void row_vectors(Bn *b, LLVMValueRef row, int ns, const LLVMValueRef *base, const LLVMValueRef *pass, LaneBody body,
                        void *ctx) {
  Gen *g = b->g;
  int64_t full = b->k->inner / NM_LANES, rest = b->k->inner % NM_LANES;
  LLVMValueRef v[2];
  if (b->cw > 1) {
    for (int s = 0; s < ns; s++) v[s] = cload(b, base[s], row);
    body(b, v, ctx);
    return;
  }
  if (full) {
    Loop lv;
    LLVMValueRef i = gen_loop_begin(g, &lv, gen_i64(g, full), "v");
    LLVMValueRef e = LLVMBuildAdd(B, row, LLVMBuildMul(B, i, gen_i64(g, NM_LANES), ""), "");
    for (int s = 0; s < ns; s++) v[s] = load_lanes(b, base[s], e, NM_LANES, NULL);
    body(b, v, ctx);
    gen_loop_end(g, &lv, 0);
  }
  if (rest) {
    LLVMValueRef e = LLVMBuildAdd(B, row, gen_i64(g, full * NM_LANES), "");
    for (int s = 0; s < ns; s++) v[s] = load_lanes(b, base[s], e, (int)rest, pass[s]);
    body(b, v, ctx);
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
typedef struct { int n; LLVMValueRef var[KIR_BN_ACCS]; } Accs;
typedef void (*RowFn)(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx);
typedef void (*UnitFn)(Bn *b, LLVMValueRef c, void *ctx);
static void reduce_units(Bn *b, const Accs *a, RowFn row, UnitFn done, void *ctx) {
  Gen *g = b->g;
  LLVMValueRef lo, hi;
  gen_part_range(g, units(b), &lo, &hi);
  Loop lu, lo_;
  if (b->cw > 1) {
    LLVMValueRef c = unit_channel(b, gen_loop_range(g, &lu, lo, hi, "unit"));
    for (int j = 0; j < a->n; j++) LLVMBuildStore(B, LLVMConstNull(LLVMGetAllocatedType(a->var[j])), a->var[j]);
    LLVMValueRef o = gen_loop_begin(g, &lo_, gen_i64(g, b->k->outer), "o");
    row(b, c, row_start(b, o, c), ctx);
    gen_loop_end(g, &lo_, 0);
    done(b, c, ctx);
    gen_loop_end(g, &lu, 0);
    return;
  }
  LLVMValueRef c = gen_loop_range(g, &lu, lo, hi, "c");
  for (int j = 0; j < a->n; j++) LLVMBuildStore(B, LLVMConstNull(LLVMGetAllocatedType(a->var[j])), acc_slot(b, j, c));
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
 * constants in the scratch's float regions; then every row in memory order (parts over rows):
 * load(c) reads its channel's constants once, and elem(e) gives element e of the output. */
typedef LLVMValueRef (*ElemFn)(Bn *b, LLVMValueRef e, void *ctx);
static void elementwise_rows(Bn *b, UnitFn constants, UnitFn load, ElemFn elem, void *ctx) {
  Gen *g = b->g;
  const ChanKernel *k = b->k;
  Phases ph;
  gen_phases(g, &ph, 2);
  Loop lu, lr, li;
  LLVMValueRef c = unit_channel(b, gen_loop_part(g, &lu, units(b), "unit"));
  constants(b, c, ctx);
  gen_loop_end(g, &lu, 0);
  gen_next_phase(g, &ph);
  LLVMValueRef r = gen_loop_part(g, &lr, k->outer * units(b), "rows");
  c = unit_channel(b, LLVMBuildSRem(B, r, gen_i64(g, units(b)), ""));
  LLVMValueRef row = row_start(b, LLVMBuildSDiv(B, r, gen_i64(g, units(b)), ""), c), out = gen_arg(g, KA_OUT);
  load(b, c, ctx);
  if (b->cw > 1) {
    cstore(b, elem(b, row, ctx), out, row);
  } else { /* the vectorizer widens it */
    LLVMValueRef e = LLVMBuildAdd(B, row, gen_loop_begin(g, &li, gen_i64(g, k->inner), "j"), "e");
    gen_store(g, elem(b, e, ctx), out, e);
    gen_loop_end(g, &li, 0);
  }
  gen_loop_end(g, &lr, 0);
}

/* nm_l1_inv or nm_l2_inv of a float spread: 1 / (kappa * s + eps) or 1 / sqrt(s + eps) in double */
static LLVMValueRef divisor_inv(Bn *b, LLVMValueRef spread) {
  LLVMValueRef s = f64(b, spread), eps = dconst(b, (double)(float)b->k->eps);
  LLVMValueRef den = b->k->l2 ? gen_intrinsic(b->g, "llvm.sqrt", LLVMBuildFAdd(B, s, eps, ""))
                              : LLVMBuildFAdd(B, LLVMBuildFMul(B, dconst(b, NM_KAPPA), s, ""), eps, "");
  return f32(b, LLVMBuildFDiv(B, dconst(b, 1.0), den, "inv"));
}

/* ---- batchnorm_stats ---- */
/* pass 1 sums x (acc 0) and stores the means in float region 0; pass 2 sums the deviations
 * from them (acc 0) and counts their signs (acc 1, L1) */
typedef struct { LLVMValueRef x, out, mu, mud; Accs a; } StatsCtx;
static void add_x(Bn *b, LLVMValueRef *v, void *ctx) {
  StatsCtx *s = ctx;
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, s->a.var[0]), ext(b, v[0]), ""), s->a.var[0]);
}
static void add_dev(Bn *b, LLVMValueRef *v, void *ctx) {
  StatsCtx *s = ctx;
  LLVMValueRef d = LLVMBuildFSub(B, ext(b, v[0]), s->mud, "");
  LLVMValueRef dev = b->k->l2 ? LLVMBuildFMul(B, d, d, "") : gen_intrinsic(b->g, "llvm.fabs", d);
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, s->a.var[0]), dev, ""), s->a.var[0]);
  if (b->k->l2) return;
  LLVMValueRef up = LLVMBuildZExt(B, LLVMBuildFCmp(B, LLVMRealOGT, v[0], s->mu, ""), b->vl, "");
  LLVMValueRef down = LLVMBuildZExt(B, LLVMBuildFCmp(B, LLVMRealOLT, v[0], s->mu, ""), b->vl, "");
  LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(b->g, s->a.var[1]), LLVMBuildSub(B, up, down, ""), ""), s->a.var[1]);
}
static double count(const Bn *b) { return (double)(b->k->outer * b->k->inner); }
static void sum_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  (void)c;
  LLVMValueRef zero = gen_f32c(b->g, 0);
  row_vectors(b, row, 1, &((StatsCtx *)ctx)->x, &zero, add_x, ctx);
}
static void store_mean(Bn *b, LLVMValueRef c, void *ctx) {
  StatsCtx *s = ctx;
  LLVMValueRef mu = f32(b, LLVMBuildFDiv(B, lanes_sum(b, gen_get(b->g, s->a.var[0])), dconst(b, count(b)), "mean"));
  cstore(b, mu, consts(b, 0), c);
}
static void dev_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  StatsCtx *s = ctx;
  LLVMValueRef mu = cload(b, consts(b, 0), c);
  s->mu = lift(b, mu), s->mud = ext(b, s->mu);
  row_vectors(b, row, 1, &s->x, &mu, add_dev, ctx); /* x = mean in the unused lanes: no deviation, no sign */
}
static void store_stats(Bn *b, LLVMValueRef c, void *ctx) {
  StatsCtx *s = ctx;
  Gen *g = b->g;
  LLVMValueRef spread = f32(b, LLVMBuildFDiv(B, lanes_sum(b, gen_get(g, s->a.var[0])), dconst(b, count(b)), "spread"));
  LLVMValueRef sign = LLVMBuildSExt(B, gen_get(g, s->a.var[1]), LLVMVectorType(g->i64, NM_LANES), "");
  if (b->cw == 1) sign = gen_intrinsic(g, "llvm.vector.reduce.add", sign); /* exact in any order */
  LLVMValueRef msign = f32(b, LLVMBuildFDiv(B, LLVMBuildSIToFP(B, sign, ct(b, g->f64), ""), dconst(b, count(b)), ""));
  LLVMValueRef row[NM_BN_STATS] = {[NM_BN_MEAN] = cload(b, consts(b, 0), c), [NM_BN_SPREAD] = spread,
                                   [NM_BN_INV] = divisor_inv(b, spread), [NM_BN_MSIGN] = msign};
  for (int r = 0; r < NM_BN_STATS; r++) stat_store(b, row[r], s->out, r, c);
}
static void stats(Bn *b, LLVMValueRef out) {
  Gen *g = b->g;
  StatsCtx s = {gen_input(g, 0), out, NULL, NULL, {1, {gen_var(g, LLVMConstNull(b->vd), "sum")}}};
  reduce_units(b, &s.a, sum_row, store_mean, &s);
  s.a = (Accs){2, {gen_var(g, LLVMConstNull(b->vd), "dev"), gen_var(g, LLVMConstNull(b->vl), "sign")}};
  reduce_units(b, &s.a, dev_row, store_stats, &s);
}

/* ---- l1_/l2_batchnorm ---- */
/* per channel: the mean and divisor (the batch's in training, where the running statistics
 * move towards them, else the running ones), gamma and beta in float regions 0..3 */
enum { FW_MEAN, FW_INV, FW_GAMMA, FW_BETA };
typedef struct { LLVMValueRef x, v[KIR_BN_CONSTS]; } FwCtx;
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
  LLVMValueRef v[KIR_BN_CONSTS] = {[FW_MEAN] = mu, [FW_INV] = inv, [FW_GAMMA] = cload(b, gamma, c), [FW_BETA] = cload(b, beta, c)};
  for (int j = 0; j < KIR_BN_CONSTS; j++) cstore(b, v[j], consts(b, j), c);
}
static void load_constants(Bn *b, LLVMValueRef c, void *ctx) {
  LLVMValueRef *v = ((FwCtx *)ctx)->v;
  for (int j = 0; j < KIR_BN_CONSTS; j++) v[j] = cload(b, consts(b, j), c);
}
static LLVMValueRef forward_elem(Bn *b, LLVMValueRef e, void *ctx) {
  FwCtx *f = ctx;
  LLVMValueRef xh = LLVMBuildFMul(B, LLVMBuildFSub(B, cload(b, f->x, e), f->v[FW_MEAN], ""), f->v[FW_INV], "");
  LLVMValueRef y = LLVMBuildFAdd(B, LLVMBuildFMul(B, f->v[FW_GAMMA], xh, ""), f->v[FW_BETA], "");
  return b->k->relu ? gen_relu(b->g, y) : y;
}
static void forward(Bn *b) {
  FwCtx f = {gen_input(b->g, 0), {NULL}};
  elementwise_rows(b, forward_constants, load_constants, forward_elem, &f);
}

/* ---- batchnorm_dparams ---- */
typedef struct { LLVMValueRef x, g, out, mu, inv; Accs a; } DpCtx; /* acc 0: sum of g * xhat, 1: of g */
static void add_g(Bn *b, LLVMValueRef *v, void *ctx) {
  DpCtx *d = ctx;
  LLVMValueRef xh = LLVMBuildFMul(B, LLVMBuildFSub(B, v[0], d->mu, ""), d->inv, ""), gd = ext(b, v[1]);
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, d->a.var[0]), LLVMBuildFMul(B, gd, ext(b, xh), ""), ""), d->a.var[0]);
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, d->a.var[1]), gd, ""), d->a.var[1]);
}
static void dparams_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  DpCtx *d = ctx;
  LLVMValueRef st = gen_input(b->g, 2), mu = stat(b, st, NM_BN_MEAN, c);
  d->mu = lift(b, mu), d->inv = lift(b, stat(b, st, NM_BN_INV, c));
  LLVMValueRef base[2] = {d->x, d->g}, pass[2] = {mu, gen_f32c(b->g, 0)};
  row_vectors(b, row, 2, base, pass, add_g, ctx);
}
static void store_dparams(Bn *b, LLVMValueRef c, void *ctx) {
  DpCtx *d = ctx;
  stat_store(b, f32(b, lanes_sum(b, gen_get(b->g, d->a.var[0]))), d->out, 0, c);
  stat_store(b, f32(b, lanes_sum(b, gen_get(b->g, d->a.var[1]))), d->out, 1, c);
}
static void dparams(Bn *b, LLVMValueRef out) {
  Gen *g = b->g;
  DpCtx d = {gen_input(g, 1), gen_input(g, 0), out, NULL, NULL,
             {2, {gen_var(g, LLVMConstNull(b->vd), "gxh"), gen_var(g, LLVMConstNull(b->vd), "g")}}};
  reduce_units(b, &d.a, dparams_row, store_dparams, &d);
}

/* ---- batchnorm_dx ---- */
/* per channel in float regions 0..3: a, b and c of dx = (a*g + s) + c, and the mean */
enum { DX_A, DX_B, DX_C, DX_MEAN };
static void dx_constants(Bn *b, LLVMValueRef c, void *ctx) {
  (void)ctx;
  Gen *g = b->g;
  LLVMValueRef st = gen_input(g, 3);
  LLVMValueRef m = dconst(b, count(b)), kappa = dconst(b, NM_KAPPA);
  LLVMValueRef gam = f64(b, cload(b, gen_input(g, 2), c)), inv = f64(b, stat(b, st, NM_BN_INV, c));
  LLVMValueRef dp = gen_input(g, 4); /* [dgamma; dbeta] */
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
  LLVMValueRef v[KIR_BN_CONSTS] = {[DX_A] = av, [DX_B] = bv, [DX_C] = cv, [DX_MEAN] = stat(b, st, NM_BN_MEAN, c)};
  for (int j = 0; j < KIR_BN_CONSTS; j++) cstore(b, v[j], consts(b, j), c);
}
typedef struct { LLVMValueRef dy, x, v[KIR_BN_CONSTS]; } DxCtx;
static void load_dx_constants(Bn *b, LLVMValueRef c, void *ctx) {
  LLVMValueRef *v = ((DxCtx *)ctx)->v;
  for (int j = 0; j < KIR_BN_CONSTS; j++) v[j] = cload(b, consts(b, j), c);
}
static LLVMValueRef dx_elem(Bn *b, LLVMValueRef e, void *ctx) {
  DxCtx *d = ctx;
  LLVMValueRef xv = cload(b, d->x, e), mu = d->v[DX_MEAN], bv = d->v[DX_B], s;
  if (b->k->l2) { /* b * (x - mean) */
    s = LLVMBuildFMul(B, bv, LLVMBuildFSub(B, xv, mu, ""), "");
  } else { /* b where x > mean, -b where x < mean, else 0 */
    s = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, xv, mu, ""), bv,
                        LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, xv, mu, ""), LLVMBuildFNeg(B, bv, ""), fconst(b, 0), ""), "");
  }
  return LLVMBuildFAdd(B, LLVMBuildFAdd(B, LLVMBuildFMul(B, d->v[DX_A], cload(b, d->dy, e), ""), s, ""), d->v[DX_C], "");
}
static void dx(Bn *b) {
  DxCtx d = {gen_input(b->g, 0), gen_input(b->g, 1), {NULL}};
  elementwise_rows(b, dx_constants, load_dx_constants, dx_elem, &d);
}
#undef B

LLVMValueRef gen_batchnorm(Gen *g, const ChanKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name), out = gen_arg(g, KA_OUT);
  /* a lane counts at most outer * ceil(inner / NM_LANES) signs: i32 unless that could overflow */
  LLVMTypeRef count = k->outer * ((k->inner + NM_LANES - 1) / NM_LANES) < INT32_MAX ? g->i32 : g->i64;
  Bn b = {g, k, LLVMVectorType(g->f32, NM_LANES), LLVMVectorType(g->f64, NM_LANES), LLVMVectorType(count, NM_LANES),
          k->inner == 1 ? NM_LANES : 1, NULL};
  g->scratch = k->scratch;
  if (k->op == OP_batchnorm_stats) { /* inference normalizes with the running statistics */
    LLVMBasicBlockRef work = LLVMAppendBasicBlockInContext(g->ctx, fn, "training"), skip = LLVMAppendBasicBlockInContext(g->ctx, fn, "inference");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntNE, gen_arg(g, KA_TRAINING), LLVMConstInt(g->i32, 0, 0), ""), work, skip);
    LLVMPositionBuilderAtEnd(g->b, skip);
    LLVMBuildRetVoid(g->b);
    LLVMPositionBuilderAtEnd(g->b, work);
  }
  switch (k->op) {
  case OP_batchnorm_stats: stats(&b, out); break;
  case OP_l1_batchnorm: case OP_l2_batchnorm: forward(&b); break;
  case OP_batchnorm_dparams: dparams(&b, out); break;
  case OP_batchnorm_dx: dx(&b); break;
  default: SQ_INTERNAL("not a batchnorm op: %s", op_info[k->op].name);
  }
  LLVMBuildRetVoid(g->b);
  return fn;
}
