#!/bin/sh
# tests/run.sh: runs every test against the build in $BUILD (default build): the Check suites,
# the diagnostics cases in tests/errors, and the command-line and golden-dump cases.
set -u
BUILD=${BUILD:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
export SQ_SOURCE_ROOT="$root"
# Check stops a test after 4 s by default; a loaded CI machine under ASan needs more.
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-300}
status=0
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  echo "== $(basename "$t")"
  "$t" || status=1
done
echo "== checkpoint read by numpy (tests/checkpoint_numpy.py)"
pydir=$(mktemp -d)
if SQ_PY_CHECK_DIR="$pydir" "$BUILD/tests/test_checkpoint" >/dev/null &&
   /usr/bin/python3 "$root/tests/checkpoint_numpy.py" "$pydir"; then :; else echo "checkpoint_numpy: FAILED"; status=1; fi
rm -rf "$pydir"
echo "== diagnostics (tests/errors)"
sh "$root/tests/errors/run.sh" "$BUILD/sqc" || status=1
echo "== command line (tests/cli.sh)"
sh "$root/tests/cli.sh" "$BUILD/sqc" || status=1
echo "== AArch64 under qemu (tests/cross.sh)"
sh "$root/tests/cross.sh" "$BUILD/sqc" || status=1
[ $status -eq 0 ] && echo "all tests passed ($BUILD)" || echo "SOME TESTS FAILED ($BUILD)"
exit $status
