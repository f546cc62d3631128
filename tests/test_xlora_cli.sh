#!/bin/sh
# The X-LoRA commands against PEFT 0.20's numbers (tests/fixtures/xlora, make_xlora.py):
# molora xlora (the scalings (T, L, N) after every step), molora forward --weights (per-token
# weights, any adapter; an X-LoRA directory's module with its N adapters), inspect of an X-LoRA
# directory (options and module order); every refusal at its message.
# Usage: tests/test_xlora_cli.sh [build/molora]   (from the repository root)
B=${1:-build/molora}
X=tests/fixtures/xlora
F=tests/fixtures
. tests/lib.sh
close() { # got want [tol]
    if python3 tests/npy_close.py "$1" "$2" ${3:-1e-5} >/dev/null 2>$T/cmp; then ok; else bad "$(cat $T/cmp)"; fi
}
for c in d1_bcast d2_layer d2_topk d1_topk_sm d3_spv d1_spv_topk; do
    if $B xlora $X/$c --hidden $X/hidden.npy --output $T/s.npy 2>$T/err; then close $T/s.npy $X/$c/weights.npy
    else bad "xlora $c: $(cat $T/err)"; fi
    for m in layers.0.self_attn.q_proj layers.1.self_attn.k_proj; do
        if $B forward $X/$c --module model.$m --input $X/x.npy --weights $X/$c/w.$m.npy --output $T/y.npy \
            --base $X/base 2>$T/err; then close $T/y.npy $X/$c/y.$m.npy
        else bad "forward $c $m: $(cat $T/err)"; fi
    done
done
# the package's layout: the same scalings as d2_layer
$B xlora $X/xlora_pkg --hidden $X/hidden.npy --output $T/s.npy && close $T/s.npy $X/d2_layer/weights.npy
# --weights for a plain adapter: used as given (column 0 of d2_layer's weights for lora0 alone,
# PEFT's own LoRA layer times that weight = the delta checked against a second run at weight 1)
python3 - "$T" <<'PY'
import struct, sys
def save(path, rows, cols, v):
    h = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    h += " " * (63 - (10 + len(h)) % 64) + "\n"
    data = struct.pack("<%df" % len(v), *v)
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data)
save(sys.argv[1] + "/one.npy", 17, 1, [1.0] * 17)
save(sys.argv[1] + "/half.npy", 17, 1, [0.5] * 17)
save(sys.argv[1] + "/wide.npy", 17, 2, [0.5] * 34)
save(sys.argv[1] + "/short.npy", 16, 3, [0.5] * 48)
PY
M=model.layers.0.self_attn.q_proj
lf() { $B forward $X/lora0 --module $M --input $X/x.npy "$@"; }
if lf --output $T/y1.npy --weights $T/one.npy && lf --output $T/yd.npy &&
   lf --output $T/yh.npy --weights $T/half.npy --weights-out $T/wh.npy && python3 - "$T" <<'PY'
