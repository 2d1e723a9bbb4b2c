"""`scaling analyze DIR` (= `python -m analysis DIR`): fits.json, figures/*.pdf|png and REPORT.md from a store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.compare import Bootstrap, FitComparison, compare_fits
from analysis.curves import Curve, depth_curves, steps_curves, steps_frame
from analysis.data import load, load_config, load_runs
from analysis.fits import FitError
from analysis.intervals import interval95
from analysis.laws import LAWS
from analysis.markdown import render_report
from analysis.measure import w50_frame
from analysis.power import power_analysis
from analysis.recipe import recipe_effects, recipe_lines
from analysis.verdict import REPS, GroupVerdict, Verdict, judge
from scaling import search
from scaling.constructions import unit_counts
from scaling.errors import UserError
from scaling.outputs import write_outputs
from scaling.population import units_at
from scaling.stats import crossfit_rates, latest_budget, min_width_by_budget, width_cells

PNG_DPI = 200
# What `scaling analyze` writes into a results directory (the one writer of each).
SUMMARY, FITS, REPORT, FIGURES_DIR = "summary.csv", "fits.json", "REPORT.md", "figures"
FIGURE_SUFFIXES = (".pdf", ".png")


def point_intervals(curve: Curve, reps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap 95 % percentile interval of each point of an L* or steps curve (NaN where no replicate has it)."""
    if curve.resample is None:
        nan = np.full(len(curve.x), np.nan)
        return nan, nan
    rng = np.random.default_rng(seed)
    draws: dict[float, list[float]] = {x: [] for x in curve.x}
    for _ in range(reps):
        for x, y in zip(*curve.resample(rng)):
            draws[x].append(y)
    lo, hi = zip(*(interval95(draws[x]) for x in curve.x)) if len(curve.x) else ((), ())
    return np.array(lo, float), np.array(hi, float)


def fit_all(curves: list[Curve], reps: int) -> tuple[dict[str, FitComparison], dict[str, str]]:
    """compare_fits for every L* and steps curve with enough points; the others get a reason, never a silent gap."""
    done, skipped = {}, {}
    for c in curves:
        try:
            boot = Bootstrap(c.resample, reps=reps) if c.resample is not None else None
            done[c.name] = compare_fits(c.x, c.y, censored=c.censored, bootstrap=boot)
        except FitError as e:
            skipped[c.name] = str(e)
    return done, skipped


def _group_points(g: GroupVerdict, depth_of: dict[int, int], fixed: tuple[int, ...],
                  profile: str) -> list[pd.DataFrame]:
    """Points of one depth group: W50, w* and the hidden units at W50, each with its seed-bootstrap interval; a
    log2 group only where its depth is its own (elsewhere its points are a fixed depth's)."""
    frames = []
    for quantity, points in (("w50", g.w50), ("w_star", g.w_star), ("units", g.w50)):
        if not len(points.x):
            continue
        own = np.array([not g.group.startswith("depth=log2") or depth_of[int(n)] not in fixed for n in points.x])
        as_units = lambda w, i: units_at(w, depth_of[int(points.x[i])], profile) if quantity == "units" else w
        lo, hi = (np.array([as_units(v, i) for i, v in enumerate(bound)], float)
                  for bound in interval95(points.reps, axis=0))
        y = np.array([as_units(v, i) for i, v in enumerate(points.y)], float)
        frames.append(pd.DataFrame({"curve": f"{quantity}/{g.group}", "quantity": quantity, "group": g.group,
                                    "n": points.x, "y": y, "censored": False, "limited": False,
                                    "lo": lo, "hi": hi})[own])
    return frames


def _frames(verdict: Verdict, cfg, other: list[Curve], fits: dict[str, FitComparison], reps: int):
    """The figures' frames: points, fitted lines (the best law, and the best of the other class) and weights."""
    points, fitted, weights = [], [], []
    for g in verdict.groups.values():
        depth_of = {n: d for n, d in g.cells}
        points += _group_points(g, depth_of, cfg.model.depths, str(cfg.model.profile))
        for quantity, call, pts in (("w50", g.w50_call, g.w50), ("w_star", g.w_star_call, g.w_star)):
            if call is None:
                continue
            name = f"{quantity}/{g.group}"
            best = call.best()
            grid = np.linspace(pts.x.min(), pts.x.max(), 60)
            for rank, law in enumerate([best, call.best(next(c for c in call.class_weight if c != LAWS[best].growth))],
                                       start=1):
                fitted.append(pd.DataFrame({"curve": name, "family": law, "rank": rank, "n": grid,
                                            "y": call.predict(law, grid)}))
                if quantity == "w50" and np.ptp([depth_of[int(n)] for n in pts.x]) == 0:
                    fitted.append(pd.DataFrame({"curve": f"units/{g.group}", "family": law, "rank": rank, "n": grid,
                                                "y": units_at(call.predict(law, grid), depth_of[int(pts.x[0])],
                                                            str(cfg.model.profile))}))
            weights.append(call.table[["law", "weight", "win_rate"]].rename(
                columns={"law": "family", "win_rate": "boot_win_rate"}).assign(curve=name))
    for c in other:
        lo, hi = point_intervals(c, reps)
        points.append(pd.DataFrame({"curve": c.name, "quantity": c.quantity, "group": c.group, "n": c.x, "y": c.y,
                                    "censored": c.censored, "limited": False, "lo": lo, "hi": hi}))
        comp = fits.get(c.name)
        if comp is not None:
            grid = np.linspace(c.x[~c.censored].min(), c.x[~c.censored].max(), 60)
            for rank, fam in enumerate(comp.table["family"], start=1):
                fitted.append(pd.DataFrame({"curve": c.name, "family": fam, "rank": rank, "n": grid,
                                            "y": comp.fits[fam].predict(grid)}))
            w = comp.table[["family", "weight"]].assign(curve=c.name)
            w["boot_win_rate"] = w["family"].map(comp.win_rate or {})
            weights.append(w)
    cat = lambda parts, cols: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return (cat(points, ["curve", "quantity", "group", "n", "y", "censored", "limited", "lo", "hi"]),
            cat(fitted, ["curve", "family", "rank", "n", "y"]),
            cat(weights, ["curve", "family", "weight", "boot_win_rate"]))


