#!/usr/bin/python3
"""Time the AdaMoLE layer in PyTorch on molora_bench's shapes and merge torch_ms into its JSON.

    /usr/bin/python3 bench/torch_adamole.py build/bench.json     (needs Debian's python3-torch)

The module is written here to match the upstream forward pass of
zefang-liu/AdaMoLE (src/adamole/layer.py: AdaMoeLayer.forward and LinearAdaMoleLayer.forward):
the frozen nn.Linear, then softmax gate, threshold network, p - tau where p >= tau, weights
renormalised, and the per-expert Python loop over torch.where(selected). torch runs with as many
intra-op threads as the record's `threads`, float32, no grad. torch_ms is attached to the
records of routing "adamole"; the table is printed again with the torch column.
Without torch the script says so and exits 0 (nothing to merge)."""
import json
import statistics
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

    def forward(self, x):
        result = self.base(x)
        p = F.softmax(self.gate(x), dim=-1)
        tau = torch.sigmoid(self.threshold(x)) * self.tau_max
        adapted = p - tau
        selected = torch.ge(adapted, 0).to(torch.float)
        weights = adapted * selected
        sums = torch.sum(weights, dim=-1, keepdim=True, dtype=x.dtype)
        sums = torch.where(sums == 0, torch.ones_like(sums), sums)
        weights = weights / sums
        out = torch.zeros_like(result)
        for i in range(len(self.A)):
            idx = torch.where(selected[:, i])[0]
            if len(idx) > 0:
                out[idx] += weights[idx, i, None] * (self.B[i](self.A[i](x[idx])) * self.scaling)
        return result + out


def time_layer(d, n, r, tokens, threads, rot_bytes=192 * 2**20):
    torch.set_num_threads(threads)
    per = d * d * 4 + n * r * d * 8
    copies = max(2, -(-rot_bytes // per))
    layers = [AdaMoleLinear(d, n, r, 2.0 * r).eval() for _ in range(copies)]
    x = torch.randn(tokens, d)
    reps = 31 if 2 * tokens * d * d < 1e8 else 11 if 2 * tokens * d * d < 2e9 else 5
    times = []
    with torch.no_grad():
        for rep in range(-1, reps):
            layer = layers[rep % copies]
            t0 = time.perf_counter()
            layer(x)
            if rep >= 0:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    path = sys.argv[1]
    with open(path) as f:
        records = json.load(f)
    cache = {}
    for rec in records:
        if rec["routing"] != "adamole":
            continue
        key = (rec["d"], rec["n_experts"], rec["rank"], rec["tokens"], rec["threads"])
        if key not in cache:
            cache[key] = time_layer(*key)
            print(f"torch_adamole: {rec['shape']} T={rec['tokens']} threads={rec['threads']}: {cache[key]:.3f} ms",
                  file=sys.stderr)
        rec["torch_ms"] = cache[key]
    with open(path, "w") as f:
        json.dump(records, f, indent=1)
    print(f"{'sh':3} {'T':>5} {'thr':>3} {'torch_ms':>9} {'molora_ms':>9} {'torch/molora':>12}")
    for rec in records:
        if rec.get("torch_ms") is not None:
            print(f"{rec['shape']:3} {rec['tokens']:5d} {rec['threads']:3d} {rec['torch_ms']:9.3f} "
                  f"{rec['molora_ms']:9.3f} "
                  f"{rec['torch_ms'] / rec['molora_ms']:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
