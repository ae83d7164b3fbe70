/* lower.c: graph IR -> kernel IR. GEMM nodes become GemmKernels with the strides of their
 * operands' row-major layouts (transposes and weight orientation are strides, never copies). */
#include <stdlib.h>
#include "../ops/rules.h"
#include "kir.h"

/* Signedness of a quantized tensor: from the quantize node it comes from (through reshapes);
 * its storage from its type. */
static KElem q8_elem(const Graph *g, int id) {
  int packed = ir_node(g, id)->dtype == DT_Q4;
  const Node *q = quant_source(g, id);
  int u = q && ir_int(q, "unsigned");
  return packed ? (u ? KE_U4 : KE_I4) : u ? KE_U8 : KE_I8;
}

static KElem elem_of(const Graph *g, int id) { return dtype_is_quantized(ir_node(g, id)->dtype) ? q8_elem(g, id) : KE_F32; }

static int max_abs(KElem e) { return e == KE_F32 ? 0 : kelem_unsigned(e) ? 255 : 127; }

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* bytes of a batch entry's scratch: packed U unless per tile or in place, packed S, corrections */
static int64_t entry_scratch(const DotPlan *d) { return (d->u_tile || d->run ? 0 : d->mp * d->kp) + d->np * d->kp + 4 * d->np; }

/* Default tiles: VNNI 6 rows x 4 zmm (24 accumulators of the 32 registers), sdot 4 rows x 4 q
 * registers (16 of 32). */
void tuning_defaults(Tuning *t) {
  *t = (Tuning){{[DOT_VNNI] = {6, 4}, [DOT_SDOT] = {4, 4}, [DOT_AVX2] = {4, 2}}};
}
int dot_lanes(DotIsa d) { return d == DOT_VNNI ? 16 : d == DOT_AVX2 ? 8 : 4; }
/* AVX2 keeps a vector of ones for vpmaddwd: one register fewer for the tile */
int dot_registers(DotIsa d) { return d == DOT_NONE ? 0 : d == DOT_AVX2 ? 15 : 32; }

/* Largest block of U rows packed per tile on a thread's stack (bytes), far inside any thread
 * stack; longer rows are packed whole in phase 0 */
enum { U_TILE_MAX = 64 * 1024 };
/* rows a narrow tile grows to: what the convolutions' transposed epilogue stores at once */
enum { MR_GROWN = 8 };

/* The plan of an integer GEMM on the ISA; narrower outputs take fewer vectors. a and b are the
 * elements of the M x K and K x N operands, amax and bmax their largest values. b_on_u puts B
 * on the U side when both are signed (convolution dW: its patches pack fastest as U rows). */
static DotPlan choose_dot(DotIsa dot, DotTile tile, KElem a, int amax, KElem b, int bmax, int b_on_u, int64_t batch, int64_t M,
                          int64_t N, int64_t K) {
  DotPlan d = {DOT_NONE};
  if (dot == DOT_NONE || a == KE_F32) return d;
  if (dot == DOT_VNNI || dot == DOT_AVX2) { /* U must be unsigned or biased, S signed */
    if (kelem_unsigned(a) && kelem_unsigned(b)) return d;
    d.bias_u = !kelem_unsigned(a) && !kelem_unsigned(b);
    /* vpmaddubsw adds two u8 x s8 products into a saturating i16: exact only below 2^15 */
    int bias = d.bias_u ? 128 : 0, fits = dot != DOT_AVX2 || 2 * (bmax + bias) * amax <= 32767;
    d.swap = kelem_unsigned(b) || (d.bias_u && b_on_u && fits);
    int umax = (d.swap ? bmax : amax) + bias, smax = d.swap ? amax : bmax;
    if (dot == DOT_AVX2 && 2 * umax * smax > 32767) return d;
  } else { /* sdot: both signed; an unsigned operand must fit in int8 */
    if ((kelem_unsigned(a) && amax > 127) || (kelem_unsigned(b) && bmax > 127)) return d;
  }
  d.lanes = dot_lanes(dot), d.mr = tile.mr, d.nr = tile.nr;
  int64_t rows = d.swap ? N : M, cols = d.swap ? M : N;
  while (d.nr > 1 && (d.nr - 1) * d.lanes >= cols) d.nr--;
  /* fewer vectors of columns keep the tile's accumulators by more rows, up to MR_GROWN */
  if (d.nr < tile.nr && d.mr < MR_GROWN) { /* unless that pads more rows */
    int grown = tile.mr * tile.nr / d.nr < MR_GROWN ? tile.mr * tile.nr / d.nr : MR_GROWN;
    if (round_up(rows, grown) <= round_up(rows, d.mr)) d.mr = grown;
  }
  if (d.mr > rows) d.mr = (int)rows;
  d.dot = dot;
  d.kp = round_up(K, 4);
  d.mp = round_up(rows, d.mr);
  d.np = round_up(cols, (int64_t)d.lanes * d.nr);
  d.u_tile = d.mr * d.kp <= U_TILE_MAX;
  d.scratch = batch * entry_scratch(&d);
  return d;
}

