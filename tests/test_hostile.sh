#!/bin/sh
# Hostile and careless inputs to the molora command, one case file per concern in tests/hostile/:
# each case must end with the exit status, stderr and files it names (one clear stderr line, no
# crash, no hang, the old output intact). Figures measured by a case (scaling ratios, RSS) are
# printed as "figure: ...".
# Usage: tests/test_hostile.sh [build/molora]   (from the repository root; root enables the tmpfs cases)
B=${1:-build/molora}
F=tests/fixtures
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0; skip=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*"; }
skip() { skip=$((skip + 1)); echo "skip: $*"; }
figure() { echo "figure: $*"; }
# refuse SUBSTRING CMD...: exit 1..127 (no signal), exactly one stderr line containing SUBSTRING
refuse() {
    want=$1; shift
    "$@" >/dev/null 2>$T/err; rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(wc -l <$T/err)" -eq 1 ] && grep -q -- "$want" $T/err; then ok
    else bad "rc=$rc '$*' stderr: $(head -c 600 $T/err)"; fi
}
# accept CMD...: exit 0
accept() {
    "$@" >/dev/null 2>$T/err; rc=$?
    if [ $rc -eq 0 ]; then ok; else bad "rc=$rc '$*' stderr: $(head -c 600 $T/err)"; fi
}
# no_temp DIR: no .NAME.molora-XXXXXX left in DIR
no_temp() { if ls -A "$1" | grep -q 'molora-'; then bad "temporary file left in $1: $(ls -A "$1")"; else ok; fi; }
# same FILE_A FILE_B: byte-identical
same() { if cmp -s "$1" "$2"; then ok; else bad "$1 differs from $2"; fi; }
for c in tests/hostile/*.sh; do
    [ -f "$c" ] || continue
    before=$fail
    . "$c"
    [ $fail -eq $before ] || echo "  (in $c)"
done
echo "hostile: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
