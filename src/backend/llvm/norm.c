/* norm.c: layernorm, L1 (runtime/numerics.c's nm_l1_*) and L2 (src/ops/norm.c), forward and
 * gradients, with the reference's exact operations: statistics summed in double in element
 * order, each C expression's float or double rounding kept (a float product promoted afterwards
 * stays a float product). One row per unit of work; dgamma sums across rows, so its row
 * statistics come first (phase 0) and the columns after (phase 1). (Batchnorm: batchnorm.c.) */
#include "../../../runtime/numerics.h"
#include "gen.h"

/* w channels (rows) at once, one per vector lane: every lane keeps its own channel's order of
 * operations, so the bits are the scalar code's, and the w independent chains of double adds
 * hide their latency. Channel c stands for the group c .. c + w - 1. */
typedef struct {
  Gen *g;
  const ChanKernel *k;
  LLVMValueRef x, dy, gamma, beta; /* dy: the output gradient in the _dx and _dgamma ops */
  int l1;
  int w;
} Norm;

#define B (n->g->b)
static LLVMTypeRef vt(Norm *n, LLVMTypeRef t) { return n->w > 1 ? LLVMVectorType(t, (unsigned)n->w) : t; }
static LLVMValueRef splat(Norm *n, LLVMValueRef v) {
  if (n->w == 1) return v;
  LLVMValueRef lanes[8];
  for (int j = 0; j < n->w; j++) lanes[j] = v;
  return LLVMConstVector(lanes, (unsigned)n->w);
}
static LLVMValueRef fadd(Norm *n, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(B, a, b, ""); }
static LLVMValueRef fsub(Norm *n, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(B, a, b, ""); }
static LLVMValueRef fmul(Norm *n, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(B, a, b, ""); }
static LLVMValueRef fdiv(Norm *n, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(B, a, b, ""); }
static LLVMValueRef ext(Norm *n, LLVMValueRef a) { return LLVMBuildFPExt(B, a, vt(n, n->g->f64), ""); }
static LLVMValueRef to_f32(Norm *n, LLVMValueRef a) { return LLVMBuildFPTrunc(B, a, vt(n, n->g->f32), ""); }
static LLVMValueRef d(Norm *n, double v) { return splat(n, gen_f64c(n->g, v)); }
static LLVMValueRef f(Norm *n, float v) { return splat(n, gen_f32c(n->g, v)); }
/* element e of the first channel and the same element of the group's other channels, `inner` apart */
static LLVMValueRef ld(Norm *n, LLVMValueRef base, LLVMValueRef e) {
  if (n->w == 1) return gen_load(n->g, n->g->f32, base, e);
  LLVMValueRef v = LLVMGetUndef(vt(n, n->g->f32));
  for (int j = 0; j < n->w; j++) {
    LLVMValueRef x = gen_load(n->g, n->g->f32, base, LLVMBuildAdd(B, e, gen_i64(n->g, j * n->k->inner), ""));
    v = LLVMBuildInsertElement(B, v, x, LLVMConstInt(n->g->i32, (unsigned)j, 0), "");
  }
  return v;
}
static void store_lanes(Norm *n, LLVMValueRef v, LLVMValueRef base, LLVMValueRef e) {
  if (n->w == 1) {
    gen_store(n->g, v, base, e);
    return;
  }
  for (int j = 0; j < n->w; j++)
    gen_store(n->g, LLVMBuildExtractElement(B, v, LLVMConstInt(n->g->i32, (unsigned)j, 0), ""), base,
              LLVMBuildAdd(B, e, gen_i64(n->g, j * n->k->inner), ""));
}

