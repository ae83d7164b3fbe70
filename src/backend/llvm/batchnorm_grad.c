/* batchnorm_grad.c: the gradients: batchnorm_dparams (nm_bn_dparams, with L1's class
 * extremes) and batchnorm_dx (nm_bn_dx, with ShiftQuant of its output). */
#include <math.h>
#include "batchnorm_gen.h"

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
  SQ_ASSERT(r->classes == 2 || r->classes == NM_BN_CLASSES);
  LLVMValueRef up = LLVMBuildFCmp(B, LLVMRealOGT, x, r->mu, ""), down = LLVMBuildFCmp(B, LLVMRealOLT, x, r->mu, "");
  LLVMValueRef in[NM_BN_CLASSES] = {up, down, LLVMBuildNot(B, LLVMBuildOr(B, up, down, ""), "")}, key = float_key(b, gv);
  for (int cl = 0; cl < r->classes; cl++) {
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
  LLVMValueRef st = gen_input(b->g, 2), mu = bn_stat(b, st, NM_BN_MEAN, c), inv = bn_stat(b, st, NM_BN_INV, c);
  LLVMValueRef g = at_row(b, r->dy, row);
  if (pooled(b)) {
    bn_route_gradient(b, r, row, 3);
    g = r->grad;
  }
  r->mu = lift(b, mu), r->inv = lift(b, inv);
  LLVMValueRef rows[2] = {x_at(b, r->x, row), g}, pass[2] = {mu, gen_f32c(b->g, 0)};
  r->classes = NM_BN_CLASSES;
  if (!(b->k->extremes && int_signs(b))) {
    bn_row_vectors(b, 2, rows, pass, add_g, ctx);
    return;
  }
  /* No int16 lies strictly between the sign thresholds (up = down + 1, the usual case): no
   * element is at the mean, and the row leaves that class's extremes alone. */
  Gen *gn = b->g;
  LLVMValueRef up = LLVMBuildLoad2(B, gn->i32, int_const(b, K_UP, c), "up"), down = LLVMBuildLoad2(B, gn->i32, int_const(b, K_DOWN, c), "down");
  LLVMValueRef empty = LLVMBuildICmp(B, LLVMIntEQ, LLVMBuildSub(B, up, down, ""), LLVMConstInt(gn->i32, 1, 0), "none_at_mean");
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(B));
  LLVMBasicBlockRef two = LLVMAppendBasicBlockInContext(gn->ctx, fn, "two_classes"), all = LLVMAppendBasicBlockInContext(gn->ctx, fn, "all_classes");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(gn->ctx, fn, "row_done");
  LLVMBuildCondBr(B, empty, two, all);
  LLVMPositionBuilderAtEnd(B, two);
  r->classes = 2;
  bn_row_vectors(b, 2, rows, pass, add_g, ctx);
  LLVMBuildBr(B, join);
  LLVMPositionBuilderAtEnd(B, all);
  r->classes = NM_BN_CLASSES;
  bn_row_vectors(b, 2, rows, pass, add_g, ctx);
  LLVMBuildBr(B, join);
  LLVMPositionBuilderAtEnd(B, join);
}
/* extremes with s16 x: the channel's sign thresholds, which tell whether any element is at the mean */
static void dparams_thresholds(Bn *b, LLVMValueRef c, void *ctx) {
  (void)ctx;
  bn_store_thresholds(b, bn_stat(b, gen_input(b->g, 2), NM_BN_MEAN, c), c);
}
static void store_dparams(Bn *b, LLVMValueRef c, void *ctx) {
  RowCtx *r = ctx;
  bn_stat_store(b, f32(b, bn_lanes_sum(b, gen_get(b->g, r->a.var[0]))), r->out, 0, c);
  bn_stat_store(b, f32(b, bn_lanes_sum(b, gen_get(b->g, r->a.var[1]))), r->out, 1, c);
  for (int j = NM_BN_DPARAMS; j < r->a.n; j++) {
    LLVMValueRef key = lanes_extreme(b, gen_get(b->g, r->a.var[j]), (j - NM_BN_DPARAMS) % 2);
    bn_stat_store(b, LLVMBuildBitCast(B, order_key(b, key), b->g->f32, ""), r->out, j, c);
  }
}
void bn_dparams(Bn *b, LLVMValueRef out) {
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
  bn_reduce_units(b, &r.a, b->k->extremes && int_signs(b) ? dparams_thresholds : NULL, dparams_row, store_dparams, &r);
}

