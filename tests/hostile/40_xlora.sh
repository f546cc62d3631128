# Hostile X-LoRA directories (issue 15): FIFOs, truncated and garbage classifier files, absurd
# sizes, an adapter that is the X-LoRA directory itself or a loop of links, a NaN in the hidden
# states; each refused with one line, no hang, the old output intact.
XH=$T/40_xlora
XF=$F/xlora
mkdir -p $XH
xcopy() { # NAME: a copy of case d1_bcast with absolute adapter paths
    rm -rf "$XH/$1"; mkdir -p "$XH/$1"; cp $XF/d1_bcast/adapter_model.safetensors "$XH/$1/"
    sed "s#\"\\.\\./lora#\"$PWD/$XF/lora#" $XF/d1_bcast/adapter_config.json >"$XH/$1/adapter_config.json"
}
xrun() { $B xlora "$@" --hidden $XF/hidden.npy --output $XH/s.npy; }
xcopy ok
accept xrun $XH/ok
cp $XH/s.npy $XH/s_before
# the classifier truncated, garbage, a FIFO, a directory
xcopy trunc; head -c 40 $XF/d1_bcast/adapter_model.safetensors >$XH/trunc/adapter_model.safetensors
refuse "adapter_model.safetensors" xrun $XH/trunc
xcopy garbage; printf 'garbage!garbage!' >$XH/garbage/adapter_model.safetensors
refuse "adapter_model.safetensors" xrun $XH/garbage
xcopy fifo; rm $XH/fifo/adapter_model.safetensors
if mkfifo $XH/fifo/adapter_model.safetensors 2>/dev/null; then
    refuse "adapter_model.safetensors: is a FIFO" timeout 10 $B xlora $XH/fifo --hidden $XF/hidden.npy \
        --output $XH/s.npy
    xcopy fifo_cfg; rm $XH/fifo_cfg/adapter_config.json; mkfifo $XH/fifo_cfg/adapter_config.json
    refuse "is a FIFO" timeout 10 $B inspect $XH/fifo_cfg
    mkfifo $XH/hidden_fifo
    refuse "a FIFO" timeout 10 $B xlora $XH/ok --hidden $XH/hidden_fifo --output $XH/s.npy
else skip "40_xlora: mkfifo failed"; fi
xcopy dir_st; rm $XH/dir_st/adapter_model.safetensors; mkdir $XH/dir_st/adapter_model.safetensors
refuse "adapter_model.safetensors" xrun $XH/dir_st
# absurd sizes: refused by their checks, nothing sized by them first
xcopy huge_h; sed 's/"hidden_size": 32/"hidden_size": 99999999999/' $XF/d1_bcast/adapter_config.json |
    sed "s#\"\\.\\./lora#\"$PWD/$XF/lora#" >$XH/huge_h/adapter_config.json
refuse "\"hidden_size\" is 99999999999, outside 1..16777216" xrun $XH/huge_h
xcopy huge_size; sed 's/"xlora_size": 2048/"xlora_size": 16777216, "xlora_depth_": 0/' \
    $XH/ok/adapter_config.json >$XH/huge_size/adapter_config.json
accept xrun $XH/huge_size   # depth 1: the width is not used
xcopy deep; sed 's/"xlora_depth": 1/"xlora_depth": 1000000/' $XH/ok/adapter_config.json >$XH/deep/adapter_config.json
refuse "\"xlora_depth\" is 1000000, outside 1..64" xrun $XH/deep
python3 - $XH/many/adapter_config.json <<'PY'
import json, os, sys
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
json.dump({"peft_type": "XLORA", "hidden_size": 32, "adapters": {str(i): "x" for i in range(70000)}},
          open(sys.argv[1], "w"))
PY
refuse "\"adapters\" must be an object \"0\": path, ... of 1..65536 adapters" xrun $XH/many
# an adapter that is the X-LoRA directory itself, and a link loop
xcopy self; sed "s#\"$PWD/$XF/lora0\"#\"$XH/self\"#" $XH/ok/adapter_config.json >$XH/self/adapter_config.json
refuse "X-LoRA adapter \"0\": " xrun $XH/self
xcopy loop; ln -s loop_b $XH/loop/loop_a; ln -s loop_a $XH/loop/loop_b
sed "s#\"$PWD/$XF/lora0\"#\"loop_a\"#" $XH/ok/adapter_config.json >$XH/loop/adapter_config.json
refuse "X-LoRA adapter \"0\": no directory loop_a, $XH/loop/loop_a or $XH/loop/0" xrun $XH/loop
# a classifier tensor the config does not describe: an extra layer, an unrelated tensor
python3 - $XF/d1_bcast/adapter_model.safetensors $XH <<'PY'
import json, os, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
hdr, data = json.loads(b[8:8 + n]), b[8 + n:]
for case, name in (("extra_layer", "base_model.internal_xlora_classifier.layers.3.weight"), ("extra_other", "lm_head")):
    h = dict(hdr)
    h[name] = {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}
    t = json.dumps(h).encode()
    t += b" " * (-len(t) % 8)
    open(os.path.join(sys.argv[2], case + ".st"), "wb").write(struct.pack("<Q", len(t)) + t + data + b"\0" * 4)
PY
xcopy extra_layer; mv $XH/extra_layer.st $XH/extra_layer/adapter_model.safetensors
refuse "tensor base_model.internal_xlora_classifier.layers.3.weight is not part of the classifier" xrun $XH/extra_layer
xcopy extra_other; mv $XH/extra_other.st $XH/extra_other/adapter_model.safetensors
refuse "tensor lm_head is not part of the classifier the config describes" xrun $XH/extra_other
# PEFT's keys in PEFT's save order (sorted as strings) are fine; a key out of 0..N-1 is not
xcopy badkey; sed 's/"2": /"3": /' $XH/ok/adapter_config.json >$XH/badkey/adapter_config.json
refuse "\"adapters\" key \"3\" is not one of \"0\"..\"2\"" xrun $XH/badkey
# the adapters' text: not UTF-8, a NUL escape
xcopy utf8; printf '{"peft_type": "XLORA", "hidden_size": 32, "adapters": {"0": "\377"}}' \
    >$XH/utf8/adapter_config.json
refuse "not valid UTF-8" xrun $XH/utf8
xcopy nul; printf '{"peft_type": "XLORA", "hidden_size": 32, "adapters": {"0": "a\\u0000b"}}' \
    >$XH/nul/adapter_config.json
refuse "adapter_config.json" xrun $XH/nul
# NaN in the hidden states: NON_FINITE, the old output kept
python3 - $XH/nan.npy <<'PY'
import struct, sys
h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 32), }"
h += " " * (63 - (10 + len(h)) % 64) + "\n"
v = [0.0] * 64
v[40] = float("nan")
open(sys.argv[1], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + struct.pack("<64f", *v))
PY
refuse "NaN or Inf" $B xlora $XH/ok --hidden $XH/nan.npy --output $XH/s.npy
same $XH/s.npy $XH/s_before
no_temp $XH