/* the elements of channel c, outer then inner: element index and inner index */
typedef struct { Loop o, i; LLVMValueRef e, j; } ChanLoop;
static void chan_begin(Norm *n, ChanLoop *l, LLVMValueRef c) {
  Gen *g = n->g;
  const ChanKernel *k = n->k;
  LLVMValueRef o = gen_loop_begin(g, &l->o, gen_i64(g, k->outer), "o");
  LLVMValueRef base = LLVMBuildMul(B, LLVMBuildAdd(B, LLVMBuildMul(B, o, gen_i64(g, k->channels), ""), c, ""), gen_i64(g, k->inner), "");
  l->j = gen_loop_begin(g, &l->i, gen_i64(g, k->inner), "j");
  l->e = LLVMBuildAdd(B, base, l->j, "e");
}
static void chan_end(Norm *n, ChanLoop *l) {
  gen_loop_end(n->g, &l->i, 0);
  gen_loop_end(n->g, &l->o, 0);
}

/* The elementwise pass of a group (after its reductions): channel by channel, with a scalar
 * inner loop that the vectorizer widens (its elements are independent), the channel's
 * statistics taken from lane j of the group's vectors (lane() before switching to w = 1). */
static LLVMValueRef lane(Norm *n, LLVMValueRef v, int j) {
  return n->w == 1 ? v : LLVMBuildExtractElement(B, v, LLVMConstInt(n->g->i32, (unsigned)j, 0), "");
}
static void lane_begin(Norm *n, ChanLoop *l, LLVMValueRef c, int j) {
  n->w = 1;
  chan_begin(n, l, LLVMBuildAdd(B, c, gen_i64(n->g, j), "cj"));
}
static void lane_end(Norm *n, ChanLoop *l, int w) {
  gen_loop_end(n->g, &l->i, 0); /* the vectorizer's own choice: a forced width warns where it cannot */
  gen_loop_end(n->g, &l->o, 0);
  n->w = w;
}
/* gamma or beta of an element: per inner position, the same for every lane */
static LLVMValueRef affine(Norm *n, LLVMValueRef v, const ChanLoop *l) {
  LLVMValueRef x = gen_load(n->g, n->g->f32, v, l->j);
  if (n->w == 1) return x;
  LLVMValueRef one = LLVMBuildInsertElement(B, LLVMGetUndef(vt(n, n->g->f32)), x, LLVMConstInt(n->g->i32, 0, 0), "");
  return LLVMBuildShuffleVector(B, one, LLVMGetUndef(vt(n, n->g->f32)), LLVMConstNull(vt(n, n->g->i32)), "");
}
static double count(const ChanKernel *k) { return (double)(k->outer * k->inner); }

/* mean, then mean |x - mean| (L1) or mean (x - mean)^2 (L2), in double */
static void stats(Norm *n, LLVMValueRef c, LLVMValueRef *mean, LLVMValueRef *spread) {
  Gen *g = n->g;
  LLVMValueRef s = gen_var(g, d(n, 0), "s"), a = gen_var(g, d(n, 0), "a");
  ChanLoop l;
  LLVMBuildStore(B, d(n, 0), s);
  chan_begin(n, &l, c);
  LLVMBuildStore(B, fadd(n, gen_get(g, s), ext(n, ld(n, n->x, l.e))), s);
  chan_end(n, &l);
  *mean = fdiv(n, gen_get(g, s), d(n, count(n->k)));
  LLVMBuildStore(B, d(n, 0), a);
  chan_begin(n, &l, c);
  LLVMValueRef dev = fsub(n, ext(n, ld(n, n->x, l.e)), *mean);
  LLVMValueRef term = n->l1 ? gen_intrinsic(g, "llvm.fabs", dev) : fmul(n, dev, dev);
  LLVMBuildStore(B, fadd(n, gen_get(g, a), term), a);
  chan_end(n, &l);
  *spread = fdiv(n, gen_get(g, a), d(n, count(n->k)));
}

/* L1: kappa * sigma1 + eps; L2: 1 / sqrt(var + eps) */
static LLVMValueRef l1_divisor(Norm *n, LLVMValueRef s1) { return fadd(n, fmul(n, d(n, NM_KAPPA), s1), d(n, (double)(float)n->k->eps)); }
static LLVMValueRef l2_inv(Norm *n, LLVMValueRef var) {
  return fdiv(n, d(n, 1.0), gen_intrinsic(n->g, "llvm.sqrt", fadd(n, var, d(n, n->k->eps))));
}

