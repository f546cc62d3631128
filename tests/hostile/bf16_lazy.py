#!/usr/bin/env python3
"""bf16_lazy.py DIR: writes a 1 GiB BF16 PEFT LoRA adapter as a sparse file (header, then holes:
every weight is 0) in DIR/adapter, and DIR/x.npy (1, 4096) float32 (stdlib only).
rss.py-style use: bf16_lazy.py --rss CMD...: runs CMD, prints its peak RSS in KiB (getrusage)."""
import json, os, resource, struct, subprocess, sys

D, R, LAYERS = 4096, 256, 64          # 64 layers x 4 projections x 2 x (256 x 4096) BF16 = 1 GiB
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj")


def write(out):
    ad = os.path.join(out, "adapter")
    os.makedirs(ad, exist_ok=True)
    hdr, off, n = {}, 0, R * D * 2
    for l in range(LAYERS):
        for p in PROJ:
            m = "base_model.model.model.layers.%d.self_attn.%s" % (l, p)
            hdr[m + ".lora_A.weight"] = {"dtype": "BF16", "shape": [R, D], "data_offsets": [off, off + n]}
            hdr[m + ".lora_B.weight"] = {"dtype": "BF16", "shape": [D, R], "data_offsets": [off + n, off + 2 * n]}
            off += 2 * n
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(ad, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + off)
    with open(os.path.join(ad, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": R, "lora_alpha": 16, "target_modules": list(PROJ)}, f)
    npy = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, %d), }" % D
    npy += b" " * (-(len(npy) + 11) % 64) + b"\n"
    with open(os.path.join(out, "x.npy"), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(npy)) + npy + struct.pack("<%df" % D, *([0.5] * D)))


def rss(cmd):
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return rc


if __name__ == "__main__":
    if sys.argv[1] == "--rss":
        sys.exit(rss(sys.argv[2:]))
    write(sys.argv[1])
