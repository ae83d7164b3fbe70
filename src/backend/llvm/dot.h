/* dot.h: what the dot-product GEMM's files share (gemm_dot.c: the tiles and the kernel;
 * dot_operands.c: reading and packing the operands; dot_pack_dw.c: convolution dW's vector
 * packing; dot_epilogue.c: dequantizing and storing a tile). */
#ifndef SQ_BACKEND_LLVM_DOT_H
#define SQ_BACKEND_LLVM_DOT_H
#include <llvm-c/Core.h>
#include "gen.h"

static inline LLVMValueRef add(Gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAdd(g->b, a, b, ""); }
static inline LLVMValueRef mul(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildMul(g->b, a, gen_i64(g, b), ""); }
static inline LLVMValueRef lt(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildICmp(g->b, LLVMIntSLT, a, gen_i64(g, b), ""); }
static inline LLVMValueRef lt_v(Gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildICmp(g->b, LLVMIntSLT, a, b, ""); }
static inline LLVMValueRef and_(Gen *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAnd(g->b, a, b, ""); }
static inline LLVMValueRef div_(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildSDiv(g->b, a, gen_i64(g, b), ""); }
static inline LLVMValueRef rem_(Gen *g, LLVMValueRef a, int64_t b) { return LLVMBuildSRem(g->b, a, gen_i64(g, b), ""); }
/* 0 <= v < n */
static inline LLVMValueRef in_range(Gen *g, LLVMValueRef v, int64_t n) {
  return LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntSGE, v, gen_i64(g, 0), ""), lt(g, v, n), "");
}

/* only when cond: the builder continues after it */
static inline void if_begin(Gen *g, LLVMValueRef cond, LLVMBasicBlockRef *after) {
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(g->b));
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(g->ctx, fn, "then");
  *after = LLVMAppendBasicBlockInContext(g->ctx, fn, "after");
  LLVMBuildCondBr(g->b, cond, then, *after);
  LLVMPositionBuilderAtEnd(g->b, then);
}
static inline void if_end(Gen *g, LLVMBasicBlockRef after) {
  LLVMBuildBr(g->b, after);
  LLVMPositionBuilderAtEnd(g->b, after);
}

/* C[b] = A[b] (M x K) * B[b] (K x N): how to read an operand element and where C goes */
typedef struct Dot Dot;
/* the walkers' callback: element kk of a U row or S column is v (0 in the padding) */
typedef void (*Visit)(Dot *d, void *ctx, LLVMValueRef kk, LLVMValueRef v);
struct Dot {
  Gen *g;
  const DotPlan *p;
  int64_t batch, M, N, K;
  /* A(i, kk) (which = 0) or B(kk, i) (which = 1) of entry bt as i32, for indices in range;
   * *valid, when set, says whether the element exists (a patch tap in the padding does not) */
  LLVMValueRef (*elem)(Dot *d, int which, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef kk, LLVMValueRef *valid);
  LLVMValueRef (*out_index)(Dot *d, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef j); /* of C(i, j) */
  const GemmKernel *gk; /* the kernel: one of the two */
  const ConvKernel *ck;
  LLVMValueRef A, Bm, packU, packS, corr; /* packU/packS/corr: this batch entry's */
  LLVMValueRef accs;                      /* dW's int32 accumulators, tile after tile */
  LLVMValueRef xbytes;                    /* dW's chunk of x unpacked from q4 */
  LLVMValueRef dybytes;                   /* dW's chunk of dy ShiftQuant'ed (dy_bits) */
  LLVMValueRef chunk;                     /* i64: dW's chunk, else NULL */
  LLVMValueRef first;                     /* i1: the chunk is its slice's first */
  LLVMValueRef slice;                     /* i64: dW's slice, whose scratch the views show */
  int64_t rows, cols;                     /* of the computed product (transposed when swap) */
};

enum { MAX_MR = 8, MAX_NR = 8 }; /* the largest tile */

/* ---- the operands (dot_operands.c) ---- */
LLVMValueRef dot_gemm_elem(Dot *d, int which, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef kk, LLVMValueRef *valid);
LLVMValueRef dot_gemm_out(Dot *d, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef j);
LLVMValueRef dot_conv_elem(Dot *d, int which, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef kk, LLVMValueRef *valid);
LLVMValueRef dot_conv_out(Dot *d, LLVMValueRef bt, LLVMValueRef i, LLVMValueRef j);
/* packU, packS, corr, accs, xbytes of entry bt (of slice d->slice in a dW) */
void dot_batch_views(Dot *d, LLVMValueRef bt);
LLVMValueRef dot_images(Dot *d, LLVMValueRef *n0); /* dW's images in the chunk: count, first in *n0 */
void dot_unpack_x(Dot *d);                          /* dW's phase: the chunk's x as bytes */
void dot_channels_last(Dot *d);                     /* forward and dx's phase 0 */
/* U in place (p->run): where U rows m0 .. m0 + mr - 1 start their first runs in the
 * channels-last copy; their next runs follow dot_run_stride bytes apart */
