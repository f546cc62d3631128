#!/usr/bin/env python3
"""Independent float64 numpy reference for molora's AlphaLoRA functions (fix_finger, WeightWatcher
0.7.5.5's fit and the allocation; WeightWatcher 0.7.7 is checked against the package itself).

Written from the formulas, not from the upstream code. Not needed by `make test`; used to
cross-check the C library by hand:

    python3 tools/alpha_ref.py spectrum  L1 L2 ...      # both fits of a spectrum
    python3 tools/alpha_ref.py matrix    FILE ROWS COLS  # raw float32 row-major matrix
    python3 tools/alpha_ref.py allocate  BUDGET BETA A1 A2 ...
"""
import sys
import numpy as np


def esd(W):
    """eigenvalues of W^T W, ascending, from a float64 SVD."""
    return np.sort(np.linalg.svd(np.asarray(W, np.float64), compute_uv=False) ** 2)


def _candidate(lam, i):
    n = len(lam) - i
    a = 1.0 + n / np.sum(np.log(lam[i:] / lam[i]))
    if not a > 1.0:
        return a, 1.0
    with np.errstate(invalid="ignore"):
        f = (lam[i:] / lam[i]) ** (1.0 - a)
    return a, float(np.max(np.abs(1.0 - f - np.arange(n) / n)))


def fit(lam, method="fix_finger", bins=100, thresh=None):
    """(alpha, xmin, D, n_tail) of one spectrum."""
    lam = np.sort(np.asarray(lam, np.float64))
    if thresh is None:
        thresh = 1e-5 if method == "ww" else None
    if thresh is not None:
        lam = lam[lam > thresh]
    N = len(lam)
    alphas, Ds = np.zeros(N - 1), np.ones(N - 1)
    lo, hi = -np.inf, np.inf
    if method == "fix_finger":
        h = np.log10(lam)
        hmin, hmax = h.min(), h.max()
        if hmax > hmin:
            b = np.minimum(((h - hmin) * bins / (hmax - hmin)).astype(np.int64), bins - 1)
            ih = int(np.argmax(np.bincount(b, minlength=bins)))
            xmin2 = 10.0 ** (hmin + ih * (hmax - hmin) / bins)
        else:
            xmin2 = 10.0 ** hmin
        lo, hi = np.log10(0.95 * xmin2), 1.5 * xmin2  # log10 on purpose: upstream's bound
    for i in range(N - 1):
        if lam[i] < lo:
            continue
        if lam[i] > hi:
            break
        with np.errstate(divide="ignore"):
            alphas[i], Ds[i] = _candidate(lam, i)
    k = int(np.argmin(Ds))
    return float(alphas[k]), float(lam[k]), float(Ds[k]), N - k


def allocate(alphas, budget=160, beta=2.5):
    s = np.power(np.asarray(alphas, np.float64), beta)
    n = np.rint(s / s.sum() * budget).astype(np.int64)
    while n.sum() != budget:
        if budget > n.sum():
            n[np.argmin(s - n)] += 1
        else:
            n[np.argmax(s - n)] -= 1
    return n, np.where(n > 1, 2, 1)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "spectrum":
        lam = np.array([float(x) for x in args])
        for m in ("fix_finger", "ww"):
            print(m, "alpha %.17g xmin %.17g D %.17g n_tail %d" % fit(lam, m))
    elif cmd == "matrix":
        W = np.fromfile(args[0], np.float32).reshape(int(args[1]), int(args[2]))
        lam = esd(W)
        for m in ("fix_finger", "ww"):
            print(m, "alpha %.17g xmin %.17g D %.17g n_tail %d" % fit(lam, m))
    elif cmd == "allocate":
        n, k = allocate([float(x) for x in args[2:]], int(args[0]), float(args[1]))
        print("experts", ",".join(map(str, n)), "top_k", ",".join(map(str, k)))
