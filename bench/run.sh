#!/bin/sh
# bench/run.sh BUILD: what `make bench` prints, from one run on this machine (minutes):
#   1. GEMMs: sqc's kernels on the example models' shapes (one thread): int8 MACs per cycle
#      per core against the ISA's ceiling, and speed against oneDNN's u8s8s32 matmul and
#      OpenBLAS sgemm on the same shapes;
#   2. training images/s (synthetic batches of 128) of sqc at 4 bits and --bits 32 against
#      PyTorch float32 (same network, batch and threads), and peak resident memory;
#   3. L1 against L2 normalization layers (forward and both gradients) in the CNN.
# Every figure is the median of REPS (5) runs.
set -eu
build=$1
root=$(cd "$(dirname "$0")/.." && pwd)
sqc=$build/sqc
threads=${BENCH_THREADS:-2}
reps=${BENCH_REPS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cflags="-std=c17 -O2 -D_POSIX_C_SOURCE=200809L -I$build/gen -I$root/src/front"
libs="$build/libsqc.a -lz -ljson-c -lm -pthread"

ghz=$("$build/bench/clock")
isa=$("$sqc" --print-targets | awk '/this machine\)/ {sub(/.*: /, ""); sub(/, f32.*/, ""); print; exit}')
case $isa in
  *VNNI*) ceiling=64 ;;
  AVX2) ceiling=32 ;;
  *) ceiling=16 ;;
esac
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "ISA: $isa (int8 ceiling $ceiling MAC/cycle/core); core clock $ghz GHz (measured); training threads: $threads"
echo "every figure: the median of $reps runs"
echo

echo "== 1. GEMMs, one thread (M x N x K; convolutions as their implicit GEMM)"
printf "%-26s %-4s %21s %9s %8s %7s %9s %9s\n" node role "M x N x K" "sqc us" "MAC/cyc" "of peak" "/ oneDNN" "/ OpenBLAS"
for m in mlp cnn; do
  "$sqc" "$root/examples/$m.sq" --bits 4 --emit=obj -o "$tmp/$m.o"
  cc $cflags "$root/bench/kernels.c" "$tmp/$m.o" $libs -o "$tmp/kernels-$m"
  "$tmp/kernels-$m" 1 "$reps" >"$tmp/k-$m.txt"
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$build/bench/peers" "$reps" <"$tmp/k-$m.txt" >"$tmp/p-$m.txt"
  grep '^gemm' "$tmp/k-$m.txt" | paste -d' ' - "$tmp/p-$m.txt" |
    awk -v ghz="$ghz" -v peak="$ceiling" '{
      macs = $4 * $5 * $6; mc = ghz > 0 ? macs / ($7 * ghz * 1e9) : 0
      printf "%-26s %-4s %21s %9.1f %8.1f %6.0f%% %8.2fx %8.2fx\n", $2, $3, $4 "x" $5 "x" $6, $7 * 1e6, mc, 100 * mc / peak, $10 / $7, $11 / $7
    }'
done
echo "(/ oneDNN and / OpenBLAS: their time over sqc's; above 1 means sqc is faster. sqc's time includes packing"
echo " and, for convolutions, gathering the patches; the peers multiply ready matrices.)"
echo

echo "== 2. training, $threads threads, batch 128: images/s and peak resident memory"
printf "%-5s %14s %14s %14s %9s %9s %12s %12s %8s\n" model "sqc 4-bit" "sqc 32-bit" PyTorch "4b/torch" "4b/32b" "sqc 4b KB" "torch KB" "mem"
for m in mlp cnn; do
  steps=$([ $m = mlp ] && echo 200 || echo 6)
  "$sqc" "$root/examples/$m.sq" --bits 4 -o "$tmp/$m-4.so"
  "$sqc" "$root/examples/$m.sq" --bits 32 -o "$tmp/$m-32.so"
  s4=$("$build/bench/train" "$tmp/$m-4.so" "$threads" "$steps" "$reps")
  s32=$("$build/bench/train" "$tmp/$m-32.so" "$threads" "$steps" "$reps")
  # PyTorch's own threads and its OpenBLAS's threads add up (and a 2 + 2 split runs slower than
  # either alone on two cores): its best of the splits t + 1, 1 + t and t + t is its figure
  pt=$(for split in "$threads 1" "1 $threads" "$threads $threads"; do
         set -- $split
         env -u OMP_PROC_BIND OPENBLAS_NUM_THREADS=$2 /usr/bin/python3 "$root/bench/torch_train.py" $m "$1" "$steps" "$reps" |
           sed "s/\$/ torch=$1,blas=$2/"
       done | sort -k3 -g -r | head -1)
  echo "$m $s4 $s32 $pt" | awk '{ printf "%-5s %14.0f %14.0f %14.0f %8.2fx %8.2fx %12d %12d %7.2fx  (PyTorch %s)\n", $1, $4, $8, $12, $4 / $12, $4 / $8, $5, $13, $5 / $13, $14 }'
done
echo

echo "== 3. L1 against L2 normalization (the CNN's batchnorm layers: statistics, forward with the max pooling after it, dparams, dx), one thread"
"$sqc" "$root/examples/cnn.sq" --bits 4 --norm l2 --emit=obj -o "$tmp/cnn-l2.o"
cc $cflags "$root/bench/kernels.c" "$tmp/cnn-l2.o" $libs -o "$tmp/kernels-l2"
"$tmp/kernels-l2" 1 "$reps" >"$tmp/k-l2.txt"
l1=$(awk '/^norm/ {s += $4} END {print s}' "$tmp/k-cnn.txt")
l2=$(awk '/^norm/ {s += $4} END {print s}' "$tmp/k-l2.txt")
awk -v a="$l1" -v b="$l2" 'BEGIN { printf "L1 layers %.2f ms, L2 layers %.2f ms: L1 is %.2fx the speed of L2\n", a * 1e3, b * 1e3, b / a }'
