/* conv_geom.h: conv2d geometry and the one loop order shared by the float and integer
 * reference convolutions (conv.c, quant.c). */
#ifndef SQ_OPS_CONV_GEOM_H
#define SQ_OPS_CONV_GEOM_H
#include "rules.h"

typedef struct { int64_t N, C, H, W, O, Ho, Wo, k, s, p, g; } ConvGeom;

static inline ConvGeom conv_geom(const Node *n, const Shape *x, int64_t O) {
  ConvGeom q;
  q.N = x->d[0], q.C = x->d[1], q.H = x->d[2], q.W = x->d[3], q.O = O;
  q.k = ir_int(n, "kernel"), q.s = ir_int(n, "stride"), q.p = ir_int(n, "padding"), q.g = ir_int(n, "groups");
  q.Ho = (q.H + 2 * q.p - q.k) / q.s + 1;
  q.Wo = (q.W + 2 * q.p - q.k) / q.s + 1;
  return q;
}

/* Visits every (output element, kernel tap) pair in one fixed order; body sees the flat
 * indices of x, w and y. Taps that fall in the padding are skipped. */
#define CONV_LOOP(q, body) \
  for (int64_t nn = 0; nn < q.N; nn++) \
    for (int64_t o = 0; o < q.O; o++) { \
      int64_t cpg = q.C / q.g, g0 = o / (q.O / q.g) * cpg; \
      for (int64_t oh = 0; oh < q.Ho; oh++) \
        for (int64_t ow = 0; ow < q.Wo; ow++) { \
          int64_t yi = ((nn * q.O + o) * q.Ho + oh) * q.Wo + ow; \
          for (int64_t ci = 0; ci < cpg; ci++) \
            for (int64_t kh = 0; kh < q.k; kh++) { \
              int64_t ih = oh * q.s - q.p + kh; \
              if (ih < 0 || ih >= q.H) continue; \
              for (int64_t kw = 0; kw < q.k; kw++) { \
                int64_t iw = ow * q.s - q.p + kw; \
                if (iw < 0 || iw >= q.W) continue; \
                int64_t xi = ((nn * q.C + g0 + ci) * q.H + ih) * q.W + iw; \
                int64_t wi = ((o * cpg + ci) * q.k + kh) * q.k + kw; \
                body; \
              } \
            } \
        } \
    }

#endif
