#!/usr/bin/python3
"""Time the AdaMoLE layer in PyTorch on molora_bench's shapes and merge torch_ms into its JSON.

    /usr/bin/python3 bench/torch_adamole.py build/bench.json     (needs Debian's python3-torch)

The module is written here to match the upstream forward pass of
zefang-liu/AdaMoLE (src/adamole/layer.py: AdaMoeLayer.forward and LinearAdaMoleLayer.forward):
the frozen nn.Linear, then softmax gate, threshold network, p - tau where p >= tau, weights
renormalised, and the per-expert Python loop over torch.where(selected). float32, no grad.

Threads: torch.set_num_threads does not reach the OpenBLAS that Debian's torch calls for nn.Linear,
so each thread count runs in its own process with OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) set
to the record's `threads`; threadpoolctl, when installed, checks (and if need be sets) it. torch's
own OpenMP threads then wait passively (OMP_WAIT_POLICY=PASSIVE unless set): spinning, they took the
second core from OpenBLAS's thread and S5 T=8 with 2 threads measured 119 ms instead of 1.2 ms.
Layers rotate through the record's rotation_mib (twice the last-level cache, at least 256 MiB, as the C bench), so a
T = 1 call reads its weights from DRAM. Two figures, attached to the records of routing "adamole":
torch_ms, the whole layer, and torch_lora_ms, the same forward without the frozen nn.Linear (the
LoRA branch alone, to compare with molora's delta_ms). The table is printed again with both, with
`uptime` before and after. Without torch the script says so and exits 0 (nothing to merge)."""
import json
import os
import statistics
import subprocess
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("torch_adamole: python3-torch is not installed (apt-get install -y python3-torch); "
          "skipping the PyTorch column")
    sys.exit(0)


class AdaMoleLinear(nn.Module):
    """The frozen layer plus AdaMoLE experts, as the upstream forward computes them."""

    def __init__(self, d, n, r, alpha):
        super().__init__()
        self.base = nn.Linear(d, d, bias=False)
        self.A = nn.ModuleList(nn.Linear(d, r, bias=False) for _ in range(n))
        self.B = nn.ModuleList(nn.Linear(r, d, bias=False) for _ in range(n))
        self.gate = nn.Linear(d, n, bias=False)
        self.threshold = nn.Linear(d, 1)
        self.scaling = alpha / r
        self.tau_max = 1.0 / n
        for m in list(self.B) + [self.gate]:
            nn.init.normal_(m.weight, std=0.05)

    def forward(self, x, frozen=True):
        """frozen=False: the LoRA branch alone (the upstream forward without self.base)."""
        p = F.softmax(self.gate(x), dim=-1)
        tau = torch.sigmoid(self.threshold(x)) * self.tau_max
        adapted = p - tau
        selected = torch.ge(adapted, 0).to(torch.float)
        weights = adapted * selected
        sums = torch.sum(weights, dim=-1, keepdim=True, dtype=x.dtype)
        sums = torch.where(sums == 0, torch.ones_like(sums), sums)
        weights = weights / sums
        out = x.new_zeros(x.shape[0], self.base.out_features)
        for i in range(len(self.A)):
            idx = torch.where(selected[:, i])[0]
            if len(idx) > 0:
                out[idx] += weights[idx, i, None] * (self.B[i](self.A[i](x[idx])) * self.scaling)
        return self.base(x) + out if frozen else out


def llc_bytes():
    """The largest cache level of cpu0 from sysfs (level 3 where there is one); 0 when unknown."""
    best = (0, 0)
    root = "/sys/devices/system/cpu/cpu0/cache"
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        try:
            level = int(open(f"{root}/{name}/level").read())
            size = open(f"{root}/{name}/size").read().strip()
        except (OSError, ValueError):
            continue
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1:], 1)
        best = max(best, (level, int(size.rstrip("KMG")) * mult))
    return best[1]


