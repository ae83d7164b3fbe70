/* reduce.c: LLVM code for RedKernels: copies (reshape, flatten), reduce_sum in the reference's
 * row-major accumulation order, and maxpool forward/backward with the reference's tie rule (the
 * first maximum of a window, rows then columns; taps in the padding never win): a plane at a
 * time by maxpool.c where the windows neither overlap nor reach into padding. */
#include <llvm-c/Core.h>
#include "gen.h"

static LLVMValueRef at(Gen *g, LLVMValueRef base, LLVMValueRef i) { return gen_at(g, g->f32, base, i); }
static LLVMValueRef ld(Gen *g, LLVMValueRef base, LLVMValueRef i) { return gen_load(g, g->f32, base, i); }
static LLVMValueRef add(Gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(g->b, a, b, ""); }
static LLVMValueRef mul(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildMul(g->b, a, gen_i64(g, b), ""); }

/* the H*W plane pl of a [N, C, H, W] output */
static void zero_plane(Gen *g, const RedKernel *k, LLVMValueRef out, LLVMValueRef pl) {
  int64_t hw = k->dim[2] * k->dim[3];
  Loop l;
  LLVMValueRef i = gen_loop_begin(g, &l, gen_i64(g, hw), "z");
  LLVMBuildStore(g->b, LLVMConstReal(g->f32, 0.0), at(g, out, add(g, mul(g, pl, hw), i)));
  gen_loop_end(g, &l, 16);
}

/* reduce_sum, w consecutive outputs per unit of work, one per vector lane: the kept axes'
 * indices come from the first output's index; the reduced axes loop in row-major order, so
 * each lane adds its output's elements in the reference's order (ascending row-major index,
 * from 0), and the w independent chains hide the latency of the adds. The lanes differ in the
 * last kept axis, `lane_stride` elements of x apart. */
typedef struct { int w; int64_t lane_stride; LLVMTypeRef vt; } Lanes;

static LLVMValueRef load_lanes(Gen *g, const Lanes *ln, LLVMValueRef x, LLVMValueRef e) {
  if (ln->w == 1) return ld(g, x, e);
  LLVMValueRef v = LLVMGetUndef(ln->vt);
  for (int j = 0; j < ln->w; j++)
    v = LLVMBuildInsertElement(g->b, v, ld(g, x, add(g, e, gen_i64(g, j * ln->lane_stride))), LLVMConstInt(g->i32, (unsigned)j, 0), "");
  return v;
}

static void sum_reduced(Gen *g, const RedKernel *k, const Lanes *ln, int axis, LLVMValueRef e, const LLVMValueRef *kept,
                        LLVMValueRef x, LLVMValueRef acc) {
  if (axis == k->rank) {
    LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, ln->vt, acc, ""), load_lanes(g, ln, x, e), ""), acc);
    return;
  }
  if (k->out_stride[axis]) { /* kept: its index is fixed by the output */
    sum_reduced(g, k, ln, axis + 1, add(g, mul(g, e, k->dim[axis]), kept[axis]), kept, x, acc);
    return;
  }
  Loop l;
  LLVMValueRef i = gen_loop_begin(g, &l, gen_i64(g, k->dim[axis]), "ax");
  sum_reduced(g, k, ln, axis + 1, add(g, mul(g, e, k->dim[axis]), i), kept, x, acc);
  gen_loop_end(g, &l, 0);
}

static void reduce_sum(Gen *g, const RedKernel *k, LLVMValueRef x, LLVMValueRef out) {
  Lanes ln = {1, 0, g->f32};
  int last = -1; /* the last kept axis */
  for (int a = 0; a < k->rank; a++)
    if (k->out_stride[a]) last = a;
  if (last >= 0) {
    ln.w = 8;
    while (k->dim[last] % ln.w) ln.w /= 2;
    ln.lane_stride = 1;
    for (int a = last + 1; a < k->rank; a++) ln.lane_stride *= k->dim[a];
    if (ln.w > 1) ln.vt = LLVMVectorType(g->f32, (unsigned)ln.w);
  }
  Loop l;
  LLVMValueRef o = LLVMBuildMul(g->b, gen_loop_part(g, &l, k->out_n / ln.w, "group"), gen_i64(g, ln.w), "o");
  LLVMValueRef kept[SQ_MAX_RANK] = {0};
  for (int a = 0; a < k->rank; a++)
    if (k->out_stride[a]) /* the kept axes are the output's row-major axes */
      kept[a] = LLVMBuildSRem(g->b, LLVMBuildSDiv(g->b, o, gen_i64(g, k->out_stride[a]), ""), gen_i64(g, k->dim[a]), "");
  LLVMValueRef acc = gen_var(g, LLVMConstNull(ln.vt), "s");
  LLVMBuildStore(g->b, LLVMConstNull(ln.vt), acc);
  sum_reduced(g, k, &ln, 0, gen_i64(g, 0), kept, x, acc);
  LLVMValueRef st = LLVMBuildStore(g->b, LLVMBuildLoad2(g->b, ln.vt, acc, ""), at(g, out, o));
  LLVMSetAlignment(st, 4);
  gen_loop_end(g, &l, 0);
}

