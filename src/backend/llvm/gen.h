/* gen.h: what the LLVM backend's files share: the context, common types, counted loops. */
#ifndef SQ_BACKEND_LLVM_GEN_H
#define SQ_BACKEND_LLVM_GEN_H
#include <llvm-c/Core.h>
#include "llvm_backend.h"

typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef i8, i32, i64, f32, f64, ptr, kernel_type, args_type;
  int64_t phases, scratch; /* of the kernel being generated: its entry in the kernel table */
  /* NULL: the kernel's part and nparts parameters. Set (to 0 and 1) while generating work that
   * one part does alone, so that the loops in it that split work in parts take all of it. */
  LLVMValueRef part, nparts;
} Gen;

typedef struct { LLVMBasicBlockRef head, exit; LLVMValueRef iv; } Loop;

/* ---- the kernel calling convention (args.c) ---- */
/* The fields of KernelArgs (src/interp/interp.h), in its order. */
typedef enum { KA_IN, KA_SCALES, KA_OUT, KA_SCRATCH, KA_SEED, KA_STEP, KA_LR, KA_TRAINING, KA_FAILED, KA_OUT_SCALE,
               KA_OUT_UNSIGNED, KA_COUNT } KernelArg;
void gen_args_init(Gen *g); /* the types: args_type, kernel_type */
/* A function void(KernelArgs *a, i64 phase, i64 part, i64 nparts) with internal linkage; the
 * builder is at its entry. The runtime calls each phase once per part (in parallel), phase
 * after phase; each call computes a fixed share of the phase's work, so the bits never depend
 * on nparts. */
LLVMValueRef gen_kernel_function(Gen *g, const char *name);
LLVMValueRef gen_arg(Gen *g, KernelArg a);      /* the field's value */
LLVMValueRef gen_arg_addr(Gen *g, KernelArg a); /* its address */
LLVMValueRef gen_input(Gen *g, int i);          /* in[i] */
LLVMValueRef gen_input_scale(Gen *g, int i);    /* scales[i] */
LLVMValueRef gen_part(Gen *g);
LLVMValueRef gen_nparts(Gen *g);
/* if (cond) a->failed = 1: the runtime then runs the node's reference body, which explains */
void gen_fail_if(Gen *g, LLVMValueRef cond);
/* a->out_scale = scale, from part 0 (the output of an s16 or quantized tensor's kernel) */
void gen_out_scale(Gen *g, LLVMValueRef scale);
/* A body in phases: gen_phases switches on the phase and leaves the builder in phase 0;
 * gen_next_phase returns from the current one and moves to the next. The last phase ends
 * with the caller's LLVMBuildRetVoid. */
enum { GEN_MAX_PHASES = 4 };
typedef struct { LLVMBasicBlockRef block[GEN_MAX_PHASES]; int n, current; } Phases;
void gen_phases(Gen *g, Phases *p, int n);
void gen_next_phase(Gen *g, Phases *p);

/* ---- values ---- */
LLVMValueRef gen_i64(Gen *g, int64_t v);
LLVMValueRef gen_f32c(Gen *g, float v);
LLVMValueRef gen_f64c(Gen *g, double v);
LLVMValueRef gen_at(Gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef i);   /* &base[i] */
LLVMValueRef gen_load(Gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef i); /* base[i] */
void gen_store(Gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i);       /* base[i] = v */
/* nm_relu on a float or a vector of floats: x unless x <= 0 (a NaN passes: unordered) */
LLVMValueRef gen_relu(Gen *g, LLVMValueRef x);
LLVMValueRef gen_relu_grad(Gen *g, LLVMValueRef dy, LLVMValueRef x); /* nm_relu_grad: x > 0 ? dy : 0 */
/* element idx of an integer operand as i32: a byte, or a nibble of a packed (q4) one */
LLVMValueRef gen_load_q(Gen *g, KElem e, LLVMValueRef base, LLVMValueRef idx);
/* a q4 nibble (an i32 in 0..15) as its value: itself, or two's complement when signed */
LLVMValueRef gen_q4_value(Gen *g, KElem e, LLVMValueRef nibble);
LLVMValueRef gen_libm(Gen *g, const char *name, LLVMValueRef arg);               /* double name(double) */
LLVMValueRef gen_ldexpf(Gen *g, LLVMValueRef x, int e);                           /* libm's ldexpf(x, e) */
LLVMValueRef gen_intrinsic(Gen *g, const char *name, LLVMValueRef x);             /* llvm.fabs, .floor... on x's type */
/* a * b + c, fused where the target fuses: only for a product that is exact (two floats
 * widened to double), where fused and unfused give the same bits */
