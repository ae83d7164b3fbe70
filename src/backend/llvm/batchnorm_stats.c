/* batchnorm_stats.c: batchnorm_stats' kernels: float statistics (nm_bn_stats), and L1's
 * integer statistics of s16 sums (nm_bn_stats_s16) with the sign thresholds the dx shares. */
#include "batchnorm_gen.h"

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
static void sum_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  (void)c;
  LLVMValueRef x = x_at(b, ((RowCtx *)ctx)->x, row), zero = gen_f32c(b->g, 0);
  bn_row_vectors(b, 1, &x, &zero, add_x, ctx);
}
static void store_mean(Bn *b, LLVMValueRef c, void *ctx) {
  RowCtx *r = ctx;
  LLVMValueRef mu = f32(b, LLVMBuildFDiv(B, bn_lanes_sum(b, gen_get(b->g, r->a.var[0])), dconst(b, bn_elements(b)), "mean"));
  bn_cstore(b, mu, consts(b, K_MEAN), c);
}
static void dev_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  RowCtx *r = ctx;
  LLVMValueRef mu = bn_cload(b, consts(b, K_MEAN), c), x = x_at(b, r->x, row);
  r->mu = lift(b, mu), r->mud = ext(b, r->mu);
  bn_row_vectors(b, 1, &x, &mu, add_dev, ctx); /* x = mean in the unused lanes: no deviation, no sign */
}
static void store_stats(Bn *b, LLVMValueRef c, void *ctx) {
  RowCtx *r = ctx;
  Gen *g = b->g;
  LLVMValueRef spread = f32(b, LLVMBuildFDiv(B, bn_lanes_sum(b, gen_get(g, r->a.var[0])), dconst(b, bn_elements(b)), "spread"));
  LLVMValueRef sign = LLVMBuildSExt(B, gen_get(g, r->a.var[1]), LLVMVectorType(g->i64, NM_LANES), "");
  if (b->cw == 1) sign = gen_intrinsic(g, "llvm.vector.reduce.add", sign); /* exact in any order */
  LLVMValueRef msign = f32(b, LLVMBuildFDiv(B, LLVMBuildSIToFP(B, sign, ct(b, g->f64), ""), dconst(b, bn_elements(b)), ""));
  LLVMValueRef row[NM_BN_STATS] = {[NM_BN_MEAN] = bn_cload(b, consts(b, K_MEAN), c), [NM_BN_SPREAD] = spread,
                                   [NM_BN_INV] = bn_divisor_inv(b, spread), [NM_BN_MSIGN] = msign};
  for (int i = 0; i < NM_BN_STATS; i++) bn_stat_store(b, row[i], r->out, i, c);
}
void bn_stats(Bn *b, LLVMValueRef out) {
  Gen *g = b->g;
  RowCtx r = {.b = b, .x = gen_input(g, 0), .out = out, .a = {1, {gen_var(g, LLVMConstNull(b->vd), "sum")}, {0}}};
  bn_reduce_units(b, &r.a, NULL, sum_row, store_mean, &r);
  r.a = (Accs){2, {gen_var(g, LLVMConstNull(b->vd), "dev"), gen_var(g, LLVMConstNull(b->vl), "sign")}, {0}};
  bn_reduce_units(b, &r.a, NULL, dev_row, store_stats, &r);
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
    LLVMValueRef x = bn_s16_values(b, mid);
    LLVMValueRef p = above ? LLVMBuildFCmp(B, LLVMRealOGT, x, mu, "") : LLVMBuildNot(B, LLVMBuildFCmp(B, LLVMRealOLT, x, mu, ""), "");
    hi = LLVMBuildSelect(B, LLVMBuildAnd(B, live, p, ""), mid, hi, "");
    lo = LLVMBuildSelect(B, LLVMBuildAnd(B, live, LLVMBuildNot(B, p, ""), ""), LLVMBuildAdd(B, mid, one, ""), lo, "");
  }
  return lo;
}
/* channel c's int32 in constant region j */
void bn_store_thresholds(Bn *b, LLVMValueRef mu, LLVMValueRef c) {
  LLVMBuildStore(B, first_where(b, mu, 1), int_const(b, K_UP, c));
  LLVMValueRef down = LLVMBuildSub(B, first_where(b, mu, 0), LLVMConstInt(b->g->i32, 1, 0), "down");
  LLVMBuildStore(B, down, int_const(b, K_DOWN, c));
}
/* whether v (int32 lanes or a scalar) is above or below the mean, by the thresholds */
LLVMValueRef bn_above_mean(Bn *b, LLVMValueRef v, LLVMValueRef up) {
  return LLVMBuildICmp(B, LLVMIntSGE, v, gen_splat_like(b->g, up, v), "");
}
LLVMValueRef bn_below_mean(Bn *b, LLVMValueRef v, LLVMValueRef down) {
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
    LLVMValueRef on = bn_first_lanes(b, rest);
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
  LLVMValueRef m = gen_i64(g, (int64_t)bn_elements(b));
  LLVMValueRef sx = LLVMBuildFMul(B, LLVMBuildSIToFP(B, S, g->f64, ""), LLVMBuildFPExt(B, b->xscale, g->f64, ""), "");
  LLVMValueRef mean = LLVMBuildFPTrunc(B, LLVMBuildFDiv(B, sx, gen_f64c(g, bn_elements(b)), ""), g->f32, "mean");
  bn_cstore(b, mean, consts(b, K_MEAN), c);
  bn_store_thresholds(b, mean, c);
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
  LLVMValueRef up = bn_above_mean(b, v, ic->up), down = bn_below_mean(b, v, ic->down);
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
  int64_t m = (int64_t)bn_elements(b);
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
  LLVMValueRef msign = f32(b, LLVMBuildFDiv(B, LLVMBuildSIToFP(B, sign, g->f64, ""), dconst(b, bn_elements(b)), ""));
  LLVMValueRef row[NM_BN_STATS] = {[NM_BN_MEAN] = bn_cload(b, consts(b, K_MEAN), c), [NM_BN_SPREAD] = spread,
                                   [NM_BN_INV] = bn_divisor_inv(b, spread), [NM_BN_MSIGN] = msign};
  for (int i = 0; i < NM_BN_STATS; i++) bn_stat_store(b, row[i], r->out, i, c);
}
void bn_stats_int(Bn *b, LLVMValueRef out) {
  Gen *g = b->g;
  LLVMTypeRef vi = LLVMVectorType(g->i32, NM_LANES), vq = LLVMVectorType(g->i64, NM_LANES);
  RowCtx r = {.b = b, .x = gen_input(g, 0), .out = out, .a = {1, {gen_var(g, LLVMConstNull(vq), "sum")}, {0}}};
  IntCtx ic = {&r, gen_var(g, LLVMConstNull(vi), "row_sum"), gen_var(g, LLVMConstNull(vi), "row_gt"), NULL, NULL, NULL};
  if (b->k->chansums) given_means(b, r.x);
  else bn_reduce_units(b, &r.a, NULL, int_sum_row, store_int_mean, &ic);
  r.a = (Accs){3, {gen_var(g, LLVMConstNull(vq), "dev"), gen_var(g, LLVMConstNull(b->vl), "sign"), gen_var(g, LLVMConstNull(vq), "gt")}, {0}};
  bn_reduce_units(b, &r.a, NULL, int_dev_row, store_int_stats, &ic);
}