/* a layernorm's rows: nm_l1_forward with float statistics (L1), or gamma * (x - mean) * inv +
 * beta in double (L2) */
static void forward(Norm *n, LLVMValueRef c, LLVMValueRef out) {
  LLVMValueRef mean, spread;
  stats(n, c, &mean, &spread);
  ChanLoop l;
  if (n->l1) {
    LLVMValueRef mf = to_f32(n, mean), sf = to_f32(n, spread);
    LLVMValueRef inv = to_f32(n, fdiv(n, d(n, 1.0), l1_divisor(n, ext(n, sf))));
    for (int j = 0, w = n->w; j < w; j++) {
      LLVMValueRef mj = lane(n, mf, j), ij = lane(n, inv, j);
      lane_begin(n, &l, c, j);
      LLVMValueRef xh = fmul(n, fsub(n, ld(n, n->x, l.e), mj), ij);
      store_lanes(n, fadd(n, fmul(n, affine(n, n->gamma, &l), xh), affine(n, n->beta, &l)), out, l.e);
      lane_end(n, &l, w);
    }
    return;
  }
  LLVMValueRef inv = l2_inv(n, spread);
  for (int j = 0, w = n->w; j < w; j++) {
    LLVMValueRef mj = lane(n, mean, j), ij = lane(n, inv, j);
    lane_begin(n, &l, c, j);
    LLVMValueRef y = fmul(n, fmul(n, ext(n, affine(n, n->gamma, &l)), fsub(n, ext(n, ld(n, n->x, l.e)), mj)), ij);
    store_lanes(n, to_f32(n, fadd(n, y, ext(n, affine(n, n->beta, &l)))), out, l.e);
    lane_end(n, &l, w);
  }
}

/* nm_l1_backward's dx for row c of a layernorm */
static void l1_backward(Norm *n, LLVMValueRef c, LLVMValueRef dx) {
  Gen *g = n->g;
  LLVMValueRef mean, s1;
  stats(n, c, &mean, &s1);
  LLVMValueRef inv = fdiv(n, d(n, 1.0), l1_divisor(n, s1)), m = d(n, count(n->k));
  LLVMValueRef sg = gen_var(g, d(n, 0), "sg"), sgx = gen_var(g, d(n, 0), "sgx"), ssgn = gen_var(g, d(n, 0), "ssgn");
  LLVMBuildStore(B, d(n, 0), sg), LLVMBuildStore(B, d(n, 0), sgx), LLVMBuildStore(B, d(n, 0), ssgn);
  ChanLoop l;
  chan_begin(n, &l, c); /* the sums of gh, gh * xhat and sgn */
  LLVMValueRef dev = fsub(n, ext(n, ld(n, n->x, l.e)), mean);
  LLVMValueRef gh = fmul(n, ext(n, affine(n, n->gamma, &l)), ext(n, ld(n, n->dy, l.e)));
  LLVMValueRef sgn = fsub(n, LLVMBuildUIToFP(B, LLVMBuildFCmp(B, LLVMRealOGT, dev, d(n, 0), ""), vt(n, g->f64), ""),
                          LLVMBuildUIToFP(B, LLVMBuildFCmp(B, LLVMRealOLT, dev, d(n, 0), ""), vt(n, g->f64), ""));
  LLVMBuildStore(B, fadd(n, gen_get(g, sg), gh), sg);
  LLVMBuildStore(B, fadd(n, gen_get(g, sgx), fmul(n, gh, fmul(n, dev, inv))), sgx);
  LLVMBuildStore(B, fadd(n, gen_get(g, ssgn), sgn), ssgn);
  chan_end(n, &l);
  /* (gh - mean(gh) - kappa * mean(gh xhat) * (sgn - mean(sgn))) * inv */
  LLVMValueRef mg = fdiv(n, gen_get(g, sg), m), kmgx = fmul(n, d(n, NM_KAPPA), fdiv(n, gen_get(g, sgx), m));
  LLVMValueRef msgn = fdiv(n, gen_get(g, ssgn), m);
  for (int j = 0, w = n->w; j < w; j++) {
    LLVMValueRef mj = lane(n, mean, j), ij = lane(n, inv, j), gj = lane(n, mg, j), kj = lane(n, kmgx, j), sj = lane(n, msgn, j);
    lane_begin(n, &l, c, j);
    LLVMValueRef devj = fsub(n, ext(n, ld(n, n->x, l.e)), mj);
    LLVMValueRef ghj = fmul(n, ext(n, affine(n, n->gamma, &l)), ext(n, ld(n, n->dy, l.e)));
    LLVMValueRef sgnj = fsub(n, LLVMBuildUIToFP(B, LLVMBuildFCmp(B, LLVMRealOGT, devj, d(n, 0), ""), g->f64, ""),
                             LLVMBuildUIToFP(B, LLVMBuildFCmp(B, LLVMRealOLT, devj, d(n, 0), ""), g->f64, ""));
    store_lanes(n, to_f32(n, fmul(n, fsub(n, fsub(n, ghj, gj), fmul(n, kj, fsub(n, sgnj, sj))), ij)), dx, l.e);
    lane_end(n, &l, w);
  }
}

