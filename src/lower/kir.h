/* kir.h: the kernel IR, the level of loops: one kernel per graph node that a code generator
 * compiles, with its loop bounds, element strides and operand types fixed, and the vector width
 * of its innermost loop chosen for the target. `lower` makes every such decision once; backends
 * translate kernels and decide nothing. Nodes without a kernel run their reference body. */
#ifndef SQ_LOWER_KIR_H
#define SQ_LOWER_KIR_H
#include "../ir/graph.h"

/* Operand elements: float32, int8, uint8, and the packed 4-bit forms of the last two (q4:
 * two a byte, runtime/numerics.h). */
typedef enum { KE_F32, KE_I8, KE_U8, KE_I4, KE_U4 } KElem;
static inline int kelem_unsigned(KElem e) { return e == KE_U8 || e == KE_U4; }
static inline int kelem_packed(KElem e) { return e == KE_I4 || e == KE_U4; }

/* The target's 4-byte integer dot product: none (scalar loops), AVX-512 VNNI vpdpbusd (u8 x s8
 * into 16 i32 lanes), AArch64 sdot (s8 x s8 into 4 i32 lanes), AVX2 vpmaddubsw + vpmaddwd
 * (u8 x s8 pairs into saturating i16, then into 8 i32 lanes: used only where no pair can
 * saturate, so it is exact). */
typedef enum { DOT_NONE, DOT_VNNI, DOT_SDOT, DOT_AVX2, DOT_COUNT } DotIsa;

/* Register tiles of the dot-product kernels, per ISA: mr rows x nr vectors of columns, held in
 * mr*nr accumulators (defaults, or sqc --tune FILE). A narrower output takes fewer vectors and
 * more rows (lower.c's choose_dot). */
typedef struct { int mr, nr; } DotTile;
typedef struct { DotTile tile[DOT_COUNT]; } Tuning;
void tuning_defaults(Tuning *t);
int dot_lanes(DotIsa d);     /* i32 lanes of the ISA's vector */
int dot_registers(DotIsa d); /* its vector registers */

/* Integer GEMMs (and convolutions viewed as GEMMs: C[M x N] = A[M x K] * B[K x N]) on a
 * dot-product ISA. Both operands are packed (phase 0) into scratch: the broadcast side U as rows
 * of kp bytes, the vector side S as blocks of `lanes` columns of 4-byte k groups; then
 * (phase 1) each part takes blocks of mr rows and walks the columns nr vectors at a time with
 * mr*nr accumulators. swap: U is B transposed (C is computed transposed), because vpdpbusd
 * wants the unsigned operand in U. bias_u: U is signed, so +128 makes it unsigned and 128 times
 * the column sums of S is subtracted; int32 wraps and the exact result fits, so this is exact. */
typedef struct {
  DotIsa dot;           /* DOT_NONE: the scalar loops */
  int lanes, mr, nr, swap, bias_u;
  int u_tile;           /* U is packed per block of mr rows, on the stack, right before its tiles
                           (an implicit GEMM: no patch matrix); else all of U in phase 0 */
  int u_transposed;     /* U's rows lie side by side in memory (a transposed operand): all of U
                           is packed in phase 0, 16 rows x 16 k at a time by byte transposes */
  int64_t kp, mp, np;   /* K padded to 4, U rows padded to mr, S columns padded to lanes * nr */
  /* convolution dW: the reduction (pixels of the batch) runs in chunks of `chunk_images`
   * whole images, kp bytes each (padded to 4): each chunk packs both operands (an im2col of
   * `chunk_images` images, never of the batch), then adds its products into int32
   * accumulators. The chunks fall into `slices` fixed runs of consecutive chunks, each with its
   * own scratch (buffers and accumulators): a part takes whole slices and does all of their
   * work alone (phase 0), so the threads meet once, not at every chunk. Phase 1 adds the
   * slices' accumulators (integer sums: exact in any order) and runs the epilogue. x in q4 is
   * first unpacked, a chunk at a time, into `unpacked` bytes. chunks = 0: not a dW. */
  int64_t chunk_images, chunks, slices, unpacked;
  int64_t dyq;          /* dW ShiftQuanting its dy (ConvKernel's dy_bits): bytes of a chunk's
                           quantized dy, after its unpacked x in each slice's scratch */
  int64_t chlast;       /* convolution forward and dx: bytes of the channels-last copy of the
                           activation (phase 0), whose taps are then runs of channels */
  int64_t run;          /* convolution forward and dx of stride 1: U is never packed. The copy
                           has `pad` pixels of padding on every side, so a kernel row's taps
                           are one run of k * cin bytes, read in place: U row m is k runs of
                           `run` bytes (k * cin up to a multiple of 4: the bytes past it meet
                           zero weights in S) and kp = k * run. 0: U is packed. */
  int64_t pad;
  int64_t scratch;      /* bytes: packed U (unless u_tile), packed S and the corrections, per batch
                           entry (dW: per slice, with its accumulators and unpacked x), or chlast */
} DotPlan;

