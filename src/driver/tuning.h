/* tuning.h: --tune FILE, a YAML file of register tiles for the dot-product kernels:
 *   vpdpbusd: {mr: 6, nr: 4}   # AVX-512 VNNI: mr rows x nr zmm vectors of 16 columns
 *   vpmaddubsw: {mr: 4, nr: 2} # AVX2: mr rows x nr ymm vectors of 8 columns
 *   sdot: {mr: 4, nr: 4}       # AArch64: mr rows x nr q vectors of 4 columns
 * Every key is optional; unknown keys, bad values and tiles that need more vector registers
 * than the ISA has are errors with the file, line and column. */
#ifndef SQ_DRIVER_TUNING_H
#define SQ_DRIVER_TUNING_H
#include "../lower/kir.h"

/* Overrides t's tiles from the file; on failure returns 0 with *err set (free it). */
int tuning_load(Tuning *t, const char *path, char **err);
#endif
