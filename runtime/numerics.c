/* numerics.c: see numerics.h. Partitions: elementwise work in blocks of BLOCK elements,
 * per-channel work one channel per block; reductions inside a block run in index order. */
#include "numerics.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "rng.h"
#include "threads.h"

enum { BLOCK = 4096 };

const char *nm_status_text(nm_status s) {
  switch (s) {
  case NM_OK: return "ok";
  case NM_NONFINITE: return "a NaN or Inf value";
  case NM_RANGE: return "a range too small to scale in float32";
  case NM_NOMEM: return "no memory for scratch space";
  }
  return "?";
}

float nm_round_clamp(float v, float lo, float hi) {
  float r = roundf(v); /* C's round: half away from zero */
  return r < lo ? lo : r > hi ? hi : r;
}

float nm_stochastic_round(float v, float u) {
  float f = floorf(v);
  return f + (u < v - f ? 1.0f : 0.0f);
}

static int64_t nblocks(int64_t n) { return (n + BLOCK - 1) / BLOCK; }

/* ---- absmax ---- */
typedef struct {
  const float *x;
  int64_t n;
  float *max;    /* per block */
  int64_t *bad;  /* per block, -1 when finite */
} AbsmaxJob;

static void absmax_block(void *ctx, int64_t b) {
  AbsmaxJob *j = ctx;
  int64_t lo = b * BLOCK, hi = lo + BLOCK < j->n ? lo + BLOCK : j->n;
  float m = 0;
  j->bad[b] = -1;
  for (int64_t i = lo; i < hi; i++) {
    float a = fabsf(j->x[i]);
    if (!isfinite(a)) {
      j->bad[b] = i;
      break;
    }
    m = a > m ? a : m;
  }
  j->max[b] = m;
}

int64_t nm_first_nonfinite(const float *x, int64_t n) {
  enum { LANES = 16 };
  for (int64_t e = 0; e < n; e += LANES) {
    int64_t len = n - e < LANES ? n - e : LANES;
    uint32_t any = 0;
    if (len == LANES) /* all exponent bits set: Inf or NaN */
      for (int j = 0; j < LANES; j++) {
        uint32_t u;
        memcpy(&u, &x[e + j], sizeof u);
        any |= (u & 0x7f800000u) == 0x7f800000u;
      }
    if (len < LANES || any)
      for (int64_t i = e; i < e + len; i++)
        if (!isfinite(x[i])) return i;
  }
  return -1;
}

nm_status nm_absmax(const float *x, int64_t n, float *max, int64_t *bad, int threads) {
  int64_t nb = nblocks(n);
  AbsmaxJob j = {x, n, malloc(sizeof(float) * (size_t)(nb ? nb : 1)), malloc(sizeof(int64_t) * (size_t)(nb ? nb : 1))};
  if (!j.max || !j.bad) { /* fall back to one pass without scratch */
    free(j.max);
    free(j.bad);
    float m = 0;
    for (int64_t i = 0; i < n; i++) {
      if (!isfinite(x[i])) return *bad = i, NM_NONFINITE;
      m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    }
    return *max = m, NM_OK;
  }
  rt_parallel(threads, nb, absmax_block, &j);
  float m = 0;
  nm_status st = NM_OK;
  for (int64_t b = 0; b < nb; b++) {
    if (j.bad[b] >= 0) {
      *bad = j.bad[b];
      st = NM_NONFINITE;
      break;
    }
    m = j.max[b] > m ? j.max[b] : m;
  }
  free(j.max);
  free(j.bad);
  *max = m;
  return st;
}

/* ---- per-tensor quantization ---- */
typedef struct {
  const float *x;
  int64_t n;
  float inv, lo, hi;
  uint8_t *q;
  int is_unsigned, packed;
} QuantJob;

static uint8_t quantize_one(const QuantJob *j, int64_t i) {
  float v = nm_round_clamp(j->x[i] * j->inv, j->lo, j->hi);
  return j->is_unsigned ? (uint8_t)v : (uint8_t)(int8_t)v;
}

