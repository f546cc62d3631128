#!/usr/bin/env python3
"""npy_numpy_agree.py DIR: puts every case file of `test_npy --dump DIR` to numpy itself.

accept_*: numpy must load it as a (3, 5) float32 array (molora accepts it too);
refuse_*: numpy must refuse it (molora refuses it too);
stricter_*: numpy loads it; molora refuses it on purpose (a repeated key, a negative dim, ...).
So the test tables' claims about numpy are checked against numpy, not assumed.
Needs numpy (Debian: python3-numpy, run with /usr/bin/python3); without it, says so and exits 0."""
import glob, os, sys

try:
    import numpy as np
except ImportError:
    print("npy-numpy: skip: %s has no numpy (Debian: apt-get install python3-numpy)" % sys.executable)
    sys.exit(0)

agree = differ = 0
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.npy"))):
    kind = os.path.basename(path).split("_")[0]
    try:
        a = np.load(path)
        verdict = "loads %s %s" % (a.dtype, a.shape)
        ok = kind == "stricter" or (kind == "accept" and a.dtype == np.float32 and a.shape == (3, 5))
    except Exception as e:
        verdict = "refuses (%s: %s)" % (type(e).__name__, str(e).splitlines()[0][:80] if str(e) else "")
        ok = kind == "refuse"
    if ok:
        agree += 1
    else:
        differ += 1
        print("FAIL: %s: numpy %s" % (path, verdict))
print("npy-numpy: %d agree, %d differ" % (agree, differ))
sys.exit(1 if differ or not agree else 0)
