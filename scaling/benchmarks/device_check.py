"""`make device-check`: one prepared script for whoever has an accelerator at hand (at most 8 minutes on one GPU).

1. the default sweep, cold (its own empty compile cache), on the accelerator, stopped where it would run into
   the last SUBSET_SHARE_S seconds of the budget, which are kept for the subset's steps;
2. a measured subset of paper.toml (n = 2..8, depths 1..3, 4 seeds, 2000 steps, no L* search) swept on the
   accelerator, against what `scaling plan` forecast for it on that device before it ran;
3. the accelerator's store of the subset against a CPU store of the same config (python -m analysis.measurement.runs);
4. on a GPU, the subset again with XLA's autotuner off (_variants), against the same CPU store;
5. every figure, and the cost model calibrated there, into one JSON file (default device-check.json), rewritten
   after each step, so that a step cut short by the time budget (--minutes) still leaves the figures of the
   steps before it. A step that fails leaves its error there and the check goes on; `--keep DIR` also copies
   each sweep's store and log into DIR.

It runs on the interpreter that runs it, with what that interpreter has (jax 0.10 or 0.11 with its accelerator
plugin, flax, optax, numpy, scipy, pandas, matplotlib, tqdm) and installs nothing: on a machine without a
package registry, `make device-check PYTHON=python3 VENV=none` puts the project on PYTHONPATH instead of
building .venv. Never part of CI. `--cpu` runs steps 2, 3 and 5 on the CPU with a tiny subset, to check the script
itself (make test runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
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


# The subset's steps (forecast, two sweeps, comparison) keep this much of the budget: a default sweep that would
# run into it is stopped, so that one slow step cannot cost the check its GPU-against-CPU comparison.
SUBSET_SHARE_S = 180


class _OutOfTime(Exception):
    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output  # what the command wrote before it was stopped


class _Failed(Exception):
    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output  # what the command wrote, for the kept log


def _scaling(args: list[str], env: dict, deadline: float, module: str = "scaling") -> tuple[float, str, str]:
    """(seconds, stdout, stderr) of `python -m module args`, stopped at the deadline (a monotonic clock time)."""
    left = deadline - time.monotonic()
    if left < 5:
        raise _OutOfTime(f"no time left for {module} {args[0]}")
    start = time.monotonic()
    try:
        run = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                             timeout=left, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        written = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part
                          for part in (e.stdout, e.stderr) if part)
        raise _OutOfTime(f"{module} {args[0]} ran past the budget ({left:.0f} s)", written) from None
    if run.returncode != 0:
        raise _Failed(f"{module} {' '.join(args)} failed ({run.returncode}): {run.stderr[-2000:]}",
                      run.stdout + run.stderr)
    return time.monotonic() - start, run.stdout, run.stderr


def _sweep(config: Path | str, out: Path, env: dict, deadline: float, keep: Path | None) -> dict:
    """Sweep a config into out; its seconds, closing line and tables (and, with keep, its store and log, also
    of a sweep that failed)."""
    log = ""
    try:
        wall, stdout, stderr = _scaling(["sweep", str(config), "--out", str(out)], env, deadline)
        log = stdout + stderr
    except (_Failed, _OutOfTime) as e:
        log = e.output
        raise
    finally:
        if keep:
            (keep / f"{out.name}.log").write_text(log)
            if (out / "results.sqlite").exists():  # through sqlite: rows still in its write-ahead log too
                source, copy = sqlite3.connect(out / "results.sqlite"), sqlite3.connect(keep / f"{out.name}.sqlite")
                try:
                    source.backup(copy)
                finally:
                    source.close()
                    copy.close()
    lines = stdout.strip().splitlines()
    closing = next((i for i, line in enumerate(lines) if re.search(r": trained \d+ members", line)), len(lines))
    return {"wall_s": round(wall, 1), "summary": lines[closing][:600] if closing < len(lines) else None,
            "tables": lines[closing + 1:]}


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


def _step(figures: dict, name: str, save, run) -> bool:
    """Run one step into figures[name]; a failure is recorded there and the check goes on (time out stops it)."""
    try:
        result = run()
        figures.setdefault(name, {}).update(result)
        return True
    except _Failed as e:
        figures.setdefault(name, {})["error"] = str(e)
        return False
    finally:
        save()


def _default_sweep(work: Path, env: dict, deadline: float, keep: Path | None) -> dict:
    """The default sweep, cold, stopped where it would run into the subset's share of the budget."""
    try:
        return _sweep("experiments/default.toml", work / "default", env, deadline - SUBSET_SHARE_S, keep)
    except _OutOfTime as e:
        raise _Failed(f"{e}; the last {SUBSET_SHARE_S} s of the budget are the subset's", e.output) from None


