"""Times torch.linalg.svdvals (what AlphaLoRA's fix_finger calls) and
numpy.linalg.svd(compute_uv=False) on a float32 (rows, cols) matrix with THREADS threads.
Run by build/alpha_bench: python3 bench/alpha_torch.py ROWS COLS THREADS
Prints 'torch SECONDS' and 'numpy SECONDS' lines; 'skip REASON' for what is missing."""
import os
import sys
import time

rows, cols, threads = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = threads
try:
    import numpy as np
except ImportError:
    print("skip numpy not installed (Debian: apt-get install python3-numpy)")
    sys.exit(0)
W = (np.random.default_rng(0).standard_normal((rows, cols)) * 0.02).astype(np.float32)
try:
    import torch
    torch.set_num_threads(int(threads))
    t = torch.from_numpy(W)
    torch.linalg.svdvals(t[:64, :64])
    t0 = time.perf_counter()
    torch.linalg.svdvals(t)
    print("torch %.4f" % (time.perf_counter() - t0))
except ImportError:
    print("skip torch not installed (Debian: apt-get install python3-torch)")
t0 = time.perf_counter()
np.linalg.svd(W, compute_uv=False)
print("numpy %.4f" % (time.perf_counter() - t0))
