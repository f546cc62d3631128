#!/bin/sh
# `molora alpha` on the sharded fixture model (tests/fixtures/alpha_model, made by
# make_alpha_model.py): the same answer through the directory and the index; per-layer means and
# the allocation recomputed here in Python (stdlib, round-half-to-even as numpy); each matrix's
# alpha against the float64 numpy reference tools/alpha_ref.py when Debian's numpy is present;
# bad inputs exit non-zero with one line on stderr.  Usage: tests/test_alpha_cli.sh [build/molora]
B=${1:-build/molora}
M=tests/fixtures/alpha_model
. tests/lib.sh

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
# AlphaLoRA's exponential_scaling: rint(s / sum * T), then one at a time against the unnormalised s
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
spec = importlib.util.spec_from_file_location("ref", ref)
R = importlib.util.module_from_spec(spec)
spec.loader.exec_module(R)
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

# BERT, GPT-2 and T5 names (tests/fixtures/alpha_arch, made by make_alpha_arch.py): the family is
# detected and printed; layer alphas and allocations as computed apart by make_alpha_arch_expected.py
# (weightwatcher 0.7.7 and tools/alpha_ref.py: expected_ww.json; AlphaLoRA's own fix_finger on the
# float16-rounded weights: expected_fp16.json).  check MODEL METHOD EXPECTED-FILE TOL [molora args]
A=tests/fixtures/alpha_arch
check() { model=$1 method=$2 exp=$3 tol=$4; shift 4
    if $B alpha $A/$model.safetensors --json --budget 12 --method $method "$@" >$T/a.json 2>$T/err &&
       python3 - $T/a.json $A/$exp $model $method $tol <<'PY'
import json, sys
got, exp = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
model, method, tol = sys.argv[3], sys.argv[4], float(sys.argv[5])
want = exp[model][method] if method in exp[model] else exp[model]
pats = json.load(open(sys.argv[2].replace("fp16", "ww")))[model]["patterns"]
assert got["family"] == model and got["patterns"] == pats, (got["family"], got["patterns"])
L = got["layers"]
assert [l["experts"] for l in L] == want["experts"], ([l["experts"] for l in L], want["experts"])
for l, a in zip(L, want["layer_alpha"]):
    assert abs(l["alpha"] - a) <= tol * a, (l, a)
assert sorted(m["name"] for m in got["matrices"]) == sorted(want["matrix_alpha"]), "matrix set"
ref_alpha = want["matrix_alpha"]
worst = max(abs(m["alpha"] - ref_alpha[m["name"]]) / ref_alpha[m["name"]] for m in got["matrices"])
assert worst <= tol, worst
first = {p: min(l["layer"] for l in L if l["set"] == p) for p in pats}
assert all(l["index"] == l["layer"] - first[l["set"]] for l in L)
fp16 = " --upstream-fp16" if "fp16" in sys.argv[2] else ""
print("alpha-cli: %s %s%s: max rel err %.1e over %d matrices" % (model, method, fp16, worst, len(got["matrices"])))
PY
    then ok; else bad "alpha $model $method $*: $(cat $T/err)"; fi
}
for model in bert gpt2 t5; do
    check $model fix_finger expected_ww.json 1e-9
    check $model ww expected_ww.json 1e-9
    check $model ww077 expected_ww.json 1e-9
    check $model fix_finger expected_fp16.json 1e-5 --upstream-fp16
done
# the text output names the detected pattern(s)
if $B alpha $A/t5.safetensors >$T/t5.txt && grep -q \
    '^layers: t5 "encoder.block.{L}." = layers 0..1, "decoder.block.{L}." = layers 2..3' $T/t5.txt &&
   $B alpha $A/gpt2.safetensors | grep -q '^layers: gpt2 "h.{L}." = layers 0..2$'; then ok; \
       else bad "alpha: detected pattern in the table"; fi
# --layers overrides: T5's decoder stack alone is layers 0..1 with the decoder's alphas
if $B alpha $A/t5.safetensors --json --layers 'decoder.block.{L}.' --budget 12 >$T/dec.json && python3 \
    - $T/dec.json $A/expected_ww.json <<'PY'
import json, sys
got, exp = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["t5"]["fix_finger"]
assert got["family"] is None and got["patterns"] == ["decoder.block.{L}."]
assert [l["layer"] for l in got["layers"]] == [0, 1]
for l, a in zip(got["layers"], exp["layer_alpha"][2:]):
    assert abs(l["alpha"] - a) <= 1e-9 * a
assert all(m["name"].startswith("decoder.") for m in got["matrices"]) and len(got["matrices"]) == 20
PY
then ok; else bad "alpha --layers decoder.block.{L}."; fi
# a looser pattern for BERT gives the same answer as the detected one
$B alpha $A/bert.safetensors --json >$T/b1.json
if $B alpha $A/bert.safetensors --json --layers 'layer.{L}.' |
   sed -e 's/"family": null, "patterns": \["layer.{L}."\]/"family": "bert", "patterns": ["encoder.layer.{L}."]/' \
       -e 's/"set": "layer.{L}."/"set": "encoder.layer.{L}."/' |
   cmp -s - $T/b1.json; then ok; else bad "alpha --layers layer.{L}. differs from the detected pattern"; fi

# table output, and bad inputs: non-zero exit, exactly one stderr line
if $B alpha $M >$T/table 2>$T/err && grep -q "experts" $T/table && [ ! -s $T/err ]; then ok; else bad "alpha table"; fi
refuse "budget" $B alpha $M --budget -1
refuse "beta" $B alpha $M --beta 0
refuse "beta" $B alpha $M --beta nan
refuse "method" $B alpha $M --method hill
refuse "unknown option" $B alpha $M --beams 3
refuse "does-not-exist" $B alpha tests/fixtures/does-not-exist
refuse "no 2-D weight" $B alpha $M --prefix lm_head.
refuse "no 2-D weight" $B alpha tests/fixtures/peft/adapter_model.safetensors
refuse "usage" $B alpha
refuse 'no 2-D weight matches --layers "h.{L}."' $B alpha $A/bert.safetensors --layers 'h.{L}.'
refuse 'exactly one {L}' $B alpha $A/bert.safetensors --layers 'encoder.layer.'
refuse 'exactly one {L}' $B alpha $A/bert.safetensors --layers 'h.{L}.{L}'
refuse "method" $B alpha $M --method ww0.7.7
refuse "overflows float16" $B alpha $A/big.safetensors --upstream-fp16
# the GPT-2 model PEFT's Conv1D fixture was written against: Conv1D weights (in, out) taken as stored
if $B alpha tests/fixtures/gpt2/base --json >$T/g.json 2>$T/err &&
   json_holds $T/g.json "j['family'] == 'gpt2' and len(j['layers']) == 2 and all(l['alpha'] > 1 for l in j['layers'])"
then ok; else bad "alpha on the GPT-2 Conv1D fixture: $(cat $T/err)"; fi
finish alpha-cli
