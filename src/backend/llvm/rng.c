/* rng.c: runtime/rng.c's counter-based generator in LLVM IR, for the kernels that draw random
 * numbers (stochastic rounding, dropout): the same SplitMix64 folding, so the same bits. */
#include "gen.h"

static LLVMValueRef mix(Gen *g, LLVMValueRef z) {
  LLVMBuilderRef b = g->b;
  z = LLVMBuildAdd(b, z, LLVMConstInt(g->i64, 0x9e3779b97f4a7c15ull, 0), "");
  z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, LLVMConstInt(g->i64, 30, 0), ""), ""),
                   LLVMConstInt(g->i64, 0xbf58476d1ce4e5b9ull, 0), "");
  z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, LLVMConstInt(g->i64, 27, 0), ""), ""),
                   LLVMConstInt(g->i64, 0x94d049bb133111ebull, 0), "");
  return LLVMBuildXor(b, z, LLVMBuildLShr(b, z, LLVMConstInt(g->i64, 31, 0), ""), "");
}

LLVMValueRef gen_rng_key(Gen *g, uint64_t stream) {
  LLVMValueRef h = mix(g, gen_arg(g, KA_SEED));
  h = mix(g, LLVMBuildXor(g->b, h, LLVMConstInt(g->i64, stream, 0), ""));
  return mix(g, LLVMBuildXor(g->b, h, gen_arg(g, KA_STEP), ""));
}

LLVMValueRef gen_rng_uniform(Gen *g, LLVMValueRef key, LLVMValueRef index) {
  LLVMValueRef bits = mix(g, LLVMBuildXor(g->b, key, index, ""));
  /* the high word, then its top 24 bits: exact in an int32 and in a float */
  LLVMValueRef hi = LLVMBuildTrunc(g->b, LLVMBuildLShr(g->b, bits, LLVMConstInt(g->i64, 32, 0), ""), g->i32, "");
  LLVMValueRef top = LLVMBuildSIToFP(g->b, LLVMBuildLShr(g->b, hi, LLVMConstInt(g->i32, 8, 0), ""), g->f32, "");
  return LLVMBuildFMul(g->b, top, gen_f32c(g, 0x1p-24f), "u");
}