static int gemm_of(const Graph *g, const Node *n, int vec, DotIsa dot, DotTile tile, GemmKernel *k) {
  const Node *a = ir_in(g, n, 0), *b = ir_in(g, n, 1);
  *k = (GemmKernel){.node = n->id, .a = elem_of(g, n->in[0]), .b = elem_of(g, n->in[1]), .vec = vec};
  if (n->op == OP_linear || n->op == OP_qlinear) {
    k->K = a->shape.d[a->shape.rank - 1];
    k->N = ir_int(n, "out");
    k->M = shape_numel(&a->shape) / k->K;
    k->batch = 1;
    k->a_sm = k->K, k->a_sk = 1, k->b_sk = 1, k->b_sn = k->K;
    k->bias = ir_has_bias(n);
    k->relu = (int)ir_int(n, "relu");
  } else if (n->op == OP_matmul || n->op == OP_qmatmul) {
    int ta = (int)ir_int(n, "trans_a"), tb = (int)ir_int(n, "trans_b");
    const Shape *as = &a->shape, *bs = &b->shape;
    k->M = as->d[as->rank - (ta ? 1 : 2)];
    k->K = as->d[as->rank - (ta ? 2 : 1)];
    k->N = bs->d[bs->rank - (tb ? 2 : 1)];
    k->batch = shape_numel(&n->shape) / (k->M * k->N);
    k->a_sm = ta ? 1 : k->K, k->a_sk = ta ? k->M : 1;
    k->b_sk = tb ? 1 : k->N, k->b_sn = tb ? k->K : 1;
    k->a_bs = as->rank > 2 ? k->M * k->K : 0;
    k->b_bs = bs->rank > 2 ? k->K * k->N : 0;
  } else {
    return 0;
  }
  if ((k->a == KE_F32) != (k->b == KE_F32)) return 0; /* mixed float/integer: not a GEMM we make */
  /* int32 accumulation must not overflow: K * max|a| * max|b| < 2^31, known at compile time */
  if (k->a != KE_F32 && (double)k->K * max_abs(k->a) * max_abs(k->b) >= 2147483648.0) return 0;
  k->dp = choose_dot(dot, tile, k->a, quant_max(g, n->in[0]), k->b, quant_max(g, n->in[1]), 0, k->batch, k->M, k->N, k->K);
  /* U's rows side by side in memory, k strided (dy^T or x^T of a dW): gathered a tile at a time
   * they would cost an element load each; packed whole, 16 x 16 bytes at a time */
  DotPlan *d = &k->dp;
  KElem ue = d->swap ? k->b : k->a;
  int64_t u_row = d->swap ? k->b_sn : k->a_sm, u_k = d->swap ? k->b_sk : k->a_sk, u_bs = d->swap ? k->b_bs : k->a_bs;
  if (d->dot && u_row == 1 && u_k != 1 && k->K % 16 == 0 && (!kelem_packed(ue) || (u_k % 2 == 0 && u_bs % 2 == 0))) {
    d->u_tile = 0, d->u_transposed = 1;
    d->scratch = k->batch * entry_scratch(d);
  }
  return 1;
}

/* dW's reduction runs over the batch's pixels: in chunks of whole images whose packed operands
 * take about DW_CHUNK_BYTES (they stay in the L2 of the core that packed them while every tile
 * reads them), in DW_SLICES runs of chunks that parts take whole. The slices' count is fixed,
 * not the thread count, and their sums are integers: the bits never depend on the threads. */
enum { DW_CHUNK_BYTES = 256 * 1024, DW_SLICES = 8 };
static void chunk_dw(ConvKernel *k) {
  DotPlan *d = &k->dp;
  int64_t hw = k->Ho * k->Wo, images = DW_CHUNK_BYTES / ((d->mp + d->np) * hw);
  if (images < 1) images = 1;
  if (images > k->N) images = k->N;
  d->chunk_images = images;
  d->chunks = (k->N + images - 1) / images;
  d->kp = round_up(images * hw, 4);
  d->u_tile = d->mr * d->kp <= U_TILE_MAX;
  d->unpacked = kelem_packed(k->b) ? images * k->C * k->H * k->W : 0;
  d->slices = d->chunks < DW_SLICES ? d->chunks : DW_SLICES;
  d->dyq = k->dy_bits ? images * k->O * hw : 0;
  d->scratch = d->slices * (entry_scratch(d) + 4 * d->mp * d->np + d->unpacked + d->dyq);
}