void dot_run_starts(Dot *d, LLVMValueRef m0, int mr, LLVMValueRef *start);
int64_t dot_run_stride(const Dot *d);
void dot_pack_u_row(Dot *d, LLVMValueRef bt, LLVMValueRef m, LLVMValueRef dst);
void dot_pack(Dot *d);                              /* the packing phase: S, and U when not per tile */
/* S column n's correction from its sum: 128 * sum when U is biased, added to the earlier
 * chunks' in a chunked dW */
void dot_store_correction(Dot *d, LLVMValueRef n, LLVMValueRef colsum);

/* ---- convolution dW ShiftQuanting its dy (dot_quant_dy.c) ---- */
LLVMValueRef dot_sq_params(Dot *d); /* kir_sq_params bytes at the end of scratch */
void dot_dy_groups(Dot *d, Phases *ph); /* two phases: the ranges, then the scale and groups */
LLVMValueRef dot_dy_scale(Dot *d);  /* dy's scale, once dot_dy_groups ran */
void dot_quantize_dy(Dot *d);       /* the chunk's dy into dybytes */
/* where dW reads dy: the chunk's bytes (image n - n0), or the input (image n) */
static inline LLVMValueRef dot_dy_source(Dot *d, LLVMValueRef n0, LLVMValueRef nl, LLVMValueRef *n) {
  *n = d->p->dyq ? nl : add(d->g, n0, nl);
  return d->p->dyq ? d->dybytes : d->A;
}

/* ---- convolution dW's vector packing (dot_pack_dw.c) ---- */
int dot_dw_rows_by_vector(const Dot *d); /* U rows of x's patches by masked vector loads */
void dot_pack_dw_patch_row(Dot *d, LLVMValueRef t, LLVMValueRef dst);
int dot_dw_dy_by_gather(const Dot *d);   /* S blocks of dy by gathers */
void dot_pack_dw_dy_block(Dot *d, LLVMValueRef blk);

/* ---- S blocks by 16 x 16 transposes of i32s in registers (dot_pack_s.c) ---- */
enum { DOT_TR = 16 }; /* a transpose's rows, and i32 lanes a row */
void dot_transpose16(Gen *g, LLVMValueRef *v);      /* v[16], 16 i32 each */
LLVMValueRef dot_byte_sums(Gen *g, LLVMValueRef v); /* per lane, the sum of an i32's four signed bytes */
/* nbytes q4 bytes of e as 2 * nbytes bytes: element 2j is byte j's low nibble, 2j + 1 its high
 * one, in two's complement when e is signed (nm_q4_get) */
LLVMValueRef dot_unpack_nibbles(Gen *g, KElem e, LLVMValueRef v, unsigned nbytes);
/* n (<= 16) elements of e from element `at` of src on, as 16 bytes (0 past n) */
LLVMValueRef dot_row_run(Dot *d, KElem e, LLVMValueRef src, LLVMValueRef at, LLVMValueRef n);
/* a GEMM whose S columns run along k in memory (a weight matrix's rows, say): S block blk from
 * 16 column loads of 64 k and a transpose per 16 k4s, the rest of k element by element */
int dot_s_by_transpose(const Dot *d);
void dot_pack_s_block(Dot *d, LLVMValueRef blk);

/* ---- the epilogue (dot_epilogue.c) ---- */
LLVMValueRef dot_epilogue_values(Dot *d, LLVMValueRef m, LLVMValueRef n, LLVMValueRef acc, LLVMValueRef scale, LLVMValueRef bias);
void dot_epilogue_vector(Dot *d, LLVMValueRef bt, LLVMValueRef m, LLVMValueRef n, LLVMValueRef acc, LLVMValueRef out,
                         LLVMValueRef scale, LLVMValueRef bias);
int dot_epilogue_transposes(const Dot *d);
void dot_epilogue_transposed(Dot *d, LLVMValueRef bt, LLVMValueRef m0, LLVMValueRef n, LLVMValueRef *y, LLVMValueRef out);
/* an s16 output: the epilogue's values are acc - correction, as float bits */
int dot_out_s16(const Dot *d);
/* y (a value or a vector of the epilogue's) to out[at], masked when mask is not NULL */
void dot_store_out(Dot *d, LLVMValueRef y, LLVMValueRef out, LLVMValueRef at, LLVMValueRef mask);

/* ---- a convolution's channel sums (dot_sums.c) ---- */
int dot_chansums(const Dot *d);
LLVMValueRef dot_sums_begin(Dot *d);             /* the part's own sums, zeroed, on its stack */
/* a whole tile's rows (accumulators less corrections) into the part's sums at columns n0 on */
void dot_sums_add_tile(Dot *d, LLVMValueRef part, LLVMValueRef n0, LLVMValueRef acc[][MAX_NR]);
void dot_sums_add_one(Dot *d, LLVMValueRef out, LLVMValueRef col, LLVMValueRef v); /* an edge element */
void dot_sums_end(Dot *d, LLVMValueRef part, LLVMValueRef out); /* the part's sums into the tensor's */
#endif
