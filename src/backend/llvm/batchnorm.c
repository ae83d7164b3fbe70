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

/* body(v) for the vectors of channel c: in each row, its full vectors, then the row's last
 * inner % NM_LANES elements with the other lanes `pass` (values that add nothing). Streams
 * (x, and g in dparams) are read at the same elements. */
typedef void (*LaneBody)(Bn *b, LLVMValueRef *v, void *ctx);
static void each_vector(Bn *b, LLVMValueRef c, int ns, const LLVMValueRef *base, const LLVMValueRef *pass, LaneBody body,
                        void *ctx) {
  Gen *g = b->g;
  const ChanKernel *k = b->k;
  int64_t full = k->inner / NM_LANES, rest = k->inner % NM_LANES;
  Loop lo, lv;
  LLVMValueRef o = gen_loop_begin(g, &lo, gen_i64(g, k->outer), "o"), v[2];
  if (b->cw > 1) { /* inner = 1: row o's elements of the unit's channels */
    LLVMValueRef e = LLVMBuildAdd(B, LLVMBuildMul(B, o, gen_i64(g, k->channels), ""), c, "");
    for (int s = 0; s < ns; s++) v[s] = cload(b, base[s], e);
    body(b, v, ctx);
    gen_loop_end(g, &lo, 0);
    return;
  }
  LLVMValueRef row = LLVMBuildMul(B, LLVMBuildAdd(B, LLVMBuildMul(B, o, gen_i64(g, k->channels), ""), c, ""), gen_i64(g, k->inner), "row");
  if (full) {
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
  gen_loop_end(g, &lo, 0);
}

/* for each element i of channel c (outer, then inner): the builder in the body, i returned */
typedef struct { Loop o, i; } ElemLoop;
static LLVMValueRef elems_begin(Bn *b, ElemLoop *l, LLVMValueRef c) {
  const ChanKernel *k = b->k;
  LLVMValueRef o = gen_loop_begin(b->g, &l->o, gen_i64(b->g, k->outer), "o");
  LLVMValueRef row = LLVMBuildMul(B, LLVMBuildAdd(B, LLVMBuildMul(B, o, gen_i64(b->g, k->channels), ""), c, ""), gen_i64(b->g, k->inner), "");
  if (b->cw > 1) return row; /* inner = 1: the unit's channels of row o, one vector */
  return LLVMBuildAdd(B, row, gen_loop_begin(b->g, &l->i, gen_i64(b->g, k->inner), "j"), "e");
}
static void elems_end(Bn *b, ElemLoop *l) {
  if (b->cw == 1) gen_loop_end(b->g, &l->i, 0); /* the vectorizer widens it */
  gen_loop_end(b->g, &l->o, 0);
}

/* nm_l1_inv or nm_l2_inv of a float spread: 1 / (kappa * s + eps) or 1 / sqrt(s + eps) in double */
static LLVMValueRef divisor_inv(Bn *b, LLVMValueRef spread) {
  LLVMValueRef s = f64(b, spread), eps = dconst(b, (double)(float)b->k->eps);
  LLVMValueRef den = b->k->l2 ? gen_intrinsic(b->g, "llvm.sqrt", LLVMBuildFAdd(B, s, eps, ""))
                              : LLVMBuildFAdd(B, LLVMBuildFMul(B, dconst(b, NM_KAPPA), s, ""), eps, "");
  return f32(b, LLVMBuildFDiv(B, dconst(b, 1.0), den, "inv"));
}

/* ---- batchnorm_stats ---- */
typedef struct { LLVMValueRef sum, abs, sign, mu, mud; } StatsAcc;
static void add_x(Bn *b, LLVMValueRef *v, void *ctx) {
  StatsAcc *a = ctx;
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, a->sum), ext(b, v[0]), ""), a->sum);
}
static void add_dev(Bn *b, LLVMValueRef *v, void *ctx) {
  StatsAcc *a = ctx;
  LLVMValueRef d = LLVMBuildFSub(B, ext(b, v[0]), a->mud, "");
  LLVMValueRef dev = b->k->l2 ? LLVMBuildFMul(B, d, d, "") : gen_intrinsic(b->g, "llvm.fabs", d);
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, a->abs), dev, ""), a->abs);
  if (b->k->l2) return;
  LLVMValueRef up = LLVMBuildZExt(B, LLVMBuildFCmp(B, LLVMRealOGT, v[0], a->mu, ""), b->vl, "");
  LLVMValueRef down = LLVMBuildZExt(B, LLVMBuildFCmp(B, LLVMRealOLT, v[0], a->mu, ""), b->vl, "");
  LLVMBuildStore(B, LLVMBuildAdd(B, gen_get(b->g, a->sign), LLVMBuildSub(B, up, down, ""), ""), a->sign);
}