/* src/ops/norm.c's layernorm_dx: inv * ((g - s1/m) - xhat * s2 / m), g = gamma * dy (a float product) */
static void l2_backward(Norm *n, LLVMValueRef c, LLVMValueRef dx) {
  Gen *g = n->g;
  LLVMValueRef mean, var;
  stats(n, c, &mean, &var);
  LLVMValueRef inv = l2_inv(n, var), m = d(n, count(n->k));
  LLVMValueRef s1 = gen_var(g, d(n, 0), "s1"), s2 = gen_var(g, d(n, 0), "s2");
  LLVMBuildStore(B, d(n, 0), s1), LLVMBuildStore(B, d(n, 0), s2);
  ChanLoop l;
  chan_begin(n, &l, c);
  LLVMValueRef dev = fsub(n, ext(n, ld(n, n->x, l.e)), mean), gv = ext(n, fmul(n, affine(n, n->gamma, &l), ld(n, n->dy, l.e)));
  LLVMBuildStore(B, fadd(n, gen_get(g, s1), gv), s1);
  LLVMBuildStore(B, fadd(n, gen_get(g, s2), fmul(n, fmul(n, gv, dev), inv)), s2);
  chan_end(n, &l);
  LLVMValueRef s1m = fdiv(n, gen_get(g, s1), m), s2v = gen_get(g, s2);
  for (int j = 0, w = n->w; j < w; j++) {
    LLVMValueRef mj = lane(n, mean, j), ij = lane(n, inv, j), aj = lane(n, s1m, j), bj = lane(n, s2v, j);
    lane_begin(n, &l, c, j);
    LLVMValueRef devj = fsub(n, ext(n, ld(n, n->x, l.e)), mj), gj = ext(n, fmul(n, affine(n, n->gamma, &l), ld(n, n->dy, l.e)));
    LLVMValueRef inner = fsub(n, fsub(n, gj, aj), fdiv(n, fmul(n, fmul(n, devj, ij), bj), d(n, count(n->k))));
    store_lanes(n, to_f32(n, fmul(n, ij, inner)), dx, l.e);
    lane_end(n, &l, w);
  }
}

/* a layernorm's dgamma[j] = sum over rows r of (float)(dy * ((x - mean_r) * inv_r)) (L1) or
 * (float)(dy * (x - mean_r) * inv_r) (L2), added in float in row order */