static int conv_of(const Graph *g, const Node *n, DotIsa dot, DotTile tile, ConvKernel *k) {
  ConvKind kind;
  if (n->op == OP_qconv2d || n->op == OP_conv2d) kind = CONV_FWD;
  else if (n->op == OP_qconv2d_dx || n->op == OP_conv2d_dx) kind = CONV_DX;
  else if (n->op == OP_qconv2d_dw || n->op == OP_conv2d_dw) kind = CONV_DW;
  else return 0;
  /* the input image's shape: fwd and dw read it as input 0 resp. 1, dx as input 2 */
  const Shape *x = &ir_in(g, n, kind == CONV_FWD ? 0 : kind == CONV_DX ? 2 : 1)->shape;
  const Shape *w = kind == CONV_DW ? &n->shape : &ir_in(g, n, 1)->shape;
  *k = (ConvKernel){.node = n->id, .kind = kind, .N = x->d[0], .C = x->d[1], .H = x->d[2], .W = x->d[3], .O = w->d[0],
                    .k = ir_int(n, "kernel"), .s = ir_int(n, "stride"), .p = ir_int(n, "padding"), .g = ir_int(n, "groups"),
                    .a = elem_of(g, n->in[0]), .b = elem_of(g, n->in[1]), .bias = kind == CONV_FWD && ir_has_bias(n),
                    .out_s16 = n->dtype == DT_S16, .chansums = n->op == OP_qconv2d && ir_int(n, "chansums")};
  if (n->op == OP_qconv2d_dw && ir_int(n, "dy_bits")) { /* dy ShiftQuant'ed here: i8 when packed */
    k->dy_bits = (int)ir_int(n, "dy_bits"), k->dy_groups = (int)ir_int(n, "dy_groups");
    k->dy_stream = (uint64_t)ir_int(n, "dy_stream"), k->dy_ranges = (int)ir_int(n, "dy_ranges"), k->a = KE_I8;
    if (k->dy_groups < 1) return 0;
  }
  k->Ho = (k->H + 2 * k->p - k->k) / k->s + 1;
  k->Wo = (k->W + 2 * k->p - k->k) / k->s + 1;
  double taps = kind == CONV_FWD ? (double)(k->C / k->g * k->k * k->k)
              : kind == CONV_DX  ? (double)(k->O / k->g * k->k * k->k)
                                 : (double)(k->N * k->Ho * k->Wo);
  if (k->a == KE_F32 || k->b == KE_F32) return k->a == k->b; /* float: no overflow to prove */
  if (taps * max_abs(k->a) * max_abs(k->b) >= 2147483648.0) return 0;
  int64_t kk = k->k * k->k;
  if (kind == CONV_FWD) k->gm = k->N * k->Ho * k->Wo, k->gn = k->O, k->gk = k->C * kk;
  else if (kind == CONV_DX) k->gm = k->N * k->H * k->W, k->gn = k->C, k->gk = k->O * kk;
  else k->gm = k->O, k->gn = k->C * kk, k->gk = k->N * k->Ho * k->Wo;
  /* the GEMM's A (input 0) is patches of x (fwd), of dy (dx) or dy itself (dw); B (input 1) is
   * w or patches of x */
  /* dW: x's patches as U rows (runs of input rows) and dy in groups of 4 pixels, when those fit */
  int dw_swap = kind == CONV_DW && k->s == 1 && (k->Ho * k->Wo) % 4 == 0;
  if (k->g == 1)
    k->dp = choose_dot(dot, tile, k->a, quant_max(g, n->in[0]), k->b, quant_max(g, n->in[1]), dw_swap, 1, k->gm, k->gn, k->gk);
  if (k->dp.dot && kind == CONV_DW) chunk_dw(k);
  if (k->dy_bits) /* the scalar loops quantize all of dy first */
    k->dp.scratch += (k->dp.dot ? 0 : k->N * k->O * k->Ho * k->Wo) + kir_sq_params(k->O);
  if (k->dp.dot && kind != CONV_DW) { /* patches come from a channels-last copy of x or dy */
    SQ_ASSERT(!k->dp.swap); /* the weights are signed: they are never the unsigned side */
    int64_t cin = kind == CONV_FWD ? k->C : k->O, hs = kind == CONV_FWD ? k->H : k->Ho, ws = kind == CONV_FWD ? k->W : k->Wo;
    /* dx of stride 1 is a forward convolution of dy, padded by k - 1 - p, with the taps reversed */
    int64_t pad = kind == CONV_FWD ? k->p : k->k - 1 - k->p;
    if (k->s == 1 && pad >= 0) {
      DotPlan *d = &k->dp;
      d->run = round_up(k->k * cin, 4), d->pad = pad;
      d->kp = k->k * d->run;
      d->u_tile = 0;
      d->scratch = entry_scratch(d); /* S and its corrections: no U */
      hs += 2 * pad, ws += 2 * pad;
    }
    /* + 4: slack for the 4-byte reads of small taps and the bytes a run reads past its taps */
    k->dp.chlast = k->N * hs * ws * cin + 4;
    k->dp.scratch += k->dp.chlast;
  }
  return 1;
}