/* out[b][m][n] = sum_k A[b][m][k] * B[b][k][n], accumulated in ascending k (float32 adds, or
 * int32), then * (scale_a * scale_b) for integer operands, then + bias[n]. Element (m,k) of A
 * is at b*a_bs + m*a_sm + k*a_sk; element (k,n) of B at b*b_bs + k*b_sk + n*b_sn. */
typedef struct {
  int node;
  int64_t batch, M, N, K;
  int64_t a_bs, a_sm, a_sk, b_bs, b_sk, b_sn;
  KElem a, b;
  int bias;  /* input 2 is a bias of N floats */
  int relu;  /* a relu folded in by the fuse pass: applied as each output is written */
  int vec;   /* vector width (lanes) of the loop over n */
  DotPlan dp;
} GemmKernel;

/* Convolution (conv2d, qconv2d and their gradients), NCHW, every tap in the padding skipped:
 *   fwd: y[n,o,oh,ow] = (sum over c in o's group, kh, kw of x*w) * scale + bias[o]
 *   dx:  dx[n,c,ih,iw] = (sum over o in c's group, kh, kw with oh*s - p + kh = ih ... of dy*w) * scale
 *   dw:  dw[o,c,kh,kw] = (sum over n, oh, ow of dy*x) * scale
 * Each output is one dot product. Float ones add in the reference's order (fwd: c, kh, kw
 * ascending; dx: o ascending, then kh and kw descending, i.e. output rows and columns ascending;
 * dw: n, oh, ow ascending); integer ones are exact in any order and use the same loops. */
typedef enum { CONV_FWD, CONV_DX, CONV_DW } ConvKind;
typedef struct {
  int node;
  ConvKind kind;
  int64_t N, C, H, W, O, Ho, Wo, k, s, p, g;
  KElem a, b; /* fwd: x, w; dx: dy, w; dw: dy, x */
  int bias;   /* fwd: input 2 is a bias of O floats */
  int out_s16; /* fwd: the output is s16: each sum as int16, the scale sa * sb its tensor's */
  int chansums; /* fwd, s16: each output channel's sum after the values (ops.def's chansums) */
  /* dw with dy_bits > 0 (ops.def): input 0 is dy as floats, and the kernel ShiftQuants it: two
   * first phases take the channels' ranges, then the scale and each channel's group, into the
   * last kir_sq_params bytes of scratch; then dy becomes bytes (dot kernels: a chunk at a time,
   * right before packing it; the scalar loops: all of it, in a phase) that are read as i8 */
  int dy_bits, dy_groups, dy_ranges; /* dy_ranges: they follow dy's values, else read from dy */
  uint64_t dy_stream;
  /* as a GEMM (integer, one group): fwd: [N*Ho*Wo x k*k*C] patches of x times w transposed;
   * dx: [N*H*W x k*k*O] patches of dy times w; dw: dy as [O x N*Ho*Wo] times patches of x.
   * The reduction of fwd and dx runs over (kh, kw, channel): a tap is a run of channels in the
   * channels-last copy. */
  int64_t gm, gn, gk;
  DotPlan dp;
} ConvKernel;

/* Elementwise work over n elements (relu, relu_grad, gelu, gelu_grad, add, mul, mse_grad,
 * sgd_update, and mse, which sums them); add and mul repeat their second operand every `inner`
 * elements; softmax and softmax_grad work on rows of `inner` elements. sgd_update reads the
 * step's learning rate. */
typedef struct {
  int node;
  OpCode op;
  int64_t n, inner;
  float momentum, weight_decay;
  int nesterov;
  double sign; /* mse_grad */
  int vec;
} EwKernel;

/* Data movement and reductions over a row-major x of up to SQ_MAX_RANK axes:
 *   reduce_sum: out[index of the kept axes] += x[e], e in row-major order (the reference's order)
 *   copy (reshape, flatten, row): out[e] = x[offset + e]
 *   maxpool2d / maxpool2d_grad: the first maximum of each window (rows, then columns)
 *   avgpool2d / _grad: window sums (padding counts in the divisor k*k), global_avgpool / _grad
 *   transpose: out in row-major order reads x through perm; fill: a constant */
typedef enum { RED_SUM, RED_COPY, RED_MAXPOOL, RED_MAXPOOL_GRAD, RED_AVGPOOL, RED_AVGPOOL_GRAD, RED_GAP, RED_GAP_GRAD,
               RED_TRANSPOSE, RED_FILL } RedKind;
typedef struct {
  int node;
  RedKind kind;
  int rank;
  int64_t dim[SQ_MAX_RANK];
  int64_t out_stride[SQ_MAX_RANK]; /* RED_SUM: stride of axis i in the output, 0 when reduced */
  int64_t out_n;
  int64_t k, s, p, Ho, Wo;         /* pooling: x is [N, C, H, W] = dim[0..3] */
  int64_t perm[SQ_MAX_RANK];       /* transpose */
  float value;                     /* fill */
  int relu;                        /* maxpool_grad: the relu_grad the fuse pass folded in */
  int64_t offset;                  /* copy: of the first element read (row) */
} RedKernel;

