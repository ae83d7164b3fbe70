/* numerics.h: the numerics contract of DESIGN.md §4 in one place. The reference executor, the
 * runtime and every backend's tests call these functions; generated code implements the same
 * rules and is tested against them. Every function that takes `threads` gives the same bits
 * for any thread count (fixed partitions, see threads.h). */
#ifndef SQ_RUNTIME_NUMERICS_H
#define SQ_RUNTIME_NUMERICS_H
#include <stdint.h>

typedef enum {
  NM_OK = 0,
  NM_NONFINITE, /* a NaN or Inf in the tensor being quantized; *bad is its index */
  NM_RANGE,     /* the tensor's range cannot be scaled in float32 (max/Qmax underflows) */
  NM_NOMEM      /* scratch memory could not be allocated */
} nm_status;

#define NM_KAPPA 1.2533141373155003 /* sqrt(pi/2): kappa * mean|x - mu| = sigma for Gaussian x */

static inline int nm_qmax(int bits) { return (1 << (bits - 1)) - 1; } /* 7 at 4 bits */
static inline int nm_umax(int bits) { return (1 << bits) - 1; }       /* 15 at 4 bits */
/* The largest ShiftQuant group count whose shifted values fit int8: Qmax * 2^(G-1) <= 127. */
static inline int nm_max_groups(int bits) { return 9 - bits; }
const char *nm_status_text(nm_status s);

/* round half away from zero, then clamp to [lo, hi] */
float nm_round_clamp(float v, float lo, float hi);
/* stochastic rounding: floor(v) + [u < v - floor(v)], u in [0, 1) */
float nm_stochastic_round(float v, float u);

/* The index of the first NaN or Inf in x[0..n), or -1: blocks of 16 without a branch per
 * element (the compiler vectorizes them), so whole tensors can be checked every step. */
int64_t nm_first_nonfinite(const float *x, int64_t n);

/* max |x| over x[0..n); NM_NONFINITE at the first non-finite element (lowest index). */
nm_status nm_absmax(const float *x, int64_t n, float *max, int64_t *bad, int threads);

/* Symmetric per-tensor quantization to `bits` (2..8). Signed: q in [-Qmax, Qmax] stored as
 * int8, scale = max|x| / Qmax. Unsigned (for non-negative tensors): q in [0, 2^b - 1] stored as
 * uint8, scale = max / (2^b - 1). q = clamp(round_half_away(x * (Q / max))), with the product
 * one float32 multiply. max = 0 gives q = 0 and scale = 1. */
nm_status nm_quantize(const float *x, int64_t n, int bits, int is_unsigned, uint8_t *q, float *scale, int64_t *bad,
                      int threads);

/* relu: x when x > 0, 0 otherwise; a NaN stays NaN (x != x) */
static inline float nm_relu(float x) { return x > 0 || x != x ? x : 0.0f; }
/* its gradient: dy where x > 0, else 0 */
static inline float nm_relu_grad(float dy, float x) { return x > 0 ? dy : 0.0f; }

/* Quantized values of at most 4 bits are stored packed (q4): element i in the low (i even) or
 * high (i odd) nibble of byte i / 2, two's complement when signed; an odd count leaves the
 * last high nibble 0. nm_quantize packs whenever bits <= 4. */
static inline int nm_packed(int bits) { return bits <= 4; }
static inline int64_t nm_q_bytes(int64_t n, int packed) { return packed ? (n + 1) / 2 : n; }
static inline int32_t nm_q4_get(const uint8_t *q, int64_t i, int is_unsigned) {
  int32_t v = (q[i >> 1] >> ((i & 1) * 4)) & 15;
  return is_unsigned ? v : (v ^ 8) - 8;
}

/* An s16 value: an integer sum v kept as int16 with the scale it is dequantized by, exactly the
 * float the sum's epilogue would have written without a bias: (float)v * scale + 0.0 */
static inline float nm_s16_value(int16_t v, float scale) { return (float)v * scale + 0.0f; }

/* A tensor seen as [outer, channels, inner]: channel c holds x[(o*channels + c)*inner + i]. */
typedef struct { int64_t outer, channels, inner; } nm_chan;

