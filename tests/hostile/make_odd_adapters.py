# Two PEFT LoRA experts (lora_alpha 2 and 4; the second's alpha_pattern gives v_proj 8, so compose
# writes per-module scalings keyed by the module names) and a gate, for the module named by argv[2]
# and model.layers.1.v_proj: names with quotes, backslashes,
# control characters and non-ASCII UTF-8 that compose must escape and inspect must load back.
# Usage: make_odd_adapters.py OUT_DIR MODULE_NAME   (writes OUT_DIR/e0, OUT_DIR/e1, OUT_DIR/gate.safetensors)
import json, struct, sys, os
def st(path, tensors):
    hdr, off, data = {}, 0, b""
    for name, shape, vals in tensors:
        raw = struct.pack("<%df" % len(vals), *vals)
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw); data += raw
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
out, name = sys.argv[1], sys.argv[2]
for e in range(2):
    d = os.path.join(out, "e%d" % e); os.makedirs(d, exist_ok=True)
    cfg = {"peft_type": "LORA", "r": 1, "lora_alpha": 2.0 * (e + 1)}
    if e: cfg["alpha_pattern"] = {"v_proj": 8.0}
    json.dump(cfg, open(os.path.join(d, "adapter_config.json"), "w"))
    t = []
    for m in (name, "model.layers.1.v_proj"):
        t += [("base_model.model.%s.lora_A.weight" % m, [1, 3], [0.1 * (e + 1)] * 3),
              ("base_model.model.%s.lora_B.weight" % m, [2, 1], [0.5, -0.5])]
    st(os.path.join(d, "adapter_model.safetensors"), t)
st(os.path.join(out, "gate.safetensors"),
   [("base_model.model.%s.lora_gating.weight" % m, [2, 3], [0.1, 0.2, 0.3, -0.1, 0.0, 0.4])
                                           for m in (name, "model.layers.1.v_proj")])
