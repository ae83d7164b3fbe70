/* maxpool.c: max pooling of one [H, W] plane without padding over windows that do not overlap
 * (stride >= kernel), forward and gradient, with the reference's tie rule (the first maximum of
 * a window, rows then columns, by ordered > comparisons). The plane's values come through a
 * load callback, so the plain maxpool kernels (reduce.c) and the fused batchnorm_pool kernels
 * (batchnorm.c, batchnorm_rows.c), which normalize x as they load it, share this code. The forward pass can also
 * write each window's code (its first maximum's tap, and the relu's mask: maxpool_codes_ref),
 * and the gradient can route dy by those codes instead of loading the plane. */
#include "gen.h"

static LLVMValueRef add(Gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(g->b, a, b, ""); }
static LLVMValueRef mul(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildMul(g->b, a, gen_i64(g, b), ""); }
static LLVMValueRef at(Gen *g, LLVMValueRef base, LLVMValueRef i) { return gen_at(g, g->f32, base, i); }

LLVMValueRef gen_pool_load_plain(Gen *g, const PoolPlane *pp, LLVMTypeRef t, LLVMValueRef e, LLVMValueRef mask) {
  if (!mask) return gen_load(g, g->f32, pp->x, e);
  return gen_masked_load(g, t, at(g, pp->x, e), mask, LLVMConstNull(t));
}

static void zero_plane(Gen *g, const PoolPlane *pp, LLVMValueRef out) {
  Loop l;
  LLVMValueRef i = gen_loop_begin(g, &l, gen_i64(g, pp->H * pp->W), "z");
  LLVMBuildStore(g->b, LLVMConstReal(g->f32, 0.0), at(g, out, i));
  gen_loop_end(g, &l, 16);
}

/* the code of a window whose first maximum best is at tap arg (i32s, or vectors of them) */
static LLVMValueRef code_of(Gen *g, LLVMValueRef arg, LLVMValueRef best, int relu) {
  if (!relu) return arg;
  LLVMValueRef masked = LLVMBuildFCmp(g->b, LLVMRealULE, best, LLVMConstNull(LLVMTypeOf(best)), ""); /* not > 0 */
  LLVMValueRef m = gen_splat_like(g, LLVMConstInt(g->i32, 0x80, 0), arg);
  return LLVMBuildSelect(g->b, masked, LLVMBuildOr(g->b, arg, m, ""), arg, "code");
}

/* Any k x k: the taps of a window are straight-line code (the first maximum by the same ordered
 * comparisons as the reference), so the loop over output columns vectorizes. The gradient
 * writes every element of a window, 0 + dy at the first maximum and 0 elsewhere, which is what
 * the reference's zero-then-add leaves; rows and columns no window covers are zeroed first. */
