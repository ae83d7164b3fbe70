#!/bin/sh
# tests/cli.sh SQC: command-line behaviour of sqc (flags, bad values, files it cannot read,
# huge or deeply nested input, dumps) and the golden pass dumps in tests/golden.
set -u
export LC_ALL=C
sqc=$1
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

# expect NAME STATUS PATTERN -- COMMAND...: exit status and a fixed string in stdout+stderr
expect() {
  name=$1 status=$2 pattern=$3; shift 4
  "$@" >"$tmp/out" 2>&1
  rc=$?
  if [ "$rc" -ne "$status" ]; then
    echo "FAIL $name: exit status $rc, expected $status"; head -c 1500 "$tmp/out"; fail=$((fail + 1)); return
  fi
  if [ -n "$pattern" ] && ! grep -qF -- "$pattern" "$tmp/out"; then
    echo "FAIL $name: output lacks '$pattern'"; head -c 1500 "$tmp/out"; fail=$((fail + 1)); return
  fi
  pass=$((pass + 1))
}

mlp=$root/examples/mlp.sq
expect help 0 "usage: sqc MODEL.sq" -- "$sqc" --help
expect version 0 "sqc 0." -- "$sqc" --version
expect unknown-flag 1 "unknown option '--bach'; did you mean '--batch'?" -- "$sqc" "$mlp" --bach 4
expect unknown-flag-eq 1 "unknown option '--dump-afte=shapes'; did you mean '--dump-after'?" -- "$sqc" "$mlp" --dump-afte=shapes
expect bad-batch 1 "invalid value 'abc' for --batch: expected an integer from 1 to 16777216" -- "$sqc" "$mlp" --batch abc
expect zero-batch 1 "invalid value '0' for --batch" -- "$sqc" "$mlp" --batch=0
expect bad-bits 1 "invalid value '9' for --bits: expected 2..8, or 32 for float" -- "$sqc" "$mlp" --bits 9
expect bad-norm 1 "invalid value 'l3' for --norm: expected l1 or l2; did you mean 'l1'?" -- "$sqc" "$mlp" --norm l3
expect bad-emit 1 "invalid value 'irr' for --emit: expected ir, kir, llvm, asm, obj or so; did you mean 'ir'?" -- "$sqc" "$mlp" --emit=irr
expect bad-pass 1 "invalid value 'shape' for --dump-after" -- "$sqc" "$mlp" --dump-after=shape
expect bad-pass-hint 1 "did you mean 'shapes'?" -- "$sqc" "$mlp" --dump-after=shape
expect missing-value 1 "option '--batch' needs a value" -- "$sqc" "$mlp" --batch
expect no-input 1 "no input file" -- "$sqc"
expect two-inputs 1 "more than one input file" -- "$sqc" "$mlp" "$mlp"
expect missing-file 1 "cannot read '$tmp/nope.sq': No such file or directory" -- "$sqc" "$tmp/nope.sq"
mkdir "$tmp/dir.sq"
expect directory 1 "cannot read '$tmp/dir.sq': Is a directory" -- "$sqc" "$tmp/dir.sq"
if [ "$(id -u)" != 0 ]; then
  cp "$mlp" "$tmp/locked.sq"; chmod 000 "$tmp/locked.sq"
  expect unreadable 1 "cannot read '$tmp/locked.sq': Permission denied" -- "$sqc" "$tmp/locked.sq"
fi
: >"$tmp/empty.sq"
expect empty-file 1 "empty.sq:1:1: error: no model block" -- "$sqc" "$tmp/empty.sq"
expect unwritable-output 1 "cannot write '$tmp/dir.sq'" -- "$sqc" "$mlp" -o "$tmp/dir.sq"
expect emit-ir 0 "" -- "$sqc" "$mlp" --emit=ir -o "$tmp/mlp.ir"
grep -q '^%h.weight.update = sgd_update' "$tmp/mlp.ir" && pass=$((pass + 1)) || { echo "FAIL emit-ir: no update in $tmp/mlp.ir"; fail=$((fail + 1)); }

