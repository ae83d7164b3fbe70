/* batchnorm_gen.h: what the batchnorm kernels' generators share (batchnorm.c: the forward
 * pass and the entry; batchnorm_rows.c: loads, reductions and the phases over rows;
 * batchnorm_stats.c: the statistics; batchnorm_grad.c: dparams and dx). Private to them. */
#ifndef SQC_BATCHNORM_GEN_H
#define SQC_BATCHNORM_GEN_H
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

#define B (b->g->b) /* the builder, in every generator of these files */
static inline LLVMValueRef ext(Bn *b, LLVMValueRef v) { return LLVMBuildFPExt(B, v, b->vd, ""); }
/* per-channel values: a scalar, or a vector of the unit's cw channels */
static inline LLVMTypeRef ct(Bn *b, LLVMTypeRef t) { return b->cw > 1 ? LLVMVectorType(t, (unsigned)b->cw) : t; }
static inline LLVMValueRef f64(Bn *b, LLVMValueRef v) { return LLVMBuildFPExt(B, v, ct(b, b->g->f64), ""); }
static inline LLVMValueRef f32(Bn *b, LLVMValueRef v) { return LLVMBuildFPTrunc(B, v, ct(b, b->g->f32), ""); }
static inline LLVMValueRef dconst(Bn *b, double v) {
  return b->cw > 1 ? gen_splat(b->g, gen_f64c(b->g, v), (unsigned)b->cw) : gen_f64c(b->g, v);
}
static inline LLVMValueRef fconst(Bn *b, float v) {
  return b->cw > 1 ? gen_splat(b->g, gen_f32c(b->g, v), (unsigned)b->cw) : gen_f32c(b->g, v);
}
/* a per-channel value in every lane of a sum's vector (one channel), or as it is (cw lanes) */
static inline LLVMValueRef lift(Bn *b, LLVMValueRef v) { return b->cw > 1 ? v : gen_splat(b->g, v, NM_LANES); }
/* x's elements: floats, or s16 sums */
static inline LLVMTypeRef x_elem(Bn *b) { return b->xscale ? LLVMInt16TypeInContext(b->g->ctx) : b->g->f32; }
static inline LLVMValueRef x_at(Bn *b, LLVMValueRef x, LLVMValueRef e) { return gen_at(b->g, x_elem(b), x, e); }
/* L1 with s16 x: signs of x - mean from integer thresholds (bn_store_thresholds) */
static inline int int_signs(const Bn *b) { return b->xscale && !b->k->l2; }
static inline int64_t units(const Bn *b) { return (b->k->channels + b->cw - 1) / b->cw; }
/* the per-channel floats of scratch region j (after the accumulators, kir_bn_scratch) */
static inline LLVMValueRef consts(Bn *b, int j) {
  int64_t c16 = kir_bn_channels(b->k->channels);
  return gen_at(b->g, b->g->i8, gen_arg(b->g, KA_SCRATCH), gen_i64(b->g, c16 * (KIR_BN_ACCS * KIR_BN_ACC_BYTES + 4 * j)));
}
/* channel c's int32 in constant region j */
static inline LLVMValueRef int_const(Bn *b, int j, LLVMValueRef c) { return gen_at(b->g, b->g->i32, consts(b, j), c); }
static inline int pooled(const Bn *b) { return b->k->pool_k > 0; }
/* the elements each channel's statistics cover */
static inline double bn_elements(const Bn *b) { return (double)(b->k->outer * b->k->inner); }
static inline LLVMValueRef at_row(Bn *b, LLVMValueRef base, LLVMValueRef row) { return gen_at(b->g, b->g->f32, base, row); }

/* accumulators of a reduction (bn_reduce_units) */
typedef struct { int n; LLVMValueRef var[KIR_BN_ACCS], init[KIR_BN_ACCS]; } Accs; /* init: NULL for zeros */
typedef void (*RowFn)(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx);
typedef void (*UnitFn)(Bn *b, LLVMValueRef c, void *ctx);
typedef void (*LaneBody)(Bn *b, LLVMValueRef *v, void *ctx);

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
  int classes;             /* dparams' class extremes: of the first 2 classes, or all NM_BN_CLASSES */
} RowCtx;

/* batchnorm_rows.c */
LLVMValueRef bn_cload(Bn *b, LLVMValueRef base, LLVMValueRef i);
void bn_cstore(Bn *b, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i);
LLVMValueRef bn_stat(Bn *b, LLVMValueRef stats, int row, LLVMValueRef c);
void bn_stat_store(Bn *b, LLVMValueRef v, LLVMValueRef out, int row, LLVMValueRef c);
LLVMValueRef bn_lanes_sum(Bn *b, LLVMValueRef v);
LLVMValueRef bn_s16_values(Bn *b, LLVMValueRef v);
LLVMValueRef bn_x_load(Bn *b, LLVMValueRef x, LLVMValueRef e);
LLVMValueRef bn_first_lanes(Bn *b, int64_t n);
void bn_row_vectors(Bn *b, int ns, const LLVMValueRef *row, const LLVMValueRef *pass, LaneBody body, void *ctx);
void bn_reduce_units(Bn *b, const Accs *a, UnitFn start, RowFn row, UnitFn done, void *ctx);
void bn_by_rows(Bn *b, UnitFn constants, RowFn row, void *ctx);
void bn_load_constants(Bn *b, LLVMValueRef c, RowCtx *r, int first, int last);
LLVMValueRef bn_normalize(Bn *b, const RowCtx *r, LLVMValueRef x);
PoolPlane bn_plane(Bn *b, RowCtx *r, LLVMValueRef row);
LLVMValueRef bn_pooled_plane(Bn *b, LLVMValueRef p, LLVMValueRef row);
LLVMValueRef bn_plane_codes(Bn *b, LLVMValueRef p, LLVMValueRef row);
void bn_route_gradient(Bn *b, RowCtx *r, LLVMValueRef row, int pool);
LLVMValueRef bn_divisor_inv(Bn *b, LLVMValueRef spread);
/* batchnorm_stats.c */
void bn_stats(Bn *b, LLVMValueRef out);
void bn_stats_int(Bn *b, LLVMValueRef out);
void bn_store_thresholds(Bn *b, LLVMValueRef mu, LLVMValueRef c);
LLVMValueRef bn_above_mean(Bn *b, LLVMValueRef v, LLVMValueRef up);
LLVMValueRef bn_below_mean(Bn *b, LLVMValueRef v, LLVMValueRef down);
/* batchnorm_grad.c */
void bn_dparams(Bn *b, LLVMValueRef out);
void bn_dx(Bn *b, LLVMValueRef out);
LLVMValueRef bn_sq_params(Bn *b);
LLVMValueRef bn_sq_range_bits(Bn *b);
void bn_check_ranges(Bn *b);
void bn_channel_ranges(Bn *b, LLVMValueRef dst, int check);
#endif
