#!/usr/bin/env python3
"""npy_close.py GOT.npy WANT.npy [TOL]: exit 0 when two float32 2-D .npy files agree (stdlib only)."""
import ast, struct, sys

def load(path):
    b = open(path, "rb").read()
    ver = b[6]
    hl = struct.unpack("<H", b[8:10])[0] if ver == 1 else struct.unpack("<I", b[8:12])[0]
    off = 10 if ver == 1 else 12
    h = ast.literal_eval(b[off:off + hl].decode("latin1"))
    n = 1
    for s in h["shape"]:
        n *= s
    return h["shape"], struct.unpack("<%df" % n, b[off + hl:off + hl + 4 * n])

(sa, a), (sb, b) = load(sys.argv[1]), load(sys.argv[2])
tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
if sa != sb:
    sys.exit("shape %s != %s" % (sa, sb))
err = max([abs(x - y) / max(1.0, abs(y)) for x, y in zip(a, b)] or [0.0])
if err > tol:
    sys.exit("max rel err %.3g > %.1g (%s vs %s)" % (err, tol, sys.argv[1], sys.argv[2]))
print("ok %s: max rel err %.2g" % (sys.argv[1], err))
