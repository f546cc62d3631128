#!/bin/sh
# `molora alpha` on the sharded fixture model (tests/fixtures/alpha_model, made by
# make_alpha_model.py): the same answer through the directory and the index; per-layer means and
# the allocation recomputed here in Python (stdlib, round-half-to-even as numpy); each matrix's
# alpha against the float64 numpy reference tools/alpha_ref.py when Debian's numpy is present;
# bad inputs exit non-zero with one line on stderr.  Usage: tests/test_alpha_cli.sh [build/molora]
B=${1:-build/molora}
M=tests/fixtures/alpha_model
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

for method in fix_finger ww; do
    if $B alpha $M --json --method $method --budget 12 >$T/dir.json 2>$T/err &&
       $B alpha $M/model.safetensors.index.json --json --method $method --budget 12 >$T/idx.json 2>>$T/err &&
       cmp -s $T/dir.json $T/idx.json; then ok; else bad "alpha $method: directory vs index: $(cat $T/err)"; fi
    if python3 - $T/dir.json <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
m, L = j["matrices"], j["layers"]
assert len(m) == 6 and len(L) == 3, (len(m), len(L))
assert j["skipped"] == ["model.layers.2.self_attn.rotary.weight"], j["skipped"]
for l in L:
    a = [x["alpha"] for x in m if x["layer"] == l["layer"]]
    assert len(a) == 2 and abs(sum(a) / 2 - l["alpha"]) <= 1e-12 * abs(l["alpha"]), l
    assert l["top_k"] == (2 if l["experts"] > 1 else 1)
for x in m:
    assert x["n_eigs"] == 24 and 1 <= x["n_tail"] <= 24 and x["alpha"] > 1
# reference-math.md 6: rint(s / sum * T), then one at a time against the unnormalised s
s = [l["alpha"] ** 2.5 for l in L]
n = [int(round(v / sum(s) * 12)) for v in s]   # Python's round is half-to-even, as np.round
while sum(n) != 12:
    d = 12 - sum(n)
    r = [s[i] - n[i] for i in range(len(s))]
    i = r.index(min(r)) if d > 0 else r.index(max(r))
    n[i] += 1 if d > 0 else -1
assert [l["experts"] for l in L] == n, ([l["experts"] for l in L], n)
PY
    then ok; else bad "alpha $method: json checks"; fi
done

# every matrix against the float64 SVD reference (needs Debian's python3-numpy; skipped without)
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
    $B alpha $M --json --budget 12 >$T/ff.json && $B alpha $M --json --method ww --budget 12 >$T/ww.json
    if /usr/bin/python3 - $M $T/ff.json $T/ww.json tools/alpha_ref.py <<'PY'
import json, struct, sys, importlib.util
M, ff, ww, ref = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("ref", ref); R = importlib.util.module_from_spec(spec); spec.loader.exec_module(R)
import numpy as np
idx = json.load(open(M + "/model.safetensors.index.json"))["weight_map"]
def tensor(name):
    b = open(M + "/" + idx[name], "rb").read()
    n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); t = h[name]
    raw = b[8 + n + t["data_offsets"][0]: 8 + n + t["data_offsets"][1]]
    if t["dtype"] == "BF16":
        v = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
        return v.view(np.float32).reshape(t["shape"])
    return np.frombuffer(raw, np.float32).reshape(t["shape"])
worst = 0
for path, method in ((ff, "fix_finger"), (ww, "ww")):
    for x in json.load(open(path))["matrices"]:
        a = R.fit(R.esd(tensor(x["name"]).astype(np.float64)), method)[0]
        worst = max(worst, abs(a - x["alpha"]) / abs(a))
print("alpha vs float64 SVD reference: max rel err %.2e" % worst)
assert worst < 1e-6
PY
    then ok; else bad "alpha vs tools/alpha_ref.py"; fi
else
    echo "alpha-cli: numpy cross-check skipped (no python3-numpy)"
fi

# table output, and bad inputs: non-zero exit, exactly one stderr line
if $B alpha $M >$T/table 2>$T/err && grep -q "experts" $T/table && [ ! -s $T/err ]; then ok; else bad "alpha table"; fi
refuse() { want=$1; shift
    "$@" >/dev/null 2>$T/err; rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(wc -l <$T/err)" -eq 1 ] && grep -q -- "$want" $T/err; then ok
    else bad "refuse '$want' (rc $rc): $(cat $T/err)"; fi
}
refuse "budget" $B alpha $M --budget -1
refuse "beta" $B alpha $M --beta 0
refuse "beta" $B alpha $M --beta nan
refuse "method" $B alpha $M --method hill
refuse "unknown option" $B alpha $M --beams 3
refuse "does-not-exist" $B alpha tests/fixtures/does-not-exist
refuse "no 2-D weight" $B alpha $M --prefix lm_head.
refuse "no 2-D weight" $B alpha tests/fixtures/peft/adapter_model.safetensors
refuse "usage" $B alpha
echo "alpha-cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
