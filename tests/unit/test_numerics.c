/* test_numerics.c: the invariants of DESIGN §4, each able to fail: exact ShiftQuant rescaling,
 * range use per group, one shifted GEMM = the sum of per-group GEMMs, G = 1 = per-tensor,
 * unbiased stochastic rounding, zero and empty tensors, L1 scale invariance and gradient, thread
 * count independence, exact integer batchnorm statistics of s16 sums, 4-bit packing, and refusal
 * of NaN/Inf and unscalable ranges. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../../runtime/numerics.h"
#include "../../runtime/rng.h"
#include "../../runtime/threads.h"
#include "harness.h"
#include <sys/wait.h>
#include <unistd.h>

/* A gradient-like tensor [rows, C] whose channel ranges span ~2^-12..1 (DESIGN's motivating case). */
static float *gradient_like(int64_t rows, int64_t C, uint64_t seed) {
  float *x = xmalloc(sizeof(float) * (size_t)(rows * C));
  for (int64_t c = 0; c < C; c++) {
    float scale = ldexpf(1.0f, -(int)(rng_bits(seed, 99, 0, (uint64_t)c) % 13));
    for (int64_t r = 0; r < rows; r++) x[r * C + c] = scale * rng_normal(seed, 1, 0, (uint64_t)(r * C + c));
  }
  return x;
}

static nm_sq_params params(int bits, int groups) { return (nm_sq_params){bits, groups, 11, 3, 5}; }

START_TEST(shifted_value_times_min_scale_is_exact) {
  int64_t rows = 64, C = 48;
  float *x = gradient_like(rows, C, 1);
  for (int bits = 2; bits <= 8; bits++)
    for (int G = 1; G <= nm_max_groups(bits); G++) {
      int8_t *qt = xmalloc((size_t)(rows * C));
      uint8_t grp[48];
      float range[48], smin;
      int64_t bad;
      nm_sq_params p = params(bits, G);
      ck_assert_int_eq(nm_shiftquant(x, (nm_chan){rows, C, 1}, &p, qt, &smin, grp, range, &bad, 1), NM_OK);
      float R = 0;
      for (int c = 0; c < C; c++) R = fmaxf(R, range[c]);
      float s0 = R / (float)nm_qmax(bits);
      for (int64_t i = 0; i < rows * C; i++) {
        int g = grp[i % C];
        ck_assert_msg(abs(qt[i]) <= 127, "shifted value %d overflows int8", qt[i]);
        ck_assert_msg(qt[i] % (1 << (G - 1 - g)) == 0, "qt not a multiple of its shift");
        int q = qt[i] / (1 << (G - 1 - g));
        ck_assert_msg(abs(q) <= nm_qmax(bits), "q=%d outside the b-bit range", q);
        float sg = ldexpf(s0, -g);
        ck_assert_msg((float)qt[i] * smin == (float)q * sg, "bits %d G %d: qt*s_min != q*s_g", bits, G);
      }
      free(qt);
    }
  free(x);
}
END_TEST

START_TEST(channels_outside_last_group_use_over_half_their_range) {
  int64_t rows = 32, C = 64;
  float *x = gradient_like(rows, C, 2);
  for (int G = 1; G <= 5; G++) {
    int8_t *qt = xmalloc((size_t)(rows * C));
    uint8_t grp[64];
    float range[64], smin;
    int64_t bad;
    nm_sq_params p = params(4, G);
    ck_assert_int_eq(nm_shiftquant(x, (nm_chan){rows, C, 1}, &p, qt, &smin, grp, range, &bad, 1), NM_OK);
    float R = 0;
    for (int c = 0; c < C; c++) R = fmaxf(R, range[c]);
    int used_last = 0;
    for (int c = 0; c < C; c++) {
      double ratio = range[c] / ((double)R / 7 * ldexp(1, -grp[c])); /* r_c / s_g */
      ck_assert_msg(ratio <= 7.0 * (1 + 1e-6), "channel %d overflows its group: r/s = %g", c, ratio);
      if (grp[c] < G - 1) ck_assert_msg(ratio > 3.5, "channel %d in group %d uses only %g of 7", c, grp[c], ratio);
      used_last |= grp[c] == G - 1;
    }
    ck_assert(G == 1 || used_last); /* ranges down to 2^-12 reach the last group */
    free(qt);
  }
  free(x);
}
END_TEST