def _figure_bytes(fig, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=PNG_DPI, bbox_inches="tight", pad_inches=0.02)
    return buffer.getvalue()


def store_warnings(cfg, df: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """What a reader must know before trusting the report: unfinished runs, members still missing."""
    notes = []
    unfinished = runs[runs["ended_at"].isna()]
    if len(unfinished):
        notes.append(f"{len(unfinished)} of {len(runs)} sweep run(s) did not finish (interrupted, or still "
                     f"running): run id {', '.join(str(int(r)) for r in unfinished['run_id'])}.")
    if not df["solved"].any():
        notes.append(f"No member of this store solved parity ({len(df)} trained): nothing here measures a width. "
                     "Check the learning rates (`lrs`) and the step budget (`steps`) of the experiment file.")
    diverged = int(df["diverged"].sum())
    if diverged > len(df) // 2:
        notes.append(f"{diverged} of {len(df)} members diverged (a loss that was not finite or above 10^4): the "
                     "learning rates are likely too large.")
    missing = len(search.missing_members(cfg, df))
    if missing:
        notes.append(f"The store lacks {missing} members that the search asks for at this point: the sweep is "
                     f"incomplete, so w* and the fits may change. Rerun "
                     f"`scaling sweep` with this config and the same --out to finish it.")
    return notes


def analyze(dir: str | Path, reps: int = REPS, power: bool = True) -> list[Path]:
    """Everything `scaling analyze` writes; returns the paths written. `power` runs the power analysis."""
    dir = Path(dir)
    df, cfg, runs = load(dir), load_config(dir), load_runs(dir)
    if df.empty:
        raise UserError(str(dir), "the store has no trained members yet")
    verdict = judge(df, cfg, reps)
    shaped = latest_budget(width_cells(df, cfg))  # w* at each cell's largest budget
    base = df[df["steps_budget"] == cfg.train.steps]  # L* compares depths at one budget
    w50 = w50_frame(verdict.cells)
    summary = verdict.summary.merge(w50[["n", "depth", "w50", "w50_lo", "w50_hi"]], on=["n", "depth"], how="left")
    by_budget = min_width_by_budget(shaped, cfg.search.success_threshold)
    stars = summary[summary["kind"] == "min_width"]
    other = depth_curves(base, cfg) + steps_curves(shaped, sorted(set(shaped["depth"])))
    fits, skipped = fit_all(other, reps)
    points, fitted, weights = _frames(verdict, cfg, other, fits, reps)
    powers = power_analysis(verdict, cfg) if power else {}
    fits_json = {name: comp.as_dict() for name, comp in fits.items()}
    fits_json.update({name: {"skipped": why} for name, why in skipped.items()})
    fits_json["verdict"] = verdict.as_dict() | {"power": powers}
    recipe = []
    if len(cfg.model.inits) > 1 or cfg.search.max_steps > cfg.train.steps:  # recipes or budgets were searched
        effects = recipe_effects(df, cfg, reps)
        fits_json["recipe"] = effects.to_dict("records")
        recipe = recipe_lines(effects, cfg)
    theory = unit_counts(cfg.task.ns)  # counted as the measurements are: in the run's width profile
    theory = theory.assign(units=theory[f"units_{cfg.model.profile}"]) if len(theory) else theory
    rates = crossfit_rates(shaped, ["n", "depth", "width"])
    bases = {name: comp.fits["exponential"].params["b"] for name, comp in fits.items()
             if name.startswith("steps/") and "exponential" in comp.fits}
    drawn = {
        "units_vs_bits": figures.units_vs_bits(points, fitted, theory),
        "total_units": figures.total_units(points, fitted, theory),
        "success_heatmaps": figures.success_heatmaps(rates, stars),
        "min_depth": figures.min_depth(points, fitted),
        "steps_to_solve": figures.steps_to_solve(points, fitted, bases),
        "fit_comparison": figures.fit_comparison(weights),
        "w_star_vs_budget": figures.w_star_vs_budget(by_budget),
    }
    files: dict[str, bytes | str] = {SUMMARY: summary.to_csv(index=False),
                                     FITS: json.dumps(fits_json, indent=2, default=float)}
    for name, fig in drawn.items():
        for suffix in FIGURE_SUFFIXES:
            files[f"{FIGURES_DIR}/{name}{suffix}"] = _figure_bytes(fig, suffix[1:])
    warnings = store_warnings(cfg, df, runs)
    steps = steps_frame(shaped, sorted(set(shaped["depth"])))
    files[REPORT] = render_report(cfg, df, runs, summary, verdict, powers, fits, skipped, theory, list(drawn),
                                  warnings, by_budget, steps, recipe)
    return write_outputs(dir, files)  # all or nothing, the report last
