/* rows.c: the remaining ops with their own loop structure, as src/ops defines them:
 * cross_entropy (a double sum over rows in order: part 0) and its gradient (rows), embedding
 * (positions) and its gradient (columns of the table; positions in order within a column),
 * dropout and its gradient (elements; the keep mask is recomputed from the random stream),
 * adam_update (elements; the bias corrections from the step). Labels and ids out of range set
 * the failure flag. */
#include "gen.h"

#define B (g->b)
static LLVMValueRef ld(Gen *g, LLVMValueRef base, LLVMValueRef i) { return gen_load(g, g->f32, base, i); }
static LLVMValueRef idx(Gen *g, LLVMValueRef a, int64_t m, LLVMValueRef b) {
  return LLVMBuildAdd(B, LLVMBuildMul(B, a, gen_i64(g, m), ""), b, "");
}
/* i32 id or label v, widened; fails unless 0 <= v < n */
static LLVMValueRef checked_id(Gen *g, LLVMValueRef ids, LLVMValueRef i, int64_t n) {
  LLVMValueRef v = LLVMBuildSExt(B, gen_load(g, g->i32, ids, i), g->i64, "id");
  gen_fail_if(g, LLVMBuildICmp(B, LLVMIntUGE, v, gen_i64(g, n), "")); /* unsigned: negatives too */
  return LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntUGE, v, gen_i64(g, n), ""), gen_i64(g, 0), v, "");
}

/* the float max of row r's C logits and sum of exp(z - max) in double (softmax_row) */
static void row_softmax_sum(Gen *g, LLVMValueRef z, LLVMValueRef r, int64_t C, LLVMValueRef *mx, LLVMValueRef *sum) {
  Loop l;
  LLVMValueRef m = gen_var(g, ld(g, z, idx(g, r, C, gen_i64(g, 0))), "mx");
  LLVMValueRef j = gen_loop_begin(g, &l, gen_i64(g, C), "j");
  LLVMBuildStore(B, gen_fmax(g, ld(g, z, idx(g, r, C, j)), gen_get(g, m)), m);
  gen_loop_end(g, &l, 0);
  *mx = LLVMBuildFPExt(B, gen_get(g, m), g->f64, "mxd");
  LLVMValueRef s = gen_var(g, gen_f64c(g, 0), "s");
  j = gen_loop_begin(g, &l, gen_i64(g, C), "j");
  LLVMValueRef e = gen_libm(g, "exp", LLVMBuildFSub(B, LLVMBuildFPExt(B, ld(g, z, idx(g, r, C, j)), g->f64, ""), *mx, ""));
  LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(g, s), e, ""), s);
  gen_loop_end(g, &l, 0);
  *sum = gen_get(g, s);
}

static void cross_entropy(Gen *g, const ChanKernel *k, LLVMValueRef out) {
  int64_t N = k->channels, C = k->inner;
  Loop l;
  if (k->op == OP_cross_entropy) { /* total += log(s) + max - z[label], then / N */
    LLVMValueRef z = gen_input(g, 0), y = gen_input(g, 1);
    gen_only_part0(g);
    LLVMValueRef total = gen_var(g, gen_f64c(g, 0), "total"), mx, s;
    LLVMValueRef r = gen_loop_begin(g, &l, gen_i64(g, N), "r");
    LLVMValueRef label = checked_id(g, y, r, C);
    row_softmax_sum(g, z, r, C, &mx, &s);
    LLVMValueRef t = LLVMBuildFAdd(B, gen_libm(g, "log", s), mx, "");
    t = LLVMBuildFSub(B, t, LLVMBuildFPExt(B, ld(g, z, idx(g, r, C, label)), g->f64, ""), "");
    LLVMBuildStore(B, LLVMBuildFAdd(B, gen_get(g, total), t, ""), total);
    gen_loop_end(g, &l, 0);
    LLVMBuildStore(B, LLVMBuildFPTrunc(B, LLVMBuildFDiv(B, gen_get(g, total), gen_f64c(g, (double)N), ""), g->f32, ""), out);
    return;
  }
  /* (dl, z, y): dz = (softmax(z) - onehot(y)) * (dl / N), each step rounded to float */
  LLVMValueRef dl = gen_input(g, 0), z = gen_input(g, 1), y = gen_input(g, 2), mx, s;
  LLVMValueRef scale = LLVMBuildFDiv(B, LLVMBuildLoad2(B, g->f32, dl, ""), gen_f32c(g, (float)N), "scale");
  LLVMValueRef r = gen_loop_part(g, &l, N, "r");
  LLVMValueRef label = checked_id(g, y, r, C);
  row_softmax_sum(g, z, r, C, &mx, &s);
  Loop lj;
  LLVMValueRef j = gen_loop_begin(g, &lj, gen_i64(g, C), "j"), e = idx(g, r, C, j);
  LLVMValueRef p = LLVMBuildFDiv(B, gen_libm(g, "exp", LLVMBuildFSub(B, LLVMBuildFPExt(B, ld(g, z, e), g->f64, ""), mx, "")), s, "");
  LLVMValueRef pf = LLVMBuildFPTrunc(B, p, g->f32, "p");
  pf = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntEQ, j, label, ""), LLVMBuildFSub(B, pf, gen_f32c(g, 1.0f), ""), pf, "");
  gen_store(g, LLVMBuildFMul(B, pf, scale, ""), out, e);
  gen_loop_end(g, &lj, 0);
  gen_loop_end(g, &l, 0);
}