static void stats(Bn *b, LLVMValueRef c, LLVMValueRef x, LLVMValueRef out) {
  Gen *g = b->g;
  double m = (double)(b->k->outer * b->k->inner);
  StatsAcc a = {gen_var(g, LLVMConstNull(b->vd), "sum"), gen_var(g, LLVMConstNull(b->vd), "abs"),
                gen_var(g, LLVMConstNull(b->vl), "sign"), NULL, NULL};
  LLVMBuildStore(B, LLVMConstNull(b->vd), a.sum), LLVMBuildStore(B, LLVMConstNull(b->vd), a.abs);
  LLVMBuildStore(B, LLVMConstNull(b->vl), a.sign);
  LLVMValueRef zero = gen_f32c(g, 0);
  each_vector(b, c, 1, &x, &zero, add_x, &a);
  LLVMValueRef mu = f32(b, LLVMBuildFDiv(B, lanes_sum(b, gen_get(g, a.sum)), dconst(b, m), "mean"));
  a.mu = lift(b, mu), a.mud = ext(b, a.mu);
  each_vector(b, c, 1, &x, &mu, add_dev, &a); /* x = mean in the unused lanes: no deviation, no sign */
  LLVMValueRef spread = f32(b, LLVMBuildFDiv(B, lanes_sum(b, gen_get(g, a.abs)), dconst(b, m), "spread"));
  LLVMValueRef sign = LLVMBuildSExt(B, gen_get(g, a.sign), LLVMVectorType(g->i64, NM_LANES), "");
  if (b->cw == 1) sign = gen_intrinsic(g, "llvm.vector.reduce.add", sign); /* exact in any order */
  LLVMValueRef msign = f32(b, LLVMBuildFDiv(B, LLVMBuildSIToFP(B, sign, ct(b, g->f64), ""), dconst(b, m), ""));
  LLVMValueRef row[NM_BN_STATS] = {[NM_BN_MEAN] = mu, [NM_BN_SPREAD] = spread, [NM_BN_INV] = divisor_inv(b, spread),
                                   [NM_BN_MSIGN] = msign};
  for (int r = 0; r < NM_BN_STATS; r++) stat_store(b, row[r], out, r, c);
}

/* ---- l1_/l2_batchnorm ---- */
static void forward(Bn *b, LLVMValueRef c, LLVMValueRef out) {
  Gen *g = b->g;
  const ChanKernel *k = b->k;
  LLVMValueRef x = gen_input(g, 0), gamma = gen_input(g, 1), beta = gen_input(g, 2), rm = gen_input(g, 3), rs = gen_input(g, 4);
  LLVMValueRef st = gen_input(g, 5);
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
  double m = (double)(k->outer * k->inner);
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
  LLVMValueRef gam = cload(b, gamma, c), bet = cload(b, beta, c);
  ElemLoop l;
  LLVMValueRef e = elems_begin(b, &l, c);
  LLVMValueRef xh = LLVMBuildFMul(B, LLVMBuildFSub(B, cload(b, x, e), mu, ""), inv, "");
  LLVMValueRef y = LLVMBuildFAdd(B, LLVMBuildFMul(B, gam, xh, ""), bet, "");
  cstore(b, k->relu ? gen_relu(g, y) : y, out, e);
  elems_end(b, &l);
}

/* ---- batchnorm_dparams ---- */
typedef struct { LLVMValueRef gxh, gsum, mu, inv; } DpAcc;
static void add_g(Bn *b, LLVMValueRef *v, void *ctx) {
  DpAcc *a = ctx;
  LLVMValueRef xh = LLVMBuildFMul(B, LLVMBuildFSub(B, v[0], a->mu, ""), a->inv, ""), gd = ext(b, v[1]);
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, a->gxh), LLVMBuildFMul(B, gd, ext(b, xh), ""), ""), a->gxh);
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(b->g, a->gsum), gd, ""), a->gsum);
}
static void dparams(Bn *b, LLVMValueRef c, LLVMValueRef out) {
  Gen *g = b->g;
  LLVMValueRef st = gen_input(g, 2), mu = stat(b, st, NM_BN_MEAN, c);
  DpAcc a = {gen_var(g, LLVMConstNull(b->vd), "gxh"), gen_var(g, LLVMConstNull(b->vd), "g"), lift(b, mu),
             lift(b, stat(b, st, NM_BN_INV, c))};
  LLVMBuildStore(B, LLVMConstNull(b->vd), a.gxh), LLVMBuildStore(B, LLVMConstNull(b->vd), a.gsum);
  LLVMValueRef base[2] = {gen_input(g, 1), gen_input(g, 0)}, pass[2] = {mu, gen_f32c(g, 0)}; /* x, g */
  each_vector(b, c, 2, base, pass, add_g, &a);
  stat_store(b, f32(b, lanes_sum(b, gen_get(g, a.gxh))), out, 0, c);
  stat_store(b, f32(b, lanes_sum(b, gen_get(g, a.gsum))), out, 1, c);
}

