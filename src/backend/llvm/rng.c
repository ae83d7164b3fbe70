/* rng.c: runtime/rng.c's counter-based generator in LLVM IR, for the kernels that draw random
 * numbers (stochastic rounding, dropout): the same SplitMix64 folding, so the same bits. */
#include <llvm-c/Target.h>
#include "gen.h"

/* an i64 constant, splat when z is a vector */
static LLVMValueRef k64(Gen *g, LLVMValueRef z, unsigned long long v) {
  return gen_splat_like(g, LLVMConstInt(g->i64, v, 0), z);
}

/* SplitMix64's finaliser, on an i64 or a vector of them */
static LLVMValueRef mix(Gen *g, LLVMValueRef z) {
  LLVMBuilderRef b = g->b;
  z = LLVMBuildAdd(b, z, k64(g, z, 0x9e3779b97f4a7c15ull), "");
  z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, k64(g, z, 30), ""), ""), k64(g, z, 0xbf58476d1ce4e5b9ull), "");
  z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, k64(g, z, 27), ""), ""), k64(g, z, 0x94d049bb133111ebull), "");
  return LLVMBuildXor(b, z, LLVMBuildLShr(b, z, k64(g, z, 31), ""), "");
}

/* a 32-bit word's top 24 bits times 2^-24, on an i32 or a vector of them: exact in a float */
static LLVMValueRef top24(Gen *g, LLVMValueRef word) {
  LLVMValueRef top = LLVMBuildSIToFP(g->b, LLVMBuildLShr(g->b, word, gen_splat_like(g, LLVMConstInt(g->i32, 8, 0), word), ""),
                                     LLVMGetTypeKind(LLVMTypeOf(word)) == LLVMVectorTypeKind
                                         ? LLVMVectorType(g->f32, LLVMGetVectorSize(LLVMTypeOf(word)))
                                         : g->f32, "");
  return LLVMBuildFMul(g->b, top, gen_splat_like(g, gen_f32c(g, 0x1p-24f), top), "u");
}

LLVMValueRef gen_rng_key(Gen *g, uint64_t stream) {
  LLVMValueRef h = mix(g, gen_arg(g, KA_SEED));
  h = mix(g, LLVMBuildXor(g->b, h, LLVMConstInt(g->i64, stream, 0), ""));
  return mix(g, LLVMBuildXor(g->b, h, gen_arg(g, KA_STEP), ""));
}

LLVMValueRef gen_rng_uniform(Gen *g, LLVMValueRef key, LLVMValueRef index) {
  LLVMValueRef bits = mix(g, LLVMBuildXor(g->b, key, index, ""));
  return top24(g, LLVMBuildTrunc(g->b, LLVMBuildLShr(g->b, bits, LLVMConstInt(g->i64, 32, 0), ""), g->i32, "")); /* the high word */
}

LLVMValueRef gen_rng_uniform_halves(Gen *g, LLVMValueRef key, LLVMValueRef index) {
  LLVMValueRef bits = mix(g, LLVMBuildXor(g->b, key, LLVMBuildLShr(g->b, index, gen_i64(g, 1), ""), ""));
  LLVMValueRef shift = LLVMBuildMul(g->b, LLVMBuildAnd(g->b, index, gen_i64(g, 1), ""), gen_i64(g, 32), "");
  return top24(g, LLVMBuildTrunc(g->b, LLVMBuildLShr(g->b, bits, shift, ""), g->i32, ""));
}

LLVMValueRef gen_rng_uniform_halves16(Gen *g, LLVMValueRef key, LLVMValueRef index) {
  LLVMValueRef pair = LLVMBuildLShr(g->b, index, gen_i64(g, 1), "");
  LLVMValueRef bits = mix(g, LLVMBuildXor(g->b, gen_splat(g, key, 8), LLVMBuildAdd(g->b, gen_splat(g, pair, 8), gen_iota(g, 8), ""), ""));
  LLVMTypeRef v16 = LLVMVectorType(g->i32, 16);
  /* the words in draw order, lo0 hi0 lo1 hi1 ...: the i64s' own bytes on a little-endian target */
  if (LLVMByteOrder(LLVMGetModuleDataLayout(g->mod)) == LLVMLittleEndian) return top24(g, LLVMBuildBitCast(g->b, bits, v16, "words"));
  LLVMValueRef lo = LLVMBuildTrunc(g->b, bits, LLVMVectorType(g->i32, 8), "");
  LLVMValueRef hi = LLVMBuildTrunc(g->b, LLVMBuildLShr(g->b, bits, k64(g, bits, 32), ""), LLVMVectorType(g->i32, 8), "");
  LLVMValueRef order[16];
  for (unsigned i = 0; i < 16; i++) order[i] = LLVMConstInt(g->i32, i % 2 ? 8 + i / 2 : i / 2, 0);
  return top24(g, LLVMBuildShuffleVector(g->b, lo, hi, LLVMConstVector(order, 16), "words"));
}