/* Ops over the [outer, channels, inner] view of their main tensor, with a reduction per
 * channel (or over all of it) before their elementwise work, in the reference's order of
 * operations (numerics.c for quantize, shiftquant and the L1 norms):
 *   quantize: absmax over fixed blocks of `block` elements, then the scale, then q (3 phases)
 *   shiftquant: per-channel ranges, then groups and scale, then stochastic rounding (3 phases)
 *   l1_/batchnorm, l1_/layernorm and their _dx: one channel (row) per unit of work; the
 *   _dgamma of a layernorm sums across rows: row statistics first, then columns (2 phases)
 *   cross_entropy (one sum over rows) and its gradient (rows), embedding (positions) and its
 *   gradient (columns of the table, positions in order), dropout and its gradient (elements),
 *   adam_update (elements). */
typedef struct {
  int node;
  OpCode op;
  int64_t outer, channels, inner;
  int64_t block, blocks;  /* quantize */
  int bits, groups, is_unsigned;
  int packed;             /* quantize: the output is q4, two values a byte */
  int relu;               /* batchnorm: a relu folded in by the fuse pass, on the output */
  int l2;                 /* batchnorm from saved statistics: L2 (variance), else L1 */
  int64_t pool_k, pool_s; /* batchnorm_pool and its gradients: the max pooling's window and stride */
  int64_t H, W, Ho, Wo;   /* (inner = H * W), and the pooled planes */
  int ranges;             /* a batchnorm dx: keeps its channels' ranges after dx (each row's in
                             scratch); shiftquant: takes them from after its input's values */
  int sq_out;             /* a batchnorm dx: ShiftQuants dx (bits, groups, stream) into a q8
                             output, each row computed twice: for the ranges, then the rounding */
  int extremes;           /* batchnorm dparams: keeps the classes' extremes of g (ops.def); an L1
                             dx with sq_out: its ranges from them, each row computed once */
  int per_inner;          /* norms: gamma and beta per inner position (layernorm) */
  int x_s16;              /* batchnorms: x is s16 (a convolution's sums and their scale) */
  int int_stats;          /* batchnorm_stats of s16 x: integer L1 statistics (nm_bn_int_stats) */
  int chansums;           /* int_stats: each channel's sum of x is given after x (ops.def) */
  int64_t vocab;          /* embedding */
  uint64_t stream;        /* shiftquant (and a batchnorm dx's sq_out), dropout */
  double eps, momentum;   /* norms (as written: the L2 forms compute with the doubles) */
  float p;                /* dropout */
  double beta1, beta2;    /* adam_update (eps above), as written: its bias corrections use the doubles */
  float weight_decay;
  int64_t scratch;        /* bytes kept between phases */
} ChanKernel;

/* ShiftQuant's parameters in a kernel's scratch: inv = Qmax / R, the output scale, each
 * channel's group as an i32, then each channel's range */
static inline int64_t kir_sq_params(int64_t channels) { return 4 * (2 + 2 * channels); }

/* Scratch of the batchnorm kernels (src/backend/llvm/batchnorm_rows.c), channels rounded up to 16:
 * KIR_BN_ACCS regions of one 16-lane vector of 8-byte sums per channel (a channel's sums, or
 * dparams' extremes, kept between its rows while the rows are read in memory order), then
 * KIR_BN_CONSTS regions of one 4-byte value per channel (the statistics' means, or the
 * per-channel constants of forward and dx). */
enum { KIR_BN_ACCS = 8, KIR_BN_ACC_BYTES = 16 * 8, KIR_BN_CONSTS = 10 };
static inline int64_t kir_bn_channels(int64_t channels) { return (channels + 15) / 16 * 16; }
static inline int64_t kir_bn_scratch(int64_t channels) {
  return kir_bn_channels(channels) * (KIR_BN_ACCS * KIR_BN_ACC_BYTES + KIR_BN_CONSTS * 4);
}

/* The plane kernels of max pooling (src/backend/llvm/maxpool.c) take windows without padding
 * that do not overlap, up to 8 x 8; batchnorm_pool's gradients also route a plane's gradient
 * through a stack buffer of up to KIR_POOL_PLANE_MAX floats. */
enum { KIR_POOL_PLANE_MAX = 16384 };
static inline int kir_maxpool_plane_fits(int64_t k, int64_t s, int64_t p) { return p == 0 && s >= k && k <= 8; }

typedef struct {
  VEC(GemmKernel) gemm;
  VEC(ConvKernel) conv;
  VEC(EwKernel) ew;
  VEC(RedKernel) red;
  VEC(ChanKernel) chan;
  int vec_f32; /* the target's f32 lanes per vector register */
} KernelPlan;

/* Chooses a kernel for every GEMM node (linear, matmul, qlinear, qmatmul, in any role) whose
 * int32 accumulation provably cannot overflow. vec_f32: lanes of the target's vectors. */
KernelPlan *lower_graph(const Graph *g, int vec_f32, DotIsa dot, const Tuning *tune);
void kir_free(KernelPlan *p);
char *kir_print(const Graph *g, const KernelPlan *p); /* --emit=kir */
#endif
