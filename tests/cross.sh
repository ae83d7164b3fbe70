#!/bin/sh
# tests/cross.sh SQC: AArch64 objects from the LLVM backend, cross-linked with
# gcc-aarch64-linux-gnu against the reference executor and run under qemu-aarch64: the generated
# kernels must train bit-identically to the reference bodies (tests/cross/kernel_match.c).
# Skips with a message when the cross tools are absent. SQ_CROSS_RUN=0 (the ASan pass of make
# check): only sqc runs, compiling each model for AArch64; linking and qemu would repeat the
# plain pass's runs, none of whose code is instrumented.
set -u
sqc=$1
run=${SQ_CROSS_RUN:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$run" != 0 ] && { ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; }; then
  echo "skip: AArch64 tests need gcc-aarch64-linux-gnu and qemu-user (make deps installs them)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
printf 'sdot: {mr: 3, nr: 5}\n' >"$tmp/tiles.yaml" # odd tiles: the same bits
src="src/base/util.c src/base/diag.c src/ir/graph.c src/ir/read.c src/ir/print.c src/interp/interp.c
     runtime/rng.c runtime/numerics.c runtime/threads.c $(ls "$root"/src/ops/*.c | sed "s|$root/||")"
# the reference executor and runtime once, for every model's link
cflags="-std=c17 -O2 -ffp-contract=off -D_POSIX_C_SOURCE=200809L"
objs=
[ "$run" = 0 ] && src=
for f in $src; do
  o=$tmp/$(echo "$f" | tr / _).o
  (cd "$root" && aarch64-linux-gnu-gcc $cflags -c "$f" -o "$o") || { echo "FAIL aarch64: cannot compile $f"; exit 1; }
  objs="$objs $o"
done
for m in "examples/mlp.sq 8" "examples/mlp.sq 8 --bits 32" "tests/models/conv_strided.sq 3" "tests/models/conv_strided.sq 3 --bits 32" "tests/models/residual.sq 4 --bits 6" "tests/models/pools.sq 3 --bits 32" "tests/models/regress.sq 5 --bits 32" "examples/cnn.sq 2" "tests/models/embed.sq 4" "tests/models/embed.sq 4 --bits 32 --norm l2" "examples/cnn.sq 2 --tune $tmp/tiles.yaml" "examples/cnn.sq 16" "tests/models/overlap.sq 3" "tests/models/sums16.sq 3"; do
  set -- $m
  model=$1 batch=$2; shift 2
  name=$(basename "$model" .sq)$*
  if [ "$run" = 0 ]; then # compile only
    if "$sqc" "$root/$model" --batch "$batch" "$@" --target=aarch64 --emit=obj -o "$tmp/model.o"; then pass=$((pass + 1))
    else echo "FAIL aarch64 compile $name"; fail=$((fail + 1)); fi
    continue
  fi
  if "$sqc" "$root/$model" --batch "$batch" "$@" --target=aarch64 --emit=obj -o "$tmp/model.o" &&
     (cd "$root" && aarch64-linux-gnu-gcc $cflags tests/cross/kernel_match.c $objs "$tmp/model.o" -lm -pthread -o "$tmp/match") &&
     qemu-aarch64 -L /usr/aarch64-linux-gnu "$tmp/match" >"$tmp/out" 2>&1 && grep -q " 3 passed, 0 failed" "$tmp/out"; then
    pass=$((pass + 1))
  else
    echo "FAIL aarch64 $name:"; cat "$tmp/out" 2>/dev/null; fail=$((fail + 1))
  fi
done
echo "aarch64$([ "$run" = 0 ] && echo ' (compile only)'): $pass passed, $fail failed"
[ "$fail" -eq 0 ]
