#!/bin/sh
# Runs each libFuzzer harness for SECONDS, JOBS at a time (one core each), and prints a harness's
# log when it ends; exits 1 if any harness failed (a crash, a leak, a sanitizer report).
#   sh tests/fuzz/run.sh BUILD_DIR SECONDS JOBS harness:corpus ...
# New inputs go to BUILD_DIR/fuzz_corpus_<corpus>; the seeds are tests/fuzz/corpus_<corpus>.
B=$1 SECONDS_EACH=$2 JOBS=$3
shift 3
fail=0
run_batch() {   # the harnesses in "$@", at once
    pids=""
    for f in "$@"; do
        h=${f%%:*} c=${f#*:}
        mkdir -p "$B/fuzz_corpus_$c" || exit 1
        "$B/fuzz_$h" -max_total_time="$SECONDS_EACH" -max_len=8192 "$B/fuzz_corpus_$c" "tests/fuzz/corpus_$c" \
            >"$B/fuzz_$h.log" 2>&1 &
        pids="$pids $!:$h"
    done
    for p in $pids; do
        h=${p#*:}
        if wait "${p%%:*}"; then echo "fuzz_$h: $(grep '^Done' "$B/fuzz_$h.log")"
        else echo "fuzz_$h FAILED:"; cat "$B/fuzz_$h.log"; fail=1; fi
    done
}
while [ $# -gt 0 ]; do
    batch="" n=0
    while [ $# -gt 0 ] && [ $n -lt "$JOBS" ]; do batch="$batch $1"; shift; n=$((n + 1)); done
    # shellcheck disable=SC2086
    run_batch $batch
done
exit $fail