/* BLOCK is even: a block owns whole bytes of a packed tensor */
static void quantize_block(void *ctx, int64_t b) {
  QuantJob *j = ctx;
  int64_t lo = b * BLOCK, hi = lo + BLOCK < j->n ? lo + BLOCK : j->n;
  if (!j->packed) {
    for (int64_t i = lo; i < hi; i++) j->q[i] = quantize_one(j, i);
    return;
  }
  for (int64_t i = lo; i < hi; i += 2)
    j->q[i / 2] = (uint8_t)((quantize_one(j, i) & 15) | (i + 1 < hi ? (quantize_one(j, i + 1) & 15) << 4 : 0));
}

nm_status nm_quantize(const float *x, int64_t n, int bits, int is_unsigned, uint8_t *q, float *scale, int64_t *bad,
                      int threads) {
  float m;
  nm_status st = nm_absmax(x, n, &m, bad, threads);
  if (st != NM_OK) return st;
  int packed = nm_packed(bits);
  if (m == 0) {
    memset(q, 0, (size_t)nm_q_bytes(n, packed));
    *scale = 1;
    return NM_OK;
  }
  float Q = (float)(is_unsigned ? nm_umax(bits) : nm_qmax(bits));
  float inv = Q / m, s = m / Q;
  if (!isfinite(inv) || s == 0) return *bad = -1, NM_RANGE;
  QuantJob j = {x, n, inv, is_unsigned ? 0 : -Q, Q, q, is_unsigned, packed};
  rt_parallel(threads, nblocks(n), quantize_block, &j);
  *scale = s;
  return NM_OK;
}

/* ---- ShiftQuant ---- */
int nm_group_of(float r, float R, int groups) {
  for (int k = 0; k < groups - 1; k++)
    if (r > ldexpf(R, -(k + 1))) return k;
  return groups - 1;
}

typedef struct {
  const float *x;
  nm_chan geo;
  float *range;       /* per channel */
  int64_t *bad;       /* per channel */
  const uint8_t *group;
  const nm_sq_params *p;
  float inv, qmax;
  int8_t *qt;
} ShiftJob;

static void range_block(void *ctx, int64_t c) {
  ShiftJob *j = ctx;
  float m = 0;
  j->bad[c] = -1;
  for (int64_t o = 0; o < j->geo.outer; o++) {
    const float *row = j->x + (o * j->geo.channels + c) * j->geo.inner;
    for (int64_t i = 0; i < j->geo.inner; i++) {
      float a = fabsf(row[i]);
      if (!isfinite(a)) {
        j->bad[c] = (o * j->geo.channels + c) * j->geo.inner + i;
        j->range[c] = 0;
        return;
      }
      m = a > m ? a : m;
    }
  }
  j->range[c] = m;
}

/* One block = one (outer, channel) row of inner elements. */
static void shift_block(void *ctx, int64_t row) {
  ShiftJob *j = ctx;
  int64_t c = row % j->geo.channels, base = row * j->geo.inner;
  int g = j->group[c], shift = j->p->groups - 1 - g;
  for (int64_t i = 0; i < j->geo.inner; i++) {
    float v = ldexpf(j->x[base + i] * j->inv, g); /* x * (Qmax/R) * 2^g: one multiply, one exact scaling */
    float u = rng_uniform_halves(j->p->seed, j->p->stream, j->p->step, (uint64_t)(base + i));
    float q = nm_stochastic_round(v, u);
    q = q < -j->qmax ? -j->qmax : q > j->qmax ? j->qmax : q;
    j->qt[base + i] = (int8_t)((int)q * (1 << shift));
  }
}

