"""`make profile-compile` (python -m benchmarks.compile_profile): where the engine's compile time goes.

For each program kind (init, chunk, gather) and a base bucket shape like a default sweep's, it varies one
thing at a time (hidden depth, width, population, table rows, eval_every, the XLA optimisation level) and
prints, per program, the seconds to trace and lower it (Python and JAX) and the seconds of XLA's backend
compile, each the best of a few fresh compiles (no cache: every program is lowered anew, and jax's
persistent compile cache is off while this runs). One JSON file (--out) holds every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax

from scaling.engine.population import Member, make_bucket
from scaling.engine.programs import Programs
from scaling.engine.steps import compiler_options

BASE = {"n": 8, "depth": 3, "width": 8, "members": 192, "eval_every": 100}
VARIED = {"depth": [1, 2, 3, 4, 6], "width": [4, 16, 32, 64], "members": [48, 768], "n": [4, 10],
          "eval_every": [10, 1000]}
LEVELS = [0, 1, 2]  # xla_backend_optimization_level on a CPU (the engine uses compiler_options())
CHEAP_LLVM = {"xla_llvm_disable_expensive_passes": True}  # on top of the engine's options, on a CPU


def _bucket(n: int, depth: int, width: int, members: int, eval_every: int):
    base = Member(task="parity", n=n, encoding="pm1", depth=depth, width=width, activation="relu", init="he",
                  optimizer="adam", loss="bce", lr=1e-3, seed=0, steps=1000)
    return make_bucket([dataclasses.replace(base, seed=s) for s in range(members)], eval_every=eval_every)


def _timed(lower, options, reps: int) -> tuple[float, float]:
    """(seconds to trace and lower, seconds of the backend compile), the best of reps fresh ones."""
    lower_s, compile_s = [], []
    for _ in range(reps):
        jax.clear_caches()
        start = time.perf_counter()
        lowered = lower()
        lower_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        lowered.compile(options)
        compile_s.append(time.perf_counter() - start)
    return min(lower_s), min(compile_s)


def profile(shape: dict, options, reps: int) -> dict:
    bucket = _bucket(**shape)
    programs = Programs()
    slots = bucket.slots
    row = dict(shape)
    for kind in ("init", "chunk", "gather"):  # a sweep on one CPU device compiles chunk programs only
        try:
            row[f"{kind}_lower_s"], row[f"{kind}_compile_s"] = _timed(
                lambda: programs.lowered(kind, bucket.spec, slots), options, reps)
        except Exception as e:  # an XLA option that this jaxlib does not know: the row says so
            row[f"{kind}_lower_s"] = row[f"{kind}_compile_s"] = float("nan")
            row["error"] = str(e).splitlines()[0][:200]
    programs.close()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="compile-profile.json")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_compilation_cache", False)
    rows = []
    head = (f"{'varied':>10} {'n':>3} {'depth':>5} {'width':>5} {'members':>7} {'eval_every':>10} {'O':>2} "
            + " ".join(f"{k + ' lower/compile s':>22}" for k in ("init", "chunk", "gather")))
    print(head)
    options = compiler_options()
    level = (options or {}).get("xla_backend_optimization_level", "-")
    shapes = [("base", BASE, options, level)]
    shapes += [(key, {**BASE, key: value}, options, level) for key, values in VARIED.items() for value in values]
    if jax.default_backend() == "cpu":
        shapes += [("O level", BASE, {"xla_backend_optimization_level": o}, o) for o in LEVELS if o != level]
        shapes += [("cheap llvm", BASE, {**(options or {}), **CHEAP_LLVM}, level)]
    for varied, shape, opts, o in shapes:
        row = {"varied": varied, "opt_level": o, **profile(shape, opts, args.reps)}
        rows.append(row)
        print(f"{varied:>10} {shape['n']:>3} {shape['depth']:>5} {shape['width']:>5} {shape['members']:>7} "
              f"{shape['eval_every']:>10} {o:>2} " + " ".join(
                  f"{row[k + '_lower_s']:>10.2f} / {row[k + '_compile_s']:>9.2f}" for k in ("init", "chunk", "gather")),
              flush=True)
    with open(args.out, "w") as f:
        json.dump({"backend": jax.default_backend(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