static void tiled(Gen *g, const PoolPlane *pp, LLVMValueRef dy, int relu, LLVMValueRef out, LLVMValueRef codes) {
  int64_t W = pp->W, kk = pp->k;
  if (dy && (pp->Ho * pp->s != pp->H || pp->Wo * pp->s != W || pp->s != kk)) zero_plane(g, pp, out);
  Loop lh, lw;
  LLVMValueRef oh = gen_loop_begin(g, &lh, gen_i64(g, pp->Ho), "oh"), ow = gen_loop_begin(g, &lw, gen_i64(g, pp->Wo), "ow");
  LLVMValueRef base = add(g, mul(g, mul(g, oh, pp->s), W), mul(g, ow, pp->s));
  LLVMValueRef best = NULL, arg = NULL, idx[64], o = add(g, mul(g, oh, pp->Wo), ow);
  for (int64_t t = 0; t < kk * kk; t++) idx[t] = add(g, base, gen_i64(g, (t / kk) * W + t % kk));
  if (dy && codes) { /* routed by the codes: 0 + dy at the tap the code names, unless masked */
    LLVMValueRef code = LLVMBuildSExt(g->b, gen_load(g, g->i8, codes, o), g->i32, "");
    LLVMValueRef z = LLVMConstReal(g->f32, 0.0), gv = LLVMBuildFAdd(g->b, z, gen_load(g, g->f32, dy, o), "");
    for (int64_t t = 0; t < kk * kk; t++) {
      LLVMValueRef hit = LLVMBuildICmp(g->b, LLVMIntEQ, code, LLVMConstInt(g->i32, (unsigned long long)t, 0), "");
      LLVMBuildStore(g->b, LLVMBuildSelect(g->b, hit, gv, z, ""), at(g, out, idx[t]));
    }
    gen_loop_end(g, &lw, 0), gen_loop_end(g, &lh, 0);
    return;
  }
  for (int64_t t = 0; t < kk * kk; t++) {
    LLVMValueRef v = pp->load(g, pp, g->f32, idx[t], NULL);
    if (!t) {
      best = v, arg = LLVMConstInt(g->i32, 0, 0);
      continue;
    }
    LLVMValueRef bigger = LLVMBuildFCmp(g->b, LLVMRealOGT, v, best, "");
    best = LLVMBuildSelect(g->b, bigger, v, best, "");
    arg = LLVMBuildSelect(g->b, bigger, LLVMConstInt(g->i32, (unsigned long long)t, 0), arg, "");
  }
  if (!dy) {
    LLVMBuildStore(g->b, best, at(g, out, o));
    if (codes) gen_store(g, LLVMBuildTrunc(g->b, code_of(g, arg, best, relu), g->i8, ""), codes, o);
  } else {
    LLVMValueRef z = LLVMConstReal(g->f32, 0.0), gv = LLVMBuildFAdd(g->b, z, gen_load(g, g->f32, dy, o), "");
    for (int64_t t = 0; t < kk * kk; t++) {
      LLVMValueRef hit = LLVMBuildICmp(g->b, LLVMIntEQ, arg, LLVMConstInt(g->i32, (unsigned long long)t, 0), "");
      LLVMValueRef v = LLVMBuildSelect(g->b, hit, gv, z, "");
      LLVMBuildStore(g->b, relu ? gen_relu_grad(g, v, best) : v, at(g, out, idx[t])); /* x = best where hit */
    }
  }
  gen_loop_end(g, &lw, 0), gen_loop_end(g, &lh, 0);
}

/* The 2x2, stride 2 case with a row of windows in vector lanes: the two input rows are loaded
 * POOL_LANES windows at a time and split into their even and odd columns (the four taps, in
 * the tiled order); the gradient's taps interleave back. */
