#!/bin/sh
# Hostile and careless inputs to the molora command, one case file per concern in tests/hostile/:
# each case must end with the exit status, stderr and files it names (one clear stderr line, no
# crash, no hang, the old output intact). Figures measured by a case (scaling ratios, RSS) are
# printed as "figure: ...".
# Usage: tests/test_hostile.sh [build/molora]   (from the repository root; root enables the tmpfs cases)
B=${1:-build/molora}
F=tests/fixtures
. tests/lib.sh
for c in tests/hostile/*.sh; do
    [ -f "$c" ] || continue
    before=$fail
    . "$c"
    [ $fail -eq $before ] || echo "  (in $c)"
done
finish hostile
