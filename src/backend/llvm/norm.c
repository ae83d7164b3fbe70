/* norm.c: batchnorm and layernorm, L1 (runtime/numerics.c's nm_l1_*) and L2
 * (src/ops/norm.c), forward and gradients, with the reference's exact operations: statistics
 * summed in double in element order, each C expression's float or double rounding kept (a
 * float product promoted afterwards stays a float product). One channel (batchnorm) or row
 * (layernorm) per unit of work; a layernorm's dgamma sums across rows, so its row statistics
 * come first (phase 0) and the columns after (phase 1). */
#include "../../../runtime/numerics.h"
#include "gen.h"

typedef struct {
  Gen *g;
  const ChanKernel *k;
  LLVMValueRef x, dy, gamma, beta; /* dy: the output gradient in the _dx and _dgamma ops */
  int l1;
} Norm;

#define B (n->g->b)
static LLVMValueRef fadd(Norm *n, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(B, a, b, ""); }
static LLVMValueRef fsub(Norm *n, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(B, a, b, ""); }
static LLVMValueRef fmul(Norm *n, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(B, a, b, ""); }
static LLVMValueRef fdiv(Norm *n, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(B, a, b, ""); }
static LLVMValueRef ext(Norm *n, LLVMValueRef a) { return LLVMBuildFPExt(B, a, n->g->f64, ""); }
static LLVMValueRef to_f32(Norm *n, LLVMValueRef a) { return LLVMBuildFPTrunc(B, a, n->g->f32, ""); }
static LLVMValueRef d(Norm *n, double v) { return gen_f64c(n->g, v); }
static LLVMValueRef f(Norm *n, float v) { return gen_f32c(n->g, v); }
static LLVMValueRef ld(Norm *n, LLVMValueRef base, LLVMValueRef i) { return gen_load(n->g, n->g->f32, base, i); }

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
/* gamma or beta of an element: per channel, or per inner position (layernorm) */
static LLVMValueRef affine(Norm *n, LLVMValueRef v, LLVMValueRef c, const ChanLoop *l) {
  return ld(n, v, n->k->per_inner ? l->j : c);
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

static void forward(Norm *n, LLVMValueRef c, LLVMValueRef out, LLVMValueRef rm, LLVMValueRef rs) {
  Gen *g = n->g;
  const ChanKernel *k = n->k;
  int bn = rm != NULL;
  LLVMValueRef train = bn ? LLVMBuildICmp(B, LLVMIntNE, gen_arg(g, KA_TRAINING), LLVMConstInt(g->i32, 0, 0), "") : NULL;
  LLVMValueRef mean, spread;
  stats(n, c, &mean, &spread); /* (in inference they are not used) */
  ChanLoop l;
  if (n->l1) { /* nm_l1_forward with float statistics; running stats (1 - mom) * r + mom * stat in float */
    LLVMValueRef mf = to_f32(n, mean), sf = to_f32(n, spread);
    if (bn) {
      LLVMValueRef mom = f(n, (float)k->momentum), keep = f(n, 1.0f - (float)k->momentum);
      LLVMValueRef rmv = ld(n, rm, c), rsv = ld(n, rs, c);
      LLVMValueRef nrm = fadd(n, fmul(n, keep, rmv), fmul(n, mom, mf)), nrs = fadd(n, fmul(n, keep, rsv), fmul(n, mom, sf));
      gen_store(g, LLVMBuildSelect(B, train, nrm, rmv, ""), rm, c);
      gen_store(g, LLVMBuildSelect(B, train, nrs, rsv, ""), rs, c);
      mf = LLVMBuildSelect(B, train, mf, rmv, "mu");
      sf = LLVMBuildSelect(B, train, sf, rsv, "s1");
    }
    LLVMValueRef inv = to_f32(n, fdiv(n, d(n, 1.0), l1_divisor(n, ext(n, sf))));
    chan_begin(n, &l, c);
    LLVMValueRef xh = fmul(n, fsub(n, ld(n, n->x, l.e), mf), inv);
    gen_store(g, fadd(n, fmul(n, affine(n, n->gamma, c, &l), xh), affine(n, n->beta, c, &l)), out, l.e);
    chan_end(n, &l);
    return;
  }
  if (bn) { /* running mean and unbiased variance, in double */
    double m = count(k);
    LLVMValueRef unbiased = m > 1 ? fdiv(n, fmul(n, spread, d(n, m)), d(n, m - 1)) : spread;
    LLVMValueRef rmv = ld(n, rm, c), rvv = ld(n, rs, c), mom = d(n, k->momentum), keep = d(n, 1 - k->momentum);
    gen_store(g, LLVMBuildSelect(B, train, to_f32(n, fadd(n, fmul(n, keep, ext(n, rmv)), fmul(n, mom, mean))), rmv, ""), rm, c);
    gen_store(g, LLVMBuildSelect(B, train, to_f32(n, fadd(n, fmul(n, keep, ext(n, rvv)), fmul(n, mom, unbiased))), rvv, ""), rs, c);
    mean = LLVMBuildSelect(B, train, mean, ext(n, rmv), "mean");
    spread = LLVMBuildSelect(B, train, spread, ext(n, rvv), "var");
  }
  LLVMValueRef inv = l2_inv(n, spread);
  chan_begin(n, &l, c); /* gamma * (x - mean) * inv + beta, in double */
  LLVMValueRef y = fmul(n, fmul(n, ext(n, affine(n, n->gamma, c, &l)), fsub(n, ext(n, ld(n, n->x, l.e)), mean)), inv);
  gen_store(g, to_f32(n, fadd(n, y, ext(n, affine(n, n->beta, c, &l)))), out, l.e);
  chan_end(n, &l);
}

/* nm_l1_backward for channel c: dx (with gamma) or dgamma[c] (per channel) */
static void l1_backward(Norm *n, LLVMValueRef c, LLVMValueRef dx, LLVMValueRef dgamma) {
  Gen *g = n->g;
  LLVMValueRef mean, s1;
  stats(n, c, &mean, &s1);
  LLVMValueRef D = l1_divisor(n, s1), m = d(n, count(n->k));
  LLVMValueRef sg = gen_var(g, d(n, 0), "sg"), sgx = gen_var(g, d(n, 0), "sgx"), ssgn = gen_var(g, d(n, 0), "ssgn");
  LLVMValueRef dg = gen_var(g, d(n, 0), "dg");
  LLVMBuildStore(B, d(n, 0), sg), LLVMBuildStore(B, d(n, 0), sgx), LLVMBuildStore(B, d(n, 0), ssgn), LLVMBuildStore(B, d(n, 0), dg);
  ChanLoop l;
  LLVMValueRef dev, gh, sgn;
  for (int pass = 0; pass < 2; pass++) {
    chan_begin(n, &l, c);
    dev = fsub(n, ext(n, ld(n, n->x, l.e)), mean);
    gh = fmul(n, dx ? ext(n, affine(n, n->gamma, c, &l)) : d(n, 1.0), ext(n, ld(n, n->dy, l.e)));
    sgn = fsub(n, LLVMBuildUIToFP(B, LLVMBuildFCmp(B, LLVMRealOGT, dev, d(n, 0), ""), g->f64, ""),
               LLVMBuildUIToFP(B, LLVMBuildFCmp(B, LLVMRealOLT, dev, d(n, 0), ""), g->f64, ""));
    if (pass == 0) {
      LLVMBuildStore(B, fadd(n, gen_get(g, sg), gh), sg);
      LLVMBuildStore(B, fadd(n, gen_get(g, sgx), fdiv(n, fmul(n, gh, dev), D)), sgx);
      LLVMBuildStore(B, fadd(n, gen_get(g, ssgn), sgn), ssgn);
    } else if (dx) { /* (gh - mean(gh) - kappa * mean(gh xhat) * (sgn - mean(sgn))) / D */
      LLVMValueRef mg = fdiv(n, gen_get(g, sg), m), mgx = fdiv(n, gen_get(g, sgx), m), msgn = fdiv(n, gen_get(g, ssgn), m);
      LLVMValueRef t = fmul(n, fmul(n, d(n, NM_KAPPA), mgx), fsub(n, sgn, msgn));
      gen_store(g, to_f32(n, fdiv(n, fsub(n, fsub(n, gh, mg), t), D)), dx, l.e);
    } else {
      LLVMBuildStore(B, fadd(n, gen_get(g, dg), fmul(n, ext(n, ld(n, n->dy, l.e)), fdiv(n, dev, D))), dg);
    }
    chan_end(n, &l);
  }
  if (dgamma) gen_store(g, to_f32(n, gen_get(g, dg)), dgamma, c);
}

/* src/ops/norm.c's batchnorm_dx / layernorm_dx (gamma) or the per-channel dgamma */
static void l2_backward(Norm *n, LLVMValueRef c, LLVMValueRef dx, LLVMValueRef dgamma) {
  Gen *g = n->g;
  int ln = n->k->per_inner;
  LLVMValueRef mean, var;
  stats(n, c, &mean, &var);
  LLVMValueRef inv = l2_inv(n, var), m = d(n, count(n->k));
  LLVMValueRef s1 = gen_var(g, d(n, 0), "s1"), s2 = gen_var(g, d(n, 0), "s2");
  LLVMBuildStore(B, d(n, 0), s1), LLVMBuildStore(B, d(n, 0), s2);
  ChanLoop l;
  for (int pass = 0; pass < (dx ? 2 : 1); pass++) {
    chan_begin(n, &l, c);
    LLVMValueRef dyv = ld(n, n->dy, l.e), dev = fsub(n, ext(n, ld(n, n->x, l.e)), mean);
    /* layernorm: g = gamma * dy, a float product; batchnorm (and dgamma): dy */
    LLVMValueRef gj = dx && ln ? ext(n, fmul(n, affine(n, n->gamma, c, &l), dyv)) : ext(n, dyv);
    if (pass == 0) {
      LLVMBuildStore(B, fadd(n, gen_get(g, s1), gj), s1);
      LLVMBuildStore(B, fadd(n, gen_get(g, s2), fmul(n, fmul(n, gj, dev), inv)), s2);
    } else {
      LLVMValueRef xh = fmul(n, dev, inv);
      LLVMValueRef inner = fsub(n, fsub(n, gj, fdiv(n, gen_get(g, s1), m)), fdiv(n, fmul(n, xh, gen_get(g, s2)), m));
      LLVMValueRef k = ln ? inv : fmul(n, ext(n, affine(n, n->gamma, c, &l)), inv);
      gen_store(g, to_f32(n, fmul(n, k, inner)), dx, l.e);
    }
    chan_end(n, &l);
  }
  if (dgamma) gen_store(g, to_f32(n, gen_get(g, s2)), dgamma, c);
}

/* a layernorm's dgamma[j] = sum over rows r of (float)(dy * (x - mean_r) / D_r) (L1) or
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
  gen_store(g, n->l1 ? l1_divisor(n, spread) : l2_inv(n, spread), st, LLVMBuildAdd(B, LLVMBuildMul(B, r, gen_i64(g, 2), ""), gen_i64(g, 1), ""));
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
  LLVMValueRef t = n->l1 ? fmul(n, dyv, fdiv(n, dev, dr)) : fmul(n, fmul(n, dyv, dev), dr);
  LLVMBuildStore(B, fadd(n, gen_get(g, acc), to_f32(n, t)), acc);
  gen_loop_end(g, &lr, 0);
  gen_store(g, gen_get(g, acc), out, j);
  gen_loop_end(g, &lj, 0);
}
#undef B

LLVMValueRef gen_norm(Gen *g, const ChanKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name), out = gen_arg(g, KA_OUT);
  OpCode op = k->op;
  Norm n = {g, k, NULL, NULL, NULL, NULL, 0};
  n.l1 = op == OP_l1_batchnorm || op == OP_l1_layernorm || op == OP_l1_batchnorm_dx || op == OP_l1_batchnorm_dgamma ||
         op == OP_l1_layernorm_dx || op == OP_l1_layernorm_dgamma;
  int fwd = op == OP_l1_batchnorm || op == OP_l1_layernorm || op == OP_batchnorm || op == OP_layernorm;
  int dgamma = op == OP_l1_batchnorm_dgamma || op == OP_l1_layernorm_dgamma || op == OP_batchnorm_dgamma || op == OP_layernorm_dgamma;
  g->scratch = k->scratch;
  if (fwd) { /* (x, gamma, beta[, running mean, running spread]) */
    n.x = gen_input(g, 0), n.gamma = gen_input(g, 1), n.beta = gen_input(g, 2);
    int bn = !k->per_inner;
    LLVMValueRef rm = bn ? gen_input(g, 3) : NULL, rs = bn ? gen_input(g, 4) : NULL;
    Loop l;
    LLVMValueRef c = gen_loop_part(g, &l, k->channels, "c");
    forward(&n, c, out, rm, rs);
    gen_loop_end(g, &l, 0);
  } else { /* _dx(dy, x, gamma), _dgamma(dy, x) */
    n.dy = gen_input(g, 0), n.x = gen_input(g, 1);
    if (!dgamma) n.gamma = gen_input(g, 2);
    if (dgamma && k->per_inner) {
      rows_dgamma(&n, out);
    } else {
      Loop l;
      LLVMValueRef c = gen_loop_part(g, &l, k->channels, "c");
      if (n.l1) l1_backward(&n, c, dgamma ? NULL : out, dgamma ? out : NULL);
      else l2_backward(&n, c, dgamma ? NULL : out, dgamma ? out : NULL);
      gen_loop_end(g, &l, 0);
    }
  }
  LLVMBuildRetVoid(g->b);
  return fn;
}
