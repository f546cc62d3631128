#!/usr/bin/env python3
"""The README's speed tables, in Markdown, from the medians of several molora_bench JSON runs
(bench/goals.py's merge: the median of every timing over the runs).

    python3 bench/readme_tables.py run1.json run2.json run3.json

Prints three tables: S1 / S5 (the whole layer against its baseline, dense routing, with the
AdaMoLE delta and torch's LoRA branch), S6 / S7 (top-8 against dense; the pool against one rank-16
LoRA or its adapters' bytes at the stream rate) and BF16 experts against float32. Standard
library only."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import goals  # noqa: E402


def g(v):   # 4 significant figures, as the README prints them
    return "" if v is None else f"{v:.4g}"


def layer_table(recs):
    print("| shape, dense | T | threads | frozen ms (baseline) | molora ms | ratio | delta ms (AdaMoLE) "
          "| torch_lora ms | sgemm in bench / alone |")
    print("|---|---|---|---|---|---|---|---|---|")
    names = {"S1": "S1 d4096 N8 r8", "S5": "S5 d768 N8 r8"}
    for sh in ("S1", "S5"):
        first = True
        for thr in (1, 2):
            for T in (1, 8, 64, 512):
                r = recs.get((sh, T, thr, "dense", "f32"))
                a = recs.get((sh, T, thr, "adamole", "f32"))
                if r is None or a is None:
                    continue
                chk = ""
                if thr > 1 and r.get("frozen_sgemm_standalone_ms") is not None:
                    chk = f"{g(r['frozen_sgemm_ms'])} / {g(r['frozen_sgemm_standalone_ms'])}"
                print(f"| {names[sh] if first else sh} | {T} | {thr} | {g(r['frozen_ms'])} ({r['baseline']}) | "
                      f"{g(r['molora_ms'])} | {r['molora_ms'] / r['frozen_ms']:.2f} | {g(a['delta_ms'])} | "
                      f"{g(a.get('torch_lora_ms'))} | {chk} |")
                first = False


def pool_table(recs):
    print("| S6 (64 rank-1 experts) / S7 (256 rank-16 adapters) | T | threads | routing | delta ms | against "
          "| ratio |")
    print("|---|---|---|---|---|---|---|")
    for thr in (1, 2):
        for T in (8, 64, 512):
            t8, d = recs.get(("S6", T, thr, "topk:8", "f32")), recs.get(("S6", T, thr, "dense", "f32"))
            if t8 and d:
                print(f"| S6 | {T} | {thr} | top-8 vs dense | {g(t8['delta_ms'])} | dense {g(d['delta_ms'])} | "
                      f"{t8['delta_ms'] / d['delta_ms']:.2f} |")
    for thr in (1, 2):
        for T in (8, 64, 512):
            p, l16 = recs.get(("S7", T, thr, "pool", "f32")), recs.get(("S7", T, thr, "lora16", "f32"))
            if not p or not l16 or p.get("pool_adapter_bytes") is None:
                continue
            stream = p["pool_adapter_bytes"] / (p["stream_gbps"] * 1e6)
            print(f"| S7 | {T} | {thr} | pool (`adapter_index`) | {g(p['delta_ms'])} | max(rank-16 LoRA "
                  f"{g(l16['delta_ms'])}, bytes / stream {g(stream)}) | "
                  f"{p['delta_ms'] / max(l16['delta_ms'], stream):.2f} |")


def bf16_table(recs):
    print("| BF16 experts against f32 | T | threads | routing | experts MiB f32 / bf16 (all layers of one copy) "
          "| delta ms f32 / bf16 | f32 / bf16 |")
    print("|---|---|---|---|---|---|---|")
    keys = sorted((k for k in recs if k[4] == "bf16" and k[:4] + ("f32",) in recs),
                  key=lambda k: (k[0], k[2], k[1], ["dense", "adamole", "topk:2", "pool", "lora16"].index(k[3])
                                 if k[3] in ("dense", "adamole", "topk:2", "pool", "lora16") else 9))
    for k in keys:
        b, f = recs[k], recs[k[:4] + ("f32",)]
        mib = lambda r: f"{r['expert_bytes'] / 1048576:.2f}" if r.get("expert_bytes") is not None else "-"
        print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {mib(f)} / {mib(b)} | {g(f['delta_ms'])} / "
              f"{g(b['delta_ms'])} | {f['delta_ms'] / b['delta_ms']:.2f} |")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    recs, _ = goals.load(sys.argv[1:])
    layer_table(recs)
    print()
    pool_table(recs)
    print()
    bf16_table(recs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
