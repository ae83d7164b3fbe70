/* dot_epilogue.c: a tile's outputs: (float)(acc - correction) * scale + bias (or + 0.0), the
 * folded relu, then stores: a vector per row where the output runs along the lanes, lane by
 * lane where it does not, or (convolution forward and dx) transposed in registers. An s16
 * output (a convolution's sums16) keeps acc - correction itself as int16: its i32 lanes travel
 * through the same shuffles as floats' bits, and are narrowed as they are stored. */
#include "dot.h"

#define B (g->b)

/* An accumulator vector's outputs: row m, columns n .. n + lanes - 1 of the product, all inside
 * it. Each lane computes what the element epilogue does, (float)(acc - corr) * scale + bias
 * (or + 0.0), then the folded relu. */
LLVMValueRef dot_epilogue_values(Dot *d, LLVMValueRef m, LLVMValueRef n, LLVMValueRef acc, LLVMValueRef scale, LLVMValueRef bias) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  unsigned lanes = (unsigned)k->lanes;
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, lanes), vf32 = LLVMVectorType(g->f32, lanes);
  LLVMValueRef corr = LLVMConstNull(vi32); /* d->corr NULL: acc has it subtracted (a dW's slices) */
  if (d->corr) {
    corr = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, d->corr, n), "corr");
    LLVMSetAlignment(corr, 4);
  }
  if (dot_out_s16(d)) return LLVMBuildBitCast(B, LLVMBuildSub(B, acc, corr, ""), vf32, "sums");
  LLVMValueRef zero = LLVMConstNull(vf32), splat_idx = LLVMConstNull(vi32);
  LLVMValueRef sv = LLVMBuildShuffleVector(B, LLVMBuildInsertElement(B, LLVMGetUndef(vf32), scale, LLVMConstInt(g->i32, 0, 0), ""),
                                           LLVMGetUndef(vf32), splat_idx, "");
  LLVMValueRef y = LLVMBuildFMul(B, LLVMBuildSIToFP(B, LLVMBuildSub(B, acc, corr, ""), vf32, ""), sv, "deq");
  LLVMValueRef b = zero; /* +0.0 in every lane, as the element epilogue adds */
  if (bias && !k->swap) { /* the bias runs along the columns: the lanes */
    b = LLVMBuildLoad2(B, vf32, gen_at(g, g->f32, bias, n), "bias");
    LLVMSetAlignment(b, 4);
  } else if (bias) { /* transposed: one output column, m */
    b = LLVMBuildShuffleVector(B, LLVMBuildInsertElement(B, LLVMGetUndef(vf32), gen_load(g, g->f32, bias, m), LLVMConstInt(g->i32, 0, 0), ""),
                               LLVMGetUndef(vf32), splat_idx, "");
  }
  y = LLVMBuildFAdd(B, y, b, "y");
  return d->gk && d->gk->relu ? gen_relu(g, y) : y;
}

int dot_out_s16(const Dot *d) { return d->ck && d->ck->out_s16; }
void dot_store_out(Dot *d, LLVMValueRef y, LLVMValueRef out, LLVMValueRef at, LLVMValueRef mask) {
  Gen *g = d->g;
  LLVMTypeRef t = LLVMTypeOf(y), et = g->f32;
  if (dot_out_s16(d)) {
    unsigned n = LLVMGetTypeKind(t) == LLVMVectorTypeKind ? LLVMGetVectorSize(t) : 0;
    et = LLVMInt16TypeInContext(g->ctx);
    y = LLVMBuildTrunc(B, LLVMBuildBitCast(B, y, n ? LLVMVectorType(g->i32, n) : g->i32, ""), n ? LLVMVectorType(et, n) : et, "");
  }
  LLVMValueRef p = gen_at(g, et, out, at);
  if (mask) gen_masked_store(g, y, p, mask);
  else LLVMSetAlignment(LLVMBuildStore(B, y, p), dot_out_s16(d) ? 2 : 4);
}

/* ...stored: a row of the output (GEMM, dW), or lane by lane (each lane another output plane) */
void dot_epilogue_vector(Dot *d, LLVMValueRef bt, LLVMValueRef m, LLVMValueRef n, LLVMValueRef acc, LLVMValueRef out,
                            LLVMValueRef scale, LLVMValueRef bias) {
  Gen *g = d->g;
  const DotPlan *k = d->p;
  LLVMValueRef y = dot_epilogue_values(d, m, n, acc, scale, bias);
  int contiguous = !k->swap && (d->gk || d->ck->kind == CONV_DW);
  if (contiguous) {
    dot_store_out(d, y, out, d->out_index(d, bt, m, n), NULL);
    return;
  }
  for (unsigned l = 0; l < (unsigned)k->lanes; l++) {
    LLVMValueRef nl = add(g, n, gen_i64(g, l));
    LLVMValueRef at = k->swap ? d->out_index(d, bt, nl, m) : d->out_index(d, bt, m, nl);
    dot_store_out(d, LLVMBuildExtractElement(B, y, LLVMConstInt(g->i32, l, 0), ""), out, at, NULL);
  }
}

