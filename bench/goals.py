#!/usr/bin/env python3
"""Median of several molora_bench JSON runs, and the speed goals checked against it.

    python3 bench/goals.py run1.json run2.json run3.json

Each record key (shape, tokens, threads, routing, precision) takes the median of every timing over
the runs (a record without "precision", from before BF16 experts, reads as "f32"); ratios are
recomputed from the medians. The goals are checked on the f32 records; the bf16 ones are reported
beside them (S1 / S7: memory, decode and T = 8 times in both precisions). A goal's verdict says "(noise)" when the value is
within 3 % of the goal or the goal lies inside the spread of the value over the runs: such a
verdict could flip on the next run. frozen_ms is the best of OpenBLAS and molora's own frozen
kernels where its forward runs them (frozen_molora_gemv_ms: gvt at T = 1, the one its decode runs;
ntp at 2..16; ntg at 17 to the CPU table's own_t, 96 on AMD's AVX-512 table), so ratio_vs_frozen
is what the experts add. Standard library only."""
import json
import statistics
import sys

FIELDS = ["pool_adapter_bytes", "frozen_ms", "molora_ms", "delta_ms", "gate_ms", "naive_ms", "torch_ms", "stream_gbps", "molora_gbps",
          "torch_lora_ms", "frozen_sgemm_ms", "frozen_openblas_ms", "frozen_split_ms", "frozen_sgemm_standalone_ms",
          "stream_kernel_gbps", "stream_sgemv_gbps", "stream_gvt_gbps", "frozen_molora_gemv_ms", "frozen_split_molora_gemv_ms",
          "frozen_split_sgemm_ms", "frozen_split_sgemv_ms"]
NOISE = 0.03   # a value within 3 % of its goal, or a goal inside the spread of the runs, is noise


def key_of(r):
    return (r["shape"], r["tokens"], r["threads"], r["routing"], r.get("precision", "f32"))


def by_key(run):
    return {key_of(r): r for r in run}


def f32_only(recs):   # the goals' view: (shape, tokens, threads, routing) -> the f32 record
    return {k[:4]: r for k, r in recs.items() if k[4] == "f32"}


def load(paths):
    runs = [json.load(open(p)) for p in paths]
    merged = {}
    for run in runs:
        for r in run:
            merged.setdefault(key_of(r), []).append(r)
    out = {}
    for key, recs in merged.items():
        m = dict(recs[0])
        for f in FIELDS:
            vals = [r[f] for r in recs if r.get(f) is not None]
            m[f] = statistics.median(vals) if vals else None
        m["ratio_vs_frozen"] = m["molora_ms"] / m["frozen_ms"]
        m["naive_over_molora"] = m["naive_ms"] / m["molora_ms"]
        m["runs"] = len(recs)
        m["precision"] = key[4]
        out[key] = m
    return out, [by_key(run) for run in runs]


