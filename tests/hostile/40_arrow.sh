# Hostile inputs to compose --routing arrow (issue 15): --prototypes files that miss a module,
# have a wrong shape, dtype or NaN, give a module twice or carry extra tensors; composed arrow
# adapters whose prototypes or config are broken. One clear line each, no output left behind.
# Fixtures are built here with python3 (stdlib only).
H=$T/40_arrow
mkdir -p $H
A=$F/arrow
AX="--expert $A/task_0 --expert $A/task_1 --expert $A/task_2"
PQ=base_model.model.model.layers.0.self_attn.q_proj
PV=base_model.model.model.layers.0.self_attn.v_proj
# st OUT NAME:DTYPE:ROWS:COLS[:nan] ...: a safetensors file of those tensors (values 0.25, one NaN)
st() {
    python3 - "$@" <<'PY'
import json, struct, sys
out, specs = sys.argv[1], sys.argv[2:]
hdr, data = {}, b""
for s in specs:
    name, dt, rows, cols, *flag = s.split(":")
    n, size = int(rows) * int(cols), {"F32": 4, "F16": 2}[dt]
    if dt == "F32":
        vals = [0.25] * n
        if flag: vals[n // 2] = float("nan")
        blob = struct.pack("<%df" % n, *vals)
    else:
        blob = struct.pack("<%de" % n, *([0.25] * n))
    end = len(data) + len(blob)
    hdr[name] = {"dtype": dt, "shape": [int(rows), int(cols)], "data_offsets": [len(data), end]}
    data += blob
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(out, "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
}
st $H/ok.safetensors $PQ.arrow_prototypes:F32:3:16 $PV.arrow_prototypes:F32:3:16
accept $B compose $AX --routing arrow --prototypes $H/ok.safetensors --out $H/out_ok
st $H/missing.safetensors $PQ.arrow_prototypes:F32:3:16
refuse "missing.safetensors: tensor model.layers.0.self_attn.v_proj.arrow_prototypes not found" \
    $B compose $AX --routing arrow --prototypes $H/missing.safetensors --out $H/out
st $H/shape.safetensors $PQ.arrow_prototypes:F32:2:16 $PV.arrow_prototypes:F32:3:16
refuse "should be (3, 16): one prototype per --expert" $B compose $AX --routing arrow \
    --prototypes $H/shape.safetensors --out $H/out
st $H/cols.safetensors $PQ.arrow_prototypes:F32:3:8 $PV.arrow_prototypes:F32:3:16
refuse "should be (3, 16)" $B compose $AX --routing arrow --prototypes $H/cols.safetensors --out $H/out
st $H/nan.safetensors $PQ.arrow_prototypes:F32:3:16 $PV.arrow_prototypes:F32:3:16:nan
refuse "tensor $PV.arrow_prototypes has NaN or Inf" $B compose $AX --routing arrow --prototypes $H/nan.safetensors \
    --out $H/out
st $H/f16.safetensors $PQ.arrow_prototypes:F16:3:16 $PV.arrow_prototypes:F32:3:16
refuse "is F16, not F32" $B compose $AX --routing arrow --prototypes $H/f16.safetensors --out $H/out
st $H/twice.safetensors $PQ.arrow_prototypes:F32:3:16 model.layers.0.self_attn.q_proj.arrow_prototypes:F32:3:16 \
    $PV.arrow_prototypes:F32:3:16
refuse "both give module $PQ" $B compose $AX --routing arrow --prototypes $H/twice.safetensors --out $H/out
st $H/extra.safetensors $PQ.arrow_prototypes:F32:3:16 $PV.arrow_prototypes:F32:3:16 stray.weight:F32:1:1
refuse "tensor stray.weight is not named <module path>.arrow_prototypes" $B compose $AX --routing arrow \
    --prototypes $H/extra.safetensors --out $H/out
st $H/extra_mod.safetensors $PQ.arrow_prototypes:F32:3:16 $PV.arrow_prototypes:F32:3:16 \
    model.layers.0.self_attn.k_proj.arrow_prototypes:F32:3:16
refuse "module model.layers.0.self_attn.k_proj is not adapted by the experts" $B compose $AX --routing arrow \
    --prototypes $H/extra_mod.safetensors --out $H/out
printf 'not a safetensors file' >$H/garbage.safetensors
refuse "garbage.safetensors" $B compose $AX --routing arrow --prototypes $H/garbage.safetensors --out $H/out
refuse "nope.safetensors" $B compose $AX --routing arrow --prototypes $H/nope.safetensors --out $H/out
# a header claiming an absurd tensor: refused from the header, nothing allocated for it
python3 - $H/absurd.safetensors <<'PY'
import json, struct, sys
h = json.dumps({"x.arrow_prototypes": {"dtype": "F32", "shape": [1 << 40, 1 << 20], "data_offsets": [0, 16]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\0" * 16)
PY
refuse "absurd.safetensors" $B compose $AX --routing arrow --prototypes $H/absurd.safetensors --out $H/out
# the same tensor name twice in the header (a JSON key given twice): refused by the reader
python3 - $H/dup.safetensors <<'PY'
import struct, sys
e = '{"dtype": "F32", "shape": [3, 16], "data_offsets": [%d, %d]}'
k = "base_model.model.model.layers.0.self_attn.%s_proj.arrow_prototypes"
h = ('{"%s": %s, "%s": %s, "%s": %s}' % (k % "q", e % (0, 192), k % "v", e % (192, 384),
                                        k % "q", e % (384, 576))).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(576))
PY
refuse "arrow_prototypes\" appears twice" $B compose $AX --routing arrow --prototypes $H/dup.safetensors --out $H/out
[ -e $H/out ] && bad "40_arrow: a refused compose left its --out" || ok
no_temp $H

# composed arrow adapters broken after the fact: the loader's checks (inspect and forward)
cp -r $H/out_ok $H/bad_cfg
sed 's/"top_k": 3/"top_k": 4/' $H/out_ok/adapter_config.json >$H/bad_cfg/adapter_config.json
refuse "\"top_k\" 4 outside 1..3" $B inspect $H/bad_cfg
cp -r $H/out_ok $H/no_k
grep -v '"top_k"' $H/out_ok/adapter_config.json >$H/no_k/adapter_config.json
accept $B forward $H/no_k --module $PQ --input $A/x.npy --output $H/y.npy   # the default k = 3 = N
cp -r $H/out_ok $H/bad_route
sed 's/"routing": "arrow"/"routing": "arrows"/' $H/out_ok/adapter_config.json >$H/bad_route/adapter_config.json
refuse "mole_output or arrow" $B inspect $H/bad_route
# the composed file's own prototypes: wrong shape, NaN, a gate beside them, in a non-arrow file
python3 - $H/out_ok $H <<'PY'
import json, os, shutil, struct, sys
src, H = sys.argv[1], sys.argv[2]
raw = open(os.path.join(src, "adapter_model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr, data = json.loads(raw[8:8 + n]), raw[8 + n:]
def write(name, hdr, data, cfg=None):
    d = os.path.join(H, name)
    shutil.copytree(src, d)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(os.path.join(d, "adapter_model.safetensors"), "wb").write(struct.pack("<Q", len(h)) + h + data)
    if cfg:
        c = json.load(open(os.path.join(src, "adapter_config.json")))
        c.update(cfg)
        json.dump(c, open(os.path.join(d, "adapter_config.json"), "w"))
key = "base_model.model.model.layers.0.self_attn.q_proj.arrow_prototypes"
a, b = hdr[key]["data_offsets"]
h2 = json.loads(json.dumps(hdr)); h2[key]["shape"] = [2, 24]          # same bytes, wrong shape
write("proto_shape", h2, data)
nan = data[:a] + struct.pack("<f", float("nan")) + data[a + 4:]      # NaN in the first prototype
write("proto_nan", hdr, nan)
h3 = json.loads(json.dumps(hdr))                                      # lora_gating beside the prototypes
h3[key.replace("arrow_prototypes", "lora_gating.weight")] = {"dtype": "F32", "shape": [3, 16],
                                                            "data_offsets": [len(data), len(data) + 192]}
write("proto_gate", h3, data + bytes(192))
write("proto_dense", hdr, data, {"routing": "dense"})                 # prototypes in a dense file
PY
refuse "arrow_prototypes \"$PQ.arrow_prototypes\" should be (3, 16)" $B inspect $H/proto_shape
refuse "module $PQ: arrow_prototypes has NaN or Inf" $B forward $H/proto_nan --module $PQ --input $A/x.npy \
    --output $H/y.npy
refuse "routing arrow takes no gate, threshold or mole_gate tensors" $B inspect $H/proto_gate
refuse "arrow_prototypes with routing dense" $B inspect $H/proto_dense
