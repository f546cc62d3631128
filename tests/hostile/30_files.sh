# Hostile inputs to the file readers (issue 12, part "parse"): FIFOs where a file is expected,
# keys given twice behind an escape, a pickle-only adapter, dtypes only safetensors 0.8 knows,
# a header of [0,0,...]. Fixtures are built here with python3 (stdlib only).
H=$T/30_files
mkdir -p $H
Q=model.layers.0.self_attn.q_proj

# a copy of the PEFT fixture whose config or weights the cases replace
peft_copy() { rm -rf "$H/$1"; mkdir -p "$H/$1"; cp $F/peft/adapter_config.json $F/peft/adapter_model.safetensors \
    "$H/$1/"; }

# FIFOs as adapter_config.json, adapter_model.safetensors and --base: refused at once, no hang
peft_copy fifo_cfg; rm $H/fifo_cfg/adapter_config.json; mkfifo $H/fifo_cfg/adapter_config.json
refuse "adapter_config.json: is a FIFO" timeout 10 $B inspect $H/fifo_cfg
peft_copy fifo_st; rm $H/fifo_st/adapter_model.safetensors; mkfifo $H/fifo_st/adapter_model.safetensors
refuse "adapter_model.safetensors: is a FIFO" timeout 10 $B inspect $H/fifo_st
mkfifo $H/base.safetensors
refuse "base.safetensors: is a FIFO" timeout 10 $B forward $F/peft --module $Q --input $F/x.npy --output $H/y.npy \
    --base $H/base.safetensors
peft_copy dir_cfg; rm $H/dir_cfg/adapter_config.json; mkdir $H/dir_cfg/adapter_config.json
refuse "adapter_config.json: is a directory" $B inspect $H/dir_cfg

# lora_alpha twice, the second spelled with an escape: Python's json keeps 400, molora refuses
peft_copy dup_alpha
python3 - $H/dup_alpha/adapter_config.json <<'EOF'
import sys
p = sys.argv[1]
t = open(p).read().replace('"lora_alpha": 4,', '"lora_alpha": 4, "lora_\\u0061lpha": 400,')
assert "u0061" in t
open(p, "w").write(t)
EOF
refuse '"lora_alpha" appears twice' $B inspect $H/dup_alpha

# a key twice inside a tensor entry and inside __metadata__ of the weights
for where in entry meta; do
    peft_copy dup_$where
    python3 - $H/dup_$where/adapter_model.safetensors $where <<'EOF'
import json, struct, sys
p, where = sys.argv[1], sys.argv[2]
b = open(p, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = b[8:8 + n].decode()
if where == "entry":
    i = h.index('"dtype"')
    h = h[:i] + '"d\\u0074ype":"F32",' + h[i:]
else:
    if "__metadata__" in h:
        h = h.replace('"__metadata__":{', '"__metadata__":{"k":"1","\\u006b":"2",', 1)
    else:
        h = '{"__metadata__":{"k":"1","\\u006b":"2"},' + h.lstrip()[1:]
hb = h.encode()
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
EOF
    refuse "appears twice" $B inspect $H/dup_$where
done

# adapter_model.bin alone names the converter
mkdir -p $H/pickle; cp $F/peft/adapter_config.json $H/pickle/; printf 'PK\003\004' >$H/pickle/adapter_model.bin
refuse "tools/convert_pickle.py" $B inspect $H/pickle

# an unused F8_E4M3FNUZ tensor (safetensors 0.8) beside F32 LoRA weights: loads
peft_copy fnuz
python3 - $H/fnuz/adapter_model.safetensors <<'EOF'
import json, struct, sys
p = sys.argv[1]
b = open(p, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
data = b[8 + n:]
h["base_model.model.extra.scale"] = {"dtype": "F8_E4M3FNUZ", "shape": [3], "data_offsets": [len(data), len(data) + 3]}
hb = json.dumps(h).encode()
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + data + b"\x01\x02\x03")
EOF
accept $B inspect $H/fnuz
accept $B forward $H/fnuz --module $Q --input $F/x.npy --output $H/y.npy

# a 20 MB ignored field [0,0,...] inside a tensor entry: RSS follows the header's size
peft_copy zeros
python3 - $H/zeros/adapter_model.safetensors <<'EOF'
import json, struct, sys
p = sys.argv[1]
b = open(p, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = b[8:8 + n].decode()
i = h.index('"dtype"')
hb = (h[:i] + '"x":[' + ",".join(["0"] * 10000000) + '],' + h[i:]).encode()
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
EOF
if [ ! -x /usr/bin/time ]; then skip "/usr/bin/time missing: no RSS figure"
elif /usr/bin/time -f %M -o $H/rss $B inspect $H/zeros >/dev/null 2>$H/err; then
    ok; figure "inspect with a 20 MB header holding [0,0,...] (10M items): max RSS $(cat $H/rss) KB"
else bad "inspect of a 20 MB [0,0,...] header: $(head -c 300 $H/err)"; fi
rm -rf $H/zeros
