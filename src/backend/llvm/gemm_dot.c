/* gemm_dot.c: integer GEMMs and convolutions on the target's 4-byte dot-product instruction,
 * emitted explicitly (LLVM does not form vpdpbusd, vpmaddubsw + vpmaddwd or sdot from loops).
 * Convolutions forward and dx first copy their activation channels-last (a phase of its own).
 * A phase packs the vector side S as blocks of `lanes` columns holding 4 consecutive k of a
 * column in each i32 lane, with the correction 128 * column sum of S when U is biased. The
 * broadcast side U (rows of kp bytes, +128 when it is signed and the ISA wants it unsigned) is
 * packed in that phase too, or, when mr of its rows fit on the stack, per block of mr rows
 * right before the block's tiles (an implicit GEMM: no patch matrix). The last phase: each part
 * takes blocks of mr rows; a tile of mr x nr vector accumulators walks k four bytes at a time;
 * the epilogue subtracts the correction and dequantizes as the reference does ((float)acc *
 * scale + bias, or + 0.0, then the relu the fuse pass folded in). Convolution dW runs in two
 * phases: each part takes whole slices (fixed runs of chunks of images) and, for each chunk,
 * packs and adds the products into the slice's accumulators in scratch; then the slices'
 * accumulators are summed and go through the epilogue. Integer sums are exact in any order, so
 * the bits equal the reference's whatever the thread count. This file holds the tiles and the kernel's
 * phases; the packing is dot_operands.c and dot_pack_dw.c, the epilogue dot_epilogue.c. */
#include <string.h>
#include "dot.h"

#define B (g->b)

/* acc + dot4(u, s) per lane */
static LLVMValueRef dot4(Gen *g, const DotPlan *k, LLVMValueRef acc, LLVMValueRef u, LLVMValueRef s) {
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, (unsigned)k->lanes);
  if (k->dot == DOT_VNNI) {
    LLVMValueRef args[3] = {acc, u, s};
    const char *name = "llvm.x86.avx512.vpdpbusd.512";
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    return LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id, NULL, 0), LLVMGetIntrinsicDeclaration(g->mod, id, NULL, 0), args, 3, "");
  }
  if (k->dot == DOT_AVX2) { /* u8 x s8 pairs into i16 (they cannot saturate: lower checked), then pairs of i16 */
    LLVMTypeRef v32 = LLVMVectorType(g->i8, 32), i16 = LLVMInt16TypeInContext(g->ctx);
    LLVMValueRef pair[2] = {LLVMBuildBitCast(B, u, v32, ""), LLVMBuildBitCast(B, s, v32, "")}, ones[16];
    const char *n1 = "llvm.x86.avx2.pmadd.ub.sw", *n2 = "llvm.x86.avx2.pmadd.wd";
    unsigned id1 = LLVMLookupIntrinsicID(n1, strlen(n1)), id2 = LLVMLookupIntrinsicID(n2, strlen(n2));
    LLVMValueRef h = LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id1, NULL, 0), LLVMGetIntrinsicDeclaration(g->mod, id1, NULL, 0), pair, 2, "");
    for (int i = 0; i < 16; i++) ones[i] = LLVMConstInt(i16, 1, 0);
    LLVMValueRef w[2] = {h, LLVMConstVector(ones, 16)};
    LLVMValueRef q = LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id2, NULL, 0), LLVMGetIntrinsicDeclaration(g->mod, id2, NULL, 0), w, 2, "");
    return LLVMBuildAdd(B, acc, q, "");
  }
  LLVMTypeRef vi8 = LLVMVectorType(g->i8, 16), over[2] = {vi32, vi8};
  LLVMValueRef args[3] = {acc, LLVMBuildBitCast(B, u, vi8, ""), LLVMBuildBitCast(B, s, vi8, "")};
  const char *name = "llvm.aarch64.neon.sdot";
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  return LLVMBuildCall2(B, LLVMIntrinsicGetType(g->ctx, id, over, 2), LLVMGetIntrinsicDeclaration(g->mod, id, over, 2), args, 3, "");
}

/* acc += the tile's products: k four bytes at a time; U in place, a loop over the runs around a
 * loop along each run (rows from run[]), else rows of urows (from row m0 when u0) */