/* ShiftQuant group of a channel with range r when the tensor's range is R: the smallest k in
 * 0..G-1 with r > R * 2^-(k+1), else G-1 (exact ldexp comparisons). */
int nm_group_of(float r, float R, int groups);

typedef struct {
  int bits, groups;     /* groups <= nm_max_groups(bits) */
  uint64_t seed, stream; /* stochastic rounding: u = rng_uniform_halves(seed, stream, step, element index) */
  int64_t step;
} nm_sq_params;

/* ShiftQuant of a gradient with channels on the `channels` axis. Writes the shifted int8
 * operand qt = q * 2^(G-1-g) and its single scale s0 * 2^-(G-1) (s0 = R / Qmax), so that
 * qt * scale == q * s_g exactly. group (channels entries) and range (channels entries) are
 * optional outputs. R = 0 gives qt = 0, scale = 1. */
nm_status nm_shiftquant(const float *x, nm_chan geo, const nm_sq_params *p, int8_t *qt, float *scale, uint8_t *group,
                        float *range, int64_t *bad, int threads);

/* L1 layernorm: each channel (a row; geo.outer = 1) over its elements, gamma and beta by inner
 * position: mean, sigma1 = mean|x - mean|, xhat = (x - mean) / (kappa * sigma1 + eps),
 * y = gamma*xhat + beta. (Batchnorm: nm_bn_* below.) */
void nm_l1_stats(const float *x, nm_chan geo, float *mean, float *sigma1, int threads);
void nm_l1_forward(const float *x, nm_chan geo, const float *mean, const float *sigma1, const float *gamma,
                   const float *beta, float eps, float *y, int threads);
/* dx = 1/(kappa*sigma1 + eps) * [gh - mean(gh) - kappa * mean(gh * xhat) * (sgn - mean(sgn))],
 * gh = gamma * g, sgn = sign(x - mean) (sign(0) = 0), with the row's statistics; dgamma gets
 * the sum of g * xhat per inner position. Either output may be NULL. */
void nm_l1_backward(const float *x, const float *g, nm_chan geo, const float *gamma, float eps, float *dx, float *dgamma,
                    int threads);

/* 1 / (kappa * sigma1 + eps) in double, rounded to float: the divisor of every L1 layer */
float nm_l1_inv(float sigma1, float eps);

/* 1 / sqrt(var + eps) in double, rounded to float: the divisor of an L2 batchnorm */
float nm_l2_inv(float var, float eps);

/* Batchnorm as the training step runs it, L1 (spread = mean|x - mean|) or L2 (spread =
 * variance): the forward pass saves the batch's statistics and both gradients reuse them, so
 * the backward pass reads x and g once for the sums and once for dx. A channel's sums run in
 * NM_LANES double partial sums, element k of each row (its inner index) into lane
 * k % NM_LANES; the lanes then add pairwise (l + l + 8, then + 4, + 2, + 1). A vector of
 * NM_LANES doubles computes exactly this. */
enum { NM_LANES = 16 };
/* rows of the statistics tensor, [NM_BN_STATS][channels] */
enum { NM_BN_MEAN, NM_BN_SPREAD, NM_BN_INV, NM_BN_MSIGN, NM_BN_STATS };
/* mean (float); spread = mean|x - mean| (L1) or mean (x - mean)^2 (L2), x and the float mean
 * in double; inv = nm_l1_inv or nm_l2_inv of the spread; msign = mean of sign(x - mean)
 * (sign(0) = 0; 0 for L2) */
void nm_bn_stats(const float *x, nm_chan geo, float eps, int l2, float *stats, int threads);
/* L1 statistics of s16 sums (DESIGN §4: integer sums over the GEMM's accumulators; no
 * squares, no square root), where x = v * scale for int16 v. Per channel, over m elements:
 * S = sum v; q = floor(S / m), r = S - q*m; A = sum |v - q|; gt = #(v > q); then
 * D = sum |m*v - S| = m*A + r*(m - 2*gt), exactly, in any order. The statistics round once each:
 * mean = (float)((double)S * scale / m), spread = (float)((double)D * scale / (m*m)), inv =
 * nm_l1_inv(spread); msign counts the signs of nm_s16_value(v, scale) - mean, as nm_bn_stats
 * does. nm_bn_int_stats says where the integers cannot overflow: m * A < 2^63 with
 * |v - q| < 2^16 needs m <= 2^23; each row's sums of |v - q| stay in int32 below 2^15
 * elements per lane of 16. */