static int ew_of(const Graph *g, const Node *n, int vec, EwKernel *k) {
  switch (n->op) {
  case OP_relu: case OP_relu_grad: case OP_add: case OP_mul: case OP_sgd_update: case OP_gelu: case OP_gelu_grad:
  case OP_mse: case OP_mse_grad: case OP_softmax: case OP_softmax_grad:
    break;
  default: return 0;
  }
  const Node *x = ir_in(g, n, 0);
  int per_input = n->op == OP_sgd_update || n->op == OP_mse; /* their output is not elementwise */
  *k = (EwKernel){.node = n->id, .op = n->op, .n = shape_numel(per_input ? &x->shape : &n->shape), .vec = vec};
  if (n->op == OP_mse_grad) k->sign = ir_num(n, "sign");
  /* scalar loops: libm calls (erf, exp) do not vectorize, and mse's double sum keeps its order */
  if (n->op == OP_gelu || n->op == OP_gelu_grad || n->op == OP_mse || n->op == OP_softmax || n->op == OP_softmax_grad)
    k->vec = 1;
  k->inner = k->n;
  if (n->op == OP_add || n->op == OP_mul) k->inner = shape_numel(&ir_in(g, n, 1)->shape);
  if (n->op == OP_softmax || n->op == OP_softmax_grad) k->inner = n->shape.d[n->shape.rank - 1]; /* rows */
  if (n->op == OP_sgd_update) {
    k->momentum = (float)ir_num(n, "momentum");
    k->weight_decay = (float)ir_num(n, "weight_decay");
    k->nesterov = (int)ir_int(n, "nesterov");
  }
  return x->dtype == DT_F32;
}

static int red_of(const Graph *g, const Node *n, RedKernel *k) {
  if (n->op == OP_fill) {
    *k = (RedKernel){.node = n->id, .kind = RED_FILL, .out_n = shape_numel(&n->shape), .value = (float)ir_num(n, "value")};
    return n->dtype == DT_F32;
  }
  if (n->kind != NK_OP || n->nin == 0 || ir_is_view(g, n)) return 0;
  int grad_of_x = n->op == OP_maxpool2d_grad || n->op == OP_avgpool2d_grad || n->op == OP_global_avgpool_grad;
  const Node *x = ir_in(g, n, grad_of_x ? 1 : 0);
  if (x->dtype != DT_F32) return 0;
  *k = (RedKernel){.node = n->id, .rank = x->shape.rank, .out_n = shape_numel(&n->shape)};
  for (int i = 0; i < x->shape.rank; i++) k->dim[i] = x->shape.d[i];
  switch (n->op) {
  case OP_reshape: case OP_flatten: k->kind = RED_COPY; return 1;
  case OP_row: k->kind = RED_COPY, k->offset = ir_int(n, "index") * k->out_n; return 1;
  case OP_reduce_sum: {
    k->kind = RED_SUM;
    const AttrVal *ax = ir_attr(n, "axes");
    int64_t stride = 1;
    for (int i = x->shape.rank - 1; i >= 0; i--) {
      int reduced = 0;
      for (int a = 0; a < ax->nlist; a++) reduced |= ax->list[a] == i;
      k->out_stride[i] = reduced ? 0 : stride;
      if (!reduced) stride *= x->shape.d[i];
    }
    return 1;
  }
  case OP_transpose: {
    k->kind = RED_TRANSPOSE;
    const AttrVal *a = ir_attr(n, "perm");
    for (int i = 0; i < k->rank; i++) k->perm[i] = i;
    if (a->nlist == 0) k->perm[k->rank - 2] = k->rank - 1, k->perm[k->rank - 1] = k->rank - 2;
    else for (int i = 0; i < a->nlist; i++) k->perm[i] = a->list[i];
    return 1;
  }
  case OP_global_avgpool: k->kind = RED_GAP; return 1;
  case OP_global_avgpool_grad: k->kind = RED_GAP_GRAD; return 1;
  case OP_maxpool2d: case OP_maxpool2d_grad: case OP_avgpool2d: case OP_avgpool2d_grad:
    if (n->op == OP_maxpool2d_grad) k->relu = (int)ir_int(n, "relu");
    k->kind = n->op == OP_maxpool2d ? RED_MAXPOOL : n->op == OP_maxpool2d_grad ? RED_MAXPOOL_GRAD
            : n->op == OP_avgpool2d ? RED_AVGPOOL : RED_AVGPOOL_GRAD;
    k->k = ir_int(n, "kernel"), k->s = ir_int(n, "stride"), k->p = ir_int(n, "padding");
    k->Ho = (k->dim[2] + 2 * k->p - k->k) / k->s + 1;
    k->Wo = (k->dim[3] + 2 * k->p - k->k) / k->s + 1;
    return 1;
  default: return 0;
  }
}

