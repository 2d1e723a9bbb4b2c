"""`make bench`: throughput of the population engine, as ratios against baselines measured in the same run.

One fixed workload (mixed depths and widths, a learning rate too small for anyone to solve, so every
member does the full budget) is trained four ways:
  planned          what a sweep does: plan_buckets with pad_depth = true (depths share a bucket through
                   gated identity layers; widths within a factor of 2 share a bucket)
  planned_by_depth plan_buckets with pad_depth = false (one bucket per depth and width class)
  one_bucket       every member padded into a single bucket
  one_by_one       a Python loop over members, one jitted program per member (the naive baseline)
Each is timed cold (compiles included, with the persistent compile cache off) and warm (a second run).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import jax

from scaling import config
from scaling.errors import UserError
from scaling.outputs import write_atomic
from scaling.plan import plan_buckets
from scaling.population import Member, make_bucket, padding_waste
from scaling.train import train_bucket

STEPS, EVAL_EVERY = 1000, 100
WIDTHS = (2, 4, 8, 16, 32)


def workload(n: int = 8) -> list[Member]:
    base = Member(task="parity", n=n, encoding="pm1", depth=1, width=1, activation="relu", init="he",
                  optimizer="adam", loss="bce", lr=1e-9, seed=0, steps=STEPS)
    return [dataclasses.replace(base, depth=d, width=w, seed=s) for d in (1, 2, 3) for w in WIDTHS for s in range(4)]


def _time(buckets) -> float:
    start = time.perf_counter()
    for b in buckets:
        train_bucket(b)
    return time.perf_counter() - start


def run_bench(out: str | Path = "bench.json") -> dict:
    out = Path(out)
    if not out.parent.is_dir():  # fail now, not after minutes of benchmarking
        raise UserError(str(out), f"cannot write the report: no directory {out.parent}")
    jax.config.update("jax_enable_compilation_cache", False)  # cold means cold
    members = workload()
    cfg = config.parse(f'[experiment]\nname = "bench"\n[task]\nn = {members[0].n}\n[train]\neval_every = {EVAL_EVERY}\n')
    ways = {
        "planned": plan_buckets(members, cfg),
        "planned_by_depth": plan_buckets(members, dataclasses.replace(cfg, pad_depth=False)),
        "one_bucket": [make_bucket(members, eval_every=EVAL_EVERY)],
        "one_by_one": [make_bucket([m], eval_every=EVAL_EVERY) for m in members],
    }
    member_steps = len(members) * STEPS
    results = {}
    for name, buckets in ways.items():
        cold = _time(buckets)
        warm = _time(buckets)
        results[name] = {"buckets": len(buckets), "cold_s": round(cold, 3), "warm_s": round(warm, 3),
                         "warm_member_steps_per_s": round(member_steps / warm),
                         "padding_waste": round(padding_waste(buckets), 3)}
    ratio = lambda a, b, key: round(results[b][key] / results[a][key], 2)
    report = {
        "workload": {"members": len(members), "steps": STEPS, "n": members[0].n, "depths": [1, 2, 3],
                     "widths": list(WIDTHS)},
        "machine": {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
                    "devices": jax.device_count(), "python": platform.python_version(), "jax": jax.__version__},
        "results": results,
        "planned_speedup_vs_one_by_one": {"cold": ratio("planned", "one_by_one", "cold_s"),
                                          "warm": ratio("planned", "one_by_one", "warm_s")},
        "pad_depth_speedup_vs_by_depth": {"cold": ratio("planned", "planned_by_depth", "cold_s"),
                                          "warm": ratio("planned", "planned_by_depth", "warm_s")},
    }
    write_atomic({out: json.dumps(report, indent=2)})
    print(f"{'way':<17}{'buckets':>8}{'cold s':>9}{'warm s':>9}{'member-steps/s':>16}{'waste':>7}")
    for name, r in results.items():
        print(f"{name:<17}{r['buckets']:>8}{r['cold_s']:>9.2f}{r['warm_s']:>9.2f}"
              f"{r['warm_member_steps_per_s']:>16}{r['padding_waste']:>7.2f}")
    one, pad = report["planned_speedup_vs_one_by_one"], report["pad_depth_speedup_vs_by_depth"]
    print(f"planned vs one_by_one: {one['cold']}x cold, {one['warm']}x warm; pad_depth vs by-depth buckets: "
          f"{pad['cold']}x cold, {pad['warm']}x warm (> 1: the first is faster) -> {out}")
    return report
