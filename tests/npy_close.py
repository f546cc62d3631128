#!/usr/bin/env python3
"""npy_close.py GOT.npy WANT.npy [TOL]: exit 0 when two float32 .npy files agree (stdlib only);
rank 1 to 4 (the command writes (T, d_out) outputs and X-LoRA's (T, L, N) scalings).

Both headers are read strictly, as numpy reads them but refusing a key given twice: magic and
version 1.0-3.0, a dict of exactly 'descr', 'fortran_order' and 'shape', the data exactly the
shape's size. The two files must agree on descr ('<f4'), fortran_order (False) and shape before
their values are compared."""
import ast, struct, sys

KEYS = ("descr", "fortran_order", "shape")


def header_dict(text, path):
    """the header's dict as literal_eval would give it, refusing repeated keys"""
    try:
        tree = ast.parse(text.lstrip(" \t"), mode="eval").body
    except SyntaxError as e:
        sys.exit("%s: header does not parse: %s" % (path, e))
    if not isinstance(tree, ast.Dict):
        sys.exit("%s: header is not a dict" % path)
    keys = [ast.literal_eval(k) if k is not None else None for k in tree.keys]
    if sorted(map(repr, keys)) != sorted(map(repr, KEYS)):
        sys.exit("%s: header keys %r, want exactly %r once each" % (path, keys, KEYS))
    return dict(zip(keys, (ast.literal_eval(v) for v in tree.values)))


def load(path):
    b = open(path, "rb").read()
    if b[:6] != b"\x93NUMPY" or b[6] not in (1, 2, 3) or b[7] != 0:
        sys.exit("%s: not a .npy file of format 1.0-3.0" % path)
    off = 10 if b[6] == 1 else 12
    hl = struct.unpack("<H" if b[6] == 1 else "<I", b[8:off])[0]
    if off + hl > len(b):
        sys.exit("%s: header length %d past the end" % (path, hl))
    h = header_dict(b[off:off + hl].decode("utf8" if b[6] == 3 else "latin1"), path)
    shape = h["shape"]
    if h["descr"] != "<f4" or h["fortran_order"] is not False:
        sys.exit("%s: descr %r fortran_order %r, want '<f4' and False" % (path, h["descr"], h["fortran_order"]))
    if not isinstance(shape, tuple) or not 1 <= len(shape) <= 4 or not all(type(s) is int and s >= 0 for s in shape):
        sys.exit("%s: shape %r is not a tuple of 1 to 4 sizes" % (path, shape))
    n = 1
    for s in shape:
        n *= s
    if len(b) - off - hl != 4 * n:
        sys.exit("%s: %d data bytes for shape %r (want %d)" % (path, len(b) - off - hl, shape, 4 * n))
    return h, struct.unpack("<%df" % n, b[off + hl:])


(ha, a), (hb, b) = load(sys.argv[1]), load(sys.argv[2])
tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
for k in KEYS:
    if ha[k] != hb[k]:
        sys.exit("%s %r != %r (%s vs %s)" % (k, ha[k], hb[k], sys.argv[1], sys.argv[2]))
err = max([abs(x - y) / max(1.0, abs(y)) for x, y in zip(a, b)] or [0.0])
if err > tol:
    sys.exit("max rel err %.3g > %.1g (%s vs %s)" % (err, tol, sys.argv[1], sys.argv[2]))
print("ok %s: max rel err %.2g" % (sys.argv[1], err))