/* transpose: one loop per output axis; the source index walks x's strides in perm order */
static void transpose_axes(Gen *g, const RedKernel *k, int axis, LLVMValueRef e, LLVMValueRef src, const int64_t *xstride,
                           LLVMValueRef x, LLVMValueRef out) {
  if (axis == k->rank) {
    LLVMBuildStore(g->b, ld(g, x, src), at(g, out, e));
    return;
  }
  Loop l;
  int64_t n = k->dim[k->perm[axis]];
  LLVMValueRef i = gen_loop_begin(g, &l, gen_i64(g, n), "t");
  transpose_axes(g, k, axis + 1, add(g, mul(g, e, n), i), add(g, src, mul(g, i, xstride[k->perm[axis]])), xstride, x, out);
  gen_loop_end(g, &l, 0);
}

/* index of tap (kh, kw) of window (plane, oh, ow), 0 when it falls in the padding; *valid says which */
static LLVMValueRef tap(Gen *g, const RedKernel *k, LLVMValueRef plane, LLVMValueRef oh, LLVMValueRef ow, LLVMValueRef kh,
                        LLVMValueRef kw, LLVMValueRef *valid) {
  int64_t H = k->dim[2], W = k->dim[3];
  LLVMValueRef z = gen_i64(g, 0);
  LLVMValueRef ih = add(g, mul(g, oh, k->s), add(g, kh, gen_i64(g, -k->p)));
  LLVMValueRef iw = add(g, mul(g, ow, k->s), add(g, kw, gen_i64(g, -k->p)));
  *valid = LLVMBuildAnd(g->b,
      LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntSGE, ih, z, ""), LLVMBuildICmp(g->b, LLVMIntSLT, ih, gen_i64(g, H), ""), ""),
      LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntSGE, iw, z, ""), LLVMBuildICmp(g->b, LLVMIntSLT, iw, gen_i64(g, W), ""), ""), "");
  return LLVMBuildSelect(g->b, *valid, add(g, mul(g, add(g, mul(g, plane, H), ih), W), iw), z, "tap");
}

/* The flat index of the window's first maximum (see window_argmax in src/ops/pool.c). */
static LLVMValueRef argmax(Gen *g, const RedKernel *k, LLVMValueRef x, LLVMValueRef plane, LLVMValueRef oh, LLVMValueRef ow,
                           LLVMValueRef best) {
  int64_t H = k->dim[2], W = k->dim[3];
  LLVMBuildStore(g->b, gen_i64(g, -1), best);
  Loop lh, lw;
  LLVMValueRef kh = gen_loop_begin(g, &lh, gen_i64(g, k->k), "kh"), kw = gen_loop_begin(g, &lw, gen_i64(g, k->k), "kw");
  LLVMValueRef ih = add(g, mul(g, oh, k->s), add(g, kh, gen_i64(g, -k->p)));
  LLVMValueRef iw = add(g, mul(g, ow, k->s), add(g, kw, gen_i64(g, -k->p)));
  LLVMValueRef z = gen_i64(g, 0);
  LLVMValueRef valid = LLVMBuildAnd(g->b,
      LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntSGE, ih, z, ""), LLVMBuildICmp(g->b, LLVMIntSLT, ih, gen_i64(g, H), ""), ""),
      LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntSGE, iw, z, ""), LLVMBuildICmp(g->b, LLVMIntSLT, iw, gen_i64(g, W), ""), ""), "");
  LLVMValueRef i = LLVMBuildSelect(g->b, valid, add(g, mul(g, add(g, mul(g, plane, H), ih), W), iw), z, "i");
  LLVMValueRef b = LLVMBuildLoad2(g->b, g->i64, best, "best");
  LLVMValueRef none = LLVMBuildICmp(g->b, LLVMIntSLT, b, z, "");
  LLVMValueRef bigger = LLVMBuildFCmp(g->b, LLVMRealOGT, ld(g, x, i), ld(g, x, LLVMBuildSelect(g->b, none, i, b, "")), "");
  LLVMValueRef take = LLVMBuildAnd(g->b, valid, LLVMBuildOr(g->b, none, bigger, ""), "");
  LLVMBuildStore(g->b, LLVMBuildSelect(g->b, take, i, b, ""), best);
  gen_loop_end(g, &lw, 0), gen_loop_end(g, &lh, 0);
  return LLVMBuildLoad2(g->b, g->i64, best, "argmax");
}

