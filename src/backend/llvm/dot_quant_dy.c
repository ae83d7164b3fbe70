/* dot_quant_dy.c: a convolution dW that ShiftQuants its own dy (ConvKernel's dy_bits): two
 * first phases take the channels' ranges (read from dy, or the ones a batchnorm dx kept after
 * it), then the scale and each channel's group; then each chunk's dy is rounded into bytes in
 * its slice's scratch right before the chunk is packed. The q8 gradient never reaches memory: the bytes stay in the cache of the core that
 * packs them. Same draws, same values as the shiftquant kernel (quant.c's pieces). */
#include "dot.h"

LLVMValueRef dot_sq_params(Dot *d) {
  Gen *g = d->g;
  return gen_at(g, g->i8, gen_arg(g, KA_SCRATCH), gen_i64(g, d->p->scratch - kir_sq_params(d->ck->O)));
}

void dot_dy_groups(Dot *d, Phases *ph) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  gen_sq_ranges(g, d->A, k->N, k->O, k->Ho * k->Wo, k->dy_ranges, gen_at(g, g->f32, dot_sq_params(d), gen_i64(g, 2 + k->O)));
  gen_next_phase(g, ph);
  gen_only_part0(g);
  LLVMValueRef params = dot_sq_params(d); /* in this phase's blocks */
  gen_sq_groups(g, gen_at(g, g->f32, params, gen_i64(g, 2 + k->O)), k->O, k->dy_groups, k->dy_bits, params);
}

LLVMValueRef dot_dy_scale(Dot *d) {
  Gen *g = d->g;
  return LLVMBuildLoad2(g->b, g->f32, gen_at(g, g->f32, dot_sq_params(d), gen_i64(g, 1)), "dy_scale");
}

void dot_quantize_dy(Dot *d) {
  Gen *g = d->g;
  const ConvKernel *k = d->ck;
  int64_t hw = k->Ho * k->Wo;
  LLVMValueRef n0, count = dot_images(d, &n0);
  dot_batch_views(d, gen_i64(g, 0)); /* a convolution is one batch entry */
  SqRows r = {d->A, d->dybytes, mul(g, n0, k->O * hw), dot_sq_params(d), k->O, hw, k->dy_groups, k->dy_bits, NULL};
  LLVMValueRef key = gen_rng_key(g, k->dy_stream);
  Loop l;
  LLVMValueRef row = gen_loop_range(g, &l, mul(g, n0, k->O), mul(g, add(g, n0, count), k->O), "row");
  gen_sq_row(g, &r, row, key);
  gen_loop_end(g, &l, 0);
}