static void embedding(Gen *g, const ChanKernel *k, LLVMValueRef out) {
  int64_t P = k->channels, D = k->inner, V = k->vocab;
  Loop l, lj;
  if (k->op == OP_embedding) { /* (ids, table): out[i, :] = table[ids[i], :] */
    LLVMValueRef ids = gen_input(g, 0), tab = gen_input(g, 1);
    LLVMValueRef i = gen_loop_part(g, &l, P, "pos"), id = checked_id(g, ids, i, V);
    LLVMValueRef j = gen_loop_begin(g, &lj, gen_i64(g, D), "j");
    gen_store(g, ld(g, tab, idx(g, id, D, j)), out, idx(g, i, D, j));
    gen_loop_end(g, &lj, 16);
    gen_loop_end(g, &l, 0);
    return;
  }
  /* (dy, ids): every part checks all ids, zeroes its columns, then adds positions in order */
  LLVMValueRef dy = gen_input(g, 0), ids = gen_input(g, 1);
  LLVMValueRef i = gen_loop_begin(g, &l, gen_i64(g, P), "pos");
  checked_id(g, ids, i, V);
  gen_loop_end(g, &l, 0);
  LLVMValueRef j = gen_loop_part(g, &lj, D, "col");
  LLVMValueRef v = gen_loop_begin(g, &l, gen_i64(g, V), "v");
  gen_store(g, gen_f32c(g, 0), out, idx(g, v, D, j));
  gen_loop_end(g, &l, 0);
  i = gen_loop_begin(g, &l, gen_i64(g, P), "pos");
  LLVMValueRef id = checked_id(g, ids, i, V), at = idx(g, id, D, j);
  gen_store(g, LLVMBuildFAdd(B, ld(g, out, at), ld(g, dy, idx(g, i, D, j)), ""), out, at);
  gen_loop_end(g, &l, 0);
  gen_loop_end(g, &lj, 0);
}

/* training: keep (u >= p) ? x * (1 / (1 - p)) : 0; inference: x */
static void dropout(Gen *g, const ChanKernel *k, LLVMValueRef out) {
  LLVMValueRef x = gen_input(g, 0), key = gen_rng_key(g, k->stream);
  LLVMValueRef train = LLVMBuildICmp(B, LLVMIntNE, gen_arg(g, KA_TRAINING), LLVMConstInt(g->i32, 0, 0), "train");
  Loop l;
  LLVMValueRef i = gen_loop_part(g, &l, k->inner, "e"), xv = ld(g, x, i);
  LLVMValueRef keep = LLVMBuildFCmp(B, LLVMRealOGE, gen_rng_uniform(g, key, i), gen_f32c(g, k->p), "keep");
  LLVMValueRef y = LLVMBuildSelect(B, keep, LLVMBuildFMul(B, xv, gen_f32c(g, 1.0f / (1.0f - k->p)), ""), gen_f32c(g, 0), "");
  gen_store(g, LLVMBuildSelect(B, train, y, xv, ""), out, i);
  gen_loop_end(g, &l, 0);
}

