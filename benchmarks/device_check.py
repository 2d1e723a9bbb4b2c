"""`make device-check`: one prepared script for whoever has an accelerator at hand (about 8 minutes on one GPU).

1. the default sweep, cold (its own empty compile cache), on the accelerator;
2. a measured subset of paper.toml (n = 2..8, depths 1..3, 4 seeds, 2000 steps, no L* search) swept on the
   accelerator, against what
   `scaling plan` forecast for it on that device before it ran;
3. the accelerator's store of the subset against a CPU store of the same config (python -m analysis.runs);
4. every figure into one JSON file (default device-check.json).

Run on the accelerator machine: make device-check (it installs the accelerator build of jax when missing).
Never part of CI. `--cpu` runs the same steps on the CPU with the subset only, to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUBSET = {"n = [2, 16]": "n = [2, 8]", "depths = [1, 2, 3, 4, 5, 6, 7, 8]": "depths = [1, 2, 3]",
          'name = "paper"': 'name = "paper-subset"', "seeds = 32": "seeds = 4", "steps = 10000": "steps = 2000",
          "min_depth_widths = [2, 4, 8]": "min_depth_widths = []", "bucket_mib = 32768": "bucket_mib = 4096"}


def _scaling(args: list[str], env: dict, timeout: int = 900) -> tuple[float, str]:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "scaling", *args], env=env, capture_output=True, text=True,
                         timeout=timeout)
    if run.returncode != 0:
        raise SystemExit(f"device-check: scaling {' '.join(args)} failed ({run.returncode}): {run.stderr[-2000:]}")
    return time.perf_counter() - start, run.stdout + run.stderr


def _subset(work: Path) -> Path:
    text = Path("experiments/paper.toml").read_text()
    for old, new in SUBSET.items():
        if old not in text:
            raise SystemExit(f"device-check: experiments/paper.toml no longer has {old!r}; update SUBSET")
        text = text.replace(old, new)
    path = work / "paper-subset.toml"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="device-check.json")
    parser.add_argument("--cpu", action="store_true", help="check the script on the CPU (subset only)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="device-check-"))
    accel = {**os.environ, "SCALING_JAX_CACHE": str(work / "jax-cache"), "SCALING_CACHE": str(work / "cache")}
    cpu = {**accel, "JAX_PLATFORMS": "cpu", "SCALING_JAX_CACHE": str(work / "jax-cache-cpu")}
    if args.cpu:
        accel = cpu
    probe = subprocess.run([sys.executable, "-c", "import jax, json; d = jax.devices()[0]; print(json.dumps("
                            "{'platform': d.platform, 'device': d.device_kind, 'devices': jax.device_count(), "
                            "'jax': jax.__version__}))"], env=accel, capture_output=True, text=True, check=True)
    figures: dict = json.loads(probe.stdout.strip().splitlines()[-1])
    if not args.cpu:
        wall, log = _scaling(["sweep", "experiments/default.toml", "--out", str(work / "default")], accel)
        figures["default_sweep"] = {"wall_s": round(wall, 1), "summary": log.strip().splitlines()[-1][:400]}
    subset = _subset(work)
    _, plan = _scaling(["plan", str(subset), "--assume-wstar", "2*n"], accel)
    forecast = re.search(r"with w\* = .*?at most ([\d.]+ (?:s|min|h))", plan)
    wall, _ = _scaling(["sweep", str(subset), "--out", str(work / "subset-accel")], accel)
    cpu_wall, _ = _scaling(["sweep", str(subset), "--out", str(work / "subset-cpu")], cpu)
    figures["subset"] = {"config": SUBSET, "forecast": forecast.group(1) if forecast else plan[-400:],
                         "measured_s": round(wall, 1), "cpu_measured_s": round(cpu_wall, 1)}
    compare = subprocess.run([sys.executable, "-m", "analysis.runs", str(work / "subset-accel"),
                              str(work / "subset-cpu")], capture_output=True, text=True)
    figures["accelerator_vs_cpu"] = compare.stdout.strip().splitlines() or compare.stderr.strip().splitlines()
    Path(args.out).write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