def _steps(figures: dict, work: Path, accel: dict, cpu: dict, cpu_only: bool, deadline: float, save,
           keep: Path | None) -> None:
    if not cpu_only:
        _step(figures, "default_sweep", save, lambda: _default_sweep(work, accel, deadline, keep))
    subset = _subset(work, TINY if cpu_only else SUBSET)

    def forecast() -> dict:
        _, plan, _ = _scaling(["plan", str(subset), "--assume-wstar", "2*n"], accel, deadline)
        found = re.search(r"with w\* = .*?at most ([\d.]+ (?:s|min|h))", plan)
        return {"config": TINY if cpu_only else SUBSET, "forecast": found.group(1) if found else plan[-400:]}

    _step(figures, "subset", save, forecast)
    swept = [_step(figures, name, save, lambda out=work / name, env=env: _sweep(subset, out, env, deadline, keep))
             for name, env in (("subset-accel", accel), ("subset-cpu", cpu))]
    figures["subset"].update(measured_s=figures["subset-accel"].get("wall_s"),
                             cpu_measured_s=figures["subset-cpu"].get("wall_s"))
    compare = lambda name, a: _step(figures, name, save, lambda: {"lines": _scaling(
        [str(work / a), str(work / "subset-cpu")], cpu, deadline, "analysis.measurement.runs")[1].strip().splitlines()})
    if all(swept):
        compare("accelerator_vs_cpu", "subset-accel")
    for name, flags in _variants(figures["platform"]) if swept[1] and not cpu_only else ():
        env = {**accel, "XLA_FLAGS": " ".join(filter(None, (accel.get("XLA_FLAGS"), flags))),
               "SCALING_JAX_CACHE": str(work / f"jax-cache-{name}")}
        if _step(figures, name, save, lambda name=name, env=env: _sweep(subset, work / name, env, deadline, keep)):
            compare(f"{name}_vs_cpu", name)


def _variants(platform: str) -> list[tuple[str, str]]:
    """The subset again on the accelerator under other XLA flags: (name, flags), measured for the next change.
    On a GPU, XLA's autotuner times candidate kernels on the one GPU while the sweep compiles many programs at
    once (an H200's cold subset compiled 14 programs in 246 s of compiler time and waited 65 % of its time)."""
    return [("subset-accel-autotune-off", "--xla_gpu_autotune_level=0")] if platform == "gpu" else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="device-check.json")
    parser.add_argument("--cpu", action="store_true", help="check the script on the CPU (a tiny subset only)")
    parser.add_argument("--minutes", type=float, default=8.0, help="the whole check's time budget")
    parser.add_argument("--keep", type=Path, help="a folder for each sweep's store (NAME.sqlite) and log (NAME.log)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + 60 * args.minutes
    work = Path(tempfile.mkdtemp(prefix="device-check-"))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
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
        _steps(figures, work, accel, cpu, args.cpu, deadline, save, args.keep)
    except _OutOfTime as e:
        figures["stopped"] = str(e)
    # The cost model calibrated on the accelerator (by its first sweep), as the planner used it.
    for path in sorted((work / "cache").glob("cost-*.json")):
        figures.setdefault("cost_models", {})[path.stem] = json.loads(path.read_text())
    figures["total_s"] = round(60 * args.minutes - (deadline - time.monotonic()), 1)
    save()
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