LLVMValueRef gen_fmuladd(Gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);
LLVMValueRef gen_finite(Gen *g, LLVMValueRef x);                                  /* i1: x is neither NaN nor Inf */
LLVMValueRef gen_fmax(Gen *g, LLVMValueRef a, LLVMValueRef m);                    /* a > m ? a : m, as the C code */
/* n lanes of v; the i64 lane numbers 0 .. n - 1 (n <= 64) */
LLVMValueRef gen_splat(Gen *g, LLVMValueRef v, unsigned n);
/* scalar c in every lane of like's type when like is a vector (c itself otherwise, or when c is one) */
LLVMValueRef gen_splat_like(Gen *g, LLVMValueRef c, LLVMValueRef like);
LLVMValueRef gen_iota(Gen *g, unsigned n);
/* llvm.masked.load / store / gather, any alignment: lanes off in the mask are not touched
 * (a load or gather gives `pass` there) */
LLVMValueRef gen_masked_load(Gen *g, LLVMTypeRef vt, LLVMValueRef ptr, LLVMValueRef mask, LLVMValueRef pass);
void gen_masked_store(Gen *g, LLVMValueRef v, LLVMValueRef ptr, LLVMValueRef mask);
LLVMValueRef gen_masked_gather(Gen *g, LLVMTypeRef vt, LLVMValueRef ptrs, LLVMValueRef mask, LLVMValueRef pass);
/* A scalar accumulator in a stack slot (promoted to a register by the optimizer). */
LLVMValueRef gen_var(Gen *g, LLVMValueRef init, const char *name);
LLVMValueRef gen_get(Gen *g, LLVMValueRef var);

/* ---- random numbers (rng.c): rng_uniform and rng_uniform_halves of runtime/rng.h ---- */
LLVMValueRef gen_rng_key(Gen *g, uint64_t stream);                 /* the index-independent part */
LLVMValueRef gen_rng_uniform(Gen *g, LLVMValueRef key, LLVMValueRef index);
LLVMValueRef gen_rng_uniform_halves(Gen *g, LLVMValueRef key, LLVMValueRef index);
/* draws index .. index + 15 (index even) of rng_uniform_halves: 8 hashes */
LLVMValueRef gen_rng_uniform_halves16(Gen *g, LLVMValueRef key, LLVMValueRef index);

/* A stack slot in the function's entry block (promoted to a register by the optimizer). */
LLVMValueRef gen_entry_alloca(Gen *g, LLVMTypeRef t, const char *name);
/* for (iv = 0; iv < n; iv++): returns iv with the builder in the body. */
LLVMValueRef gen_loop_begin(Gen *g, Loop *l, LLVMValueRef n, const char *name);
/* for (iv = n*part/nparts; iv < n*(part+1)/nparts; iv++): this call's share of the loop. */
LLVMValueRef gen_loop_part(Gen *g, Loop *l, int64_t n, const char *name);
/* this call's share [*lo, *hi) of n units of work, as gen_loop_part takes it */
void gen_part_range(Gen *g, int64_t n, LLVMValueRef *lo, LLVMValueRef *hi);
/* for (iv = lo; iv < hi; iv++) */
LLVMValueRef gen_loop_range(Gen *g, Loop *l, LLVMValueRef lo, LLVMValueRef hi, const char *name);
/* Kernels whose outputs cannot be split (sums into shared outputs) do all the work in part 0. */
void gen_only_part0(Gen *g);
/* Closes the loop; vec > 1 asks the vectorizer for that width (llvm.loop metadata). */
void gen_loop_end(Gen *g, Loop *l, int vec);

/* ---- max pooling of one plane (maxpool.c) ---- */
/* Planes [H, W] pooled into [Ho, Wo] by k x k windows s apart (kir_maxpool_plane_fits); load gives the input at plane
 * element e: a float (mask NULL), or the floats from e in a vector of type t, lanes off in mask
 * undefined. */