static void products(Dot *d, LLVMValueRef nb, LLVMValueRef m0, LLVMValueRef urows, int64_t u0, LLVMValueRef *run,
                     LLVMValueRef acc[MAX_MR][MAX_NR]) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  int mr = k->mr, nr = k->nr, lanes = k->lanes;
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, (unsigned)lanes);
  Loop lrun, lk;
  LLVMValueRef i = k->run ? gen_loop_begin(g, &lrun, gen_i64(g, k->kp / k->run), "run") : NULL;
  LLVMValueRef q = gen_loop_begin(g, &lk, gen_i64(g, k->run ? k->run / 4 : k->kp / 4), "k4");
  LLVMValueRef k4 = k->run ? add(g, mul(g, i, k->run / 4), q) : q;
  LLVMValueRef s[MAX_NR];
  for (int j = 0; j < nr; j++) { /* block nb*nr + j, k group k4: lanes i32 */
    LLVMValueRef at = mul(g, add(g, mul(g, add(g, mul(g, nb, nr), gen_i64(g, j)), k->kp / 4), k4), lanes);
    s[j] = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, d->packS, at), "s");
    LLVMSetAlignment(s[j], 4);
  }
  for (int r = 0; r < mr; r++) {
    LLVMValueRef u32;
    if (k->run) {
      u32 = LLVMBuildLoad2(B, g->i32, gen_at(g, g->i8, run[r], add(g, mul(g, i, dot_run_stride(d)), mul(g, q, 4))), "");
      LLVMSetAlignment(u32, 1);
    } else {
      LLVMValueRef at = add(g, mul(g, add(g, u0 ? m0 : gen_i64(g, 0), gen_i64(g, r)), k->kp / 4), k4);
      u32 = gen_load(g, g->i32, urows, at);
    }
    LLVMValueRef u = LLVMBuildShuffleVector(B, LLVMBuildInsertElement(B, LLVMGetUndef(vi32), u32, LLVMConstInt(g->i32, 0, 0), ""),
                                            LLVMGetUndef(vi32), LLVMConstNull(vi32), "bcast");
    for (int j = 0; j < nr; j++) LLVMBuildStore(B, dot4(g, k, gen_get(g, acc[r][j]), u, s[j]), acc[r][j]);
  }
  gen_loop_end(g, &lk, 0);
  if (k->run) gen_loop_end(g, &lrun, 0);
}

/* what the tiles do: the products and the epilogue; a dW chunk's products, added to its
 * slice's accumulators; or the sum of the slices' accumulators less their corrections, and the
 * epilogue */
typedef enum { TILES_WHOLE, TILES_ADD, TILES_SUM } TileWork;

/* the tile's accumulators at `at` (i32s) in each slice's scratch, added up, less the slices'
 * corrections of its columns from n0 on: afterwards d->corr is NULL, for the epilogue */
static void sum_slices(Dot *d, LLVMValueRef bt, LLVMValueRef at, LLVMValueRef n0, LLVMValueRef acc[MAX_MR][MAX_NR]) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, (unsigned)k->lanes);
  LLVMValueRef sum[MAX_MR][MAX_NR], corr[MAX_NR];
  for (int64_t s = 0; s < k->slices; s++) {
    d->slice = gen_i64(g, s);
    dot_batch_views(d, bt);
    LLVMValueRef tile = gen_at(g, g->i32, d->accs, at);
    for (int j = 0; j < k->nr; j++) {
      LLVMValueRef c = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, d->corr, add(g, n0, gen_i64(g, j * k->lanes))), "corr");
      LLVMSetAlignment(c, 4);
      corr[j] = s ? LLVMBuildAdd(B, corr[j], c, "") : c;
      for (int r = 0; r < k->mr; r++) {
        LLVMValueRef v = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, tile, gen_i64(g, (int64_t)(r * k->nr + j) * k->lanes)), "");
        LLVMSetAlignment(v, 4);
        sum[r][j] = s ? LLVMBuildAdd(B, sum[r][j], v, "") : v;
      }
    }
  }
  for (int r = 0; r < k->mr; r++)
    for (int j = 0; j < k->nr; j++) LLVMBuildStore(B, LLVMBuildSub(B, sum[r][j], corr[j], ""), acc[r][j]);
  d->slice = NULL, d->corr = NULL;
}