/* AdamW as src/ops/optim.c: t = step + 1, c1 = (float)(1 / (1 - b1^t)), c2 likewise (double) */
static void adam(Gen *g, const ChanKernel *k) {
  LLVMValueRef p = gen_input(g, 0), gr = gen_input(g, 1), m = gen_input(g, 2), v = gen_input(g, 3), lr = gen_arg(g, KA_LR);
  LLVMValueRef t = LLVMBuildSIToFP(B, LLVMBuildAdd(B, gen_arg(g, KA_STEP), gen_i64(g, 1), ""), g->f64, "t");
  LLVMTypeRef pt[2] = {g->f64, g->f64}, ft = LLVMFunctionType(g->f64, pt, 2, 0);
  LLVMValueRef pw = LLVMGetNamedFunction(g->mod, "pow");
  if (!pw) pw = LLVMAddFunction(g->mod, "pow", ft);
  LLVMValueRef c[2];
  double beta[2] = {k->beta1, k->beta2};
  for (int i = 0; i < 2; i++) {
    LLVMValueRef args[2] = {gen_f64c(g, beta[i]), t};
    LLVMValueRef bt = LLVMBuildCall2(B, ft, pw, args, 2, "");
    c[i] = LLVMBuildFPTrunc(B, LLVMBuildFDiv(B, gen_f64c(g, 1.0), LLVMBuildFSub(B, gen_f64c(g, 1.0), bt, ""), ""), g->f32, "c");
  }
  Loop l;
  LLVMValueRef i = gen_loop_part(g, &l, k->inner, "e");
  LLVMValueRef pv = ld(g, p, i), gv = ld(g, gr, i);
  pv = LLVMBuildFSub(B, pv, LLVMBuildFMul(B, LLVMBuildFMul(B, lr, gen_f32c(g, k->weight_decay), ""), pv, ""), "");
  LLVMValueRef mv = LLVMBuildFAdd(B, LLVMBuildFMul(B, gen_f32c(g, (float)k->beta1), ld(g, m, i), ""),
                                  LLVMBuildFMul(B, gen_f32c(g, (float)(1 - beta[0])), gv, ""), "m");
  LLVMValueRef vv = LLVMBuildFAdd(B, LLVMBuildFMul(B, gen_f32c(g, (float)k->beta2), ld(g, v, i), ""),
                                  LLVMBuildFMul(B, LLVMBuildFMul(B, gen_f32c(g, (float)(1 - beta[1])), gv, ""), gv, ""), "v");
  gen_store(g, mv, m, i);
  gen_store(g, vv, v, i);
  LLVMValueRef den = LLVMBuildFAdd(B, gen_intrinsic(g, "llvm.sqrt", LLVMBuildFMul(B, vv, c[1], "")), gen_f32c(g, (float)k->eps), "");
  LLVMValueRef upd = LLVMBuildFDiv(B, LLVMBuildFMul(B, lr, LLVMBuildFMul(B, mv, c[0], ""), ""), den, "");
  gen_store(g, LLVMBuildFSub(B, pv, upd, ""), p, i);
  gen_loop_end(g, &l, 0);
}
#undef B

LLVMValueRef gen_rows(Gen *g, const ChanKernel *k, const char *name) {
  LLVMValueRef fn = gen_kernel_function(g, name), out = gen_arg(g, KA_OUT);
  switch (k->op) {
  case OP_cross_entropy: case OP_cross_entropy_grad: cross_entropy(g, k, out); break;
  case OP_embedding: case OP_embedding_grad: embedding(g, k, out); break;
  case OP_dropout: case OP_dropout_grad: dropout(g, k, out); break;
  case OP_adam_update: adam(g, k); break;
  default: SQ_INTERNAL("no row code for %s", op_info[k->op].name);
  }
  LLVMBuildRetVoid(g->b);
  return fn;
}

LLVMValueRef gen_chan(Gen *g, const ChanKernel *k, const char *name) {
  switch (k->op) {
  case OP_quantize: case OP_shiftquant: return gen_quant(g, k, name);
  case OP_batchnorm_stats: case OP_l1_batchnorm: case OP_l2_batchnorm: case OP_batchnorm_dparams: case OP_batchnorm_dx:
  case OP_batchnorm_pool: case OP_batchnorm_pool_dparams: case OP_batchnorm_pool_dx:
    return gen_batchnorm(g, k, name);
  case OP_cross_entropy: case OP_cross_entropy_grad: case OP_embedding: case OP_embedding_grad:
  case OP_dropout: case OP_dropout_grad: case OP_adam_update:
    return gen_rows(g, k, name);
  default: return gen_norm(g, k, name);
  }
}