def rotation_bytes():
    """2 x LLC and at least 256 MiB, at most a quarter of MemAvailable (the C bench's rule, when the
    JSON lacks it)."""
    rot = max(2 * llc_bytes(), 256 * 2**20)
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                rot = min(rot, int(line.split()[1]) * 1024 // 4)
    except OSError:
        pass
    return rot


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return open("/proc/loadavg").read().strip()


_layers = {}


def rotation(d, n, r, rot_bytes):
    """The copies of one shape's layer, built once per process (every T of the shape reuses them)."""
    key = (d, n, r, rot_bytes)
    if key not in _layers:
        _layers.clear()
        per = d * d * 4 + n * r * d * 8
        _layers[key] = [AdaMoleLinear(d, n, r, 2.0 * r).eval() for _ in range(max(2, -(-rot_bytes // per)))]
    return _layers[key]


def time_layer(d, n, r, tokens, threads, rot_bytes):
    """Medians in ms of the whole layer and of its LoRA branch, interleaved, each call on the next copy."""
    torch.set_num_threads(threads)
    layers = rotation(d, n, r, rot_bytes)
    copies = len(layers)
    x = torch.randn(tokens, d)
    reps = 31 if 2 * tokens * d * d < 1e8 else 11 if 2 * tokens * d * d < 2e9 else 5
    times = {True: [], False: []}
    c = 0
    with torch.no_grad():
        for rep in range(-1, reps):
            for frozen in (True, False):
                t0 = time.perf_counter()
                layers[c](x, frozen)
                if rep >= 0:
                    times[frozen].append((time.perf_counter() - t0) * 1e3)
                c = (c + 1) % copies
    return statistics.median(times[True]), statistics.median(times[False])


def check_threads(threads):
    """OpenBLAS's thread count in this process, through threadpoolctl when it is installed."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')} (threadpoolctl not installed)"
    blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    if any(i["num_threads"] != threads for i in blas):
        threadpool_limits(limits=threads, user_api="blas")
        blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    return ", ".join(f"{i['filepath']} at {i['num_threads']} threads ({i.get('architecture')})" for i in blas)


def worker(threads, keys):
    """One process per thread count: times its keys, prints [key, torch_ms, torch_lora_ms] as JSON."""
    print(f"torch_adamole: threads={threads}: OpenBLAS {check_threads(threads)}", file=sys.stderr)
    out = []
    for key in keys:
        d, n, r, tokens, _, rot = key
        ms, lora_ms = time_layer(d, n, r, tokens, threads, rot)
        print(f"torch_adamole: d={d} N={n} r={r} T={tokens} threads={threads}: {ms:.3f} ms, "
              f"LoRA branch {lora_ms:.3f} ms", file=sys.stderr)
        out.append([key, ms, lora_ms])
    json.dump(out, sys.stdout)
    return 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        return worker(int(sys.argv[2]), json.loads(sys.argv[3]))
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    path = sys.argv[1]
    with open(path) as f:
        records = json.load(f)
    start = uptime()
    print(f"torch_adamole: uptime at start: {start}", flush=True)
    rot_default = rotation_bytes()
    key_of = lambda rec: (rec["d"], rec["n_experts"], rec["rank"], rec["tokens"], rec["threads"],
                          int(rec["rotation_mib"] * 2**20) if rec.get("rotation_mib") else rot_default)
    keys = sorted({key_of(rec) for rec in records if rec["routing"] == "adamole"})
    results = {}
    for threads in sorted({k[4] for k in keys}):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        mine = [list(k) for k in keys if k[4] == threads]
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", str(threads), json.dumps(mine)],
                              env=env, stdout=subprocess.PIPE, check=True)
        for key, ms, lora_ms in json.loads(done.stdout):
            results[tuple(key)] = (ms, lora_ms)
    end = uptime()
    for rec in records:
        if rec["routing"] == "adamole" and key_of(rec) in results:
            rec["torch_ms"], rec["torch_lora_ms"] = results[key_of(rec)]
            rec["torch_uptime"] = start
    with open(path, "w") as f:
        json.dump(records, f, indent=1)
    print(f"{'sh':3} {'T':>5} {'thr':>3} {'torch_ms':>9} {'molora_ms':>9} {'torch/molora':>12} "
          f"{'torch_lora_ms':>13} {'delta_ms':>9} {'lora/delta':>10}")
    for rec in records:
        if rec.get("torch_ms") is not None:
            print(f"{rec['shape']:3} {rec['tokens']:5d} {rec['threads']:3d} {rec['torch_ms']:9.3f} "
                  f"{rec['molora_ms']:9.3f} {rec['torch_ms'] / rec['molora_ms']:12.2f} "
                  f"{rec['torch_lora_ms']:13.3f} {rec['delta_ms']:9.3f} {rec['torch_lora_ms'] / rec['delta_ms']:10.2f}")
    print(f"torch_adamole: uptime at the end: {end}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