static void rows_dgamma(Norm *n, LLVMValueRef out) {
  Gen *g = n->g;
  const ChanKernel *k = n->k;
  LLVMValueRef st = gen_arg(g, KA_SCRATCH);
  Phases ph;
  gen_phases(g, &ph, 2);
  Loop lr, lj;
  LLVMValueRef r = gen_loop_part(g, &lr, k->channels, "row"), mean, spread;
  stats(n, r, &mean, &spread);
  gen_store(g, mean, st, LLVMBuildMul(B, r, gen_i64(g, 2), ""));
  gen_store(g, n->l1 ? fdiv(n, d(n, 1.0), l1_divisor(n, spread)) : l2_inv(n, spread), st, LLVMBuildAdd(B, LLVMBuildMul(B, r, gen_i64(g, 2), ""), gen_i64(g, 1), ""));
  gen_loop_end(g, &lr, 0);
  gen_next_phase(g, &ph);
  st = gen_arg(g, KA_SCRATCH);
  LLVMValueRef j = gen_loop_part(g, &lj, k->inner, "j"), acc = gen_var(g, f(n, 0), "acc");
  LLVMBuildStore(B, f(n, 0), acc);
  r = gen_loop_begin(g, &lr, gen_i64(g, k->channels), "row");
  LLVMValueRef e = LLVMBuildAdd(B, LLVMBuildMul(B, r, gen_i64(g, k->inner), ""), j, "");
  LLVMValueRef mr = gen_load(g, g->f64, st, LLVMBuildMul(B, r, gen_i64(g, 2), ""));
  LLVMValueRef dr = gen_load(g, g->f64, st, LLVMBuildAdd(B, LLVMBuildMul(B, r, gen_i64(g, 2), ""), gen_i64(g, 1), ""));
  LLVMValueRef dev = fsub(n, ext(n, ld(n, n->x, e)), mr), dyv = ext(n, ld(n, n->dy, e));
  LLVMValueRef t = n->l1 ? fmul(n, dyv, fmul(n, dev, dr)) : fmul(n, fmul(n, dyv, dev), dr);
  LLVMBuildStore(B, fadd(n, gen_get(g, acc), to_f32(n, t)), acc);
  gen_loop_end(g, &lr, 0);
  gen_store(g, gen_get(g, acc), out, j);
  gen_loop_end(g, &lj, 0);
}
#undef B

LLVMValueRef gen_norm(Gen *g, const ChanKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name), out = gen_arg(g, KA_OUT);
  OpCode op = k->op;
  Norm n = {g, k, NULL, NULL, NULL, NULL, 0, 8};
  while (k->channels % n.w) n.w /= 2; /* groups of channels that divide them */
  n.l1 = op == OP_l1_layernorm || op == OP_l1_layernorm_dx || op == OP_l1_layernorm_dgamma;
  int fwd = op == OP_l1_layernorm || op == OP_layernorm, dgamma = op == OP_l1_layernorm_dgamma || op == OP_layernorm_dgamma;
  SQ_ASSERT(k->per_inner);
  g->scratch = k->scratch;
  if (dgamma) { /* (dy, x) */
    n.dy = gen_input(g, 0), n.x = gen_input(g, 1), n.w = 1; /* its phase 1 walks columns */
    rows_dgamma(&n, out);
  } else { /* (x, gamma, beta) or _dx(dy, x, gamma) */
    if (fwd) n.x = gen_input(g, 0), n.gamma = gen_input(g, 1), n.beta = gen_input(g, 2);
    else n.dy = gen_input(g, 0), n.x = gen_input(g, 1), n.gamma = gen_input(g, 2);
    Loop l;
    LLVMValueRef c = LLVMBuildMul(g->b, gen_loop_part(g, &l, k->channels / n.w, "group"), gen_i64(g, n.w), "c");
    if (fwd) forward(&n, c, out);
    else if (n.l1) l1_backward(&n, c, out);
    else l2_backward(&n, c, out);
    gen_loop_end(g, &l, 0);
  }
  LLVMBuildRetVoid(g->b);
  return fn;
}