/* ---- batchnorm_dx, batchnorm_pool_dx ---- */
/* sq_out: ShiftQuant's ranges in its parameters, channel c's largest |dx| as bits at [c] */
LLVMValueRef bn_sq_range_bits(Bn *b) { return gen_at(b->g, b->g->i32, bn_sq_params(b), gen_i64(b->g, 2 + b->k->channels)); }
/* ranges = 1: each row's largest |dx| bits in scratch after the constants, then each
 * channel's, the largest of its rows', after dx's values */
static LLVMValueRef row_tops(Bn *b) {
  return gen_at(b->g, b->g->i8, gen_arg(b->g, KA_SCRATCH), gen_i64(b->g, kir_bn_scratch(b->k->channels)));
}
/* extremes (an L1 dx): channel c's range from its dparams' classes' extremes, as
 * nm_bn_l1_dx_range takes it, with dx_value's arithmetic and its s (b, -b, 0) */
static LLVMValueRef class_range(Bn *b, LLVMValueRef dp, LLVMValueRef c, LLVMValueRef av, LLVMValueRef bv, LLVMValueRef cv) {
  Gen *g = b->g;
  LLVMValueRef s[NM_BN_CLASSES] = {bv, LLVMBuildFNeg(B, bv, ""), fconst(b, 0)}, top = LLVMConstInt(g->i32, 0, 0);
  for (int cl = 0; cl < NM_BN_CLASSES; cl++) {
    LLVMValueRef lo = bn_stat(b, dp, NM_BN_DPARAMS + 2 * cl, c), hi = bn_stat(b, dp, NM_BN_DPARAMS + 2 * cl + 1, c);
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
  LLVMValueRef m = dconst(b, bn_elements(b)), kappa = dconst(b, NM_KAPPA), gamma = bn_cload(b, gen_input(g, 2), c);
  LLVMValueRef gam = f64(b, gamma), inv = f64(b, bn_stat(b, st, NM_BN_INV, c));
  LLVMValueRef mg = LLVMBuildFDiv(B, LLVMBuildFMul(B, gam, f64(b, bn_stat(b, dp, 1, c)), ""), m, "mg");
  LLVMValueRef mgx = LLVMBuildFDiv(B, LLVMBuildFMul(B, gam, f64(b, bn_stat(b, dp, 0, c)), ""), m, "mgx");
  LLVMValueRef msign = f64(b, bn_stat(b, st, NM_BN_MSIGN, c));
  LLVMValueRef av = f32(b, LLVMBuildFMul(B, gam, inv, "")), bv, cv;
  if (b->k->l2) { /* b = -mgx*inv*inv, c = -mg*inv */
    bv = f32(b, LLVMBuildFMul(B, LLVMBuildFMul(B, LLVMBuildFNeg(B, mgx, ""), inv, ""), inv, ""));
    cv = f32(b, LLVMBuildFMul(B, LLVMBuildFNeg(B, mg, ""), inv, ""));
  } else { /* b = -kappa*mgx*inv, c = (kappa*mgx*msign - mg)*inv */
    bv = f32(b, LLVMBuildFMul(B, LLVMBuildFMul(B, dconst(b, -NM_KAPPA), mgx, ""), inv, ""));
    cv = f32(b, LLVMBuildFMul(B, LLVMBuildFSub(B, LLVMBuildFMul(B, LLVMBuildFMul(B, kappa, mgx, ""), msign, ""), mg, ""), inv, ""));
  }
  LLVMValueRef v[K_COUNT] = {[K_MEAN] = bn_stat(b, st, NM_BN_MEAN, c), [K_A] = av, [K_B] = bv, [K_C] = cv};
  for (int j = 0; j < K_COUNT; j++)
    if (v[j]) bn_cstore(b, v[j], consts(b, j), c);
  if (int_signs(b)) bn_store_thresholds(b, v[K_MEAN], c);
  if (b->k->extremes) gen_store(g, class_range(b, dp, c, av, bv, cv), bn_sq_range_bits(b), c);
}
/* xv: x's value, or with int_signs its int16 sum widened */
static LLVMValueRef dx_value(Bn *b, const RowCtx *r, LLVMValueRef xv, LLVMValueRef gv) {
  LLVMValueRef mu = r->k[K_MEAN], bv = r->k[K_B], s;
  if (b->k->l2) { /* b * (x - mean) */
    s = LLVMBuildFMul(B, bv, LLVMBuildFSub(B, xv, mu, ""), "");
  } else { /* b where x > mean, -b where x < mean, else 0 */
    LLVMValueRef up = int_signs(b) ? bn_above_mean(b, xv, r->k[K_UP]) : LLVMBuildFCmp(B, LLVMRealOGT, xv, mu, "");
    LLVMValueRef down = int_signs(b) ? bn_below_mean(b, xv, r->k[K_DOWN]) : LLVMBuildFCmp(B, LLVMRealOLT, xv, mu, "");
    s = LLVMBuildSelect(B, up, bv, LLVMBuildSelect(B, down, LLVMBuildFNeg(B, bv, ""), fconst(b, 0), ""), "");
  }
  return LLVMBuildFAdd(B, LLVMBuildFAdd(B, LLVMBuildFMul(B, r->k[K_A], gv, ""), s, ""), r->k[K_C], "");
}
static void dx_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  RowCtx *r = ctx;
  Gen *g = b->g;
  bn_load_constants(b, c, r, K_MEAN, K_MEAN);
  bn_load_constants(b, c, r, K_A, K_C);
  if (int_signs(b))
    for (int j = K_UP; j <= K_DOWN; j++) r->k[j] = LLVMBuildLoad2(B, g->i32, int_const(b, j, c), "");
  if (b->cw > 1) {
    bn_cstore(b, dx_value(b, r, bn_cload(b, r->x, row), bn_cload(b, r->dy, row)), r->out, row);
    return;
  }
  if (pooled(b)) bn_route_gradient(b, r, row, 5);
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
  LLVMValueRef xv = int_signs(b) ? LLVMBuildSExt(B, LLVMBuildLoad2(B, x_elem(b), x_at(b, r->x, e), ""), g->i32, "") : bn_x_load(b, r->x, e);
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
    SqRows q = {buf, r->out, gen_i64(g, 0), bn_sq_params(b), k->channels, k->inner, k->groups, k->bits, row};
    gen_sq_row(g, &q, LLVMBuildSDiv(B, row, gen_i64(g, k->inner), ""), gen_rng_key(g, k->stream));
  }
}
/* sq_out: ShiftQuant's parameters (kir_sq_params), after the rows' ranges */
LLVMValueRef bn_sq_params(Bn *b) {
  const ChanKernel *k = b->k;
  return gen_at(b->g, b->g->i8, gen_arg(b->g, KA_SCRATCH), gen_i64(b->g, kir_bn_scratch(k->channels) + 4 * k->outer * k->channels));
}
/* extremes: a NaN or an Inf among the ranges the constants left fails the kernel */
void bn_check_ranges(Bn *b) {
  Loop lc;
  LLVMValueRef c = gen_loop_part(b->g, &lc, b->k->channels, "c");
  LLVMValueRef u = gen_load(b->g, b->g->i32, bn_sq_range_bits(b), c);
  gen_fail_if(b->g, LLVMBuildICmp(B, LLVMIntUGE, u, LLVMConstInt(b->g->i32, 0x7f800000, 0), ""));
  gen_loop_end(b->g, &lc, 0);
}
/* dst[c] = channel c's range, as bits; with check, a NaN or an Inf fails the kernel */
void bn_channel_ranges(Bn *b, LLVMValueRef dst, int check) {
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
void bn_dx(Bn *b, LLVMValueRef out) {
  RowCtx r = {.b = b, .x = gen_input(b->g, 1), .dy = gen_input(b->g, 0), .out = out};
  bn_by_rows(b, dx_constants, dx_row, &r);
}