nm_status nm_shiftquant(const float *x, nm_chan geo, const nm_sq_params *p, int8_t *qt, float *scale, uint8_t *group,
                        float *range, int64_t *bad, int threads) {
  int64_t C = geo.channels, n = geo.outer * geo.channels * geo.inner;
  float *r = range ? range : malloc(sizeof(float) * (size_t)(C ? C : 1));
  uint8_t *grp = group ? group : malloc((size_t)(C ? C : 1));
  int64_t *cbad = malloc(sizeof(int64_t) * (size_t)(C ? C : 1));
  nm_status st = NM_OK;
  if (!r || !grp || !cbad) {
    st = NM_NOMEM;
    *bad = -1;
    goto done;
  }
  ShiftJob j = {x, geo, r, cbad, grp, p, 0, (float)nm_qmax(p->bits), qt};
  rt_parallel(threads, C, range_block, &j);
  float R = 0;
  for (int64_t c = 0; c < C; c++) {
    if (cbad[c] >= 0 && st == NM_OK) *bad = cbad[c], st = NM_NONFINITE;
    R = r[c] > R ? r[c] : R;
  }
  if (st != NM_OK) goto done;
  if (R == 0) {
    memset(qt, 0, (size_t)n);
    memset(grp, (uint8_t)(p->groups - 1), (size_t)C);
    *scale = 1;
    goto done;
  }
  j.inv = j.qmax / R;
  float s0 = R / j.qmax, smin = ldexpf(s0, -(p->groups - 1));
  if (!isfinite(j.inv) || smin == 0 || !isfinite(ldexpf(j.inv, p->groups - 1))) {
    *bad = -1;
    st = NM_RANGE;
    goto done;
  }
  for (int64_t c = 0; c < C; c++) grp[c] = (uint8_t)nm_group_of(r[c], R, p->groups);
  rt_parallel(threads, geo.outer * C, shift_block, &j);
  *scale = smin;
done:
  if (!range) free(r);
  if (!group) free(grp);
  free(cbad);
  return st;
}

/* ---- L1 layernorm ---- */
typedef struct {
  const float *x, *g, *gamma, *beta, *mean, *sigma1;
  nm_chan geo;
  float eps;
  float *out_mean, *out_sigma1, *y, *dx;
} L1Job;

#define FOR_CHANNEL_ELEMS(geo, c, idx, inner_i) \
  for (int64_t o_ = 0; o_ < (geo).outer; o_++) \
    for (int64_t inner_i = 0, idx = (o_ * (geo).channels + (c)) * (geo).inner; inner_i < (geo).inner; inner_i++, idx++)

static void channel_stats(const float *x, nm_chan geo, int64_t c, double *mean, double *sigma1) {
  double s = 0, a = 0, m = (double)(geo.outer * geo.inner);
  FOR_CHANNEL_ELEMS(geo, c, i, k) s += x[i];
  *mean = s / m;
  FOR_CHANNEL_ELEMS(geo, c, i, k) a += fabs(x[i] - *mean);
  *sigma1 = a / m;
}

static void stats_block(void *ctx, int64_t c) {
  L1Job *j = ctx;
  double mean, s1;
  channel_stats(j->x, j->geo, c, &mean, &s1);
  j->out_mean[c] = (float)mean;
  j->out_sigma1[c] = (float)s1;
}

void nm_l1_stats(const float *x, nm_chan geo, float *mean, float *sigma1, int threads) {
  L1Job j = {.x = x, .geo = geo, .out_mean = mean, .out_sigma1 = sigma1};
  rt_parallel(threads, geo.channels, stats_block, &j);
}

float nm_l1_inv(float sigma1, float eps) { return (float)(1.0 / (NM_KAPPA * sigma1 + eps)); }

static void forward_block(void *ctx, int64_t c) {
  L1Job *j = ctx;
  float inv = nm_l1_inv(j->sigma1[c], j->eps), mu = j->mean[c];
  FOR_CHANNEL_ELEMS(j->geo, c, i, k)
    j->y[i] = j->gamma[k] * ((j->x[i] - mu) * inv) + j->beta[k];
}

void nm_l1_forward(const float *x, nm_chan geo, const float *mean, const float *sigma1, const float *gamma,
                   const float *beta, float eps, float *y, int threads) {
  L1Job j = {.x = x, .gamma = gamma, .beta = beta, .mean = mean, .sigma1 = sigma1, .geo = geo, .eps = eps, .y = y};
  rt_parallel(threads, geo.channels, forward_block, &j);
}