import struct, sys
def load(p):
    b = open(sys.argv[1] + "/" + p, "rb").read()
    hl = struct.unpack("<H", b[8:10])[0]
    return struct.unpack("<%df" % ((len(b) - 10 - hl) // 4), b[10 + hl:])
a, d, h, w = load("y1.npy"), load("yd.npy"), load("yh.npy"), load("wh.npy")
assert a == d and max(abs(2 * x - y) for x, y in zip(h, a)) < 1e-5 and set(w) == {0.5}
PY
then ok; else bad "forward --weights on a plain LoRA"; fi
# inspect: the options and the module order
if $B inspect $X/d2_layer >$T/i &&
   grep -q "^module order: llama (decoder layer, then q, k, v, o, gate, up, down)$" $T/i &&
   grep -q "layer-wise, softmax on (temperature 0.5)" $T/i &&
   grep -q "^  5 base_model.model.model.layers.1.self_attn.k_proj" $T/i && grep -q " 1(s=1)  fixed" $T/i
then ok; else bad "inspect x-lora: $(cat $T/i)"; fi
# the classifier line: depth and (depth > 1 only) width, exactly
if $B inspect $X/d1_bcast >$T/i && grep -q "^classifier: depth 1, broadcast, softmax on" $T/i &&
   $B inspect $X/d2_layer >$T/i2 && grep -q "^classifier: depth 2, width 16, layer-wise, softmax on" $T/i2
then ok; else bad "inspect x-lora classifier line: $(grep classifier $T/i $T/i2)"; fi
if $B inspect $X/d1_topk_sm --json >$T/j && json_holds $T/j "j['layout'] == 'xlora' and \
j['xlora']['top_k_lora'] == 2 and j['xlora']['module_order'] == 'llama' and \
[m['name'] for m in j['modules']] == [l.strip() for l in open('$X/d1_topk_sm/order.txt')] and \
j['xlora']['global_scaling_weight'] == 0.5 and j['xlora']['enable_softmax'] is False"
then ok; else bad "inspect --json x-lora"; fi
# a model without an order table (GPT-2 names): broadcast runs, layer-wise needs --module-order
python3 - "$T/g2" <<'PY'
import json, os, struct, sys
d = sys.argv[1]
def st(path, tensors):
    h, data = {}, b""
    for name, shape, vals in tensors:
        h[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + 4 * len(vals)]}
        data += struct.pack("<%df" % len(vals), *vals)
    hb = json.dumps(h).encode()
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
def npy(path, shape, vals):
    h = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ", ".join(map(str, shape))
    h += " " * (63 - (10 + len(h)) % 64) + "\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() +
                           struct.pack("<%df" % len(vals), *vals))
os.makedirs(d + "/0")
p = "base_model.model.transformer.h.%d.attn.c_attn.lora_%s.weight"
st(d + "/0/adapter_model.safetensors", [(p % (b, ab), [1, 8] if ab == "A" else [8, 1], [0.5] * 8)
                                        for b in (0, 1) for ab in "AB"])
json.dump({"peft_type": "LORA", "r": 1, "lora_alpha": 2}, open(d + "/0/adapter_config.json", "w"))
W = [0.25 * (k + 1) for k in range(16)]
st(d + "/adapter_model.safetensors", [("base_model.internal_xlora_classifier.layers.0.weight", [2, 8], W),
                                      ("base_model.internal_xlora_classifier.layers.0.bias", [2], [0.5, -1.0])])
json.dump({"peft_type": "XLORA", "hidden_size": 8, "adapters": {"0": "gone"}, "layerwise_scalings": True,
           "enable_softmax": False}, open(d + "/adapter_config.json", "w"))
npy(d + "/../h.npy", (1, 8), [1.0] + [0.0] * 7)
npy(d + "/../want.npy", (1, 2, 1), [W[0] + 0.5, W[8] - 1.0])   # row l of the classifier for module l
os.makedirs(d + "b")
os.link(d + "/0/adapter_model.safetensors", d + "b/adapter_model.safetensors")   # an adapter beside it
json.dump({"peft_type": "LORA", "r": 1, "lora_alpha": 2}, open(d + "b/adapter_config.json", "w"))
st(d + "b/xlora_classifier.safetensors", [("last.weight", [1, 8], W[:8])])
json.dump({"hidden_size": 8, "adapters": ["."], "use_bias": False, "enable_softmax": False},
          open(d + "b/xlora_config.json", "w"))
open(d + "/../order", "w").write("transformer.h.1.attn.c_attn\ntransformer.h.0.attn.c_attn\n")
PY
if $B inspect $T/g2 >$T/i && grep -q "^module order: unknown" $T/i; then ok; else bad "inspect g2: $(cat $T/i)"; fi
refuse "layer-wise scalings need X-LoRA's module order, which its module names do not give (not the Llama layout)" \
    $B xlora $T/g2 --hidden $T/h.npy --output $T/s.npy
if $B xlora $T/g2 --hidden $T/h.npy --output $T/s.npy --module-order $T/order && close $T/s.npy $T/want.npy &&
   $B inspect $T/g2 --module-order $T/order | grep -q "^  0 base_model.model.transformer.h.1.attn.c_attn"