# --bits: a new default for the GEMMs; layer overrides stay, except at 32 (float everywhere).
"$sqc" "$mlp" --bits 6 >"$tmp/b6.ir" 2>&1
grep -q '^%h = qlinear(%x.q6, %h.weight.q6' "$tmp/b6.ir" && grep -q '^%z = qlinear(%a.q8' "$tmp/b6.ir" && pass=$((pass + 1)) ||
  { echo "FAIL bits-6: h should be 6-bit and z (layer override) 8-bit"; fail=$((fail + 1)); }
"$sqc" "$mlp" --bits 32 >"$tmp/b32.ir" 2>&1
! grep -q 'q8\|qlinear' "$tmp/b32.ir" && grep -q '^%z = linear(' "$tmp/b32.ir" && pass=$((pass + 1)) ||
  { echo "FAIL bits-32: a quantized op remains"; fail=$((fail + 1)); }
"$sqc" "$mlp" --norm l2 >"$tmp/l2.ir" 2>&1
grep -q '= l2_batchnorm(' "$tmp/l2.ir" && ! grep -q 'l1_batchnorm' "$tmp/l2.ir" && pass=$((pass + 1)) ||
  { echo "FAIL norm-l2: no L2 batchnorm, or an L1 one"; fail=$((fail + 1)); }

# A 1 MB line: the diagnostic shows a window around the column, not the whole line.
{ printf 'model m {\n  input x : f32[B, 4]\n  label y : i32[B]\n  z = linear(x,'; head -c 1048576 /dev/zero | tr '\0' ' '; printf 'nope, 10)\n  loss = cross_entropy(z, y)\n}\n'; } >"$tmp/long.sq"
expect long-line 1 "long.sq:4:1048592: error: linear takes 1 tensor argument, got more" -- "$sqc" "$tmp/long.sq"
size=$(wc -c <"$tmp/out")
[ "$size" -lt 4000 ] && pass=$((pass + 1)) || { echo "FAIL long-line: $size bytes of diagnostics"; fail=$((fail + 1)); }
# A 1 MB identifier is refused by length, before it reaches any message.
{ printf 'model m {\n  input x : f32[B, 4]\n  label y : i32[B]\n  z = linear(x'; head -c 1048576 /dev/zero | tr '\0' 'q'; printf ', 10)\n}\n'; } >"$tmp/longname.sq"
expect long-identifier 1 "longname.sq:4:14: error: identifier longer than 1024 characters" -- "$sqc" "$tmp/longname.sq"
size=$(wc -c <"$tmp/out")
[ "$size" -lt 4000 ] && pass=$((pass + 1)) || { echo "FAIL long-identifier: $size bytes of diagnostics"; fail=$((fail + 1)); }

# 100000 nested calls: an error, not a stack overflow.
{ printf 'model m {\n  input x : f32[B, 4]\n  label y : i32[B]\n  z = '; i=0; while [ $i -lt 100 ]; do printf 'relu(relu(relu(relu(relu(relu(relu(relu(relu(relu('; i=$((i + 1)); done; printf 'x'; printf '\n}\n'; } >"$tmp/deep.sq"
expect deep-nesting 1 "expression nested deeper than 200 levels" -- "$sqc" "$tmp/deep.sq"

# Dumps: a pass that changes nothing says so.
printf 'model m {\n  input x : f32[B, 4]\n  label t : f32[B, 4]\n  loss = mse(x, t)\n}\n' >"$tmp/noparams.sq"
expect unchanged 0 "(unchanged)" -- "$sqc" "$tmp/noparams.sq" --dump-after=autodiff
expect dump-shapes 0 "; after shapes" -- "$sqc" "$mlp" --dump-after=shapes