enum { QUANT_BLOCK = 4096 }; /* absmax blocks: a max is exact, so any fixed blocking gives the same bits */

/* [outer, channels, inner] of x for a norm: per channel (axis 1) or per row (last axis) */
static void norm_view(const Shape *x, int per_row, ChanKernel *k) {
  int64_t n = shape_numel(x);
  if (per_row) {
    k->outer = 1, k->inner = x->d[x->rank - 1], k->channels = n / k->inner;
  } else {
    k->outer = x->d[0], k->channels = x->d[1], k->inner = n / (x->d[0] * x->d[1]);
  }
  k->per_inner = per_row;
}

/* a batchnorm dx ShiftQuanting its output (ops.def's sq_bits): a row of dx on the stack */
static int dx_shiftquant(const Graph *g, const Node *n, ChanKernel *k) {
  if (!ir_int(n, "sq_bits")) return 1;
  k->sq_out = 1, k->bits = (int)ir_int(n, "sq_bits"), k->groups = (int)ir_int(n, "sq_groups");
  k->stream = (uint64_t)ir_int(n, "sq_stream");
  k->extremes = !k->l2 && ir_int(ir_in(g, n, 4), "extremes"); /* the ranges from dparams' classes */
  return k->groups >= 1 && k->inner > 1 && k->inner <= KIR_POOL_PLANE_MAX;
}

