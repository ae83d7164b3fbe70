#!/bin/sh
# tests/errors/run.sh SQC: every tests/errors/*.sq carries its expectations as comments on the
# offending line ("# error: TEXT" or "# warning: TEXT"). sqc must report exactly those errors,
# each as FILE:LINE:COL: error: TEXT... followed by the source line and a caret, and exit 1
# (0 when only warnings are expected).
set -u
export LC_ALL=C
sqc=$1
dir=$(dirname "$0")
pass=0; fail=0
out=$(mktemp)
for f in "$dir"/*.sq; do
  ok=1
  "$sqc" "$f" -o /dev/null >"$out" 2>&1
  rc=$?
  nerr=$(grep -ac '# error: ' "$f")
  want_rc=0; [ "$nerr" -gt 0 ] && want_rc=1
  [ "$rc" -eq "$want_rc" ] || { echo "FAIL $f: exit status $rc, expected $want_rc"; ok=0; }
  got_err=$(grep -ac ': error: ' "$out")
  [ "$got_err" -eq "$nerr" ] || { echo "FAIL $f: $got_err errors reported, $nerr expected"; ok=0; }
  grep -aq '^ *^$\|^\.\.\. *^$\|\^$' "$out" || { echo "FAIL $f: no caret line"; ok=0; }
  grep -an -E '# (error|warning): ' "$f" | while IFS= read -r line; do
    n=${line%%:*}
    kind=$(printf '%s' "$line" | sed -E 's/.*# (error|warning): .*/\1/')
    text=$(printf '%s' "$line" | sed -E 's/.*# (error|warning): //')
    grep -aF "$f:$n:" "$out" | grep -aqF ": $kind: $text" || echo "FAIL $f:$n: expected '$kind: $text'"
  done >"$out.missing"
  if [ -s "$out.missing" ]; then cat "$out.missing"; ok=0; fi
  if [ $ok -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "--- sqc said:"; head -c 2000 "$out"; fi
done
rm -f "$out" "$out.missing"
echo "errors: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