/* ---- batchnorm_dx ---- */
static void dx(Bn *b, LLVMValueRef c, LLVMValueRef out) {
  Gen *g = b->g;
  LLVMValueRef dy = gen_input(g, 0), x = gen_input(g, 1), st = gen_input(g, 3);
  LLVMValueRef m = dconst(b, (double)(b->k->outer * b->k->inner)), kappa = dconst(b, NM_KAPPA);
  LLVMValueRef gam = f64(b, cload(b, gen_input(g, 2), c)), inv = f64(b, stat(b, st, NM_BN_INV, c));
  LLVMValueRef dp = gen_input(g, 4); /* [dgamma; dbeta] */
  LLVMValueRef mg = LLVMBuildFDiv(B, LLVMBuildFMul(B, gam, f64(b, stat(b, dp, 1, c)), ""), m, "mg");
  LLVMValueRef mgx = LLVMBuildFDiv(B, LLVMBuildFMul(B, gam, f64(b, stat(b, dp, 0, c)), ""), m, "mgx");
  LLVMValueRef mu = stat(b, st, NM_BN_MEAN, c), msign = f64(b, stat(b, st, NM_BN_MSIGN, c));
  LLVMValueRef av = f32(b, LLVMBuildFMul(B, gam, inv, "")), bv, cv;
  if (b->k->l2) { /* b = -mgx*inv*inv, c = -mg*inv */
    bv = f32(b, LLVMBuildFMul(B, LLVMBuildFMul(B, LLVMBuildFNeg(B, mgx, ""), inv, ""), inv, ""));
    cv = f32(b, LLVMBuildFMul(B, LLVMBuildFNeg(B, mg, ""), inv, ""));
  } else { /* b = -kappa*mgx*inv, c = (kappa*mgx*msign - mg)*inv */
    bv = f32(b, LLVMBuildFMul(B, LLVMBuildFMul(B, dconst(b, -NM_KAPPA), mgx, ""), inv, ""));
    cv = f32(b, LLVMBuildFMul(B, LLVMBuildFSub(B, LLVMBuildFMul(B, LLVMBuildFMul(B, kappa, mgx, ""), msign, ""), mg, ""), inv, ""));
  }
  ElemLoop l;
  LLVMValueRef e = elems_begin(b, &l, c), xv = cload(b, x, e), s;
  if (b->k->l2) { /* b * (x - mean) */
    s = LLVMBuildFMul(B, bv, LLVMBuildFSub(B, xv, mu, ""), "");
  } else { /* b where x > mean, -b where x < mean, else 0 */
    s = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, xv, mu, ""), bv,
                        LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOLT, xv, mu, ""), LLVMBuildFNeg(B, bv, ""), fconst(b, 0), ""), "");
  }
  LLVMValueRef v = LLVMBuildFAdd(B, LLVMBuildFAdd(B, LLVMBuildFMul(B, av, cload(b, dy, e), ""), s, ""), cv, "");
  cstore(b, v, out, e);
  elems_end(b, &l);
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
  Loop l;
  LLVMValueRef c = gen_loop_part(g, &l, (k->channels + b.cw - 1) / b.cw, "unit");
  if (b.cw > 1) { /* the first of the unit's channels, and the lanes below the channel count */
    c = LLVMBuildMul(g->b, c, gen_i64(g, b.cw), "c");
    b.cmask = LLVMBuildICmp(g->b, LLVMIntSLT, gen_iota(g, NM_LANES), gen_splat(g, LLVMBuildSub(g->b, gen_i64(g, k->channels), c, ""), NM_LANES), "");
  }
  switch (k->op) {
  case OP_batchnorm_stats: stats(&b, c, gen_input(g, 0), out); break;
  case OP_l1_batchnorm: case OP_l2_batchnorm: forward(&b, c, out); break;
  case OP_batchnorm_dparams: dparams(&b, c, out); break;
  case OP_batchnorm_dx: dx(&b, c, out); break;
  default: SQ_INTERNAL("not a batchnorm op: %s", op_info[k->op].name);
  }
  gen_loop_end(g, &l, 0);
  LLVMBuildRetVoid(g->b);
  return fn;
}