static int chan_of(const Graph *g, const Node *n, ChanKernel *k) {
  *k = (ChanKernel){.node = n->id, .op = n->op, .outer = 1, .channels = 1};
  const Node *x0 = n->nin ? ir_in(g, n, 0) : NULL;
  switch (n->op) {
  case OP_quantize:
    k->inner = shape_numel(&x0->shape);
    k->packed = n->dtype == DT_Q4;
    k->bits = (int)ir_int(n, "bits"), k->is_unsigned = (int)ir_int(n, "unsigned");
    k->block = QUANT_BLOCK, k->blocks = (k->inner + QUANT_BLOCK - 1) / QUANT_BLOCK;
    k->scratch = 4 * (1 + k->blocks); /* inv, then each block's max */
    return 1;
  case OP_shiftquant: {
    int axis = (int)ir_int(n, "axis");
    k->channels = x0->shape.d[axis];
    for (int i = 0; i < axis; i++) k->outer *= x0->shape.d[i];
    k->inner = shape_numel(&x0->shape) / (k->outer * k->channels);
    k->bits = (int)ir_int(n, "bits"), k->groups = (int)ir_int(n, "groups"), k->stream = (uint64_t)ir_int(n, "stream");
    k->ranges = (int)ir_int(n, "ranges");
    k->scratch = kir_sq_params(k->channels);
    return k->groups >= 1;
  }
  case OP_batchnorm_stats: case OP_l1_batchnorm: case OP_l2_batchnorm:
    norm_view(&x0->shape, 0, k);
    k->x_s16 = x0->dtype == DT_S16;
    k->eps = ir_num(n, "eps");
    k->l2 = n->op == OP_l2_batchnorm || (n->op == OP_batchnorm_stats && ir_int(n, "l2"));
    if (n->op != OP_batchnorm_stats) k->momentum = ir_num(n, "momentum"), k->relu = (int)ir_int(n, "relu");
    k->int_stats = n->op == OP_batchnorm_stats && k->x_s16 && nm_bn_int_stats(k->l2, k->outer * k->inner, k->inner);
    k->chansums = k->int_stats && ir_int(n, "chansums");
    k->scratch = kir_bn_scratch(k->channels);
    return 1;
  case OP_batchnorm_dparams: case OP_batchnorm_dx: /* eps is in the statistics */
    norm_view(&ir_in(g, n, 1)->shape, 0, k);
    k->x_s16 = ir_in(g, n, 1)->dtype == DT_S16;
    k->l2 = n->op == OP_batchnorm_dx && ir_int(n, "l2");
    k->ranges = n->op == OP_batchnorm_dx && ir_int(n, "ranges");
    if (n->op == OP_batchnorm_dx && !dx_shiftquant(g, n, k)) return 0;
    if (n->op == OP_batchnorm_dparams) k->extremes = (int)ir_int(n, "extremes");
    if (k->extremes && k->inner == 1) return 0; /* the kernels keep extremes of channels' rows, not of lanes */
    k->scratch = kir_bn_scratch(k->channels) + (k->ranges || k->sq_out ? 4 * k->outer * k->channels : 0) +
                 (k->sq_out ? kir_sq_params(k->channels) : 0);
    return 1;
  case OP_batchnorm_pool: case OP_batchnorm_pool_dparams: case OP_batchnorm_pool_dx: {
    const Shape *x = &ir_in(g, n, n->op == OP_batchnorm_pool ? 0 : 1)->shape;
    norm_view(x, 0, k);
    k->x_s16 = ir_in(g, n, n->op == OP_batchnorm_pool ? 0 : 1)->dtype == DT_S16;
    k->pool_k = ir_int(n, "kernel"), k->pool_s = ir_int(n, "stride");
    k->H = x->d[2], k->W = x->d[3], k->Ho = (k->H - k->pool_k) / k->pool_s + 1, k->Wo = (k->W - k->pool_k) / k->pool_s + 1;
    k->relu = (int)ir_int(n, "relu");
    k->l2 = n->op != OP_batchnorm_pool_dparams && ir_int(n, "l2");
    if (n->op == OP_batchnorm_pool) k->momentum = ir_num(n, "momentum"), k->eps = ir_num(n, "eps");
    k->ranges = n->op == OP_batchnorm_pool_dx && ir_int(n, "ranges");
    if (n->op == OP_batchnorm_pool_dx && !dx_shiftquant(g, n, k)) return 0;
    if (n->op == OP_batchnorm_pool_dparams) k->extremes = (int)ir_int(n, "extremes");
    if (k->extremes && k->inner == 1) return 0; /* the kernels keep extremes of channels' rows, not of lanes */
    k->scratch = kir_bn_scratch(k->channels) + (k->ranges || k->sq_out ? 4 * k->outer * k->channels : 0) +
                 (k->sq_out ? kir_sq_params(k->channels) : 0);
    return kir_maxpool_plane_fits(k->pool_k, k->pool_s, 0) && k->inner <= KIR_POOL_PLANE_MAX;
  }
  case OP_l1_layernorm: case OP_layernorm:
    norm_view(&x0->shape, 1, k);
    k->eps = ir_num(n, "eps");
    return 1;
  case OP_l1_layernorm_dx: case OP_l1_layernorm_dgamma: case OP_layernorm_dx: case OP_layernorm_dgamma:
    norm_view(&ir_in(g, n, 1)->shape, 1, k);
    k->eps = ir_num(n, "eps");
    if (n->op == OP_l1_layernorm_dgamma || n->op == OP_layernorm_dgamma) k->scratch = 16 * k->channels; /* row mean, 1 / divisor */
    return 1;
  case OP_cross_entropy: case OP_cross_entropy_grad: {
    const Shape *z = &ir_in(g, n, n->op == OP_cross_entropy ? 0 : 1)->shape;
    k->channels = z->d[0], k->inner = z->d[1];
    return 1;
  }
  case OP_embedding: case OP_embedding_grad: {
    const Shape *ids = &ir_in(g, n, n->op == OP_embedding ? 0 : 1)->shape;
    k->channels = shape_numel(ids), k->inner = n->shape.d[n->shape.rank - 1];
    k->vocab = ir_int(n, "vocab");
    return 1;
  }
  case OP_dropout: case OP_dropout_grad:
    k->inner = shape_numel(&n->shape), k->p = (float)ir_num(n, "p"), k->stream = (uint64_t)ir_int(n, "stream");
    return 1;
  case OP_adam_update:
    k->inner = shape_numel(&x0->shape);
    k->beta1 = ir_num(n, "beta1"), k->beta2 = ir_num(n, "beta2");
    k->eps = (float)ir_num(n, "eps"), k->weight_decay = (float)ir_num(n, "weight_decay");
    return 1;
  default: return 0;
  }
}