/* A whole tile whose mr rows are contiguous in the output for each of its columns:
 * convolution forward and dx (mr pixels of one image, a plane per channel), and every swapped
 * product (the tile's rows are the output's columns). The tile's 16-lane vectors (row r,
 * columns) are transposed in registers into (column, rows 0..7) halves, one masked store of
 * mr values per column instead of a store per element. Three rounds of two-vector shuffles;
 * round t pairs up rows (or row groups) 2^t apart. */
enum { TR_ROWS = 8 };
int dot_epilogue_transposes(const Dot *d) {
  return (d->p->swap || (d->ck && d->ck->kind != CONV_DW)) && d->p->lanes == 16 && d->p->mr <= TR_ROWS;
}
static LLVMValueRef shuffle2(Gen *g, LLVMValueRef a, LLVMValueRef b, const int *idx) {
  LLVMValueRef m[16];
  for (int i = 0; i < 16; i++) m[i] = LLVMConstInt(g->i32, (unsigned long long)idx[i], 0);
  return LLVMBuildShuffleVector(B, a, b, LLVMConstVector(m, 16), "");
}
void dot_epilogue_transposed(Dot *d, LLVMValueRef bt, LLVMValueRef m0, LLVMValueRef n, LLVMValueRef *y, LLVMValueRef out) {
  Gen *g = d->g;
  int mr = d->p->mr, idx[16];
  LLVMTypeRef vf = LLVMVectorType(g->f32, 16);
  LLVMValueRef r[TR_ROWS], a[TR_ROWS], b[TR_ROWS], c[TR_ROWS];
  for (int i = 0; i < TR_ROWS; i++) r[i] = i < mr ? y[i] : LLVMGetUndef(vf);
  /* a[2p + h]: channels 8h + i/2, rows 2p + i%2 */
  for (int p = 0; p < 4; p++)
    for (int h = 0; h < 2; h++) {
      for (int i = 0; i < 16; i++) idx[i] = (i % 2) * 16 + 8 * h + i / 2;
      a[2 * p + h] = shuffle2(g, r[2 * p], r[2 * p + 1], idx);
    }
  /* b[4q + 2h + s]: channels 8h + 4s + i/4, rows 4q + i%4 (from a[2(2q) + h], a[2(2q+1) + h]) */
  for (int q = 0; q < 2; q++)
    for (int h = 0; h < 2; h++)
      for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 16; i++) idx[i] = ((i % 4) / 2) * 16 + (4 * s + i / 4) * 2 + i % 2;
        b[4 * q + 2 * h + s] = shuffle2(g, a[2 * (2 * q) + h], a[2 * (2 * q + 1) + h], idx);
      }
  /* c[4h + 2s + t]: channels 8h + 4s + 2t + i/8, rows i%8 (from b[2h + s] and b[4 + 2h + s]) */
  for (int h = 0; h < 2; h++)
    for (int s = 0; s < 2; s++)
      for (int t = 0; t < 2; t++) {
        for (int i = 0; i < 16; i++) idx[i] = ((i % 8) / 4) * 16 + (2 * t + i / 8) * 4 + i % 4;
        c[4 * h + 2 * s + t] = shuffle2(g, b[2 * h + s], b[4 + 2 * h + s], idx);
      }
  LLVMValueRef on[TR_ROWS], half[2][TR_ROWS];
  for (int i = 0; i < TR_ROWS; i++) {
    on[i] = LLVMConstInt(LLVMInt1TypeInContext(g->ctx), i < mr, 0);
    half[0][i] = LLVMConstInt(g->i32, (unsigned long long)i, 0), half[1][i] = LLVMConstInt(g->i32, (unsigned long long)(i + TR_ROWS), 0);
  }
  LLVMValueRef mask = LLVMConstVector(on, TR_ROWS);
  for (int v = 0; v < TR_ROWS; v++)
    for (int e = 0; e < 2; e++) { /* channel 2v + e of the 16 */
      LLVMValueRef vals = LLVMBuildShuffleVector(B, c[v], LLVMGetUndef(vf), LLVMConstVector(half[e], TR_ROWS), "");
      LLVMValueRef col = add(g, n, gen_i64(g, 2 * v + e));
      LLVMValueRef at = d->p->swap ? d->out_index(d, bt, col, m0) : d->out_index(d, bt, m0, col);
      dot_store_out(d, vals, out, at, mask);
    }
}
#undef B
