"""Calibration of the verdict: synthetic stores drawn from known truths, judged by analysis.calls.verdict.judge.

A truth is a curve T(n), the width at which half the seeds solve. A member of width w solves with probability
expit((w - T') / (scale * T')), where T' is T(n) times a learning-rate factor (the middle rate of the grid is
the best; the others need RATE_FACTOR times the width), and scale = 0.2, the slope of the real stores'
success curves. The widths are chosen by the project's own search (scaling.planning.search), round by round, exactly
as a sweep would ask for them. Each draw is judged by the function that `scaling analyze` reports, and the
call of the depth group is compared with the truth's class.

    python -m analysis.simulation.calibration [--draws 40] [--out calibration.csv]

prints (and writes) the table of every truth x design: false calls (the other class, called) and true calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import pandas as pd

from analysis.calls.laws import EXPONENTIAL, LAWS, POLYNOMIAL, Law
from analysis.calls.verdict import REPS, judge
from analysis.simulation.synthetic import (
    Design,
    draw_store,
    max_width_for,
    solve_probability,
    synthetic_config,
    tested_widths,
)
from analysis.simulation.truths import SETS, TRUTHS, Truth
from scaling.experiment.config import Config
from scaling.planning.stats import wilson


def run(truths, designs, draws: int, reps: int = REPS, seed: int = 0, progress=None,
        grid: str = "adaptive", laws: dict[str, Law] | None = None) -> pd.DataFrame:
    """One row per (truth, design, draw): the group's call and each test's outcome (`laws`: judged with these,
    e.g. law_variant(name); default analysis.calls.laws.LAWS)."""
    rows = []
    rng = np.random.default_rng(seed)
    for design in designs:
        for truth in truths:
            cfg = synthetic_config(design, max_width_for(truth.curve, design), grid=grid)
            for draw in range(draws):
                verdict = judge(draw_store(cfg, truth.curve, rng), cfg, reps=reps, seed=draw, laws=laws)
                group = verdict.groups["depth=1"]
                rows.append({"truth": truth.name, "growth": truth.growth, "design": design.label, "grid": grid,
                             "n_max": design.n_max, "seeds": design.seeds, "draw": draw, "call": group.call,
                             "w50_call": group.w50_call.call if group.w50_call else "not fitted"})
                if progress:
                    progress(rows[-1])
    return pd.DataFrame(rows)


def table(results: pd.DataFrame) -> pd.DataFrame:
    """Per truth x design (x width grid): draws, true calls and false calls (the other class called), as rates,
    and the Wilson 95 % upper bound of the false-call rate."""
    called = results.assign(true=results["call"] == results["growth"],
                            false=results["call"].isin([EXPONENTIAL, POLYNOMIAL])
                            & (results["call"] != results["growth"]))
    keys = ["truth", "growth", "design", "n_max", "seeds"] + (["grid"] if "grid" in results else [])
    out = called.groupby(keys, as_index=False, sort=False).agg(
        draws=("draw", "size"), true_call=("true", "mean"), false_call=("false", "mean"))
    out["false_upper"] = wilson(np.round(out["false_call"] * out["draws"]), out["draws"])[1]
    return out.sort_values(["n_max", "seeds", "truth"], ignore_index=True)


DESIGNS = (Design(8, 8), Design(9, 24), Design(10, 16), Design(12, 16), Design(16, 32))


def _variants() -> dict[str, dict]:
    """Other sets of laws, to rerun the calibration that chose analysis.calls.laws: name -> law name -> Law or None."""
    shifted_power, shifted_exponential = LAWS["shifted_power"], LAWS["shifted_exponential"]
    return {
        "two-parameter": {"shifted_exponential": None, "shifted_power": None, "power_exponential": None},
        "one-sided": {"shifted_exponential": None},
        "free-offsets": {"shifted_power": dataclasses.replace(shifted_power, floor=False),
                         "shifted_exponential": dataclasses.replace(shifted_exponential, floor=False)},
        "degree-6": {"shifted_power": dataclasses.replace(shifted_power, shapes=np.geomspace(0.1, 6.0, 48)),
                     "power_exponential": dataclasses.replace(LAWS["power_exponential"], slope_max=6.0),
                     "power": dataclasses.replace(LAWS["power"], slope_max=6.0)},
    }


def law_variant(name: str | None) -> dict[str, Law]:
    """The laws of a variant (name None: LAWS itself), a new dict: LAWS is never changed."""
    laws = dict(LAWS)
    for law, replacement in (_variants()[name] if name else {}).items():
        if replacement is None:
            del laws[law]
        else:
            laws[law] = replacement
    return laws


def estimator_check(truth: Truth, n: int, seeds: int, draws: int = 300, reps: int = 100, seed: int = 0) -> dict:
    """How W50 and w* of one cell scatter around the truth across draws, against their seed-bootstrap spread:
    what verdict.BOOT_INFLATION and LOG_SD_FLOOR correct for. One learning rate; the widths of a search
    replay (analysis.simulation.power)."""
    from analysis.measurement.measure import measure_cube

    rng = np.random.default_rng(seed)
    widths = tested_widths(Design(n, 2), truth.curve)[n]
    p = solve_probability(truth.curve(np.float64(n)), widths, 1.0)
    rows = []
    for _ in range(draws):
        solved = (rng.random((len(widths), 1, seeds)) < p[:, None, None]).astype(float)
        m = measure_cube(n, 1, widths, solved, np.arange(seeds), 0.5, reps, rng)
        rows.append((np.log(m.w50), m.w50_log_sd(), np.log(m.w_star), m.w_star_log_sd()))
    w50, w50_sd, w_star, w_star_sd = np.array(rows).T
    centre = np.log(float(truth.curve(np.float64(n))))
    return {"truth": truth.name, "n": n, "seeds": seeds,
            "w50_sd": float(np.nanstd(w50)), "w50_boot_sd": float(np.nanmean(w50_sd)),
            "w50_bias": float(np.nanmean(w50) - centre),
            "w_star_sd": float(np.nanstd(w_star)), "w_star_boot_sd": float(np.nanmean(w_star_sd)),
            "w_star_bias": float(np.nanmean(w_star) - centre)}


def seed_blocks(df: pd.DataFrame, cfg: Config, blocks: int, reps: int = REPS) -> pd.DataFrame:
    """A real-data check: the store's seeds split into `blocks` disjoint blocks (seed mod blocks), each judged
    alone. Decided calls of one group that contradict across blocks mean the rule over-claims."""
    rows = []
    for block in range(blocks):
        members = df[df["seed"] % blocks == block].assign(seed=lambda d: d["seed"] // blocks)
        verdict = judge(members, cfg.replace(seeds=cfg.search.seeds // blocks), reps=reps, seed=block)
        rows += [{"block": block, "group": name, "call": g.call,
                  "w50": None if g.w50_call is None else g.w50_call.call} for name, g in verdict.groups.items()]
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.simulation.calibration",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--reps", type=int, default=REPS, help="seed-bootstrap replicates per draw (as the report)")
    parser.add_argument("--designs", default=",".join(f"{d.n_max}x{d.seeds}" for d in DESIGNS),
                        help='largest n x seeds, comma-separated, e.g. "10x16,14x32"')
    parser.add_argument("--truth", action="append", choices=list(TRUTHS), help="a truth (repeat; default: all)")
    parser.add_argument("--set", choices=list(SETS), help="only the truths that chose the rule, or those held out")
    parser.add_argument("--grid", choices=["adaptive", "geometric"], default="adaptive",
                        help="the project's adaptive width search, or every width of a x sqrt(2) grid")
    parser.add_argument("--out", help="write the per-draw results as CSV")
    parser.add_argument("--laws", choices=list(_variants()), help="judge with another set of laws (the variants that "
                                                                  "analysis.calls.laws was chosen against)")
    parser.add_argument("--estimators", action="store_true",
                        help="instead: the spread and bias of W50 and w* against their bootstrap (verdict's noise)")
    parser.add_argument("--blocks", metavar="DIR", help="instead: judge disjoint seed blocks of a results directory")
    parser.add_argument("--block-count", type=int, default=4)
    args = parser.parse_args(argv)
    if args.estimators:
        truth = TRUTHS["0.75*2^n"]
        checks = [estimator_check(truth, n, seeds) for n in (4, 7, 10) for seeds in (16, 64)]
        print(pd.DataFrame(checks).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        return 0
    if args.blocks:
        from analysis.measurement.data import load, load_config

        blocks = seed_blocks(load(args.blocks), load_config(args.blocks), args.block_count, args.reps)
        print(blocks.to_string(index=False))
        return 0
    designs = [Design(*map(int, d.split("x"))) for d in args.designs.split(",")]
    chosen = args.truth or list(SETS[args.set] if args.set else TRUTHS)
    results = run([TRUTHS[t] for t in chosen], designs, args.draws, args.reps, grid=args.grid,
                  laws=law_variant(args.laws))
    if args.out:
        results.to_csv(args.out, index=False)
    print(table(results).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