static void backward_block(void *ctx, int64_t c) {
  L1Job *j = ctx;
  double mean, s1, m = (double)(j->geo.outer * j->geo.inner);
  channel_stats(j->x, j->geo, c, &mean, &s1);
  /* one division per channel: x-hat = (x - mean) * inv, as the forward pass */
  double inv = 1.0 / (NM_KAPPA * s1 + j->eps), sg = 0, sgx = 0, ssgn = 0;
  FOR_CHANNEL_ELEMS(j->geo, c, i, k) {
    double d = j->x[i] - mean, gh = (double)j->gamma[k] * j->g[i];
    sg += gh;
    sgx += gh * (d * inv);
    ssgn += (d > 0) - (d < 0);
  }
  double mg = sg / m, mgx = sgx / m, msgn = ssgn / m;
  FOR_CHANNEL_ELEMS(j->geo, c, i, k) {
    double d = j->x[i] - mean, gh = (double)j->gamma[k] * j->g[i];
    double sgn = (d > 0) - (d < 0);
    j->dx[i] = (float)((gh - mg - NM_KAPPA * mgx * (sgn - msgn)) * inv);
  }
}

void nm_l1_backward(const float *x, const float *g, nm_chan geo, const float *gamma, float eps, float *dx, float *dgamma,
                    int threads) {
  L1Job j = {.x = x, .g = g, .gamma = gamma, .geo = geo, .eps = eps, .dx = dx};
  if (dx) rt_parallel(threads, geo.channels, backward_block, &j);
  if (!dgamma) return;
  /* per inner position: a sum across rows, done in row order on one thread */
  memset(dgamma, 0, sizeof(float) * (size_t)geo.inner);
  for (int64_t c = 0; c < geo.channels; c++) {
    double mean, s1;
    channel_stats(x, geo, c, &mean, &s1);
    double inv = 1.0 / (NM_KAPPA * s1 + eps);
    FOR_CHANNEL_ELEMS(geo, c, i, k) dgamma[k] += (float)(g[i] * ((x[i] - mean) * inv));
  }
}

/* ---- batchnorm from saved statistics (L1 or L2) ---- */
float nm_l2_inv(float var, float eps) { return (float)(1.0 / sqrt((double)var + eps)); }

typedef struct {
  const float *x, *g, *gamma, *beta, *stats, *dparams, *mean, *inv;
  nm_chan geo;
  float eps;
  int l2;
  float *out;
} BnJob;

static double lanes_sum(double *p) {
  for (int w = NM_LANES / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) p[l] += p[l + w];
  return p[0];
}

static void bn_stats_block(void *ctx, int64_t c) {
  BnJob *j = ctx;
  nm_chan geo = j->geo;
  double s[NM_LANES] = {0}, a[NM_LANES] = {0}, m = (double)(geo.outer * geo.inner);
  int64_t sign = 0;
  FOR_CHANNEL_ELEMS(geo, c, i, k) s[k % NM_LANES] += j->x[i];
  float mu = (float)(lanes_sum(s) / m);
  FOR_CHANNEL_ELEMS(geo, c, i, k) {
    double d = (double)j->x[i] - (double)mu;
    a[k % NM_LANES] += j->l2 ? d * d : fabs(d);
    if (!j->l2) sign += (j->x[i] > mu) - (j->x[i] < mu);
  }
  float spread = (float)(lanes_sum(a) / m);
  int64_t C = geo.channels;
  j->out[NM_BN_MEAN * C + c] = mu;
  j->out[NM_BN_SPREAD * C + c] = spread;
  j->out[NM_BN_INV * C + c] = j->l2 ? nm_l2_inv(spread, j->eps) : nm_l1_inv(spread, j->eps);
  j->out[NM_BN_MSIGN * C + c] = (float)((double)sign / m);
}

void nm_bn_stats(const float *x, nm_chan geo, float eps, int l2, float *stats, int threads) {
  BnJob j = {.x = x, .geo = geo, .eps = eps, .l2 = l2, .out = stats};
  rt_parallel(threads, geo.channels, bn_stats_block, &j);
}