enum { NM_INT_STATS_MAX_M = 1 << 23, NM_INT_STATS_MAX_INNER = 16 << 15 };
static inline int nm_bn_int_stats(int l2, int64_t m, int64_t inner) {
  return !l2 && m <= NM_INT_STATS_MAX_M && inner <= NM_INT_STATS_MAX_INNER;
}
void nm_bn_stats_s16(const int16_t *v, float scale, nm_chan geo, float eps, float *stats, int threads);
/* y = gamma * ((x - mean) * inv) + beta in float, per channel */
void nm_bn_forward(const float *x, nm_chan geo, const float *mean, const float *inv, const float *gamma, const float *beta,
                   float *y, int threads);
/* the parameters' gradients, [2][channels]: dgamma = sum of g * xhat (xhat = (x - mean) * inv
 * in float, the forward pass's), then dbeta = sum of g */
void nm_bn_dparams(const float *x, const float *g, nm_chan geo, const float *stats, float *dparams, int threads);
/* dparams with extremes (ops.def), [NM_BN_DPARAMS_EXTREMES][channels]: after dgamma and dbeta,
 * for the elements with x > mean, x < mean and neither (L1 dx's classes), the least and the
 * largest g, rows 2 + 2*class and 3 + 2*class, in the order of nm_order_key (a total order:
 * no two floats tie, and a NaN is an extreme); a class without elements keeps +Inf and -Inf
 * (the only way its least comes after its largest) */
enum { NM_BN_DPARAMS = 2, NM_BN_CLASSES = 3, NM_BN_DPARAMS_EXTREMES = NM_BN_DPARAMS + 2 * NM_BN_CLASSES };
/* a float's bits as an int32 that orders floats: -NaN < -Inf < ... < -0 < +0 < ... < +Inf < +NaN
 * (below zero the magnitude's bits flip; the same map takes a key back to the bits) */
static inline int32_t nm_order_key(uint32_t bits) {
  int32_t k = (int32_t)bits;
  return k < 0 ? k ^ 0x7fffffff : k;
}
void nm_bn_class_extremes(const float *x, const float *g, nm_chan geo, const float *stats, float *dparams, int threads);
/* dx from the saved statistics and dparams, per channel with mg = gamma*dbeta/m and mgx =
 * gamma*dgamma/m in double: a = gamma*inv and, rounded to float,
 *   L1: b = -kappa*mgx*inv, c = (kappa*mgx*msign - mg)*inv; dx = (a*g + s) + c, s = b where
 *       x > mean, -b where x < mean, else 0 (nm_l1_backward's formula);
 *   L2: b = -mgx*inv*inv, c = -mg*inv; dx = (a*g + b*(x - mean)) + c. */
void nm_bn_dx(const float *x, const float *g, nm_chan geo, const float *gamma, const float *stats, const float *dparams,
              int l2, float *dx, int threads);
/* channel c's a, b and c of nm_bn_dx */
typedef struct { float a, b, c; } nm_bn_dx_coefs;
nm_bn_dx_coefs nm_bn_dx_coefs_of(const float *gamma, const float *stats, const float *dparams, nm_chan geo, int l2, int64_t c);
/* An L1 dx's largest |dx| in channel c, as bits, from dparams with extremes: the largest
 * |(a*g + s) + c| over each class's least and largest g, classes without elements skipped.
 * Within a class dx never decreases, or never increases, as g grows (each float operation
 * rounds monotonically), so where the channel's dx are finite no g of a class has a larger
 * |dx| than one of its extremes, and the bits equal the largest |dx|'s; where one is a NaN or
 * an Inf (a non-finite g is an extreme itself; a non-finite a, b or c makes every dx of a class
 * one) so is the result. The L1 dx kernels that ShiftQuant their output take their ranges by
 * this rule. */
uint32_t nm_bn_l1_dx_range(nm_bn_dx_coefs k, const float *dparams, int64_t channels, int64_t c);

#endif