KernelPlan *lower_graph(const Graph *g, int vec_f32, DotIsa dot, const Tuning *tune) {
  Tuning defaults;
  tuning_defaults(&defaults);
  DotTile tile = (tune ? tune : &defaults)->tile[dot];
  KernelPlan *p = xcalloc(1, sizeof *p);
  p->vec_f32 = vec_f32;
  for (int id = 0; id < g->nodes.n; id++) {
    const Node *n = ir_node(g, id);
    GemmKernel k;
    ConvKernel ck;
    EwKernel ek;
    RedKernel rk;
    ChanKernel hk;
    if (n->kind == NK_OP && chan_of(g, n, &hk)) VEC_PUSH(p->chan, hk);
    if (n->kind == NK_OP && gemm_of(g, n, vec_f32, dot, tile, &k)) VEC_PUSH(p->gemm, k);
    if (n->kind == NK_OP && conv_of(g, n, dot, tile, &ck)) VEC_PUSH(p->conv, ck);
    if (n->kind == NK_OP && ew_of(g, n, vec_f32, &ek)) VEC_PUSH(p->ew, ek);
    if (n->kind == NK_OP && red_of(g, n, &rk)) VEC_PUSH(p->red, rk);
  }
  return p;
}

void kir_free(KernelPlan *p) {
  if (!p) return;
  VEC_FREE(p->gemm);
  VEC_FREE(p->conv);
  VEC_FREE(p->ew);
  VEC_FREE(p->red);
  VEC_FREE(p->chan);
  free(p);
}

static void print_dot(StrBuf *b, const DotPlan *d) {
  static const char *const names[] = {"", "vpdpbusd", "sdot", "vpmaddubsw"};
  if (!d->dot) return;
  sb_printf(b, "  dot=%s lanes=%d tile=%dx%d%s%s%s kp=%lld mp=%lld np=%lld%s", names[d->dot], d->lanes, d->mr, d->nr,
            d->swap ? " swap" : "", d->bias_u ? " bias_u=128" : "", d->u_tile ? " u-per-tile" : d->u_transposed ? " u-transposed" : "", (long long)d->kp,
            (long long)d->mp, (long long)d->np, d->chlast ? " channels-last" : "");
  if (d->run) sb_printf(b, " pad=%lld u-in-place runs=%lldx%lld", (long long)d->pad, (long long)(d->kp / d->run), (long long)d->run);
  sb_printf(b, " scratch=%lld\n", (long long)d->scratch);
  if (d->chunks)
    sb_printf(b, "  k-chunks=%lld of %lld images in %lld slices%s\n", (long long)d->chunks, (long long)d->chunk_images,
              (long long)d->slices, d->unpacked ? ", x unpacked per chunk" : "");
}