typedef struct {
  const int16_t *v;
  float scale, eps;
  nm_chan geo;
  float *out;
} BnIntJob;

static void bn_int_stats_block(void *ctx, int64_t c) {
  BnIntJob *j = ctx;
  nm_chan geo = j->geo;
  int64_t m = geo.outer * geo.inner, C = geo.channels, S = 0, A = 0, gt = 0, sign = 0;
  FOR_CHANNEL_ELEMS(geo, c, i, k) S += j->v[i];
  int64_t q = S / m, r = S % m;
  if (r < 0) q--, r += m; /* floor */
  float mu = (float)((double)S * (double)j->scale / (double)m);
  FOR_CHANNEL_ELEMS(geo, c, i, k) {
    float x = nm_s16_value(j->v[i], j->scale);
    A += j->v[i] > q ? j->v[i] - q : q - j->v[i];
    gt += j->v[i] > q;
    sign += (x > mu) - (x < mu);
  }
  int64_t D = m * A + r * (m - 2 * gt);
  float spread = (float)((double)D * (double)j->scale / ((double)m * (double)m));
  j->out[NM_BN_MEAN * C + c] = mu;
  j->out[NM_BN_SPREAD * C + c] = spread;
  j->out[NM_BN_INV * C + c] = nm_l1_inv(spread, j->eps);
  j->out[NM_BN_MSIGN * C + c] = (float)((double)sign / (double)m);
}

void nm_bn_stats_s16(const int16_t *v, float scale, nm_chan geo, float eps, float *stats, int threads) {
  BnIntJob j = {.v = v, .scale = scale, .eps = eps, .geo = geo, .out = stats};
  rt_parallel(threads, geo.channels, bn_int_stats_block, &j);
}

static void bn_forward_block(void *ctx, int64_t c) {
  BnJob *j = ctx;
  float mu = j->mean[c], inv = j->inv[c], gam = j->gamma[c], bet = j->beta[c];
  FOR_CHANNEL_ELEMS(j->geo, c, i, k) j->out[i] = gam * ((j->x[i] - mu) * inv) + bet;
}

void nm_bn_forward(const float *x, nm_chan geo, const float *mean, const float *inv, const float *gamma, const float *beta,
                   float *y, int threads) {
  BnJob j = {.x = x, .geo = geo, .mean = mean, .inv = inv, .gamma = gamma, .beta = beta, .out = y};
  rt_parallel(threads, geo.channels, bn_forward_block, &j);
}

static void bn_dparams_block(void *ctx, int64_t c) {
  BnJob *j = ctx;
  int64_t C = j->geo.channels;
  float mu = j->stats[NM_BN_MEAN * C + c], inv = j->stats[NM_BN_INV * C + c];
  double s[NM_LANES] = {0}, b[NM_LANES] = {0};
  FOR_CHANNEL_ELEMS(j->geo, c, i, k) {
    s[k % NM_LANES] += (double)j->g[i] * (double)((j->x[i] - mu) * inv);
    b[k % NM_LANES] += j->g[i];
  }
  j->out[c] = (float)lanes_sum(s);
  j->out[C + c] = (float)lanes_sum(b);
}

void nm_bn_dparams(const float *x, const float *g, nm_chan geo, const float *stats, float *dparams, int threads) {
  BnJob j = {.x = x, .g = g, .geo = geo, .stats = stats, .out = dparams};
  rt_parallel(threads, geo.channels, bn_dparams_block, &j);
}