then ok; else bad "xlora --module-order"; fi
printf 'transformer.h.1.attn.c_attn\n\ntransformer.h.0.attn.c_attn\n' >$T/order_gap
refuse "line 2 is empty" $B xlora $T/g2 --hidden $T/h.npy --output $T/s.npy --module-order $T/order_gap
printf 'transformer.h.1.attn.c_attn\ntransformer.h.0.attn\000.c_attn\n' >$T/order_nul
refuse "order_nul: line 2 holds a NUL byte (one module path a line, text)" \
    $B xlora $T/g2 --hidden $T/h.npy --output $T/s.npy --module-order $T/order_nul
# broadcast needs no order (the xlora package's layout, no bias, its adapter in "."): (1, 2, 1) = 0.25 twice
if $B xlora $T/g2b --hidden $T/h.npy --output $T/s.npy && python3 -c "
import struct; b = open('$T/s.npy', 'rb').read(); assert struct.unpack('<2f', b[-8:]) == (0.25, 0.25)"
then ok; else bad "xlora broadcast without an order"; fi
refuse "peft_type\" \"XLORA\" is an X-LoRA adapter" $B compose --expert $X/d1_bcast --gate $F/compose_gate.safetensors \
    --out $T/c
printf 'base_model.model.model.layers.1.self_attn.q_proj\n' >$T/order1
# refusals
refuse "lacks 2 tensors: base_model.internal_xlora_classifier.layers.0.weight" $B xlora $X/peft_save \
    --hidden $X/hidden.npy --output $T/s2.npy
refuse "lacks 2 tensors" $B inspect $X/peft_save
refuse "width 3 does not match the X-LoRA hidden_size 32" $B xlora $X/xlora_pkg --hidden $T/short.npy --output $T/s2.npy
refuse "give the module's weights with --weights" $B forward $X/d2_layer --module $M --input $X/x.npy --output $T/y.npy
refuse "--weights replaces the routing" $B forward $X/d2_layer --module $M --input $X/x.npy --output $T/y.npy \
    --weights $X/d2_layer/w.layers.0.self_attn.q_proj.npy --routing dense
refuse "shape (17, 2), want (17, 3)" $B forward $X/d2_layer --module $M --input $X/x.npy --output $T/y.npy \
    --weights $T/wide.npy
refuse "shape (16, 3), want (17, 1)" $B forward $X/lora0 --module $M --input $X/x.npy --output $T/y.npy \
    --weights $T/short.npy
refuse "no adapted module" $B forward $X/d2_layer --module model.layers.5.self_attn.q_proj --input $X/x.npy \
    --output $T/y.npy --weights $T/wide.npy
refuse "the module order names 1 modules, the adapters adapt 8" $B xlora $X/d2_layer --hidden $X/hidden.npy \
    --output $T/s2.npy --module-order $T/order1
refuse "--module-order is for X-LoRA adapters" $B inspect $X/lora0 --module-order $T/order1
refuse "is the input --hidden" $B xlora $X/d2_layer --hidden $X/hidden.npy --output $X/hidden.npy
refuse "is the input XLORA_DIR" $B xlora $X/d2_layer --hidden $X/hidden.npy --output $X/d2_layer/weights.npy
refuse "is the input adapter" $B xlora $X/d2_layer --hidden $X/hidden.npy --output $X/lora1/adapter_config.json
refuse "is the input --weights" $B forward $X/d2_layer --module $M --input $X/x.npy \
    --weights $X/d2_layer/w.layers.0.self_attn.q_proj.npy --output $X/d2_layer/w.layers.0.self_attn.q_proj.npy
refuse "usage: molora xlora" $B xlora $X/d2_layer --output $T/s2.npy
refuse "--hidden given twice" $B xlora $X/d2_layer --hidden a --hidden b --output $T/s2.npy
[ ! -e $T/s2.npy ] && ok || bad "a refused xlora wrote its output"
no_temp $T
finish xlora_cli
