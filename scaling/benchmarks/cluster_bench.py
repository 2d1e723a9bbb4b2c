"""`scaling bench --processes P`: sweeps on one process pinned to one core, against P local processes of one
cluster (scaling launch), each pinned to a core of its own; every process trains one bucket at a time. Two
workloads: `search`, the bench workload (scaling.benchmarks.bench.WORKLOAD: one cell, whose width search is a
chain of rounds of one bucket each, so processes can only share a round by splitting its bucket), and `study`,
the same search in the 8 cells of n = 7..10 at depths 1 and 2 (a scaling study: rounds of several buckets).
Each way runs twice: cold (an empty persistent compile cache, shared by the cluster's processes) and warm (the
cache the cold run filled). The cluster plans for the threads of all its processes, so its buckets differ from
the single process's; the report counts the members whose solved flag differs (float rounding near w*;
tests/test_cluster.py checks equal rows under equal plans). Where the time goes: process 0's log line gives
its waits for the others at the rounds' ends and its key-value traffic.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scaling.benchmarks.bench import WORKLOAD
from scaling.errors import UserError
from scaling.storage.outputs import check_writable, write_atomic

_CLUSTER_LINE = re.compile(r"(\d+) rounds; process 0 waited ([\d.]+) s .*?key-value traffic ([\d.]+) s")


def _run(args: list[str], env: dict, core: int | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    pin = None if core is None else (lambda: os.sched_setaffinity(0, {core}))
    run = subprocess.run([sys.executable, "-m", "scaling", *args], env=env, capture_output=True, text=True,
                         preexec_fn=pin)
    if run.returncode != 0:
        raise UserError("scaling bench --processes", f"`scaling {' '.join(args)}` failed: {run.stderr[-500:]}")
    return time.perf_counter() - start, run.stderr


def _rows(out: Path) -> dict:
    import sqlite3

    with sqlite3.connect(out / "results.sqlite") as conn:
        return dict(((n, d, w, lr, s, b), solved) for n, d, w, lr, s, b, solved in conn.execute(
            "SELECT n, depth, width, lr, seed, steps_budget, solved FROM members"))


# The bench workload's search over the cells of a small scaling study.
STUDY = WORKLOAD.replace("n = 10\n", "n = [7, 8, 9, 10]\n").replace("depths = [2]", "depths = [1, 2]")
if "n = [7, 8, 9, 10]" not in STUDY or "depths = [1, 2]" not in STUDY:  # the replaces found nothing to replace
    raise RuntimeError("the bench workload's n or depths changed: rebuild cluster_bench.STUDY from it")
WORKLOADS = {"search": WORKLOAD, "study": STUDY}


def _compare(config: Path, work: Path, processes: int) -> dict:
    """One workload: one process and the cluster, cold then warm; wall seconds, speed-ups, rows compared."""
    results: dict = {}
    rows = {}
    for way in ("one", "cluster"):
        env = {**os.environ, "SCALING_THREADS": "1", "SCALING_JAX_CACHE": str(work / f"cache-{way}")}
        for temperature in ("cold", "warm"):
            store = work / f"{way}-{temperature}"
            sweep = ["sweep", str(config), "--out", str(store)]
            if way == "one":
                wall, _ = _run(sweep, env, core=min(os.sched_getaffinity(0)))
            else:
                wall, log = _run(["launch", "--processes", str(processes), "--pin-cores", "--", *sweep], env)
                found = _CLUSTER_LINE.search(log)
                if found:
                    results[f"{temperature}_rounds"] = int(found.group(1))
                    results[f"{temperature}_process0_waited_s"] = float(found.group(2))
                    results[f"{temperature}_key_value_s"] = float(found.group(3))
            results[f"{way}_{temperature}_s"] = round(wall, 2)
            rows[(way, temperature)] = _rows(store)
            print(f"{config.stem}: {way} process{'es' if way == 'cluster' else ''}, {temperature}: {wall:.1f} s",
                  flush=True)
    for temperature in ("cold", "warm"):
        one, cluster = results[f"one_{temperature}_s"], results[f"cluster_{temperature}_s"]
        results[f"{temperature}_speedup"] = round(one / cluster, 2)
        one_rows, cluster_rows = rows[("one", temperature)], rows[("cluster", temperature)]
        common = one_rows.keys() & cluster_rows.keys()
        results[f"{temperature}_members"] = [len(one_rows), len(cluster_rows)]
        results[f"{temperature}_solved_differs"] = sum(one_rows[k] != cluster_rows[k] for k in common)
    return results


def run_cluster_bench(processes: int, out: str | Path = "bench-cluster.json") -> dict:
    if processes < 2:
        raise UserError("--processes", f"compares P >= 2 processes with one, got {processes}")
    if len(os.sched_getaffinity(0)) < processes:
        raise UserError("--processes", f"pins each process to a core of its own; this machine lets it use "
                                       f"{len(os.sched_getaffinity(0))} cores")
    check_writable(Path(out))  # before minutes of benchmarking
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    results: dict = {"processes": processes, "workloads": "scaling.benchmarks.cluster_bench.WORKLOADS"}
    for name, text in WORKLOADS.items():
        config = work / name / f"{name}.toml"
        config.parent.mkdir()
        config.write_text(text)
        results[name] = _compare(config, config.parent, processes)
    write_atomic({Path(out): json.dumps(results, indent=1)})
    return results
