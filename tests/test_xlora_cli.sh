#!/bin/sh
# The X-LoRA commands against PEFT 0.20's numbers (tests/fixtures/xlora, make_xlora.py):
# molora xlora (the scalings (T, L, N) after every step), molora forward --weights (per-token
# weights, any adapter; an X-LoRA directory's module with its N adapters), inspect of an X-LoRA
# directory (options and module order); every refusal at its message.
# Usage: tests/test_xlora_cli.sh [build/molora]   (from the repository root)
B=${1:-build/molora}
X=tests/fixtures/xlora
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
if $B inspect $X/d1_topk_sm --json >$T/j && json_holds $T/j "j['layout'] == 'xlora' and \
j['xlora']['top_k_lora'] == 2 and j['xlora']['module_order'] == 'llama' and \
[m['name'] for m in j['modules']] == [l.strip() for l in open('$X/d1_topk_sm/order.txt')] and \
j['xlora']['global_scaling_weight'] == 0.5 and j['xlora']['enable_softmax'] is False"
then ok; else bad "inspect --json x-lora"; fi
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
