#!/bin/sh
# bench/run.sh BUILD: what `make bench` prints, from one run on this machine (minutes):
#   1. GEMMs: sqc's kernels on the example models' shapes (one thread): int8 MACs per cycle
#      per core against the ISA's ceiling, and speed against oneDNN's u8s8s32 matmul and
#      OpenBLAS sgemm on the same shapes;
#   2. training images/s (synthetic batches of 128) of sqc at 4 bits and --bits 32 against
#      PyTorch float32 (same network, batch and threads), and peak resident memory: the
#      example models, and bench/cnn5.sq, a CNN held out from tuning;
#   3. L1 against L2 normalization layers (forward and both gradients) in the CNN.
# Every figure is the median of REPS (5) runs; sqc and its peer run in turns where they are compared.
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
# the int8 ceiling: vpdpbusd's, measured (Zen 4 retires one zmm a cycle, Zen 5 two), else the
# ISA's nominal one (the vpmaddubsw chain, or fp32 FMA)
macs=$("$build/bench/peak")
case $isa in
  *VNNI*) ceiling=$(awk -v m="$macs" 'BEGIN { print (m > 0 ? int(m + 0.5) : 64) }'); how=measured ;;
  AVX2) ceiling=32 how=nominal ;;
  *) ceiling=16 how=nominal ;;
esac
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "ISA: $isa (int8 ceiling $ceiling MAC/cycle/core, $how); core clock $ghz GHz (measured); training threads: $threads"
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
grep -q ' dW+q ' "$tmp"/k-*.txt && echo "(dW+q: the dW ShiftQuants its float dy while packing it, work that runs as a kernel of its own
 elsewhere and that the peers' time leaves out.)"
echo

# The machine is shared and its speed drifts over seconds: sqc and PyTorch run in turns, one
# repetition each per round, and the ratio is the median of the rounds' ratios.
median() { sort -g | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : 0}'; }
# PyTorch with glibc's malloc keeping the memory it frees: with the defaults its tensors of
# megabytes come from fresh mmap'ed pages in every step, and where page faults are dear (the
# virtual machine of docs/results.md's session-12 runs) that made it 3 to 4 times slower: sqc's
# peer is PyTorch set up as well as it can be, not that.
torch_heap=glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647
torch() { # model torch-threads blas-threads steps reps
  env -u OMP_PROC_BIND OPENBLAS_NUM_THREADS=$3 GLIBC_TUNABLES=$torch_heap \
    /usr/bin/python3 "$root/bench/torch_train.py" "$1" "$2" "$4" "$5"
}
echo "== 2. training, $threads threads, batch 128: images/s and peak resident memory"
echo "(sqc 4-bit and PyTorch in turns, $reps rounds; 4b/torch is the median of the rounds' ratios; PyTorch's malloc"
echo " keeps the memory it frees: $torch_heap)"
printf "%-5s %14s %14s %14s %9s %9s %12s %12s %8s\n" model "sqc 4-bit" "sqc 32-bit" PyTorch "4b/torch" "4b/32b" "sqc 4b KB" "torch KB" "mem"
# the examples, and cnn5, a CNN held out from tuning (its float32 sqc run is left out: minutes)
for m in mlp cnn cnn5; do
  # rounds long enough (about half a second of sqc) that a burst of the shared machine's
  # other load spoils fewer of them
  steps=$([ $m = mlp ] && echo 1000 || echo 30)
  src=$root/examples/$m.sq
  [ -f "$src" ] || src=$root/bench/$m.sq
  "$sqc" "$src" --bits 4 -o "$tmp/$m-4.so"
  [ $m = cnn5 ] || "$sqc" "$src" --bits 32 -o "$tmp/$m-32.so"
  # PyTorch's own threads and its OpenBLAS's threads add up (and a 2 + 2 split runs slower than
  # either alone on two cores): its best of the splits t + 1, 1 + t and t + t is its split
  split=$(for s in "$threads 1" "1 $threads" "$threads $threads"; do
            set -- $s
            echo "$(torch $m "$1" "$2" "$steps" 1 | awk '{print $3}') $1 $2"
          done | sort -g -r | head -1 | cut -d' ' -f2-)
  set -- $split
  : >"$tmp/rounds"
  for r in $(seq "$reps"); do
    s=$("$build/bench/train" "$tmp/$m-4.so" "$threads" "$steps" 1)
    t=$(torch $m "$1" "$2" "$steps" 1)
    echo "$s $t" | awk '{print $3, $7, $3 / $7, $4, $8}' >>"$tmp/rounds"
  done
  s32=0
  [ $m = cnn5 ] || s32=$("$build/bench/train" "$tmp/$m-32.so" "$threads" "$steps" "$reps" | awk '{print $3}')
  s4=$(cut -d' ' -f1 "$tmp/rounds" | median) pt=$(cut -d' ' -f2 "$tmp/rounds" | median)
  ratio=$(cut -d' ' -f3 "$tmp/rounds" | median) rs=$(cut -d' ' -f4 "$tmp/rounds" | median) rt=$(cut -d' ' -f5 "$tmp/rounds" | median)
  echo "$m $s4 $s32 $pt $ratio $rs $rt $1 $2" | awk '{ s32 = $3 > 0 ? sprintf("%14.0f", $3) : sprintf("%14s", "-")
    r32 = $3 > 0 ? sprintf("%8.2fx", $2 / $3) : sprintf("%9s", "-")
    printf "%-5s %14.0f %s %14.0f %8.2fx %s %12d %12d %7.2fx  (PyTorch torch=%s,blas=%s)\n", $1, $2, s32, $4, $5, r32, $6, $7, $6 / $7, $8, $9 }'
done
echo

echo "== 3. L1 against L2 normalization (the CNN's batchnorm layers: statistics, forward with the max pooling after it, dparams, dx), one thread"
echo "(L1 and L2 in turns, $reps rounds of 3 runs of each layer; the ratio is the median of the rounds')"
"$sqc" "$root/examples/cnn.sq" --bits 4 --norm l2 --emit=obj -o "$tmp/cnn-l2.o"
cc $cflags "$root/bench/kernels.c" "$tmp/cnn-l2.o" $libs -o "$tmp/kernels-l2"
: >"$tmp/rounds"
# a run's seconds: all the layers, then by kernel: statistics, forward, dparams, dx
norm_times() {
  "$1" 1 3 | awk '/^norm/ { k = $3 ~ /stats$/ ? 1 : $3 ~ /dparams$/ ? 3 : $3 ~ /dx$/ ? 4 : 2; s[k] += $4; t += $4 }
                  END { print t, s[1], s[2], s[3], s[4] }'
}
for r in $(seq "$reps"); do
  l1=$(norm_times "$tmp/kernels-cnn") l2=$(norm_times "$tmp/kernels-l2")
  echo "$l1 $l2" | awk '{print $1, $6, $6 / $1, $7 / $2, $8 / $3, $9 / $4, $10 / $5}' >>"$tmp/rounds"
done
col() { cut -d' ' -f"$1" "$tmp/rounds" | median; }
awk -v a="$(col 1)" -v b="$(col 2)" -v r="$(col 3)" -v s="$(col 4)" -v f="$(col 5)" -v p="$(col 6)" -v d="$(col 7)" 'BEGIN {
  printf "L1 layers %.2f ms, L2 layers %.2f ms: L1 is %.2fx the speed of L2\n", a * 1e3, b * 1e3, r
  printf "by kernel, L1 against L2: statistics %.2fx, forward %.2fx, dparams %.2fx, dx %.2fx\n", s, f, p, d }'
