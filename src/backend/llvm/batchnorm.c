/* batchnorm.c: the kernels of batchnorm with saved statistics, L1 or L2, as runtime/numerics.c
 * defines them: batchnorm_stats (nm_bn_stats, or the integer sums of nm_bn_stats_s16),
 * l1_/l2_batchnorm (nm_bn_forward with the batch's statistics and a running update, or the
 * running statistics in inference), batchnorm_dparams (nm_bn_dparams) and batchnorm_dx (nm_bn_dx).
 * A unit of work is one channel: its sums run in one vector of NM_LANES doubles, lane
 * k % NM_LANES taking element k of each row as the reference's lanes do, and its elementwise
 * passes are scalar loops that the vectorizer widens. Where a row holds one element (inner = 1,
 * a batchnorm after a linear layer) all of a channel's elements fall in lane 0, so a unit is
 * NM_LANES channels instead, one per lane, read contiguously along the rows: per-channel values
 * are then vectors, and each lane's sum is the reference's lane 0 (adding the other lanes' zeros
 * changes no bits). */
#include "batchnorm_gen.h"

/* ---- l1_/l2_batchnorm, batchnorm_pool ---- */
/* per channel: the mean and divisor (the batch's in training, where the running statistics
 * move towards them, else the running ones), gamma and beta */
static void forward_constants(Bn *b, LLVMValueRef c, void *ctx) {
  (void)ctx;
  Gen *g = b->g;
  const ChanKernel *k = b->k;
  LLVMValueRef gamma = gen_input(g, 1), beta = gen_input(g, 2), rm = gen_input(g, 3), rs = gen_input(g, 4), st = gen_input(g, 5);
  LLVMValueRef train = LLVMBuildICmp(B, LLVMIntNE, gen_arg(g, KA_TRAINING), LLVMConstInt(g->i32, 0, 0), "");
  LLVMValueRef rmv = bn_cload(b, rm, c), rsv = bn_cload(b, rs, c);
  /* training: the batch's statistics, and the running ones move towards them ((1 - mom) * r +
   * mom * stat in float; L2's variance unbiased first) */
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(B));
  LLVMBasicBlockRef batch = LLVMAppendBasicBlockInContext(g->ctx, fn, "batch"), running = LLVMAppendBasicBlockInContext(g->ctx, fn, "running");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(g->ctx, fn, "normalize");
  LLVMBuildCondBr(B, train, batch, running);
  LLVMPositionBuilderAtEnd(B, batch);
  LLVMValueRef mom = fconst(b, (float)k->momentum), keep = fconst(b, 1.0f - (float)k->momentum);
  LLVMValueRef bmu = bn_stat(b, st, NM_BN_MEAN, c), bs = bn_stat(b, st, NM_BN_SPREAD, c), binv = bn_stat(b, st, NM_BN_INV, c);
  double m = bn_elements(b);
  if (k->l2 && m > 1) bs = f32(b, LLVMBuildFDiv(B, LLVMBuildFMul(B, f64(b, bs), dconst(b, m), ""), dconst(b, m - 1), "")); /* unbiased */
  bn_cstore(b, LLVMBuildFAdd(B, LLVMBuildFMul(B, keep, rmv, ""), LLVMBuildFMul(B, mom, bmu, ""), ""), rm, c);
  bn_cstore(b, LLVMBuildFAdd(B, LLVMBuildFMul(B, keep, rsv, ""), LLVMBuildFMul(B, mom, bs, ""), ""), rs, c);
  LLVMBuildBr(B, join);
  LLVMPositionBuilderAtEnd(B, running);
  LLVMValueRef rinv = bn_divisor_inv(b, rsv);
  LLVMBuildBr(B, join);
  LLVMPositionBuilderAtEnd(B, join);
  LLVMValueRef mu = LLVMBuildPhi(B, ct(b, g->f32), "mu"), inv = LLVMBuildPhi(B, ct(b, g->f32), "inv");
  LLVMBasicBlockRef from[2] = {batch, running};
  LLVMAddIncoming(mu, (LLVMValueRef[]){bmu, rmv}, from, 2);
  LLVMAddIncoming(inv, (LLVMValueRef[]){binv, rinv}, from, 2);
  LLVMValueRef v[K_COUNT] = {[K_MEAN] = mu, [K_INV] = inv, [K_GAMMA] = bn_cload(b, gamma, c), [K_BETA] = bn_cload(b, beta, c)};
  for (int j = K_MEAN; j <= K_BETA; j++) bn_cstore(b, v[j], consts(b, j), c);
}
static void forward_row(Bn *b, LLVMValueRef c, LLVMValueRef row, void *ctx) {
  RowCtx *r = ctx;
  Gen *g = b->g;
  bn_load_constants(b, c, r, K_MEAN, K_BETA);
  if (pooled(b)) { /* batchnorm_pool: the plane's pooled values only */
    PoolPlane pp = bn_plane(b, r, row);
    gen_maxpool_plane(g, &pp, NULL, b->k->relu, bn_pooled_plane(b, r->out, row), bn_plane_codes(b, r->out, row));
    return;
  }
  if (b->cw > 1) {
    bn_cstore(b, bn_normalize(b, r, bn_cload(b, r->x, row)), r->out, row);
    return;
  }
  Loop l; /* the vectorizer widens it */
  LLVMValueRef e = LLVMBuildAdd(B, row, gen_loop_begin(g, &l, gen_i64(g, b->k->inner), "j"), "e");
  gen_store(g, bn_normalize(b, r, bn_x_load(b, r->x, e)), r->out, e);
  gen_loop_end(g, &l, 0);
}
static void forward(Bn *b, LLVMValueRef out) {
  RowCtx r = {.b = b, .x = gen_input(b->g, 0), .out = out};
  bn_by_rows(b, forward_constants, forward_row, &r);
}

