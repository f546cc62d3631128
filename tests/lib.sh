# The prelude every shell suite sources (tests/test_*.sh; tests/hostile/*.sh through
# test_hostile.sh), run from the repository root:
#   T                      a scratch directory, removed on exit
#   ok, bad MSG, skip MSG  count a check (bad and skip print MSG); figure MSG prints a measured figure
#   refuse, accept, same, no_temp   run or compare and count the outcome (below); json_holds tests a JSON file
#   finish NAME            the closing "NAME: N passed, M failed" line; the suite's exit status
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0; skip=0
ok()     { pass=$((pass + 1)); }
bad()    { fail=$((fail + 1)); echo "FAIL: $*"; }
skip()   { skip=$((skip + 1)); echo "skip: $*"; }
figure() { echo "figure: $*"; }
# refuse SUBSTRING CMD...: exit 1..127 (an error, not a signal), exactly one stderr line, holding
# SUBSTRING ("" takes any line)
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
# no_temp DIR [PATTERN]: no temporary file (a name holding PATTERN, default molora-) left in DIR
no_temp() {
    if ls -A "$1" | grep -q -- "${2:-molora-}"; then bad "temporary file left in $1: $(ls -A "$1")"; else ok; fi
}
# json_holds FILE EXPR: the Python expression EXPR holds for j, the JSON value in FILE (the status only)
json_holds() { python3 -c "import json, sys; j = json.load(open(sys.argv[1])); assert $2" "$1"; }
# same FILE_A FILE_B: byte-identical
same() { if cmp -s "$1" "$2"; then ok; else bad "$1 differs from $2"; fi; }
# finish NAME: the count line (and the skips, if any); exit status 0 only when nothing failed
finish() {
    if [ $skip -gt 0 ]; then echo "$1: $pass passed, $fail failed, $skip skipped"
    else echo "$1: $pass passed, $fail failed"; fi
    [ $fail -eq 0 ]
}
