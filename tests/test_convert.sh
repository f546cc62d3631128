#!/bin/sh
# tools/convert_pickle.py on a torch-saved AdaMoLE-style state dict (aliases, BF16, F16): bytes
# preserved, aliases dropped, result loads with build/molora. Skips when Debian's torch is absent.
PY=${PYTHON:-/usr/bin/python3}
B=${1:-build/molora}
if ! $PY -c "import torch" 2>/dev/null; then echo "convert: skipped (no python3-torch)"; exit 0; fi
. tests/lib.sh
$PY - "$T" <<'PYEOF' || exit 1
import json, struct, subprocess, sys, torch
T = sys.argv[1]
torch.manual_seed(0)
P = "base_model.model.model.layers.0.self_attn.q_proj"
sd = {}
for i in range(2):
    A, B = torch.randn(2, 5), torch.randn(4, 2)
    sd[P + ".lora_A.%d.weight" % i], sd[P + ".lora_B.%d.weight" % i] = A, B
    sd[P + ".moe_layer.experts.%d.lora_A.weight" % i], sd[P + ".moe_layer.experts.%d.lora_B.weight" % i] = A, B
sd[P + ".lora_gating.weight"] = torch.randn(2, 5).to(torch.bfloat16)
sd[P + ".lora_threshold.weight"] = torch.randn(1, 5).half()
sd[P + ".lora_threshold.bias"] = torch.randn(1)
torch.save(sd, T + "/adapter_model.bin")
json.dump({"peft_type": "ADAMOLE", "lora_rank": 2, "lora_alpha": 4, "num_experts": 2, "max_threshold": None},
          open(T + "/adapter_config.json", "w"))
subprocess.run([sys.executable, "tools/convert_pickle.py", T, T + "/out"], check=True, stdout=subprocess.DEVNULL)
b = open(T + "/out/adapter_model.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert len(h) == 7 and not any("moe_layer" in k for k in h), sorted(h)
for k, v in h.items():
    t = sd[k]
    ref = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
    assert b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] == ref, k
PYEOF
$B inspect "$T/out" >/dev/null || exit 1
ok
# a write failing half-way (file-size limit; Python ignores SIGXFSZ) leaves the old output intact,
# no temporary file, a non-zero exit and one stderr line
cp "$T/out/adapter_model.safetensors" "$T/old.safetensors"
( ulimit -f 1; exec $PY tools/convert_pickle.py "$T" "$T/out" ) >/dev/null 2>"$T/err"; rc=$?
if [ $rc -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "write failed" "$T/err" &&
   cmp -s "$T/out/adapter_model.safetensors" "$T/old.safetensors" && [ -z "$(ls -A "$T/out" | grep convert-)" ]
then ok; else bad "convert under ulimit -f: rc=$rc $(cat "$T/err")"; fi
# an output that is an input (adapter_model.safetensors hard-linked to the .bin) is refused
mkdir "$T/link" && ln "$T/adapter_model.bin" "$T/link/adapter_model.safetensors"
$PY tools/convert_pickle.py "$T" "$T/link" >/dev/null 2>"$T/err"; rc=$?
if [ $rc -ne 0 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "is the input" "$T/err" &&
   cmp -s "$T/link/adapter_model.safetensors" "$T/adapter_model.bin"
then ok; else bad "convert over its input: rc=$rc $(cat "$T/err")"; fi
# a FIFO as the pickle is refused, not waited on
mkdir "$T/fifo" && mkfifo "$T/fifo/adapter_model.bin" && cp "$T/adapter_config.json" "$T/fifo/"
timeout 20 $PY tools/convert_pickle.py "$T/fifo" "$T/fifo_out" >/dev/null 2>"$T/err"; rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "not a regular file" "$T/err"
then ok; else bad "convert of a FIFO: rc=$rc $(cat "$T/err")"; fi
finish convert