static void compute(Dot *d, LLVMValueRef out, LLVMValueRef scale, LLVMValueRef bias, TileWork work) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  int mr = k->mr, nr = k->nr, lanes = k->lanes;
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, (unsigned)lanes);
  LLVMValueRef zero = LLVMConstNull(vi32);
  LLVMValueRef tile = gen_entry_alloca(g, LLVMArrayType(g->i32, (unsigned)(mr * nr * lanes)), "tile");
  Loop lrb, lnb, lr, lc;
  int64_t rblocks = k->mp / mr;
  LLVMValueRef part_sums = dot_chansums(d) ? dot_sums_begin(d) : NULL;
  LLVMValueRef rb = gen_loop_part(g, &lrb, d->batch * rblocks, "rowblock");
  LLVMValueRef bt = LLVMBuildSDiv(B, rb, gen_i64(g, rblocks), "bt"), m0 = mul(g, LLVMBuildSRem(B, rb, gen_i64(g, rblocks), ""), mr);
  dot_batch_views(d, bt);
  LLVMValueRef urows = d->packU; /* the block's U rows: packed here when per tile */
  int64_t u0 = 1;                /* whether urows starts at row 0 of U, not at row m0 */
  LLVMValueRef run[MAX_MR];      /* U in place: each row's first run */
  if (work == TILES_SUM)
    ;
  else if (k->run)
    dot_run_starts(d, m0, mr, run);
  else if (k->u_tile) {
    LLVMValueRef buf = gen_entry_alloca(g, LLVMArrayType(g->i8, (unsigned)(mr * k->kp)), "urows");
    LLVMSetAlignment(buf, 64);
    urows = buf, u0 = 0;
    Loop lu;
    LLVMValueRef r = gen_loop_begin(g, &lu, gen_i64(g, mr), "urow");
    dot_pack_u_row(d, bt, add(g, m0, r), gen_at(g, g->i8, urows, mul(g, r, k->kp)));
    gen_loop_end(g, &lu, 0);
  }
  LLVMValueRef nb = gen_loop_begin(g, &lnb, gen_i64(g, k->np / (lanes * nr)), "colblock");
  LLVMValueRef n0 = mul(g, nb, lanes * nr);
  LLVMValueRef acc[MAX_MR][MAX_NR];
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) acc[r][j] = gen_var(g, zero, "acc");
  /* a dW's accumulators, tile by tile in its slices' scratch */
  LLVMValueRef kept = mul(g, add(g, mul(g, LLVMBuildSRem(B, rb, gen_i64(g, rblocks), ""), k->np / (lanes * nr)), nb), mr * nr * lanes);
  if (work == TILES_ADD) tile = gen_at(g, g->i32, d->accs, kept); /* going on from the slice's earlier chunks */
  if (work == TILES_SUM) sum_slices(d, bt, kept, n0, acc);
  else
    for (int r = 0; r < mr; r++)
      for (int j = 0; j < nr; j++) {
        LLVMValueRef init = zero;
        if (work == TILES_ADD) {
          LLVMValueRef v = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, tile, gen_i64(g, (int64_t)(r * nr + j) * lanes)), "");
          LLVMSetAlignment(v, 4);
          init = LLVMBuildSelect(B, d->first, zero, v, "");
        }
        LLVMBuildStore(B, init, acc[r][j]);
      }
  if (work != TILES_SUM) products(d, nb, m0, urows, u0, run, acc);
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) {
      LLVMValueRef p = gen_at(g, g->i32, tile, gen_i64(g, (int64_t)(r * nr + j) * lanes));
      LLVMSetAlignment(LLVMBuildStore(B, gen_get(g, acc[r][j]), p), 4);
    }
  if (work == TILES_ADD) { /* the epilogue waits for the slices' sum */
    gen_loop_end(g, &lnb, 0);
    gen_loop_end(g, &lrb, 0);
    return;
  }
  LLVMBasicBlockRef edge, done;
  /* a tile wholly inside the product: its vectors go out straight from the accumulators */
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(B));
  LLVMBasicBlockRef whole = LLVMAppendBasicBlockInContext(g->ctx, fn, "whole");
  edge = LLVMAppendBasicBlockInContext(g->ctx, fn, "edge"), done = LLVMAppendBasicBlockInContext(g->ctx, fn, "written");
  LLVMBuildCondBr(B, LLVMBuildAnd(B, lt(g, m0, d->rows - mr + 1), lt(g, n0, d->cols - nr * lanes + 1), ""), whole, edge);
  LLVMPositionBuilderAtEnd(B, whole);
  if (part_sums) dot_sums_add_tile(d, part_sums, n0, acc);
  int transposed = dot_epilogue_transposes(d), planes = transposed && !k->swap;
  LLVMBasicBlockRef split = NULL;
  if (planes) { /* a convolution's pixels are contiguous only within one image */
    int64_t hw = d->ck->kind == CONV_FWD ? d->ck->Ho * d->ck->Wo : d->ck->H * d->ck->W;
    LLVMBasicBlockRef one = LLVMAppendBasicBlockInContext(g->ctx, fn, "one_image");
    split = LLVMAppendBasicBlockInContext(g->ctx, fn, "two_images");
    LLVMBuildCondBr(B, lt(g, rem_(g, m0, hw), hw - mr + 1), one, split);
    LLVMPositionBuilderAtEnd(B, one);
  }
  if (transposed) {
    for (int j = 0; j < nr; j++) {
      LLVMValueRef y[MAX_MR], n = add(g, n0, gen_i64(g, j * lanes));
      for (int rr = 0; rr < mr; rr++) y[rr] = dot_epilogue_values(d, add(g, m0, gen_i64(g, rr)), n, gen_get(g, acc[rr][j]), scale, bias);
      dot_epilogue_transposed(d, bt, m0, n, y, out);
    }
    LLVMBuildBr(B, done);
  }
  if (split) LLVMPositionBuilderAtEnd(B, split);
  if (!transposed || split) {
    for (int rr = 0; rr < mr; rr++)
      for (int j = 0; j < nr; j++)
        dot_epilogue_vector(d, bt, add(g, m0, gen_i64(g, rr)), add(g, n0, gen_i64(g, j * lanes)), gen_get(g, acc[rr][j]), out, scale, bias);
    LLVMBuildBr(B, done);
  }
  LLVMPositionBuilderAtEnd(B, edge);
  /* the edge tiles: element by element over the valid part */
  LLVMValueRef r = gen_loop_begin(g, &lr, gen_i64(g, mr), "r"), m = add(g, m0, r);
  LLVMValueRef c = gen_loop_begin(g, &lc, gen_i64(g, nr * lanes), "c"), n = add(g, n0, c);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(g->ctx, LLVMGetBasicBlockParent(LLVMGetInsertBlock(B)), "store");
  LLVMBasicBlockRef skip = LLVMAppendBasicBlockInContext(g->ctx, LLVMGetBasicBlockParent(LLVMGetInsertBlock(B)), "next");
  LLVMBuildCondBr(B, LLVMBuildAnd(B, lt(g, m, d->rows), lt(g, n, d->cols), ""), body, skip);
  LLVMPositionBuilderAtEnd(B, body);
  LLVMValueRef v = gen_load(g, g->i32, tile, add(g, mul(g, r, nr * lanes), c));
  if (d->corr) v = LLVMBuildSub(B, v, gen_load(g, g->i32, d->corr, n), "");
  LLVMValueRef row = k->swap ? n : m, colx = k->swap ? m : n; /* of the product as stored */
  LLVMValueRef y;
  if (dot_out_s16(d)) { /* the sum itself, as the vector epilogue passes it: float bits */
    y = LLVMBuildBitCast(B, v, g->f32, "sum");
    if (part_sums) dot_sums_add_one(d, out, colx, v);
  } else {
    y = LLVMBuildFMul(B, LLVMBuildSIToFP(B, v, g->f32, ""), scale, "deq");
    y = LLVMBuildFAdd(B, y, bias ? gen_load(g, g->f32, bias, colx) : gen_f32c(g, 0.0f), "y");
    if (d->gk && d->gk->relu) y = gen_relu(g, y);
  }
  dot_store_out(d, y, out, d->out_index(d, bt, row, colx), NULL);
  LLVMBuildBr(B, skip);
  LLVMPositionBuilderAtEnd(B, skip);
  gen_loop_end(g, &lc, 0);
  gen_loop_end(g, &lr, 0);
  LLVMBuildBr(B, done);
  LLVMPositionBuilderAtEnd(B, done);
  gen_loop_end(g, &lnb, 0);
  gen_loop_end(g, &lrb, 0);
  if (part_sums) dot_sums_end(d, part_sums, out);
}
#undef B

