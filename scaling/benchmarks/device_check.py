"""`make device-check`: one prepared script for whoever has an accelerator at hand (at most 8 minutes on one GPU).

1. the default sweep, cold (its own empty compile cache), on the accelerator;
2. a measured subset of paper.toml (n = 2..8, depths 1..3, 4 seeds, 2000 steps, no L* search) swept on the
   accelerator, against what `scaling plan` forecast for it on that device before it ran;
3. the accelerator's store of the subset against a CPU store of the same config (python -m analysis.measurement.runs);
4. every figure into one JSON file (default device-check.json), rewritten after each step, so that a step
   cut short by the time budget (--minutes) still leaves the figures of the steps before it.

It runs on the interpreter that runs it, with what that interpreter has (jax 0.10 or 0.11 with its accelerator
plugin, flax, optax, numpy, scipy, pandas, matplotlib, tqdm) and installs nothing: on a machine without a
package registry, `make device-check PYTHON=python3 VENV=none` puts the project on PYTHONPATH instead of
building .venv. Never part of CI. `--cpu` runs steps 2-4 on the CPU with a tiny subset, to check the script
itself (make test runs it).
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

ROOT = Path(__file__).resolve().parents[2]
SUBSET = {"n = [2, 16]": "n = [2, 8]", "depths = [1, 2, 3, 4, 5, 6, 7, 8]": "depths = [1, 2, 3]",
          'name = "paper"': 'name = "paper-subset"', "seeds = 32": "seeds = 4", "steps = 10000": "steps = 2000",
          "min_depth_widths = [2, 4, 8]": "min_depth_widths = []", "bucket_mib = 32768": "bucket_mib = 4096"}
# --cpu checks the script, not the machine: a subset small enough for the test suite.
TINY = {**SUBSET, "n = [2, 16]": "n = [2, 4]", "depths = [1, 2, 3, 4, 5, 6, 7, 8]": "depths = [1]",
        "seeds = 32": "seeds = 2", "steps = 10000": "steps = 500"}


class _OutOfTime(Exception):
    pass


def _scaling(args: list[str], env: dict, deadline: float, module: str = "scaling") -> tuple[float, str]:
    """(seconds, output) of `python -m module args`, stopped at the deadline (a monotonic clock time)."""
    left = deadline - time.monotonic()
    if left < 5:
        raise _OutOfTime(f"no time left for {module} {args[0]}")
    start = time.monotonic()
    try:
        run = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                             timeout=left, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise _OutOfTime(f"{module} {args[0]} ran past the budget ({left:.0f} s)") from None
    if run.returncode != 0:
        raise SystemExit(f"device-check: {module} {' '.join(args)} failed ({run.returncode}): {run.stderr[-2000:]}")
    return time.monotonic() - start, run.stdout + run.stderr


def _subset(work: Path, replacements: dict) -> Path:
    text = (ROOT / "experiments" / "paper.toml").read_text()
    for old, new in replacements.items():
        if old not in text:
            raise SystemExit(f"device-check: experiments/paper.toml no longer has {old!r}; update SUBSET")
        text = text.replace(old, new)
    path = work / "paper-subset.toml"
    path.write_text(text)
    return path


def _environment(env: dict) -> dict:
    """The device and the versions that the sweeps will run with."""
    probe = subprocess.run([sys.executable, "-c", "import jax, json, flax, optax, sys; d = jax.devices()[0]; "
                            "print(json.dumps({'platform': d.platform, 'device': d.device_kind, "
                            "'devices': jax.device_count(), 'jax': jax.__version__, 'flax': flax.__version__, "
                            "'optax': optax.__version__, 'python': sys.version.split()[0]}))"],
                           env=env, capture_output=True, text=True, cwd=ROOT)
    if probe.returncode != 0:
        raise SystemExit(f"device-check: the interpreter {sys.executable} cannot run jax: {probe.stderr[-1000:]}")
    return json.loads(probe.stdout.strip().splitlines()[-1])


def _steps(figures: dict, work: Path, accel: dict, cpu: dict, cpu_only: bool, deadline: float, save) -> None:
    if not cpu_only:
        wall, log = _scaling(["sweep", "experiments/default.toml", "--out", str(work / "default")], accel, deadline)
        figures["default_sweep"] = {"wall_s": round(wall, 1), "summary": log.strip().splitlines()[-1][:400]}
        save()
    subset = _subset(work, TINY if cpu_only else SUBSET)
    _, plan = _scaling(["plan", str(subset), "--assume-wstar", "2*n"], accel, deadline)
    forecast = re.search(r"with w\* = .*?at most ([\d.]+ (?:s|min|h))", plan)
    figures["subset"] = {"config": TINY if cpu_only else SUBSET,
                         "forecast": forecast.group(1) if forecast else plan[-400:]}
    wall, _ = _scaling(["sweep", str(subset), "--out", str(work / "subset-accel")], accel, deadline)
    figures["subset"]["measured_s"] = round(wall, 1)
    save()
    cpu_wall, _ = _scaling(["sweep", str(subset), "--out", str(work / "subset-cpu")], cpu, deadline)
    figures["subset"]["cpu_measured_s"] = round(cpu_wall, 1)
    _, compare = _scaling([str(work / "subset-accel"), str(work / "subset-cpu")], cpu, deadline,
                          "analysis.measurement.runs")
    figures["accelerator_vs_cpu"] = compare.strip().splitlines()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="device-check.json")
    parser.add_argument("--cpu", action="store_true", help="check the script on the CPU (a tiny subset only)")
    parser.add_argument("--minutes", type=float, default=8.0, help="the whole check's time budget")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + 60 * args.minutes
    work = Path(tempfile.mkdtemp(prefix="device-check-"))
    # The project on the path of every child, whether or not it is installed (VENV=none).
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    accel = {**os.environ, "PYTHONPATH": path, "SCALING_JAX_CACHE": str(work / "jax-cache"),
             "SCALING_CACHE": str(work / "cache")}
    cpu = {**accel, "JAX_PLATFORMS": "cpu", "SCALING_JAX_CACHE": str(work / "jax-cache-cpu")}
    if args.cpu:  # checks the script: plans with the caller's cost model (no probe), like the test suite
        cpu = {**cpu, "SCALING_CACHE": os.environ.get("SCALING_CACHE", cpu["SCALING_CACHE"])}
        accel = cpu
    figures: dict = {**_environment(accel), "interpreter": sys.executable, "budget_min": args.minutes}
    save = lambda: Path(args.out).write_text(json.dumps(figures, indent=1))
    try:
        _steps(figures, work, accel, cpu, args.cpu, deadline, save)
    except _OutOfTime as e:
        figures["stopped"] = str(e)
    figures["total_s"] = round(60 * args.minutes - (deadline - time.monotonic()), 1)
    save()
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