# Golden dumps: tests/golden/NAME.sq compiled with the flags on its first line ("# flags: ...").
for g in "$root"/tests/golden/*.sq; do
  flags=$(sed -n '1s/^# flags: //p' "$g")
  # shellcheck disable=SC2086
  "$sqc" "$g" $flags >"$tmp/golden.out" 2>&1
  if diff -u "${g%.sq}.expected" "$tmp/golden.out" >"$tmp/golden.diff"; then pass=$((pass + 1));
  else echo "FAIL golden $(basename "$g"):"; head -40 "$tmp/golden.diff"; fail=$((fail + 1)); fi
done

# sqref: an interrupted run resumed from its checkpoint ends with the same bytes.
sqref=$(dirname "$sqc")/sqref
"$sqref" "$mlp" --limit 256 --test-limit 256 --epochs 2 --save "$tmp/full.st" >/dev/null 2>&1 &&
"$sqref" "$mlp" --limit 256 --test-limit 256 --epochs 1 --save "$tmp/half.st" >/dev/null 2>&1 &&
"$sqref" "$mlp" --limit 256 --test-limit 256 --epochs 2 --resume "$tmp/half.st" --save "$tmp/half.st" >"$tmp/out" 2>&1 &&
grep -q "resumed from" "$tmp/out" && cmp -s "$tmp/full.st" "$tmp/half.st" && pass=$((pass + 1)) ||
  { echo "FAIL sqref-resume: the resumed run differs from the uninterrupted one"; fail=$((fail + 1)); }
expect sqref-resume-other 1 "cannot resume" -- "$sqref" "$root/examples/cnn.sq" --limit 64 --resume "$tmp/full.st"

# The model library: sqc writes NAME.so and a header that compiles alone; an app links it; the
# ABI refuses bad input without changing the model (tests/abi_check.c).
cflags="-std=c17 -Wall -Wextra -Werror ${SQ_TEST_CFLAGS:-}"
expect so-mlp 0 "" -- "$sqc" "$mlp" --batch 8 -o "$tmp/mlp8.so"
expect so-cnn 0 "" -- "$sqc" "$root/examples/cnn.sq" --batch 8 -o "$tmp/cnn8.so"
expect so-name 1 "must end in .so" -- "$sqc" "$mlp" --emit=so -o "$tmp/mlp8.dylib"
expect bad-target 1 "invalid value 'x86' for --target" -- "$sqc" "$mlp" --target=x86 -o "$tmp/x.so"
expect header-alone 0 "" -- cc $cflags -fsyntax-only -x c "$tmp/mlp8.h"
expect app-build 0 "" -- cc $cflags -include "$tmp/cnn8.h" "$root/examples/app/app.c" "$tmp/cnn8.so" -o "$tmp/app" -Wl,-rpath,"$tmp"
expect app-run 0 "a second model loaded from it predicts the same" -- "$tmp/app" "$tmp/cnn8.safetensors"
expect abi-build 0 "" -- cc $cflags -include "$tmp/mlp8.h" "$root/tests/abi_check.c" "$tmp/mlp8.so" -o "$tmp/abi" -lm -Wl,-rpath,"$tmp"
expect abi-run 0 "abi: 24 passed, 0 failed" -- "$tmp/abi" "$tmp" "$tmp/cnn8.safetensors"
# An update that overflows leaves the model as it was: the reference library copies and puts
# back; generated sgd_update kernels write into second buffers that take over only when every
# new value is finite (on one thread, and in parts on two)
regress=$root/tests/models/regress.sq
for t in reference host; do
  expect "so-overflow-$t" 0 "" -- "$sqc" "$regress" --batch 4 --target=$t -o "$tmp/overflow-$t.so"
  expect "overflow-build-$t" 0 "" -- cc $cflags -include "$tmp/overflow-$t.h" "$root/tests/update_overflow.c" \
    "$tmp/overflow-$t.so" -o "$tmp/overflow-$t" -Wl,-rpath,"$tmp"
  expect "overflow-$t" 0 "update-overflow: 9 passed, 0 failed" -- "$tmp/overflow-$t" "$tmp" 1
  expect "overflow-$t-parts" 0 "update-overflow: 9 passed, 0 failed" -- env SQ_SERIAL_MAX=0 "$tmp/overflow-$t" "$tmp" 2
done

# The LLVM backend: generated kernels (integer and float GEMMs) train bit-identically to the
# reference target, on the host and on AVX2, for 1, 2 and 4 threads; other emits and targets.
expect match-build 0 "" -- cc $cflags "$root/tests/target_match.c" -o "$tmp/match" -ldl
# Each entry: model, bits, batch, norm, and the id range of a model whose input is ids (0: floats;
# -1: batches whose second half negates the first, with runs of zeros: see target_match.c).
# matrix FN: FN SRC ID MODEL BITS BATCH NORM IDS for each entry
matrix() {
  fn=$1
  for t in "mlp 4 8 l1 0" "mlp 32 8 l1 0" "mlp 4 8 l2 0" "cnn 4 4 l1 0" "cnn 32 4 l1 0" "cnn 4 4 l2 0" "cnn 32 4 l2 0" \
           "conv_strided 4 3 l1 0" "conv_strided 32 3 l1 0" "residual 32 4 l1 0" "residual 6 4 l1 0" "residual 32 4 l2 0" \
           "pools 32 3 l1 0" "pools 4 3 l1 0" "regress 32 5 l1 0" "embed 4 4 l1 20" "embed 32 4 l2 20" \
           "cnn 4 32 l1 0" "wide 4 8 l1 0" "overlap 4 3 l1 0" "overlap 32 3 l2 0" "pool_rows 4 3 l1 0" "pool_rows 32 2 l2 0" "bn_rows 4 5 l1 0" "bn_rows 32 5 l2 0" \
           "bn_pool 4 3 l1 0" "bn_pool 32 2 l2 0" "no_bias 4 3 l1 0" "no_bias 32 3 l1 0" "sums16 4 3 l1 0" "sums16 4 2 l2 0" "cnn5 4 2 l1 0" "linear_rank3 4 4 l1 0" "at_mean 4 8 l1 -1"; do
    set -- $t
    src=$root/examples/$1.sq
    [ -f "$src" ] || src=$root/tests/models/$1.sq
    [ -f "$src" ] || src=$root/bench/$1.sq
    "$fn" "$src" "$1-$2-$4-b$3" "$@"
  done
}
# build SRC ID MODEL BITS BATCH NORM IDS: the reference and host libraries, in the background,
# two models at a time (compiling is most of this test's time; CI has two cores)
build() {
  [ -n "${slot1:-}" ] && wait "$slot1"
  slot1=${slot2:-}
  ( "$sqc" "$1" --bits "$4" --batch "$5" --norm "$6" --target=reference -o "$tmp/r-$2.so" &&
    "$sqc" "$1" --bits "$4" --batch "$5" --norm "$6" -o "$tmp/h-$2.so"
    echo $? >"$tmp/rc-$2" ) >"$tmp/build-$2.out" 2>&1 &
  slot2=$!
}
# check SRC ID MODEL BITS BATCH NORM IDS: both libraries built, silently; then they train alike
check() {
  expect "so-$2" 0 "" -- sh -c 'exit "$(cat "$1")"' sh "$tmp/rc-$2"
  [ -s "$tmp/build-$2.out" ] && { echo "FAIL so-$2 printed:"; head -c 1500 "$tmp/build-$2.out"; fail=$((fail + 1)); }
  expect "match-host-$2" 0 "match: 4 passed, 0 failed" -- "$tmp/match" "$tmp/r-$2.so" "$tmp/h-$2.so" "$tmp" 3 "$7"
}
matrix build; wait
matrix check
# ids outside the vocabulary: the generated kernel rejects them and the step fails with the
# reference's message (once for the reference library, once per run of the other: 1, 2 and 4
# threads, and 4 with every kernel in parts)
"$tmp/match" "$tmp/r-embed-4-l1-b4.so" "$tmp/h-embed-4-l1-b4.so" "$tmp" 1 21 >"$tmp/out" 2>&1
rc=$?
bad=$(grep -c "id 20 at position 2 is outside the vocabulary 0..19" "$tmp/out")
[ $rc -eq 1 ] && [ "$bad" -eq 5 ] && pass=$((pass + 1)) ||
  { echo "FAIL embed-bad-id: status $rc, the message came $bad times, not 5"; cat "$tmp/out"; fail=$((fail + 1)); }
# batches whose second half negates the first, with runs of zeros: the CNN's first batchnorm
# has elements at its mean exactly, the class whose dx adds neither b nor -b
expect match-at-mean 0 "match: 4 passed, 0 failed" -- "$tmp/match" "$tmp/r-cnn-4-l1-b4.so" "$tmp/h-cnn-4-l1-b4.so" "$tmp" 3 -1
if grep -q avx2 /proc/cpuinfo; then
  expect so-v3 0 "" -- "$sqc" "$root/examples/cnn.sq" --batch 4 --target=x86-64-v3 -o "$tmp/v3.so"
  expect match-v3 0 "match: 4 passed, 0 failed" -- "$tmp/match" "$tmp/r-cnn-4-l1-b4.so" "$tmp/v3.so" "$tmp" 3
  # at 8 bits vpmaddubsw's i16 pairs could saturate: those GEMMs keep the scalar loops
  next=$("$sqc" "$mlp" --batch 8 --bits 8 --target=x86-64-v3 --emit=kir | grep -A1 'gemm %h (qlinear)' | sed -n 2p)
  case $next in
    *dot=*) echo "FAIL v3-8bit-scalar: an 8-bit GEMM got the vpmaddubsw kernel: $next"; fail=$((fail + 1)) ;;
    *) pass=$((pass + 1)) ;;
  esac
  expect so-v3-8 0 "" -- "$sqc" "$mlp" --batch 8 --bits 8 --target=x86-64-v3 -o "$tmp/v3-8.so"
  expect so-ref-8 0 "" -- "$sqc" "$mlp" --batch 8 --bits 8 --target=reference -o "$tmp/r-8.so"
  expect match-v3-8 0 "match: 4 passed, 0 failed" -- "$tmp/match" "$tmp/r-8.so" "$tmp/v3-8.so" "$tmp" 3
else
  echo "skip: this CPU has no AVX2, so the x86-64-v3 library cannot run here"
fi
if grep -q avx512_vnni /proc/cpuinfo; then
  expect so-v4 0 "" -- "$sqc" "$root/examples/cnn.sq" --batch 4 --target=x86-64-v4 -o "$tmp/v4.so"
  expect match-v4 0 "match: 4 passed, 0 failed" -- "$tmp/match" "$tmp/r-cnn-4-l1-b4.so" "$tmp/v4.so" "$tmp" 3
else
  echo "skip: this CPU has no AVX-512 VNNI, so the x86-64-v4 library cannot run here"
fi
expect emit-kir 0 "gemm %h (qlinear): batch=1 M=8 N=256 K=784 A=i4" -- "$sqc" "$mlp" --batch 8 --emit=kir
# the cases above that cover the GEMM's packing paths: at batch 32 the CNN's dW kernels reduce
# over chunks of images, and conv2's slices take one or two chunks each; wide.sq's forward U
# rows are too long to pack per tile
expect kir-chunks 0 "k-chunks=11 of 3 images in 8 slices" -- "$sqc" "$root/examples/cnn.sq" --batch 32 --target=znver4 --emit=kir
# The CNN's batchnorm dx ShiftQuant their outputs (never stored as floats), which conv2's dX
# and dW both read: L1's take the channels' ranges from the class extremes their dparams keep
# and compute dx once, L2's compute dx twice; a first convolution with no batchnorm before it
# has its dW ShiftQuant its dy while packing it
expect kir-dx-shiftquant 0 "out=shiftquant bits=4 groups=5 (ranges from dparams' class extremes, dx once) maxpool k=2 s=2 to [14, 14]" -- \
  "$sqc" "$root/examples/cnn.sq" --batch 32 --target=znver4 --emit=kir
expect kir-dparams-extremes 0 "relu x=s16 +class extremes maxpool k=2 s=2 to [14, 14]" -- \
  "$sqc" "$root/examples/cnn.sq" --batch 32 --target=znver4 --emit=kir
expect kir-dx-shiftquant-l2 0 "out=shiftquant bits=4 groups=5 (dx twice: ranges, then rounding) maxpool k=2 s=2 to [14, 14]" -- \
  "$sqc" "$root/examples/cnn.sq" --batch 32 --norm l2 --target=znver4 --emit=kir
expect fuse-dx-shiftquant 0 "%c2.qconv2d_dw = qconv2d_dw(%p2.relu.batchnorm.batchnorm_dx," -- "$sqc" "$root/examples/cnn.sq" --dump-after=fuse
expect kir-dy-on-pack 0 "dy=f32 shiftquant bits=4 groups=5 on pack, a chunk at a time" -- \
  "$sqc" "$root/tests/models/pools.sq" --bits 4 --batch 32 --target=znver4 --emit=kir
# ...its flatten and the reshape of its gradient back are views of their inputs' bytes
expect kir-view 0 "view %f: the bytes of %p2, no kernel" -- "$sqc" "$root/examples/cnn.sq" --batch 16 --emit=kir
# ...its stride-1 convolutions read U in place, and its fc dW packs the transposed f whole
expect kir-u-in-place 0 "kp=576 mp=3136 np=32 channels-last pad=1 u-in-place runs=3x192" -- "$sqc" "$root/examples/cnn.sq" --batch 16 --target=znver4 --emit=kir
expect kir-u-transposed 0 "tile=6x4 swap u-transposed kp=16 mp=3138" -- "$sqc" "$root/examples/cnn.sq" --batch 16 --target=znver4 --emit=kir
# sums16: a convolution's sums kept as s16 where they provably fit and only batchnorms read them
sums16="$root/tests/models/sums16.sq"
expect sums16-kept 0 "sums16=1, chansums=1} : s16[3,36,5,5]" -- "$sqc" "$sums16" --batch 3 --dump-after=fuse -o "$tmp/s.so"
expect sums16-too-wide 0 "sums16=0, chansums=0} : f32[3,8,2,2]" -- "$sqc" "$sums16" --batch 3 --dump-after=fuse -o "$tmp/s.so"
expect sums16-bias 0 "bias=1, sums16=0, chansums=0} : f32[3,4,2,2]" -- "$sqc" "$sums16" --batch 3 --dump-after=fuse -o "$tmp/s.so"
expect sums16-kir 0 "k=3 s=2 p=1 g=1 u4 x i4 acc=i32 out=s16" -- "$sqc" "$sums16" --batch 3 --emit=kir
# L1 statistics of s16 sums are integer sums (nm_bn_stats_s16); L2's stay double sums of the floats
expect int-stats-l1 0 "inner=784] x=s16 stats=int sums given scratch=" -- "$sqc" "$root/examples/cnn.sq" --emit=kir
# ...whose first pass, each channel's sum, the convolution's epilogue takes (chansums)
expect chansums 0 "acc=i32 out=s16 +chansums" -- "$sqc" "$root/examples/cnn.sq" --emit=kir
expect int-stats-not-l2 0 "inner=784] x=s16 scratch=" -- "$sqc" "$root/examples/cnn.sq" --norm l2 --emit=kir
expect sums16-8bit 0 "sums16=0, chansums=0} : f32[3,36,5,5]" -- "$sqc" "$sums16" --batch 3 --bits 8 --dump-after=fuse -o "$tmp/s.so"
expect kir-u-whole 0 "tile=8x2 bias_u=128 kp=12288" -- "$sqc" "$root/tests/models/wide.sq" --bits 4 --batch 8 --target=znver4 --emit=kir
# --tune: other register tiles, the same bits; bad tuning files are diagnostics
printf 'vpdpbusd: {mr: 4, nr: 2}\nvpmaddubsw: {mr: 3, nr: 3}\nsdot: {mr: 3, nr: 5}\n' >"$tmp/tiles.yaml"
expect tune-kir 0 "dot=vpdpbusd lanes=16 tile=4x2" -- "$sqc" "$root/examples/cnn.sq" --batch 4 --target=znver4 --tune "$tmp/tiles.yaml" --emit=kir
expect tune-kir-avx2 0 "dot=vpmaddubsw lanes=8 tile=3x3" -- "$sqc" "$root/examples/cnn.sq" --batch 4 --target=x86-64-v3 --tune "$tmp/tiles.yaml" --emit=kir
expect tune-kir-aarch64 0 "dot=sdot lanes=4 tile=3x5" -- "$sqc" "$root/examples/cnn.sq" --batch 4 --target=aarch64 --tune "$tmp/tiles.yaml" --emit=kir
expect tune-example 0 "tile=6x4" -- "$sqc" "$root/examples/cnn.sq" --batch 4 --target=znver4 --tune "$root/examples/tiles.yaml" --emit=kir
expect so-tuned 0 "" -- "$sqc" "$root/examples/cnn.sq" --batch 4 --tune "$tmp/tiles.yaml" -o "$tmp/tuned.so"
expect match-tuned 0 "match: 4 passed, 0 failed" -- "$tmp/match" "$tmp/r-cnn-4-l1-b4.so" "$tmp/tuned.so" "$tmp" 3
printf 'vpdpbusd: {mr: 8, nr: 4}\n' >"$tmp/big.yaml"
expect tune-too-big 1 "big.yaml:1:11: error: the vpdpbusd tile 8x4 needs 37 vector registers; the ISA has 32" -- "$sqc" "$mlp" --tune "$tmp/big.yaml" --emit=kir
printf 'vpdpbusd: {mr: 6, nx: 4}\n' >"$tmp/key.yaml"
expect tune-bad-key 1 "key.yaml:1:19: error: unknown tile setting 'nx' (mr, nr)" -- "$sqc" "$mlp" --tune "$tmp/key.yaml" --emit=kir
printf 'avx: {mr: 6}\n' >"$tmp/isa.yaml"
expect tune-bad-isa 1 "unknown ISA 'avx' (vpdpbusd, vpmaddubsw, sdot)" -- "$sqc" "$mlp" --tune "$tmp/isa.yaml" --emit=kir
printf 'vpdpbusd: {mr: 0}\n' >"$tmp/zero.yaml"
expect tune-bad-value 1 "'mr' must be an integer from 1 to 8, not '0'" -- "$sqc" "$mlp" --tune "$tmp/zero.yaml" --emit=kir
printf 'vpdpbusd: [1\n' >"$tmp/broken.yaml"
expect tune-bad-yaml 1 "broken.yaml:2:1: error:" -- "$sqc" "$mlp" --tune "$tmp/broken.yaml" --emit=kir
expect tune-missing 1 "cannot read tuning file" -- "$sqc" "$mlp" --tune "$tmp/none.yaml" --emit=kir
expect emit-llvm 0 "define internal void @sq_kernel_h(" -- "$sqc" "$mlp" --batch 8 --emit=llvm
expect emit-asm-aarch64 0 "sq_kernel_h" -- "$sqc" "$mlp" --batch 8 --target=aarch64 --emit=asm
expect emit-obj-aarch64 0 "" -- "$sqc" "$mlp" --batch 8 --target=aarch64 --emit=obj -o "$tmp/a64.o"
expect obj-is-aarch64 0 "AArch64" -- readelf -h "$tmp/a64.o"
expect so-aarch64 1 "cannot be linked on this machine" -- "$sqc" "$mlp" --target=aarch64 -o "$tmp/a64.so"
expect print-targets 0 "x86-64-v3" -- "$sqc" --print-targets
expect bad-target-hint 1 "did you mean 'znver4'?" -- "$sqc" "$mlp" --target=znver5

# sqtrain: config, CSV, Ctrl-C (a checkpoint, exit 130) and a resume that ends with the same bytes
# as an uninterrupted run; bad configs and missing data are errors that say so.
sqtrain=$(dirname "$sqc")/sqtrain
expect so-mlp32 0 "" -- "$sqc" "$mlp" --batch 32 -o "$tmp/mlp32.so"
printf 'epochs: 2\nlr: 0.05\nschedule: {type: cosine, min_lr: 0.001}\nlimit: 640\nseed: 3\n' >"$tmp/train.yaml"
expect sqtrain-full 0 "epoch 2/2" -- "$sqtrain" "$tmp/mlp32.so" --config "$tmp/train.yaml" --csv "$tmp/full.csv" --save "$tmp/t-full.st"
# on two threads, sqtrain unloads the library at the end while the pool's workers wait for
# work: the library stops and joins them first (it had crashed two runs in three)
for r in 1 2 3 4; do
  expect "sqtrain-threads-exit-$r" 0 "epoch 1/1" -- "$sqtrain" "$tmp/mlp32.so" --epochs 1 --limit 640 --threads 2
done
lines=$(wc -l <"$tmp/full.csv")
last_lr=$(tail -1 "$tmp/full.csv" | cut -d, -f3)
[ "$lines" -eq 3 ] && awk "BEGIN{exit !($last_lr < 0.01)}" && pass=$((pass + 1)) ||
  { echo "FAIL sqtrain-csv: $lines lines, last lr $last_lr (cosine should end near 0.001)"; fail=$((fail + 1)); }
SQTRAIN_INTERRUPT_AFTER_STEP=27 "$sqtrain" "$tmp/mlp32.so" --config "$tmp/train.yaml" --save "$tmp/t-part.st" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 130 ] && grep -q "interrupted at step 27; checkpoint saved" "$tmp/out" && pass=$((pass + 1)) ||
  { echo "FAIL sqtrain-interrupt: status $rc"; cat "$tmp/out"; fail=$((fail + 1)); }
expect sqtrain-resume 0 "resumed from" -- "$sqtrain" "$tmp/mlp32.so" --config "$tmp/train.yaml" --resume "$tmp/t-part.st" --save "$tmp/t-part.st"
cmp -s "$tmp/t-full.st" "$tmp/t-part.st" && pass=$((pass + 1)) ||
  { echo "FAIL sqtrain-same-bits: the resumed run's checkpoint differs from the uninterrupted one"; fail=$((fail + 1)); }
printf 'epochs: 2\nlearning_rate: 0.1\n' >"$tmp/bad.yaml"
expect sqtrain-bad-key 1 "bad.yaml:2:1: unknown setting 'learning_rate'" -- "$sqtrain" "$tmp/mlp32.so" --config "$tmp/bad.yaml"
printf 'epochs: [1\n' >"$tmp/broken.yaml"
expect sqtrain-bad-yaml 1 "broken.yaml:" -- "$sqtrain" "$tmp/mlp32.so" --config "$tmp/broken.yaml"
printf 'schedule: {type: linear}\n' >"$tmp/sched.yaml"
expect sqtrain-bad-schedule 1 "schedule must be constant, step or cosine, not 'linear'" -- "$sqtrain" "$tmp/mlp32.so" --config "$tmp/sched.yaml"
expect sqtrain-no-data 1 "is the Debian package dataset-fashion-mnist installed?" -- "$sqtrain" "$tmp/mlp32.so" --data "$tmp/none"
mkdir -p "$tmp/corrupt"
head -c 100 /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz >"$tmp/corrupt/train-images-idx3-ubyte.gz"
cp /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz "$tmp/corrupt/"
expect sqtrain-corrupt-data 1 "train-images-idx3-ubyte.gz" -- "$sqtrain" "$tmp/mlp32.so" --data "$tmp/corrupt"
expect sqtrain-not-a-model 1 "cannot load" -- "$sqtrain" "$tmp/train.yaml"
expect sqtrain-bad-flag 1 "unknown option '--epoch'; did you mean '--epochs'?" -- "$sqtrain" "$tmp/mlp32.so" --epoch 2
if command -v gnuplot >/dev/null; then
  expect sqtrain-plot 0 "curves written to" -- "$sqtrain" "$tmp/mlp32.so" --epochs 1 --limit 320 --csv "$tmp/p.csv" --plot "$tmp/p.png"
  [ -s "$tmp/p.png" ] && pass=$((pass + 1)) || { echo "FAIL sqtrain-plot: no PNG"; fail=$((fail + 1)); }
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