static int32_t float_key(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return nm_order_key(u);
}
static float key_float(int32_t k) {
  uint32_t u = (uint32_t)nm_order_key((uint32_t)k);
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static void bn_extremes_block(void *ctx, int64_t c) {
  BnJob *j = ctx;
  int64_t C = j->geo.channels;
  float mu = j->stats[NM_BN_MEAN * C + c];
  int32_t lo[NM_BN_CLASSES], hi[NM_BN_CLASSES];
  for (int s = 0; s < NM_BN_CLASSES; s++) lo[s] = float_key(INFINITY), hi[s] = float_key(-INFINITY);
  FOR_CHANNEL_ELEMS(j->geo, c, i, k) {
    int s = j->x[i] > mu ? 0 : j->x[i] < mu ? 1 : 2;
    int32_t key = float_key(j->g[i]);
    lo[s] = key < lo[s] ? key : lo[s];
    hi[s] = key > hi[s] ? key : hi[s];
  }
  for (int s = 0; s < NM_BN_CLASSES; s++) {
    j->out[(NM_BN_DPARAMS + 2 * s) * C + c] = key_float(lo[s]);
    j->out[(NM_BN_DPARAMS + 2 * s + 1) * C + c] = key_float(hi[s]);
  }
}

void nm_bn_class_extremes(const float *x, const float *g, nm_chan geo, const float *stats, float *dparams, int threads) {
  BnJob j = {.x = x, .g = g, .geo = geo, .stats = stats, .out = dparams};
  rt_parallel(threads, geo.channels, bn_extremes_block, &j);
}

nm_bn_dx_coefs nm_bn_dx_coefs_of(const float *gamma, const float *stats, const float *dparams, nm_chan geo, int l2, int64_t c) {
  int64_t C = geo.channels;
  double m = (double)(geo.outer * geo.inner), gam = gamma[c], inv = stats[NM_BN_INV * C + c];
  double mg = gam * dparams[C + c] / m, mgx = gam * dparams[c] / m;
  if (l2) return (nm_bn_dx_coefs){(float)(gam * inv), (float)(-mgx * inv * inv), (float)(-mg * inv)};
  return (nm_bn_dx_coefs){(float)(gam * inv), (float)(-NM_KAPPA * mgx * inv), (float)((NM_KAPPA * mgx * stats[NM_BN_MSIGN * C + c] - mg) * inv)};
}

static void bn_dx_block(void *ctx, int64_t c) {
  BnJob *j = ctx;
  nm_bn_dx_coefs k = nm_bn_dx_coefs_of(j->gamma, j->stats, j->dparams, j->geo, j->l2, c);
  float mu = j->stats[NM_BN_MEAN * j->geo.channels + c];
  if (j->l2) {
    FOR_CHANNEL_ELEMS(j->geo, c, i, e) j->out[i] = (k.a * j->g[i] + k.b * (j->x[i] - mu)) + k.c;
    return;
  }
  FOR_CHANNEL_ELEMS(j->geo, c, i, e) {
    float s = j->x[i] > mu ? k.b : j->x[i] < mu ? -k.b : 0.0f;
    j->out[i] = (k.a * j->g[i] + s) + k.c;
  }
}

uint32_t nm_bn_l1_dx_range(nm_bn_dx_coefs k, const float *dparams, int64_t channels, int64_t c) {
  const float s[NM_BN_CLASSES] = {k.b, -k.b, 0.0f};
  uint32_t top = 0;
  for (int cl = 0; cl < NM_BN_CLASSES; cl++) {
    float lo = dparams[(NM_BN_DPARAMS + 2 * cl) * channels + c], hi = dparams[(NM_BN_DPARAMS + 2 * cl + 1) * channels + c];
    if (float_key(lo) > float_key(hi)) continue; /* no elements */
    for (int e = 0; e < 2; e++) {
      float v = (k.a * (e ? hi : lo) + s[cl]) + k.c;
      uint32_t u;
      memcpy(&u, &v, sizeof u);
      u &= 0x7fffffffu;
      top = u > top ? u : top;
    }
  }
  return top;
}

void nm_bn_dx(const float *x, const float *g, nm_chan geo, const float *gamma, const float *stats, const float *dparams,
              int l2, float *dx, int threads) {
  BnJob j = {.x = x, .g = g, .gamma = gamma, .geo = geo, .stats = stats, .dparams = dparams, .l2 = l2, .out = dx};
  rt_parallel(threads, geo.channels, bn_dx_block, &j);
}