LLVMValueRef gen_reduce(Gen *g, const RedKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name);
  LLVMValueRef in = gen_arg(g, KA_IN), out = gen_arg(g, KA_OUT);
  LLVMValueRef p[2];
  for (int i = 0; i < 2; i++) {
    LLVMValueRef idx = gen_i64(g, i);
    p[i] = LLVMBuildLoad2(g->b, g->ptr, LLVMBuildGEP2(g->b, g->ptr, in, &idx, 1, ""), "in");
  }
  Loop l1, l2, l3;
  if (k->kind == RED_COPY) {
    LLVMValueRef i = gen_loop_part(g, &l1, k->out_n, "e");
    LLVMBuildStore(g->b, ld(g, p[0], add(g, i, gen_i64(g, k->offset))), at(g, out, i));
    gen_loop_end(g, &l1, 16);
  } else if (k->kind == RED_SUM) {
    reduce_sum(g, k, p[0], out);
  } else if (k->kind == RED_FILL) {
    LLVMValueRef i = gen_loop_part(g, &l1, k->out_n, "e");
    LLVMBuildStore(g->b, LLVMConstReal(g->f32, (double)k->value), at(g, out, i));
    gen_loop_end(g, &l1, 16);
  } else if (k->kind == RED_TRANSPOSE) {
    gen_only_part0(g);
    int64_t xstride[SQ_MAX_RANK], st = 1;
    for (int i = k->rank - 1; i >= 0; i--) xstride[i] = st, st *= k->dim[i];
    transpose_axes(g, k, 0, gen_i64(g, 0), gen_i64(g, 0), xstride, p[0], out);
  } else if (k->kind == RED_GAP || k->kind == RED_GAP_GRAD) { /* mean of each H*W plane / its gradient */
    int64_t hw = k->dim[2] * k->dim[3];
    LLVMValueRef fhw = LLVMConstReal(g->f32, (double)(float)hw);
    LLVMValueRef pl = gen_loop_part(g, &l1, k->dim[0] * k->dim[1], "plane");
    if (k->kind == RED_GAP) {
      LLVMValueRef acc = gen_entry_alloca(g, g->f32, "s");
      LLVMBuildStore(g->b, LLVMConstReal(g->f32, 0.0), acc);
      LLVMValueRef i = gen_loop_begin(g, &l2, gen_i64(g, hw), "i");
      LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, g->f32, acc, ""), ld(g, p[0], add(g, mul(g, pl, hw), i)), ""), acc);
      gen_loop_end(g, &l2, 0);
      LLVMBuildStore(g->b, LLVMBuildFDiv(g->b, LLVMBuildLoad2(g->b, g->f32, acc, ""), fhw, ""), at(g, out, pl));
    } else {
      LLVMValueRef i = gen_loop_begin(g, &l2, gen_i64(g, hw), "i");
      LLVMBuildStore(g->b, LLVMBuildFDiv(g->b, ld(g, p[0], pl), fhw, ""), at(g, out, add(g, mul(g, pl, hw), i)));
      gen_loop_end(g, &l2, 16);
    }
    gen_loop_end(g, &l1, 0);
  } else if (k->kind == RED_AVGPOOL || k->kind == RED_AVGPOOL_GRAD) {
    /* every tap counts in the divisor k*k (padding included); padded taps add +0.0 to the
     * forward sum and nothing to the gradient, as the reference */
    int grad = k->kind == RED_AVGPOOL_GRAD;
    LLVMValueRef inv = LLVMConstReal(g->f32, (double)(1.0f / (float)(k->k * k->k))), acc = gen_entry_alloca(g, g->f32, "s");
    LLVMValueRef pl = gen_loop_part(g, &l1, k->dim[0] * k->dim[1], "plane");
    if (grad) zero_plane(g, k, out, pl); /* windows never leave their plane: planes split across parts */
    LLVMValueRef oh = gen_loop_begin(g, &l2, gen_i64(g, k->Ho), "oh"), ow = gen_loop_begin(g, &l3, gen_i64(g, k->Wo), "ow");
    LLVMValueRef o = add(g, mul(g, add(g, mul(g, pl, k->Ho), oh), k->Wo), ow);
    LLVMValueRef gv = grad ? LLVMBuildFMul(g->b, ld(g, p[0], o), inv, "g") : NULL;
    if (!grad) LLVMBuildStore(g->b, LLVMConstReal(g->f32, 0.0), acc);
    Loop lh, lw;
    LLVMValueRef kh = gen_loop_begin(g, &lh, gen_i64(g, k->k), "kh"), kw = gen_loop_begin(g, &lw, gen_i64(g, k->k), "kw");
    LLVMValueRef valid, i = tap(g, k, pl, oh, ow, kh, kw, &valid), zf = LLVMConstReal(g->f32, 0.0);
    if (grad) { /* taps in the padding touch nothing (another part may own element 0) */
      LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(g->ctx, fn, "tap"), next = LLVMAppendBasicBlockInContext(g->ctx, fn, "next");
      LLVMBuildCondBr(g->b, valid, yes, next);
      LLVMPositionBuilderAtEnd(g->b, yes);
      LLVMValueRef d = at(g, out, i);
      LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, g->f32, d, ""), gv, ""), d);
      LLVMBuildBr(g->b, next);
      LLVMPositionBuilderAtEnd(g->b, next);
    } else {
      LLVMValueRef v = LLVMBuildSelect(g->b, valid, ld(g, p[0], i), zf, "");
      LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, g->f32, acc, ""), v, ""), acc);
    }
    gen_loop_end(g, &lw, 0), gen_loop_end(g, &lh, 0);
    if (!grad) LLVMBuildStore(g->b, LLVMBuildFMul(g->b, LLVMBuildLoad2(g->b, g->f32, acc, ""), inv, ""), at(g, out, o));
    gen_loop_end(g, &l3, 0), gen_loop_end(g, &l2, 0), gen_loop_end(g, &l1, 0);
  } else if (kir_maxpool_plane_fits(k->k, k->s, k->p)) {
    int grad = k->kind == RED_MAXPOOL_GRAD;
    int64_t H = k->dim[2], W = k->dim[3];
    LLVMValueRef plane = gen_loop_part(g, &l1, k->dim[0] * k->dim[1], "plane");
    PoolPlane pp = {H, W, k->Ho, k->Wo, k->k, k->s, gen_pool_load_plain, at(g, grad ? p[1] : p[0], mul(g, plane, H * W)), NULL};
    LLVMValueRef pooled = mul(g, plane, k->Ho * k->Wo);
    gen_maxpool_plane(g, &pp, grad ? at(g, p[0], pooled) : NULL, k->relu, at(g, out, grad ? mul(g, plane, H * W) : pooled), NULL);
    gen_loop_end(g, &l1, 0);
  } else {
    int grad = k->kind == RED_MAXPOOL_GRAD;
    LLVMValueRef x = grad ? p[1] : p[0], best = gen_entry_alloca(g, g->i64, "best");
    LLVMValueRef plane = gen_loop_part(g, &l1, k->dim[0] * k->dim[1], "plane");
    if (grad) zero_plane(g, k, out, plane);
    LLVMValueRef oh = gen_loop_begin(g, &l2, gen_i64(g, k->Ho), "oh"), ow = gen_loop_begin(g, &l3, gen_i64(g, k->Wo), "ow");
    LLVMValueRef at_out = add(g, mul(g, add(g, mul(g, plane, k->Ho), oh), k->Wo), ow);
    LLVMValueRef m = argmax(g, k, x, plane, oh, ow, best);
    if (grad) {
      LLVMValueRef d = at(g, out, m);
      LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, g->f32, d, ""), ld(g, p[0], at_out), ""), d);
    } else {
      LLVMBuildStore(g->b, ld(g, x, m), at(g, out, at_out));
    }
    gen_loop_end(g, &l3, 0), gen_loop_end(g, &l2, 0);
    if (grad && k->relu) { /* the folded relu_grad, once the plane's sums are done */
      int64_t hw = k->dim[2] * k->dim[3];
      LLVMValueRef i = gen_loop_begin(g, &l2, gen_i64(g, hw), "e"), e = add(g, mul(g, plane, hw), i);
      LLVMBuildStore(g->b, gen_relu_grad(g, ld(g, out, e), ld(g, x, e)), at(g, out, e));
      gen_loop_end(g, &l2, 0);
    }
    gen_loop_end(g, &l1, 0);
  }
  LLVMBuildRetVoid(g->b);
  return fn;
}