static LLVMValueRef generate(Dot *d, int has_bias, const char *name) {
  Gen *g = d->g;
  SQ_ASSERT(d->p->mr <= MAX_MR && d->p->nr <= MAX_NR);
  LLVMValueRef fn = gen_kernel_function(g, name);
  d->A = gen_input(g, 0), d->Bm = gen_input(g, 1);
  d->rows = d->p->swap ? d->N : d->M, d->cols = d->p->swap ? d->M : d->N;
  LLVMValueRef out = gen_arg(g, KA_OUT), bias = has_bias ? gen_input(g, 2) : NULL;
  LLVMValueRef scale = LLVMBuildFMul(g->b, gen_input_scale(g, 0), gen_input_scale(g, 1), "scale");
  if (dot_out_s16(d)) gen_out_scale(g, scale); /* the sums' scale is the tensor's */
  g->scratch = d->p->scratch;
  if (d->p->chunks) { /* dW: (dy's groups,) each slice's chunks, then the slices' sum and the epilogue */
    Phases ph;
    int sq = d->p->dyq != 0;
    gen_phases(g, &ph, sq ? 4 : 2);
    if (sq) { /* dy ShiftQuant'ed here: its scale is known from the next phase on */
      dot_dy_groups(d, &ph);
      gen_next_phase(g, &ph);
      scale = LLVMBuildFMul(g->b, dot_dy_scale(d), gen_input_scale(g, 1), "scale");
    }
    Loop ls, lc;
    int64_t C = d->p->chunks, S = d->p->slices;
    d->slice = gen_loop_part(g, &ls, S, "slice");
    LLVMValueRef c0 = div_(g, mul(g, d->slice, C), S), c1 = div_(g, mul(g, add(g, d->slice, gen_i64(g, 1)), C), S);
    g->part = gen_i64(g, 0), g->nparts = gen_i64(g, 1); /* a slice's work is one part's */
    d->chunk = gen_loop_range(g, &lc, c0, c1, "chunk");
    d->first = LLVMBuildICmp(g->b, LLVMIntEQ, d->chunk, c0, "first");
    if (d->p->unpacked) dot_unpack_x(d);
    if (sq) dot_quantize_dy(d);
    dot_pack(d);
    compute(d, out, scale, bias, TILES_ADD);
    gen_loop_end(g, &lc, 0);
    g->part = g->nparts = NULL;
    gen_loop_end(g, &ls, 0);
    d->slice = d->chunk = d->first = NULL;
    gen_next_phase(g, &ph);
    if (sq) scale = LLVMBuildFMul(g->b, dot_dy_scale(d), gen_input_scale(g, 1), "scale");
    compute(d, out, scale, bias, TILES_SUM);
    LLVMBuildRetVoid(g->b);
    return fn;
  }
  Phases ph;
  gen_phases(g, &ph, d->p->chlast ? 3 : 2);
  if (dot_chansums(d)) gen_conv_sums_zero(g, d->ck, out); /* before the last phase adds to them */
  if (d->p->chlast) {
    dot_channels_last(d);
    gen_next_phase(g, &ph);
  }
  dot_pack(d);
  gen_next_phase(g, &ph);
  compute(d, out, scale, bias, TILES_WHOLE);
  LLVMBuildRetVoid(g->b);
  return fn;
}

LLVMValueRef gen_gemm_dot(Gen *g, const GemmKernel *k, const char *name) {
  Dot d = {.g = g, .p = &k->dp, .batch = k->batch, .M = k->M, .N = k->N, .K = k->K, .elem = dot_gemm_elem, .out_index = dot_gemm_out, .gk = k};
  return generate(&d, k->bias, name);
}

LLVMValueRef gen_conv_dot(Gen *g, const ConvKernel *k, const char *name) {
  /* U in place: the reduction includes the zeros past each run's taps */
  Dot d = {.g = g, .p = &k->dp, .batch = 1, .M = k->gm, .N = k->gn, .K = k->dp.run ? k->dp.kp : k->gk, .elem = dot_conv_elem,
           .out_index = dot_conv_out, .ck = k};
  return generate(&d, k->bias, name);
}