/* One int8 GEMM over the shifted operand equals the per-group GEMMs shifted and summed. */
START_TEST(one_shifted_gemm_equals_per_group_gemms) {
  int64_t M = 16, N = 24, K = 20; /* dX = dY[M,N] * W[N,K]: the channels of dY are the reduction axis */
  float *dy = gradient_like(M, N, 3);
  int8_t *qt = xmalloc((size_t)(M * N));
  uint8_t grp[24], w[24 * 20];
  float smin, ws;
  int64_t bad;
  nm_sq_params p = params(4, 5);
  ck_assert_int_eq(nm_shiftquant(dy, (nm_chan){M, N, 1}, &p, qt, &smin, grp, NULL, &bad, 1), NM_OK);
  float *wf = gradient_like(N, K, 4);
  ck_assert_int_eq(nm_quantize(wf, N * K, 4, 0, w, &ws, &bad, 1), NM_OK);
  for (int64_t m = 0; m < M; m++)
    for (int64_t k = 0; k < K; k++) {
      int32_t shifted = 0, by_group = 0;
      for (int64_t n = 0; n < N; n++) shifted += qt[m * N + n] * nm_q4_get(w, n * K + k, 0);
      for (int g = 0; g < 5; g++) {
        int32_t acc = 0;
        for (int64_t n = 0; n < N; n++)
          if (grp[n] == g) acc += qt[m * N + n] / (1 << (4 - g)) * nm_q4_get(w, n * K + k, 0);
        by_group += acc * (1 << (4 - g));
      }
      ck_assert_int_eq(shifted, by_group);
    }
  free(dy);
  free(wf);
  free(qt);
}
END_TEST

/* G = 1 is per-tensor quantization with scale R/Qmax and the same stochastic rounding. */
START_TEST(one_group_is_per_tensor) {
  int64_t n = 40 * 30;
  float *x = gradient_like(40, 30, 5);
  int8_t *qt = xmalloc((size_t)n);
  float s, R = 0;
  int64_t bad;
  nm_sq_params p = params(4, 1);
  ck_assert_int_eq(nm_shiftquant(x, (nm_chan){40, 30, 1}, &p, qt, &s, NULL, NULL, &bad, 1), NM_OK);
  for (int64_t i = 0; i < n; i++) R = fmaxf(R, fabsf(x[i]));
  ck_assert_float_eq(s, R / 7);
  float inv = 7 / R;
  for (int64_t i = 0; i < n; i++) {
    float q = nm_stochastic_round(x[i] * inv, rng_uniform_halves(p.seed, p.stream, p.step, (uint64_t)i));
    q = fmaxf(-7, fminf(7, q));
    ck_assert_int_eq(qt[i], (int)q);
  }
  free(x);
  free(qt);
}
END_TEST

/* E[SR(v)] = v with the draws ShiftQuant takes: the mean of N draws is within 5 standard errors
 * (sqrt(f(1-f)/N) <= 0.5/sqrt(N)). */
START_TEST(stochastic_rounding_is_unbiased) {
  static const float values[] = {0.3f, -1.7f, 2.5f, 0.01f, -0.99f, 5.0f};
  const int N = 200000;
  for (size_t k = 0; k < sizeof values / sizeof *values; k++) {
    double sum = 0;
    for (int i = 0; i < N; i++) sum += nm_stochastic_round(values[k], rng_uniform_halves(9, k, 0, (uint64_t)i));
    double bound = 5 * 0.5 / sqrt(N);
    ck_assert_msg(fabs(sum / N - values[k]) < bound, "SR(%g) averages %g (bound %g)", values[k], sum / N, bound);
  }
  ck_assert_float_eq(nm_stochastic_round(3.0f, 0.0f), 3.0f); /* integers never move */
  ck_assert_float_eq(nm_stochastic_round(-2.0f, 0.999f), -2.0f);
}
END_TEST

/* Draws 2i and 2i+1 are the top 24 bits of rng_bits(i)'s low and high words, and the two are
 * uncorrelated: the mean of (u0 - 1/2)(u1 - 1/2) is within 5 standard errors ((1/12)/sqrt(N)) of 0. */
START_TEST(uniform_halves_take_both_words_of_a_draw) {
  const int N = 200000;
  double sum = 0;
  for (int i = 0; i < N; i++) {
    uint64_t bits = rng_bits(4, 5, 6, (uint64_t)i);
    float u0 = rng_uniform_halves(4, 5, 6, 2 * (uint64_t)i), u1 = rng_uniform_halves(4, 5, 6, 2 * (uint64_t)i + 1);
    ck_assert_float_eq(u0, (float)((uint32_t)bits >> 8) * 0x1p-24f);
    ck_assert_float_eq(u1, (float)((uint32_t)(bits >> 32) >> 8) * 0x1p-24f);
    sum += (u0 - 0.5) * (u1 - 0.5);
  }
  ck_assert_msg(fabs(sum / N) < 5 * (1.0 / 12) / sqrt(N), "pairs correlate: %g", sum / N);
}
END_TEST

