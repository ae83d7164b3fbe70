#!/bin/bash
# tests/valgrind.sh: memcheck (errors and leaks) on everything that runs without AVX-512.
set -u
BUILD=${BUILD:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
export SQ_SOURCE_ROOT="$root" CK_FORK=no CK_DEFAULT_TIMEOUT=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"
pass=0; fail=0
run() {
  if "$@" >"$tmp/out" 2>&1; then pass=$((pass + 1)); else echo "FAIL valgrind: $*"; tail -20 "$tmp/out"; fail=$((fail + 1)); fi
}
for t in "$BUILD"/tests/test_*; do run $vg "$t"; done
run $vg "$BUILD/sqc" "$root/examples/cnn.sq" --emit=ir -o "$tmp/cnn.ir"
# a program with errors: sqc exits 1, and valgrind would exit 99 on a memory error or leak
$vg "$BUILD/sqc" "$root/tests/errors/several_errors.sq" --emit=ir -o /dev/null >"$tmp/out" 2>&1
[ $? -eq 1 ] && pass=$((pass + 1)) || { echo "FAIL valgrind: sqc on a program with errors"; tail -20 "$tmp/out"; fail=$((fail + 1)); }
"$BUILD/sqc" "$root/examples/cnn.sq" --batch 4 --target=reference -o "$tmp/cnn4.so" &&
  cc -std=c17 -include "$tmp/cnn4.h" "$root/examples/app/app.c" "$tmp/cnn4.so" -o "$tmp/app" -Wl,-rpath,"$tmp" &&
  run $vg "$tmp/app" "$tmp/app.safetensors"
echo "valgrind: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
