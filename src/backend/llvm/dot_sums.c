/* dot_sums.c: a convolution's channel sums (chansums, ops.def): the s16 sums of each output
 * channel added up as the epilogue writes them, for the batchnorm statistics that read them.
 * Each part adds its whole tiles into int64s of its own on the stack and its edge tiles'
 * elements straight into the tensor's sums, then adds its totals there: integer adds, exact
 * in any order, so the sums are the same for any number of parts. */
#include "dot.h"
#include "../../ir/graph.h"

#define B (g->b)

int dot_chansums(const Dot *d) { return d->ck && d->ck->chansums; }

/* the tensor's sums: int64 per output channel after its N * O * Ho * Wo s16 values */
LLVMValueRef gen_conv_sums(Gen *g, const ConvKernel *k, LLVMValueRef out) {
  return gen_at(g, g->i8, out, gen_i64(g, ir_s16_sums_at(k->N * k->O * k->Ho * k->Wo)));
}
static LLVMValueRef sums_at(Dot *d, LLVMValueRef out) { return gen_conv_sums(d->g, d->ck, out); }

void gen_conv_sums_zero(Gen *g, const ConvKernel *k, LLVMValueRef out) {
  LLVMBasicBlockRef after;
  if_begin(g, LLVMBuildICmp(B, LLVMIntEQ, gen_part(g), gen_i64(g, 0), ""), &after);
  Loop l;
  LLVMValueRef c = gen_loop_begin(g, &l, gen_i64(g, k->O), "c");
  gen_store(g, gen_i64(g, 0), gen_conv_sums(g, k, out), c);
  gen_loop_end(g, &l, 0);
  if_end(g, after);
}

LLVMValueRef dot_sums_begin(Dot *d) {
  Gen *g = d->g;
  LLVMValueRef part = gen_entry_alloca(g, LLVMArrayType(g->i64, (unsigned)d->p->np), "part_sums");
  Loop l;
  LLVMValueRef c = gen_loop_begin(g, &l, gen_i64(g, d->p->np), "c");
  gen_store(g, gen_i64(g, 0), part, c);
  gen_loop_end(g, &l, 0);
  return part;
}

void dot_sums_add_tile(Dot *d, LLVMValueRef part, LLVMValueRef n0, LLVMValueRef acc[][MAX_NR]) {
  Gen *g = d->g;
  int lanes = d->p->lanes;
  LLVMTypeRef vi32 = LLVMVectorType(g->i32, (unsigned)lanes), vi64 = LLVMVectorType(g->i64, (unsigned)lanes);
  int one_block = d->p->np == (int64_t)d->p->nr * lanes; /* n0 = 0: the sums stay in registers */
  for (int j = 0; j < d->p->nr; j++) {
    LLVMValueRef n = one_block ? gen_i64(g, j * lanes) : add(g, n0, gen_i64(g, j * lanes));
    LLVMValueRef corr = LLVMBuildLoad2(B, vi32, gen_at(g, g->i32, d->corr, n), "corr");
    LLVMSetAlignment(corr, 4);
    LLVMValueRef s = NULL; /* the tile's rows, int32: each at most 2^15 in size, mr <= 8 of them */
    for (int r = 0; r < d->p->mr; r++) {
      LLVMValueRef v = LLVMBuildSub(B, gen_get(g, acc[r][j]), corr, "");
      s = s ? LLVMBuildAdd(B, s, v, "") : v;
    }
    LLVMValueRef at = gen_at(g, g->i64, part, n), cur = LLVMBuildLoad2(B, vi64, at, "");
    LLVMSetAlignment(cur, 8);
    LLVMSetAlignment(LLVMBuildStore(B, LLVMBuildAdd(B, cur, LLVMBuildSExt(B, s, vi64, ""), ""), at), 8);
  }
}

static void atomic_add(Gen *g, LLVMValueRef p, LLVMValueRef v) {
  LLVMBuildAtomicRMW(B, LLVMAtomicRMWBinOpAdd, p, v, LLVMAtomicOrderingMonotonic, 0);
}

void dot_sums_add_one(Dot *d, LLVMValueRef out, LLVMValueRef col, LLVMValueRef v) {
  Gen *g = d->g;
  atomic_add(g, gen_at(g, g->i64, sums_at(d, out), col), LLVMBuildSExt(B, v, g->i64, ""));
}

void dot_sums_end(Dot *d, LLVMValueRef part, LLVMValueRef out) {
  Gen *g = d->g;
  Loop l;
  LLVMValueRef c = gen_loop_begin(g, &l, gen_i64(g, d->ck->O), "c");
  atomic_add(g, gen_at(g, g->i64, sums_at(d, out), c), gen_load(g, g->i64, part, c));
  gen_loop_end(g, &l, 0);
}
#undef B