#undef B

LLVMValueRef gen_batchnorm(Gen *g, const ChanKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name), out = gen_arg(g, KA_OUT);
  /* a lane counts at most outer * ceil(inner / NM_LANES) signs: i32 unless that could overflow */
  LLVMTypeRef count = k->outer * ((k->inner + NM_LANES - 1) / NM_LANES) < INT32_MAX ? g->i32 : g->i64;
  Bn b = {g, k, LLVMVectorType(g->f32, NM_LANES), LLVMVectorType(g->f64, NM_LANES), LLVMVectorType(count, NM_LANES),
          k->inner == 1 ? NM_LANES : 1, NULL, NULL, DX_STORE, NULL};
  g->scratch = k->scratch;
  if (k->x_s16) { /* x: input 0 of the statistics and the forward pass, input 1 of the gradients */
    SQ_ASSERT(b.cw == 1); /* the fuse pass keeps s16 for feature maps */
    int xi = k->op == OP_batchnorm_stats || k->op == OP_l1_batchnorm || k->op == OP_l2_batchnorm || k->op == OP_batchnorm_pool ? 0 : 1;
    b.xscale = gen_input_scale(g, xi);
  }
  if (k->op == OP_batchnorm_stats) { /* inference normalizes with the running statistics */
    LLVMBasicBlockRef work = LLVMAppendBasicBlockInContext(g->ctx, fn, "training"), skip = LLVMAppendBasicBlockInContext(g->ctx, fn, "inference");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntNE, gen_arg(g, KA_TRAINING), LLVMConstInt(g->i32, 0, 0), ""), work, skip);
    LLVMPositionBuilderAtEnd(g->b, skip);
    LLVMBuildRetVoid(g->b);
    LLVMPositionBuilderAtEnd(g->b, work);
  }
  switch (k->op) {
  case OP_batchnorm_stats: k->int_stats ? bn_stats_int(&b, out) : bn_stats(&b, out); break;
  case OP_l1_batchnorm: case OP_l2_batchnorm: case OP_batchnorm_pool: forward(&b, out); break;
  case OP_batchnorm_dparams: case OP_batchnorm_pool_dparams: bn_dparams(&b, out); break;
  case OP_batchnorm_dx: case OP_batchnorm_pool_dx: bn_dx(&b, out); break;
  default: SQ_INTERNAL("not a batchnorm op: %s", op_info[k->op].name);
  }
  LLVMBuildRetVoid(g->b);
  return fn;
}