START_TEST(zero_and_empty_tensors) {
  float zeros[12] = {0};
  int8_t qt[12];
  uint8_t q[12], grp[3];
  float s = -1;
  int64_t bad;
  memset(qt, 5, sizeof qt);
  nm_sq_params p = params(4, 5);
  ck_assert_int_eq(nm_shiftquant(zeros, (nm_chan){4, 3, 1}, &p, qt, &s, grp, NULL, &bad, 2), NM_OK);
  ck_assert_float_eq(s, 1.0f);
  for (int i = 0; i < 12; i++) ck_assert_int_eq(qt[i], 0);
  memset(q, 5, sizeof q);
  ck_assert_int_eq(nm_quantize(zeros, 12, 4, 0, q, &s, &bad, 2), NM_OK);
  ck_assert_float_eq(s, 1.0f);
  for (int i = 0; i < 12; i++) ck_assert_int_eq(nm_q4_get(q, i, 0), 0);
  ck_assert_int_eq(q[6], 5); /* 12 values packed: 6 bytes written, no more */
  ck_assert_int_eq(nm_quantize(zeros, 0, 4, 0, q, &s, &bad, 4), NM_OK);
  ck_assert_int_eq(nm_shiftquant(zeros, (nm_chan){0, 3, 1}, &p, qt, &s, grp, NULL, &bad, 4), NM_OK);
  ck_assert_int_eq(nm_shiftquant(zeros, (nm_chan){4, 0, 1}, &p, qt, &s, NULL, NULL, &bad, 4), NM_OK);
}
END_TEST

/* The first NaN or Inf, wherever it lies: in a block of 16, in the partial block at the end, or
 * none (FLT_MAX and subnormals are finite). */
START_TEST(first_nonfinite_finds_the_lowest_index) {
  enum { N = 53 };
  float x[N];
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  const int at[4] = {0, 15, 37, 52};
  for (int b = 0; b < 3; b++)
    for (int k = 0; k < 4; k++) {
      for (int i = 0; i < N; i++) x[i] = i % 2 ? FLT_MAX : -1e-40f;
      ck_assert_int_eq(nm_first_nonfinite(x, N), -1);
      x[at[k]] = bad[b];
      if (at[k] < N - 1) x[N - 1] = bad[(b + 1) % 3]; /* a later one too */
      ck_assert_int_eq(nm_first_nonfinite(x, N), at[k]);
    }
  ck_assert_int_eq(nm_first_nonfinite(x, 0), -1);
}
END_TEST