typedef struct PoolPlane PoolPlane;
struct PoolPlane {
  int64_t H, W, Ho, Wo, k, s;
  LLVMValueRef (*load)(Gen *g, const PoolPlane *pp, LLVMTypeRef t, LLVMValueRef e, LLVMValueRef mask);
  LLVMValueRef x; /* the plane's input, for gen_pool_load_plain */
  void *ctx;
};
LLVMValueRef gen_pool_load_plain(Gen *g, const PoolPlane *pp, LLVMTypeRef t, LLVMValueRef e, LLVMValueRef mask);
/* dy NULL: out = each window's first maximum ([Ho, Wo]), and when codes is not NULL each
 * window's code there (maxpool_codes_ref, relu's mask included); else out ([H, W]) = dy at each
 * window's first maximum, 0 elsewhere, and with relu masked where the input is <= 0: from the
 * plane's values, or when codes is not NULL from the codes alone */
void gen_maxpool_plane(Gen *g, const PoolPlane *pp, LLVMValueRef dy, int relu, LLVMValueRef out, LLVMValueRef codes);

LLVMValueRef gen_gemm(Gen *g, const GemmKernel *k, const char *name);
LLVMValueRef gen_gemm_dot(Gen *g, const GemmKernel *k, const char *name); /* k->dp.dot != DOT_NONE */
LLVMValueRef gen_conv_dot(Gen *g, const ConvKernel *k, const char *name); /* k->dp.dot != DOT_NONE */
LLVMValueRef gen_conv(Gen *g, const ConvKernel *k, const char *name);
/* a convolution's channel sums (chansums; dot_sums.c): where they lie after its s16 values in
 * out, and part 0 zeroing them (in a phase before any part adds to them) */
LLVMValueRef gen_conv_sums(Gen *g, const ConvKernel *k, LLVMValueRef out);
void gen_conv_sums_zero(Gen *g, const ConvKernel *k, LLVMValueRef out);
LLVMValueRef gen_elementwise(Gen *g, const EwKernel *k, const char *name);
LLVMValueRef gen_reduce(Gen *g, const RedKernel *k, const char *name);
LLVMValueRef gen_quant(Gen *g, const ChanKernel *k, const char *name);
/* ShiftQuant (runtime/numerics.c's nm_shiftquant) in pieces that the shiftquant kernel and a
 * dW quantizing its own dy share. params: kir_sq_params bytes (inv, the output scale, each
 * channel's group, each channel's range). gen_sq_ranges: the part's channels' ranges of x
 * [outer, C, inner], read, or (given) copied from float bits kept after x's values (a
 * batchnorm dx's), failing on a NaN or Inf either way; gen_sq_groups takes R, the scale and
 * the groups from C ranges (part 0's work); gen_sq_row rounds row `row` (channel row % C) of
 * x [rows x inner] into q, element e at q[e - qfirst], read at x[e - xfirst] (xfirst NULL: 0). */
typedef struct {
  LLVMValueRef x, q, qfirst, params;
  int64_t channels, inner;
  int groups, bits;
  LLVMValueRef xfirst;
} SqRows;
void gen_sq_set_scale(Gen *g, LLVMValueRef params); /* the output's scale from params, signed */
void gen_sq_ranges(Gen *g, LLVMValueRef x, int64_t outer, int64_t C, int64_t inner, int given, LLVMValueRef ranges);
void gen_sq_groups(Gen *g, LLVMValueRef ranges, int64_t C, int G, int bits, LLVMValueRef params);
void gen_sq_row(Gen *g, const SqRows *r, LLVMValueRef row, LLVMValueRef key);
LLVMValueRef gen_norm(Gen *g, const ChanKernel *k, const char *name);
LLVMValueRef gen_batchnorm(Gen *g, const ChanKernel *k, const char *name); /* from saved statistics, L1 or L2 */
LLVMValueRef gen_rows(Gen *g, const ChanKernel *k, const char *name);
LLVMValueRef gen_chan(Gen *g, const ChanKernel *k, const char *name); /* one of the three, by op */
#endif
