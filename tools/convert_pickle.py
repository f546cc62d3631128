#!/usr/bin/env python3
"""Convert AdaMoLE / AlphaLoRA `adapter_model.bin` (a torch pickle) into `adapter_model.safetensors`.

    python3 tools/convert_pickle.py ADAPTER_DIR [OUT_DIR]

molora never reads pickle. This script needs Debian's python3-torch (apt-get install python3-torch);
it loads with weights_only=True where torch supports it, drops AdaMoLE's duplicate
`moe_layer.experts.*` aliases (same storage as `lora_A.{i}` / `lora_B.{i}`), writes F32 / F16 /
BF16 tensors unchanged in dtype, and copies adapter_config.json next to them (OUT_DIR defaults to
ADAPTER_DIR). Exit 1 with one line on stderr on bad input.
"""
import json, os, shutil, struct, sys

DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def fail(msg):
    sys.stderr.write("convert_pickle: %s\n" % msg)
    sys.exit(1)


def main(argv):
    if len(argv) not in (2, 3):
        fail("usage: convert_pickle.py ADAPTER_DIR [OUT_DIR]")
    src = argv[1]
    out = argv[2] if len(argv) == 3 else src
    try:
        import torch
    except ImportError:
        fail("needs PyTorch (Debian: apt-get install python3-torch)")
    binp, cfgp = os.path.join(src, "adapter_model.bin"), os.path.join(src, "adapter_config.json")
    if not os.path.isfile(binp):
        fail("%s: not found" % binp)
    if not os.path.isfile(cfgp):
        fail("%s: not found" % cfgp)
    try:
        sd = torch.load(binp, map_location="cpu", weights_only=True)
    except TypeError:  # torch without weights_only
        sd = torch.load(binp, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - report any unpickling error in one line
        fail("%s: cannot load: %s" % (binp, str(e).splitlines()[0] if str(e) else type(e).__name__))
    if not isinstance(sd, dict):
        fail("%s: not a state dict" % binp)
    header, blobs, off, dropped = {}, [], 0, 0
    for name in sorted(sd):
        t = sd[name]
        if ".moe_layer.experts." in name:
            dropped += 1
            continue
        if not isinstance(t, torch.Tensor):
            fail("%s: entry %s is not a tensor" % (binp, name))
        dt = DTYPES.get(str(t.dtype).replace("torch.", ""))
        if dt is None:
            fail("%s: tensor %s has dtype %s (F32, F16, BF16 only)" % (binp, name, t.dtype))
        t = t.detach().contiguous()
        raw = (t.view(torch.int16) if dt == "BF16" else t).numpy().astype("<" + ("i2" if dt == "BF16" else t.numpy().dtype.str[1:]), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(out, exist_ok=True)
    dst = os.path.join(out, "adapter_model.safetensors")
    with open(dst + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(dst + ".tmp", dst)
    if os.path.abspath(out) != os.path.abspath(src):
        shutil.copy(cfgp, os.path.join(out, "adapter_config.json"))
    print("%s: %d tensors written, %d moe_layer.experts.* aliases dropped" % (dst, len(header), dropped))


if __name__ == "__main__":
    main(sys.argv)