enum { POOL_LANES = 16 };
static LLVMValueRef const_vec(LLVMTypeRef t, int n, int step, int first, int upto) {
  LLVMValueRef v[2 * POOL_LANES];
  for (int i = 0; i < n; i++) v[i] = LLVMConstInt(t, (unsigned long long)(upto ? i < upto : first + i * step), 0);
  return LLVMConstVector(v, (unsigned)n);
}
static LLVMValueRef lanes_below(Gen *g, int n, int upto) { return const_vec(LLVMInt1TypeInContext(g->ctx), n, 0, 0, upto); }
static LLVMValueRef every_other(Gen *g, LLVMValueRef row, int first) {
  return LLVMBuildShuffleVector(g->b, row, LLVMGetUndef(LLVMTypeOf(row)), const_vec(g->i32, POOL_LANES, 2, first, 0), "");
}
static LLVMValueRef interleave(Gen *g, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef idx[2 * POOL_LANES];
  for (int i = 0; i < 2 * POOL_LANES; i++) idx[i] = LLVMConstInt(g->i32, (unsigned long long)(i / 2 + (i % 2) * POOL_LANES), 0);
  return LLVMBuildShuffleVector(g->b, a, b, LLVMConstVector(idx, 2 * POOL_LANES), "");
}
static void two_by_two(Gen *g, const PoolPlane *pp, LLVMValueRef dy, int relu, LLVMValueRef out, LLVMValueRef codes) {
  int64_t W = pp->W;
  LLVMTypeRef vw = LLVMVectorType(g->f32, POOL_LANES), vr = LLVMVectorType(g->f32, 2 * POOL_LANES);
  LLVMTypeRef vi = LLVMVectorType(g->i32, POOL_LANES);
  Loop lh;
  if (dy && (pp->Ho * 2 != pp->H || pp->Wo * 2 != W)) zero_plane(g, pp, out);
  LLVMValueRef oh = gen_loop_begin(g, &lh, gen_i64(g, pp->Ho), "oh");
  LLVMValueRef row[2] = {mul(g, mul(g, oh, 2), W), NULL};
  row[1] = add(g, row[0], gen_i64(g, W));
  LLVMValueRef orow = mul(g, oh, pp->Wo);
  for (int64_t w0 = 0; w0 < pp->Wo; w0 += POOL_LANES) {
    int n = (int)(pp->Wo - w0 < POOL_LANES ? pp->Wo - w0 : POOL_LANES);
    LLVMValueRef in_row = lanes_below(g, 2 * POOL_LANES, 2 * n), windows = lanes_below(g, POOL_LANES, n), tap[4];
    LLVMValueRef o = add(g, orow, gen_i64(g, w0)), z = LLVMConstNull(vw);
    if (dy && codes) { /* routed by the codes: 0 + dy at the tap the code names, unless masked */
      LLVMTypeRef vb = LLVMVectorType(g->i8, POOL_LANES);
      LLVMValueRef code = LLVMBuildSExt(g->b, gen_masked_load(g, vb, gen_at(g, g->i8, codes, o), windows, LLVMConstNull(vb)), vi, "");
      LLVMValueRef gv = LLVMBuildFAdd(g->b, z, gen_masked_load(g, vw, at(g, dy, o), windows, z), ""), v[4];
      for (int t = 0; t < 4; t++)
        v[t] = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, code, const_vec(g->i32, POOL_LANES, 0, t, 0), ""), gv, z, "");
      for (int r = 0; r < 2; r++) gen_masked_store(g, interleave(g, v[2 * r], v[2 * r + 1]), at(g, out, add(g, row[r], gen_i64(g, 2 * w0))), in_row);
      continue;
    }
    for (int r = 0; r < 2; r++) {
      LLVMValueRef v = pp->load(g, pp, vr, add(g, row[r], gen_i64(g, 2 * w0)), in_row);
      tap[2 * r] = every_other(g, v, 0), tap[2 * r + 1] = every_other(g, v, 1);
    }
    LLVMValueRef best = tap[0], arg = LLVMConstNull(vi);
    for (int t = 1; t < 4; t++) {
      LLVMValueRef bigger = LLVMBuildFCmp(g->b, LLVMRealOGT, tap[t], best, "");
      best = LLVMBuildSelect(g->b, bigger, tap[t], best, "");
      arg = LLVMBuildSelect(g->b, bigger, const_vec(g->i32, POOL_LANES, 0, t, 0), arg, "");
    }
    if (!dy) {
      gen_masked_store(g, best, at(g, out, o), windows);
      if (codes)
        gen_masked_store(g, LLVMBuildTrunc(g->b, code_of(g, arg, best, relu), LLVMVectorType(g->i8, POOL_LANES), ""),
                         gen_at(g, g->i8, codes, o), windows);
      continue;
    }
    LLVMValueRef gv = LLVMBuildFAdd(g->b, z, gen_masked_load(g, vw, at(g, dy, o), windows, z), "");
    LLVMValueRef v[4];
    for (int t = 0; t < 4; t++) {
      LLVMValueRef hit = LLVMBuildICmp(g->b, LLVMIntEQ, arg, const_vec(g->i32, POOL_LANES, 0, t, 0), "");
      v[t] = LLVMBuildSelect(g->b, hit, gv, z, "");
      if (relu) v[t] = gen_relu_grad(g, v[t], best); /* x = best where hit */
    }
    for (int r = 0; r < 2; r++) gen_masked_store(g, interleave(g, v[2 * r], v[2 * r + 1]), at(g, out, add(g, row[r], gen_i64(g, 2 * w0))), in_row);
  }
  gen_loop_end(g, &lh, 0);
}

void gen_maxpool_plane(Gen *g, const PoolPlane *pp, LLVMValueRef dy, int relu, LLVMValueRef out, LLVMValueRef codes) {
  SQ_ASSERT(kir_maxpool_plane_fits(pp->k, pp->s, 0));
  if (pp->k == 2 && pp->s == 2) two_by_two(g, pp, dy, relu, out, codes);
  else tiled(g, pp, dy, relu, out, codes);
}