def bf16_report(recs):
    """S1 / S7 (any shape run in both): the packed experts' memory, and molora_ms / delta_ms at T = 1
    and 8 in both precisions, f32 over bf16 (above 1: bf16 faster)."""
    pairs = sorted(k for k in recs if k[4] == "bf16" and k[:4] + ("f32",) in recs)
    if not pairs:
        return
    print("\nBF16 experts against f32 (the same layer; medians):")
    print(f"  {'sh':3} {'T':>4} {'thr':>3} {'routing':8} {'MiB f32':>8} {'bf16':>7} "
          f"{'molora f32':>10} {'bf16':>8} {'f32/bf16':>8} {'delta f32':>9} {'bf16':>8} {'f32/bf16':>8}")
    for k in sorted(pairs, key=lambda k: (k[0], k[2], k[1], k[3])):
        if k[1] not in (1, 8):
            continue
        b, f = recs[k], recs[k[:4] + ("f32",)]
        mib = lambda r: f"{r['expert_bytes'] / 1048576:8.2f}" if r.get("expert_bytes") is not None else "       -"
        print(f"  {k[0]:3} {k[1]:4d} {k[2]:3d} {k[3]:8} {mib(f)} {mib(b)[1:]} {f['molora_ms']:10.3f} "
              f"{b['molora_ms']:8.3f} {f['molora_ms'] / b['molora_ms']:8.3f} {f['delta_ms']:9.3f} "
              f"{b['delta_ms']:8.3f} {f['delta_ms'] / b['delta_ms']:8.3f}")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    all_recs, all_runs = load(sys.argv[1:])
    print(f"{'sh':3} {'T':>4} {'thr':>3} {'routing':8} {'path':7} {'baseline':17} {'frozen':>8} {'molora':>8} "
          f"{'ratio':>6} {'floor':>6} "
          f"{'naive/':>6} {'gate%':>6} {'GB/s':>6} {'stream':>6} {'torch/':>6} {'sgemm':>8} {'alone':>8} {'prec':>4}")
    for k in sorted(all_recs, key=lambda k: (k[0], k[4] != "f32", k[2], k[1], k[3])):
        r = all_recs[k]
        torch = f"{r['torch_ms'] / r['molora_ms']:6.2f}" if r.get("torch_ms") else "     -"
        gb = f"{r['molora_gbps']:6.1f}" if r.get("molora_gbps") else "     -"
        alone = f"{r['frozen_sgemm_standalone_ms']:8.3f}" if r.get("frozen_sgemm_standalone_ms") else "       -"
        print(f"{r['shape']:3} {r['tokens']:4d} {r['threads']:3d} {r['routing']:8} {r['path']:7} "
              f"{r.get('baseline', 'sgemm'):17} {r['frozen_ms']:8.3f} "
              f"{r['molora_ms']:8.3f} {r['ratio_vs_frozen']:6.3f} {r['floor']:6.3f} {r['naive_over_molora']:6.1f} "
              f"{100 * r['gate_ms'] / r['frozen_ms']:6.2f} {gb} {r['stream_gbps']:6.1f} {torch} "
              f"{r['frozen_sgemm_ms']:8.3f} {alone} {k[4]:>4}")
    bf16_report(all_recs)
    recs, runs = f32_only(all_recs), [f32_only(run) for run in all_runs]

    def value(r, field):
        return r[field] if isinstance(field, str) else field(r)

    def worst(pred, field, agg=max):   # (the value over the medians, its spread over the runs)
        vals = [value(r, field) for r in recs.values() if pred(r)]
        per_run = [agg(v) for v in ([value(r, field) for r in run.values() if pred(r)] for run in runs) if v]
        return (agg(vals), (min(per_run), max(per_run))) if vals else (None, None)

    def line(name, found, goal, ok):
        v, spread = found
        goal_v = float(goal.split()[-1])
        noise = v is not None and (abs(v - goal_v) <= NOISE * goal_v or spread[0] <= goal_v <= spread[1])
        state = "n/a" if v is None else ("met" if ok(v) else "NOT met") + (" (noise)" if noise else "")
        shown = "-" if v is None else f"{v:.3f}"
        rng = "" if v is None or len(runs) < 2 else f"  runs {spread[0]:.3f}..{spread[1]:.3f}"
        print(f"  {name:58} {shown:>8}  goal {goal:>8}  {state}{rng}")

    print("\ngoals (worst case over routings; median of", max(r["runs"] for r in recs.values()), "runs):")
    for thr in sorted({k[2] for k in recs}):
        print(f" threads = {thr}")
        S = lambda s, t=None, lo=None: (lambda r: r["shape"] == s and r["threads"] == thr and
                                        (t is None or r["tokens"] == t) and (lo is None or r["tokens"] >= lo))
        def found(fn):   # (the value over the medians, its spread over the runs)
            per_run = [v for v in map(fn, runs) if v is not None]
            v = fn(recs)
            return (v, (min(per_run), max(per_run)) if per_run else (v, v))
        # issue 14's floors: the 1-thread goal, + 0.05 with 2 threads (against the honest baseline)
        slack = 0.0 if thr == 1 else 0.05
        def ratio_goal(name, pred, goal):
            g = goal + slack
            line(name, worst(pred, "ratio_vs_frozen"), f"<= {g:.2f}", lambda v: v <= g)
        ratio_goal("S1 ratio_vs_frozen at T=1", S("S1", 1), 1.06)
        ratio_goal("S1 ratio_vs_frozen at every T>=64", S("S1", lo=64), 1.05)
        ratio_goal("S3 ratio_vs_frozen, every T", S("S3"), 1.15)
        ratio_goal("S5 ratio_vs_frozen, every T", S("S5"), 1.22)
        line("S1 gate_ms / frozen_ms (d4096, N=8), every T", worst(S("S1"), lambda r: r["gate_ms"] / r["frozen_ms"]),
             "<= 0.01", lambda v: v <= 0.01)
        line("S5 gate_ms / frozen_ms (d768), every T", worst(S("S5"), lambda r: r["gate_ms"] / r["frozen_ms"]),
             "<= 0.03", lambda v: v <= 0.03)

        def t8_over_t1(rs):   # S1: molora_ms at T=8 / molora_ms at T=1, same routing, worst routing
            vals = [r["molora_ms"] / rs[(k[0], 1, k[2], k[3])]["molora_ms"] for k, r in rs.items()
                    if k[0] == "S1" and k[1] == 8 and k[2] == thr and (k[0], 1, k[2], k[3]) in rs]
            return max(vals) if vals else None
        line("S1 molora_ms T=8 / molora's own T=1", found(t8_over_t1), "<= 1.3", lambda v: v <= 1.3)
        line("  (report) S1 molora_ms / OpenBLAS frozen at T=8",
             worst(lambda r: S("S1", 8)(r) and r.get("frozen_openblas_ms"), lambda r: r["molora_ms"] / min(
                 v for v in (r["frozen_openblas_ms"], r.get("frozen_split_sgemm_ms"), r.get("frozen_split_sgemv_ms"))
                 if v is not None)), "<= 99", lambda v: True)
        for sh in ("S1", "S5"):
            line(f"{sh} torch_lora_ms / delta_ms (adamole), every T",
                 worst(lambda r, sh=sh: S(sh)(r) and r.get("torch_lora_ms") and r["routing"] == "adamole",
                       lambda r: r["torch_lora_ms"] / r["delta_ms"], min), ">= 4", lambda v: v >= 4)
        if thr > 1:
            def speedup(rs, T):   # S1: 1-thread molora_ms / this thread count's, worst routing
                vals = [rs[(k[0], k[1], 1, k[3])]["molora_ms"] / r["molora_ms"] for k, r in rs.items()
                        if k[0] == "S1" and k[1] == T and k[2] == thr and (k[0], k[1], 1, k[3]) in rs]
                return min(vals) if vals else None
            line(f"S1 molora 1-thread / {thr}-thread time at T=512", found(lambda rs: speedup(rs, 512)), ">= 1.8",
                 lambda v: v >= 1.8)
            line(f"S1 molora 1-thread / {thr}-thread time at T=1", found(lambda rs: speedup(rs, 1)), ">= 1.5",
                 lambda v: v >= 1.5)
        if thr == 1:   # both on one thread: how much faster molora's frozen product is at decode
            line("  (report) S1 T=1 OpenBLAS sgemv / molora's gvt (frozen layer)",
                 worst(lambda r: S("S1", 1)(r) and r.get("frozen_molora_gemv_ms") and r.get("frozen_sgemv_ms"),
                       lambda r: r["frozen_sgemv_ms"] / r["frozen_molora_gemv_ms"], min), ">= 0", lambda v: True)
        line("decode GB/s / stream GB/s (min over the d4096 shapes, T=1)",
             worst(lambda r: r["threads"] == thr and r["tokens"] == 1 and r["d"] == 4096 and r.get("molora_gbps"),
                   lambda r: r["molora_gbps"] / r["stream_gbps"], min), ">= 0.85", lambda v: v >= 0.85)
        def s6_ratio(rs, pred):   # S6 top-8 delta_ms / dense delta_ms, worst over the T that pred keeps
            s6 = {k[1]: rs[k] for k in rs if k[0] == "S6" and k[2] == thr and k[3] == "topk:8"}
            s6d = {k[1]: rs[k] for k in rs if k[0] == "S6" and k[2] == thr and k[3] == "dense"}
            vals = [s6[t]["delta_ms"] / s6d[t]["delta_ms"] for t in s6 if t in s6d and pred(t)]
            return max(vals) if vals else None

        line("S6 top-8 delta_ms / dense delta_ms at T>=64",
             found(lambda rs: s6_ratio(rs, lambda t: t >= 64)), "<= 0.5", lambda v: v <= 0.5)
        line("S6 top-8 delta_ms / dense delta_ms, every T (never slower)",
             found(lambda rs: s6_ratio(rs, lambda t: True)), "<= 1.0", lambda v: v <= 1.0)

        def s7_ratio(rs):   # S7 pool delta_ms / max(one rank-16 LoRA's delta, used adapters' bytes / stream)
            vals = []
            for k, r in rs.items():
                if k[0] != "S7" or k[2] != thr or k[3] != "pool":
                    continue
                lora = rs.get((k[0], k[1], k[2], "lora16"))
                if lora is None or r.get("pool_adapter_bytes") is None:
                    continue
                denom = max(lora["delta_ms"], r["pool_adapter_bytes"] / (r["stream_gbps"] * 1e6))
                vals.append(r["delta_ms"] / denom)
            return max(vals) if vals else None
        line("S7 pool delta / max(rank-16 LoRA delta, bytes / stream)", found(s7_ratio), "<= 1.5",
             lambda v: v <= 1.5)
    print("\nuptime at the start of each run:")
    for run in runs:
        first = next(iter(run.values()), {})
        print(f"  {first.get('uptime', '-')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