START_TEST(nan_inf_and_unscalable_ranges_are_reported) {
  float x[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  uint8_t q[10];
  int8_t qt[10];
  float s;
  int64_t bad = -5;
  nm_sq_params p = params(4, 3);
  x[6] = NAN;
  ck_assert_int_eq(nm_quantize(x, 10, 4, 0, q, &s, &bad, 2), NM_NONFINITE);
  ck_assert_int_eq(bad, 6);
  ck_assert_int_eq(nm_shiftquant(x, (nm_chan){5, 2, 1}, &p, qt, &s, NULL, NULL, &bad, 2), NM_NONFINITE);
  ck_assert_int_eq(bad, 6);
  x[6] = -INFINITY;
  ck_assert_int_eq(nm_quantize(x, 10, 4, 0, q, &s, &bad, 1), NM_NONFINITE);
  float tiny[2] = {1e-44f, -1e-45f}; /* subnormal: Qmax / max overflows float32 */
  ck_assert_int_eq(nm_quantize(tiny, 2, 4, 0, q, &s, &bad, 1), NM_RANGE);
  ck_assert_int_eq(nm_shiftquant(tiny, (nm_chan){1, 2, 1}, &p, qt, &s, NULL, NULL, &bad, 1), NM_RANGE);
}
END_TEST

START_TEST(quantize_rounds_half_away_and_uses_the_unsigned_range) {
  float x[5] = {-7, -0.5f, 0.5f, 3.5f, 1.4999999f};
  uint8_t q[5];
  float s;
  int64_t bad;
  ck_assert_int_eq(nm_quantize(x, 5, 4, 0, q, &s, &bad, 1), NM_OK);
  ck_assert_float_eq(s, 1.0f);
  int8_t want[5] = {-7, -1, 1, 4, 1};
  for (int i = 0; i < 5; i++) ck_assert_int_eq(nm_q4_get(q, i, 0), want[i]);
  ck_assert_int_eq(q[0], 0xf9); /* 4 bits are packed: -7 low, -1 high */
  ck_assert_int_eq(q[2] >> 4, 0); /* an odd count leaves the last high nibble 0 */
  float r[4] = {0, 1, 7.5f, 15};
  ck_assert_int_eq(nm_quantize(r, 4, 4, 1, q, &s, &bad, 1), NM_OK);
  ck_assert_float_eq(s, 1.0f);
  ck_assert_int_eq(nm_q4_get(q, 2, 1), 8);
  ck_assert_int_eq(nm_q4_get(q, 3, 1), 15);
  ck_assert_int_eq(nm_quantize(x, 5, 5, 0, q, &s, &bad, 1), NM_OK); /* 5 bits: a byte each */
  ck_assert_int_eq((int8_t)q[0], -15);
  ck_assert_int_eq((int8_t)q[4], 3);
}
END_TEST

START_TEST(l1_forward_is_scale_invariant) {
  int64_t N = 8, C = 5, HW = 6, n = N * C * HW;
  float *x = gradient_like(N * HW, C, 6), *x2 = xmalloc(sizeof(float) * (size_t)n);
  float *y = xmalloc(sizeof(float) * (size_t)n), *y2 = xmalloc(sizeof(float) * (size_t)n);
  float st[NM_BN_STATS * 5], st2[NM_BN_STATS * 5], gamma[5] = {1, 2, 0.5f, 1, 1}, beta[5] = {0, 1, 0, -1, 0};
  for (int64_t i = 0; i < n; i++) x2[i] = x[i] * 1024.0f;
  nm_chan geo = {N, C, HW};
  nm_bn_stats(x, geo, 0, 0, st, 1);
  nm_bn_stats(x2, geo, 0, 0, st2, 1);
  nm_bn_forward(x, geo, st + NM_BN_MEAN * C, st + NM_BN_INV * C, gamma, beta, y, 1);
  nm_bn_forward(x2, geo, st2 + NM_BN_MEAN * C, st2 + NM_BN_INV * C, gamma, beta, y2, 1);
  for (int64_t i = 0; i < n; i++) ck_assert_msg(fabsf(y[i] - y2[i]) <= 1e-5f * (1 + fabsf(y[i])), "%g vs %g", y[i], y2[i]);
  /* and normalised: per channel mean 0, kappa * mean|xhat| = 1 */
  float one[5] = {1, 1, 1, 1, 1}, zero[5] = {0};
  nm_bn_forward(x, geo, st + NM_BN_MEAN * C, st + NM_BN_INV * C, one, zero, y, 1);
  nm_bn_stats(y, geo, 0, 0, st2, 1);
  for (int c = 0; c < 5; c++) {
    ck_assert_double_lt(fabs(st2[NM_BN_MEAN * C + c]), 1e-5);
    ck_assert_double_lt(fabs(NM_KAPPA * st2[NM_BN_SPREAD * C + c] - 1), 1e-5);
  }
  free(x), free(x2), free(y), free(y2);
}
END_TEST

/* d/dx of sum(w * l1_layernorm(x)) by central differences in double, against nm_l1_backward. */
START_TEST(l1_backward_matches_finite_differences) {
  nm_chan geo = {1, 3, 7};
  int64_t n = geo.outer * geo.channels * geo.inner;
  float *x = xmalloc(sizeof(float) * (size_t)n), *w = xmalloc(sizeof(float) * (size_t)n);
  float *dx = xmalloc(sizeof(float) * (size_t)n), *y = xmalloc(sizeof(float) * (size_t)n);
  float gamma[7], beta[7] = {0}, dgamma[7], mean[3], s1[3];
  for (int64_t i = 0; i < n; i++) x[i] = rng_normal(1, 2, 3, (uint64_t)i), w[i] = rng_normal(1, 3, 3, (uint64_t)i);
  for (int i = 0; i < 7; i++) gamma[i] = 0.5f + 0.25f * (float)i;
  nm_l1_backward(x, w, geo, gamma, 1e-5f, dx, dgamma, 1);
  for (int64_t i = 0; i < n; i++) {
    double l[2];
    float keep = x[i];
    for (int k = 0; k < 2; k++) {
      x[i] = keep + (k ? -1e-3f : 1e-3f);
      nm_l1_stats(x, geo, mean, s1, 1);
      nm_l1_forward(x, geo, mean, s1, gamma, beta, 1e-5f, y, 1);
      l[k] = 0;
      for (int64_t e = 0; e < n; e++) l[k] += (double)w[e] * y[e];
    }
    x[i] = keep;
    double fd = (l[0] - l[1]) / ((double)(keep + 1e-3f) - (double)(keep - 1e-3f));
    ck_assert_msg(fabs(fd - dx[i]) < 5e-3 + 1e-2 * fabs(dx[i]), "dx[%lld] %g, finite difference %g", (long long)i, dx[i], fd);
  }
  for (int64_t a = 0; a < geo.inner; a++) { /* dgamma = sum of w * xhat over the rows */
    double want = 0;
    nm_l1_stats(x, geo, mean, s1, 1);
    float ones[7] = {1, 1, 1, 1, 1, 1, 1};
    nm_l1_forward(x, geo, mean, s1, ones, beta, 1e-5f, y, 1);
    for (int64_t e = a; e < n; e += geo.inner) want += (double)w[e] * y[e];
    ck_assert_msg(fabs(want - dgamma[a]) < 1e-4 * (1 + fabs(want)), "dgamma[%lld] %g want %g", (long long)a, dgamma[a], want);
  }
  free(x), free(w), free(dx), free(y);
}
END_TEST

/* Batchnorm from saved statistics (the training step's form), L1 and L2: dx, dgamma and dbeta
 * against central differences of sum(w * y), y normalized with the batch's statistics of the
 * perturbed x, and direct sums; inner = 18 gives each row a full vector of lanes and a partial one. */
START_TEST(batchnorm_from_saved_stats_matches_finite_differences) {
  nm_chan geo = {3, 2, 18};
  int64_t n = geo.outer * geo.channels * geo.inner, C = geo.channels;
  float *x = xmalloc(sizeof(float) * (size_t)n), *w = xmalloc(sizeof(float) * (size_t)n);
  float *dx = xmalloc(sizeof(float) * (size_t)n), *y = xmalloc(sizeof(float) * (size_t)n);
  float gamma[2] = {0.75f, 1.5f}, beta[2] = {0.25f, -1}, ones[2] = {1, 1}, zeros[2] = {0}, dp[4];
  for (int l2 = 0; l2 < 2; l2++) {
    double dbeta[2] = {0};
    float st[NM_BN_STATS * 2];
    for (int64_t i = 0; i < n; i++) x[i] = rng_normal(1, 4, 3, (uint64_t)i), w[i] = rng_normal(1, 5, 3, (uint64_t)i);
    for (int64_t i = 0; i < n; i++) dbeta[(i / geo.inner) % C] += w[i];
    nm_bn_stats(x, geo, 1e-5f, l2, st, 1);
    nm_bn_dparams(x, w, geo, st, dp, 1);
    nm_bn_dx(x, w, geo, gamma, st, dp, l2, dx, 1);
    for (int64_t c = 0; c < C; c++) ck_assert_msg(fabs(dp[C + c] - dbeta[c]) < 1e-5 * (1 + fabs(dbeta[c])), "dbeta[%lld]", (long long)c);
    for (int64_t i = 0; i < n; i++) {
      double l[2];
      float keep = x[i];
      for (int k = 0; k < 2; k++) {
        x[i] = keep + (k ? -1e-3f : 1e-3f);
        float s[NM_BN_STATS * 2];
        nm_bn_stats(x, geo, 1e-5f, l2, s, 1);
        nm_bn_forward(x, geo, s + NM_BN_MEAN * C, s + NM_BN_INV * C, gamma, beta, y, 1);
        l[k] = 0;
        for (int64_t e = 0; e < n; e++) l[k] += (double)w[e] * y[e];
      }
      x[i] = keep;
      double fd = (l[0] - l[1]) / ((double)(keep + 1e-3f) - (double)(keep - 1e-3f));
      ck_assert_msg(fabs(fd - dx[i]) < 5e-3 + 1e-2 * fabs(dx[i]), "l2 %d: dx[%lld] %g, finite difference %g", l2, (long long)i, dx[i], fd);
    }
    nm_bn_forward(x, geo, st + NM_BN_MEAN * C, st + NM_BN_INV * C, ones, zeros, y, 1);
    for (int64_t c = 0; c < C; c++) { /* dgamma = sum of w * xhat; the saved inverse is the divisor of the spread */
      double want = 0;
      for (int64_t e = 0; e < n; e++)
        if ((e / geo.inner) % C == c) want += (double)w[e] * y[e];
      ck_assert_msg(fabs(want - dp[c]) < 1e-4 * (1 + fabs(want)), "dgamma[%lld] %g want %g", (long long)c, dp[c], want);
      float s = st[NM_BN_SPREAD * C + c];
      ck_assert_float_eq(st[NM_BN_INV * C + c], l2 ? nm_l2_inv(s, 1e-5f) : nm_l1_inv(s, 1e-5f));
    }
  }
  free(x), free(w), free(dx), free(y);
}
END_TEST

START_TEST(same_bits_for_1_2_and_4_threads) {
  int64_t rows = 300, C = 40, n = rows * C; /* > one 4096-element block */
  float *x = gradient_like(rows, C, 7);
  int8_t *qt[3];
  uint8_t *q[3];
  float s[3], ss[3], *dx[3], mean[3][300], s1[3][300], dg[3][40], bst[3][NM_BN_STATS * 40], bdg[3][80], *bdx[3];
  int threads[3] = {1, 2, 4};
  for (int t = 0; t < 3; t++) {
    int64_t bad;
    qt[t] = xmalloc((size_t)n), q[t] = xmalloc((size_t)n), dx[t] = xmalloc(sizeof(float) * (size_t)n);
    bdx[t] = xmalloc(sizeof(float) * (size_t)n);
    nm_sq_params p = params(4, 5);
    ck_assert_int_eq(nm_shiftquant(x, (nm_chan){rows, C, 1}, &p, qt[t], &s[t], NULL, NULL, &bad, threads[t]), NM_OK);
    ck_assert_int_eq(nm_quantize(x, n, 4, 0, q[t], &ss[t], &bad, threads[t]), NM_OK);
    nm_l1_stats(x, (nm_chan){1, rows, C}, mean[t], s1[t], threads[t]); /* a layernorm over rows of C */
    float gamma[40];
    for (int c = 0; c < 40; c++) gamma[c] = 1.0f + (float)c / 40;
    nm_l1_backward(x, x, (nm_chan){1, rows, C}, gamma, 1e-5f, dx[t], dg[t], threads[t]);
    nm_bn_stats(x, (nm_chan){rows / 20, C, 20}, 1e-5f, 0, bst[t], threads[t]);
    nm_bn_dparams(x, x, (nm_chan){rows / 20, C, 20}, bst[t], bdg[t], threads[t]);
    nm_bn_dx(x, x, (nm_chan){rows / 20, C, 20}, gamma, bst[t], bdg[t], 0, bdx[t], threads[t]);
  }
  for (int t = 1; t < 3; t++) {
    ck_assert_msg(memcmp(qt[0], qt[t], (size_t)n) == 0 && s[0] == s[t], "shiftquant differs at %d threads", threads[t]);
    ck_assert_msg(memcmp(q[0], q[t], (size_t)nm_q_bytes(n, nm_packed(4))) == 0 && ss[0] == ss[t], "quantize differs at %d threads",
                  threads[t]);
    ck_assert_msg(!memcmp(mean[0], mean[t], sizeof mean[0]) && !memcmp(s1[0], s1[t], sizeof s1[0]), "L1 stats differ");
    ck_assert_msg(!memcmp(dx[0], dx[t], sizeof(float) * (size_t)n) && !memcmp(dg[0], dg[t], sizeof dg[0]),
                  "L1 backward differs at %d threads", threads[t]);
    ck_assert_msg(!memcmp(bst[0], bst[t], sizeof bst[0]) && !memcmp(bdg[0], bdg[t], sizeof bdg[0]) &&
                      !memcmp(bdx[0], bdx[t], sizeof(float) * (size_t)n),
                  "batchnorm from saved statistics differs at %d threads", threads[t]);
  }
  for (int t = 0; t < 3; t++) free(qt[t]), free(q[t]), free(dx[t]), free(bdx[t]);
  free(x);
}
END_TEST

/* L1 statistics of s16 sums: S and D = sum |m*v - S| brute force in int64 give the mean and the
 * spread rounded once (the kernel's m*A + r*(m - 2*gt) with a floored q, negative S included);
 * the spread is the float path's up to its rounding; the same bits at 1 and 4 threads. */
START_TEST(integer_batchnorm_statistics_are_exact) {
  nm_chan geo = {5, 3, 50};
  int64_t m = geo.outer * geo.inner, n = m * geo.channels;
  int16_t *v = xmalloc(sizeof(int16_t) * (size_t)n);
  float *x = xmalloc(sizeof(float) * (size_t)n), scale = 0.0137f, st[2][NM_BN_STATS * 3], fl[NM_BN_STATS * 3];
  for (int64_t i = 0; i < n; i++) { /* channel 0 leans negative, 1 positive, 2 is wide */
    int64_t c = (i / geo.inner) % geo.channels, u = (int64_t)(rng_bits(3, 1, 0, (uint64_t)i) % 883) - 441;
    v[i] = (int16_t)(c == 0 ? u / 2 - 100 : c == 1 ? u / 3 + 57 : u * 70);
    x[i] = nm_s16_value(v[i], scale);
  }
  ck_assert(nm_bn_int_stats(0, m, geo.inner) && !nm_bn_int_stats(1, m, geo.inner));
  nm_bn_stats_s16(v, scale, geo, 1e-5f, st[0], 1);
  nm_bn_stats_s16(v, scale, geo, 1e-5f, st[1], 4);
  nm_bn_stats(x, geo, 1e-5f, 0, fl, 1);
  ck_assert_msg(!memcmp(st[0], st[1], sizeof st[0]), "integer statistics differ at 4 threads");
  for (int64_t c = 0; c < geo.channels; c++) {
    int64_t S = 0, D = 0, sign = 0;
    for (int64_t o = 0; o < geo.outer; o++)
      for (int64_t k = 0; k < geo.inner; k++) S += v[(o * geo.channels + c) * geo.inner + k];
    float mu = (float)((double)S * (double)scale / (double)m);
    for (int64_t o = 0; o < geo.outer; o++)
      for (int64_t k = 0; k < geo.inner; k++) {
        int64_t e = (o * geo.channels + c) * geo.inner + k, t = m * v[e] - S;
        D += t < 0 ? -t : t;
        sign += (x[e] > mu) - (x[e] < mu);
      }
    ck_assert_msg(c != 0 || (S < 0 && S % m != 0), "channel 0 should have a negative S that m does not divide");
    float spread = (float)((double)D * (double)scale / ((double)m * (double)m));
    ck_assert_float_eq(st[0][NM_BN_MEAN * 3 + c], mu);
    ck_assert_float_eq(st[0][NM_BN_SPREAD * 3 + c], spread);
    ck_assert_float_eq(st[0][NM_BN_INV * 3 + c], nm_l1_inv(spread, 1e-5f));
    ck_assert_float_eq(st[0][NM_BN_MSIGN * 3 + c], (float)((double)sign / (double)m));
    ck_assert_double_lt(fabs((double)st[0][NM_BN_SPREAD * 3 + c] - fl[NM_BN_SPREAD * 3 + c]), 1e-5 * fl[NM_BN_SPREAD * 3 + c]);
    ck_assert_double_lt(fabs((double)st[0][NM_BN_MEAN * 3 + c] - fl[NM_BN_MEAN * 3 + c]), 1e-5 * fabs(fl[NM_BN_MEAN * 3 + c]) + 1e-9);
  }
  free(v), free(x);
}
END_TEST

/* the largest |v| of channel c of a [outer][channels][inner] tensor, as bits */
static uint32_t channel_top(const float *v, nm_chan geo, int64_t c) {
  uint32_t top = 0, u;
  for (int64_t o = 0; o < geo.outer; o++)
    for (int64_t k = 0; k < geo.inner; k++) {
      memcpy(&u, &v[(o * geo.channels + c) * geo.inner + k], sizeof u);
      top = (u & 0x7fffffffu) > top ? u & 0x7fffffffu : top;
    }
  return top;
}

/* dparams' class extremes are each class's least and largest g in nm_order_key's order (-0
 * before +0; +Inf and -Inf for a class without elements), and the L1 dx's largest |dx| per
 * channel is what nm_bn_l1_dx_range makes of them: the same bits where dx is finite (elements
 * at the mean, a negative gamma, a zero gamma), a NaN or an Inf where a g is one. */
START_TEST(l1_dx_range_from_class_extremes) {
  nm_chan geo = {4, 6, 37};
  int64_t n = geo.outer * geo.channels * geo.inner, C = geo.channels;
  float *x = xmalloc(sizeof(float) * (size_t)n), *g = xmalloc(sizeof(float) * (size_t)n), *dx = xmalloc(sizeof(float) * (size_t)n);
  float gamma[6] = {1.5f, -0.75f, 0.0f, 2.0f, 0.5f, 1.0f}, stats[NM_BN_STATS * 6], dp[NM_BN_DPARAMS_EXTREMES * 6];
  for (int64_t i = 0; i < n; i++) {
    int64_t o = i / (C * geo.inner), c = (i / geo.inner) % C, k = i % geo.inner;
    uint64_t r = rng_bits(5, 2, 0, (uint64_t)(i % (2 * C * geo.inner))); /* rows 2, 3 repeat rows 0, 1 */
    x[i] = (float)((int64_t)(r % 5) - 2) * 0.25f * (o >= 2 ? -1.0f : 1.0f); /* the mean is 0, and some x are */
    if (c == 5) x[i] = 0.5f;                                                    /* every element at the mean */
    g[i] = k % 3 ? 0.0f : (float)((int64_t)(rng_bits(6, 2, 0, (uint64_t)i) % 2001) - 1000) / 997.0f;
    if (c == 4) g[i] = k == 5 ? -0.0f : fabsf(g[i]); /* no g below zero but a -0 */
  }
  nm_bn_stats(x, geo, 1e-5f, 0, stats, 1);
  nm_bn_dparams(x, g, geo, stats, dp, 1);
  nm_bn_class_extremes(x, g, geo, stats, dp, 1);
  nm_bn_dx(x, g, geo, gamma, stats, dp, 0, dx, 1);
  int at_mean = 0;
  for (int64_t c = 0; c < C; c++) {
    float mu = stats[NM_BN_MEAN * C + c];
    int32_t lo[NM_BN_CLASSES] = {INT32_MAX, INT32_MAX, INT32_MAX}, hi[NM_BN_CLASSES] = {INT32_MIN, INT32_MIN, INT32_MIN};
    for (int64_t o = 0; o < geo.outer; o++)
      for (int64_t k = 0; k < geo.inner; k++) {
        int64_t e = (o * C + c) * geo.inner + k;
        int cl = x[e] > mu ? 0 : x[e] < mu ? 1 : 2;
        uint32_t u;
        memcpy(&u, &g[e], sizeof u);
        int32_t key = nm_order_key(u);
        lo[cl] = key < lo[cl] ? key : lo[cl], hi[cl] = key > hi[cl] ? key : hi[cl];
        at_mean += cl == 2;
      }
    for (int cl = 0; cl < NM_BN_CLASSES; cl++) {
      float got[2] = {dp[(NM_BN_DPARAMS + 2 * cl) * C + c], dp[(NM_BN_DPARAMS + 2 * cl + 1) * C + c]};
      uint32_t want[2] = {(uint32_t)nm_order_key((uint32_t)lo[cl]), (uint32_t)nm_order_key((uint32_t)hi[cl])}, u[2];
      if (lo[cl] == INT32_MAX) { /* no elements */
        ck_assert_msg(c == 5 && cl < 2, "channel %lld class %d is empty", (long long)c, cl);
        ck_assert(got[0] == INFINITY && got[1] == -INFINITY);
        continue;
      }
      memcpy(u, got, sizeof u);
      ck_assert_msg(u[0] == want[0] && u[1] == want[1], "channel %lld class %d: extremes %a %a", (long long)c, cl, got[0], got[1]);
    }
    nm_bn_dx_coefs k = nm_bn_dx_coefs_of(gamma, stats, dp, geo, 0, c);
    ck_assert_msg(nm_bn_l1_dx_range(k, dp, C, c) == channel_top(dx, geo, c), "channel %lld: range %08x, largest |dx| %08x",
                  (long long)c, nm_bn_l1_dx_range(k, dp, C, c), channel_top(dx, geo, c));
  }
  ck_assert_int_gt(at_mean, (int)(geo.outer * geo.inner)); /* channel 5's, and others' */
  ck_assert(signbit(dp[NM_BN_DPARAMS * C + 4]) || signbit(dp[(NM_BN_DPARAMS + 2) * C + 4]) || signbit(dp[(NM_BN_DPARAMS + 4) * C + 4]));
  g[3 * geo.inner + 1] = NAN; /* channel 3, row 0 */
  nm_bn_dparams(x, g, geo, stats, dp, 1);
  nm_bn_class_extremes(x, g, geo, stats, dp, 1);
  nm_bn_dx(x, g, geo, gamma, stats, dp, 0, dx, 1);
  ck_assert_uint_ge(channel_top(dx, geo, 3), 0x7f800000u);
  ck_assert_uint_ge(nm_bn_l1_dx_range(nm_bn_dx_coefs_of(gamma, stats, dp, geo, 0, 3), dp, C, 3), 0x7f800000u);
  free(x), free(g), free(dx);
}
END_TEST

static void square_block(void *ctx, int64_t b) { ((int64_t *)ctx)[b] = b * b; }

/* The pool's workers live on between calls; a forked child has none of them and must start its
 * own instead of waiting for the parent's (it would hang). Every block runs exactly once. */
START_TEST(thread_pool_survives_threads_changes_and_fork) {
  int64_t v[37];
  for (int t = 1; t <= 5; t++) {
    memset(v, 0xff, sizeof v);
    rt_parallel(t, 37, square_block, v);
    for (int64_t b = 0; b < 37; b++) ck_assert_int_eq(v[b], b * b);
  }
  pid_t pid = fork();
  if (pid == 0) {
    alarm(10); /* a child waiting for the parent's workers dies here instead of hanging */
    memset(v, 0, sizeof v);
    rt_parallel(3, 37, square_block, v);
    _exit(v[36] == 36 * 36 ? 0 : 1);
  }
  ck_assert_int_gt(pid, 0);
  int st = 0;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
END_TEST

/* What nm_quantize packs at 4 bits, nm_q4_get reads back, signed and unsigned. */
START_TEST(pack4_round_trips) {
  float vals[7] = {-7, 7, 0, -1, 3, -7, 5}, s;
  uint8_t packed[4];
  int64_t bad;
  ck_assert_int_eq(nm_quantize(vals, 7, 4, 0, packed, &s, &bad, 1), NM_OK);
  ck_assert_int_eq(packed[0], 0x79); /* -7 = 0x9 low, 7 high */
  ck_assert_int_eq(packed[3] >> 4, 0);
  for (int i = 0; i < 7; i++) ck_assert_int_eq(nm_q4_get(packed, i, 0), (int)vals[i]);
  float u[3] = {15, 0, 9};
  uint8_t up[2];
  ck_assert_int_eq(nm_quantize(u, 3, 4, 1, up, &s, &bad, 1), NM_OK);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(nm_q4_get(up, i, 1), (int)u[i]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("numerics");
  TCase *t = tcase_create("contract");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, shifted_value_times_min_scale_is_exact);
  tcase_add_test(t, channels_outside_last_group_use_over_half_their_range);
  tcase_add_test(t, one_shifted_gemm_equals_per_group_gemms);
  tcase_add_test(t, one_group_is_per_tensor);
  tcase_add_test(t, stochastic_rounding_is_unbiased);
  tcase_add_test(t, uniform_halves_take_both_words_of_a_draw);
  tcase_add_test(t, zero_and_empty_tensors);
  tcase_add_test(t, first_nonfinite_finds_the_lowest_index);
  tcase_add_test(t, nan_inf_and_unscalable_ranges_are_reported);
  tcase_add_test(t, quantize_rounds_half_away_and_uses_the_unsigned_range);
  tcase_add_test(t, l1_forward_is_scale_invariant);
  tcase_add_test(t, l1_backward_matches_finite_differences);
  tcase_add_test(t, batchnorm_from_saved_stats_matches_finite_differences);
  tcase_add_test(t, same_bits_for_1_2_and_4_threads);
  tcase_add_test(t, integer_batchnorm_statistics_are_exact);
  tcase_add_test(t, l1_dx_range_from_class_extremes);
  tcase_add_test(t, pack4_round_trips);
  tcase_add_test(t, thread_pool_survives_threads_changes_and_fork);
  suite_add_tcase(s, t);
  return th_run(s);
}
