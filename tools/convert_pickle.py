#!/usr/bin/env python3
"""Convert AdaMoLE / AlphaLoRA `adapter_model.bin` (a torch pickle) into `adapter_model.safetensors`.

    python3 tools/convert_pickle.py ADAPTER_DIR [OUT_DIR]

molora never reads pickle. This script needs Debian's python3-torch (apt-get install python3-torch);
it loads with weights_only=True where torch supports it, drops AdaMoLE's duplicate
`moe_layer.experts.*` aliases (same storage as `lora_A.{i}` / `lora_B.{i}`), writes F32 / F16 /
BF16 tensors unchanged in dtype, and copies adapter_config.json next to them (OUT_DIR defaults to
ADAPTER_DIR). Exit 1 with one line on stderr on bad input.
"""
import json, os, struct, sys, tempfile

DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def fail(msg):
    sys.stderr.write("convert_pickle: %s\n" % msg)
    sys.exit(1)


def write_replacing(path, chunks):
    """Writes chunks to a temporary file beside path (the mode a new file would get), fsyncs it,
    renames it over path and fsyncs the directory: on any failure the old file stays as it was."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".convert-", dir=d)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.realpath(path) if os.path.islink(path) else path)
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        fail("%s: write failed: %s" % (path, e.strerror or e))


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
    for p in (binp, cfgp):
        if not os.path.exists(p):
            fail("%s: not found" % p)
        if not os.path.isfile(p):
            fail("%s: not a regular file" % p)
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
        # numpy has no bfloat16: BF16 goes out as its int16 bit pattern; every dtype little-endian
        arr = (t.view(torch.int16) if dt == "BF16" else t).numpy()
        raw = arr.astype("<" + ("i2" if dt == "BF16" else t.numpy().dtype.str[1:]), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(out, exist_ok=True)
    dst = os.path.join(out, "adapter_model.safetensors")
    out_cfg = os.path.join(out, "adapter_config.json")
    copy_cfg = not (os.path.exists(out_cfg) and os.path.samefile(out_cfg, cfgp))
    for path in [dst] + ([out_cfg] if copy_cfg else []):
        for inp in (binp, cfgp):
            if os.path.exists(path) and os.path.samefile(path, inp):
                fail("%s is the input %s: choose another OUT_DIR" % (path, inp))
    write_replacing(dst, [struct.pack("<Q", len(h)), h] + blobs)
    if copy_cfg:
        with open(cfgp, "rb") as f:
            write_replacing(out_cfg, [f.read()])
    print("%s: %d tensors written, %d moe_layer.experts.* aliases dropped" % (dst, len(header), dropped))


if __name__ == "__main__":
    main(sys.argv)