char *kir_print(const Graph *g, const KernelPlan *p) {
  static const char *const elem[] = {"f32", "i8", "u8", "i4", "u4"};
  StrBuf b = {0};
  sb_printf(&b, "kernels %s: %d generated, f32 vector width %d\n", g->name, p->gemm.n + p->conv.n + p->ew.n + p->red.n + p->chan.n, p->vec_f32);
  for (int i = 0; i < p->gemm.n; i++) {
    const GemmKernel *k = &p->gemm.v[i];
    const Node *n = ir_node(g, k->node);
    sb_printf(&b, "gemm %%%s (%s): batch=%lld M=%lld N=%lld K=%lld A=%s[bs=%lld,m=%lld,k=%lld] "
                  "B=%s[bs=%lld,k=%lld,n=%lld]%s%s%s vec=%d\n",
              n->name, op_info[n->op].name, (long long)k->batch, (long long)k->M, (long long)k->N, (long long)k->K,
              elem[k->a], (long long)k->a_bs, (long long)k->a_sm, (long long)k->a_sk, elem[k->b], (long long)k->b_bs,
              (long long)k->b_sk, (long long)k->b_sn, k->a == KE_F32 ? "" : " acc=i32 dequant=scale_a*scale_b",
              k->bias ? " +bias" : "", k->relu ? " relu" : "", k->vec);
    print_dot(&b, &k->dp);
  }
  static const char *const kinds[] = {"fwd", "dx", "dw"};
  for (int i = 0; i < p->conv.n; i++) {
    const ConvKernel *k = &p->conv.v[i];
    sb_printf(&b, "conv %%%s (%s %s): N=%lld C=%lld H=%lld W=%lld O=%lld Ho=%lld Wo=%lld k=%lld s=%lld p=%lld g=%lld %s x %s acc=%s%s%s\n",
              ir_node(g, k->node)->name, op_info[ir_node(g, k->node)->op].name, kinds[k->kind], (long long)k->N,
              (long long)k->C, (long long)k->H, (long long)k->W, (long long)k->O, (long long)k->Ho, (long long)k->Wo,
              (long long)k->k, (long long)k->s, (long long)k->p, (long long)k->g, elem[k->a], elem[k->b],
              k->a == KE_F32 ? "f32" : "i32", k->bias ? " +bias" : "", k->out_s16 ? (k->chansums ? " out=s16 +chansums" : " out=s16") : "");
    if (k->dy_bits)
      sb_printf(&b, "  dy=f32 shiftquant bits=%d groups=%d%s%s\n", k->dy_bits, k->dy_groups, k->dy_ranges ? " (ranges given)" : "",
                k->dp.dot ? " on pack, a chunk at a time" : ", all of it first");
    print_dot(&b, &k->dp);
  }
  for (int i = 0; i < p->ew.n; i++) {
    const EwKernel *k = &p->ew.v[i];
    sb_printf(&b, "elementwise %%%s (%s): n=%lld", ir_node(g, k->node)->name, op_info[k->op].name, (long long)k->n);
    if (k->op == OP_softmax || k->op == OP_softmax_grad) sb_printf(&b, " rows of %lld", (long long)k->inner);
    else if (k->inner != k->n) sb_printf(&b, " second operand repeats every %lld", (long long)k->inner);
    sb_printf(&b, " vec=%d\n", k->vec);
  }
  static const char *const red[] = {"reduce_sum", "copy", "maxpool", "maxpool_grad", "avgpool", "avgpool_grad",
                                    "global_avgpool", "global_avgpool_grad", "transpose", "fill"};
  for (int i = 0; i < p->red.n; i++) {
    const RedKernel *k = &p->red.v[i];
    sb_printf(&b, "%s %%%s: x=[", red[k->kind], ir_node(g, k->node)->name);
    for (int d = 0; d < k->rank; d++) sb_printf(&b, "%s%lld", d ? "," : "", (long long)k->dim[d]);
    sb_printf(&b, "] out=%lld", (long long)k->out_n);
    if (k->kind >= RED_MAXPOOL && k->kind <= RED_AVGPOOL_GRAD) sb_printf(&b, " k=%lld s=%lld p=%lld", (long long)k->k, (long long)k->s, (long long)k->p);
    if (k->offset) sb_printf(&b, " from=%lld", (long long)k->offset);
    sb_puts(&b, "\n");
  }
  for (int i = 0; i < p->chan.n; i++) {
    const ChanKernel *k = &p->chan.v[i];
    sb_printf(&b, "channels %%%s (%s): [outer=%lld, channels=%lld, inner=%lld]", ir_node(g, k->node)->name,
              op_info[k->op].name, (long long)k->outer, (long long)k->channels, (long long)k->inner);
    if (k->op == OP_quantize) sb_printf(&b, " absmax blocks of %lld", (long long)k->block);
    if (k->relu) sb_puts(&b, " relu");
    if (k->x_s16) sb_puts(&b, " x=s16");
    if (k->int_stats) sb_puts(&b, k->chansums ? " stats=int sums given" : " stats=int");
    if (k->ranges) sb_puts(&b, k->op == OP_shiftquant ? " ranges given" : " +ranges");
    if (k->extremes && !k->sq_out) sb_puts(&b, " +class extremes");
    if (k->sq_out)
      sb_printf(&b, " out=shiftquant bits=%d groups=%d (%s)", k->bits, k->groups,
                k->extremes ? "ranges from dparams' class extremes, dx once" : "dx twice: ranges, then rounding");
    if (k->pool_k) sb_printf(&b, " maxpool k=%lld s=%lld to [%lld, %lld]", (long long)k->pool_k, (long long)k->pool_s,
                             (long long)k->Ho, (long long)k->Wo);
    if (k->scratch) sb_printf(&b, " scratch=%lld", (long long)k->scratch);
    sb_puts(&b, "\n");
  }
  for (int id = 0; id < g->nodes.n; id++)
    if (ir_is_view(g, ir_node(g, id)))
      sb_printf(&b, "view %%%s: the bytes of %%%s, no kernel\n", ir_node(g, id)->name, ir_in(g, ir_node(g, id), 0)->name);
  return sb_take(&b);
}
