/* peers.c: the same GEMM shapes on oneDNN (u8 x s8 -> s32 matmul, the integer peer) and
 * OpenBLAS (sgemm, the float GEMM under Debian's PyTorch). Reads the "gemm NAME ROLE M N K s"
 * lines of bench/kernels on stdin; prints "NAME ROLE onednn_seconds openblas_seconds", medians
 * of REPS runs. Threads: OMP_NUM_THREADS (oneDNN) and OPENBLAS_NUM_THREADS, set by bench/run.sh.
 * Usage: peers REPS */
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "timing.h"

#define CHECK(call) do { if ((call) != dnnl_success) { fprintf(stderr, "peers: %s failed\n", #call); exit(1); } } while (0)

static double onednn(dnnl_engine_t eng, dnnl_stream_t st, int64_t M, int64_t N, int64_t K, int reps) {
  dnnl_memory_desc_t a, b, c;
  dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N};
  CHECK(dnnl_memory_desc_init_by_tag(&a, 2, ad, dnnl_u8, dnnl_ab));
  CHECK(dnnl_memory_desc_init_by_tag(&b, 2, bd, dnnl_s8, dnnl_ab));
  CHECK(dnnl_memory_desc_init_by_tag(&c, 2, cd, dnnl_s32, dnnl_ab));
  dnnl_matmul_desc_t md;
  CHECK(dnnl_matmul_desc_init(&md, &a, &b, NULL, &c));
  dnnl_primitive_desc_t pd;
  CHECK(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
  dnnl_primitive_t p;
  CHECK(dnnl_primitive_create(&p, pd));
  uint8_t *A = calloc((size_t)(M * K), 1);
  int8_t *B = calloc((size_t)(K * N), 1);
  int32_t *C = calloc((size_t)(M * N), 4);
  for (int64_t i = 0; i < M * K; i++) A[i] = (uint8_t)(i * 7 % 16);
  for (int64_t i = 0; i < K * N; i++) B[i] = (int8_t)(i * 5 % 15 - 7);
  dnnl_memory_t am, bm, cm;
  CHECK(dnnl_memory_create(&am, &a, eng, A));
  CHECK(dnnl_memory_create(&bm, &b, eng, B));
  CHECK(dnnl_memory_create(&cm, &c, eng, C));
  dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
  double *t = malloc(sizeof(double) * (size_t)reps);
  for (int r = -1; r < reps; r++) {
    double t0 = now();
    CHECK(dnnl_primitive_execute(p, st, 3, args));
    CHECK(dnnl_stream_wait(st));
    if (r >= 0) t[r] = now() - t0;
  }
  double med = median(t, reps);
  dnnl_memory_destroy(am), dnnl_memory_destroy(bm), dnnl_memory_destroy(cm);
  dnnl_primitive_destroy(p), dnnl_primitive_desc_destroy(pd);
  free(A), free(B), free(C), free(t);
  return med;
}

static double openblas(int64_t M, int64_t N, int64_t K, int reps) {
  float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N)), *C = malloc(sizeof(float) * (size_t)(M * N));
  for (int64_t i = 0; i < M * K; i++) A[i] = (float)(i % 13) * 0.1f;
  for (int64_t i = 0; i < K * N; i++) B[i] = (float)(i % 11) * 0.1f - 0.5f;
  double *t = malloc(sizeof(double) * (size_t)reps);
  for (int r = -1; r < reps; r++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A, (int)K, B, (int)N, 0.0f, C, (int)N);
    if (r >= 0) t[r] = now() - t0;
  }
  double med = median(t, reps);
  free(A), free(B), free(C), free(t);
  return med;
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  if (reps < 1) reps = 1;
  dnnl_engine_t eng;
  dnnl_stream_t st;
  CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
  CHECK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
  char line[512], name[256], role[16];
  long long M, N, K;
  double secs;
  while (fgets(line, sizeof line, stdin))
    if (sscanf(line, "gemm %255s %15s %lld %lld %lld %lf", name, role, &M, &N, &K, &secs) == 6)
      printf("%s %s %.9f %.9f\n", name, role, onednn(eng, st, M, N, K, reps), openblas(M, N, K, reps));
  dnnl_stream_destroy(st);
  dnnl_engine_destroy(eng);
  return 0;
}
