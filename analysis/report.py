"""`scaling analyze DIR` (= `python -m analysis DIR`): fits.json, figures/*.pdf|png and REPORT.md from a store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.compare import Bootstrap, FitComparison, compare_fits
from analysis.curves import Curve, depth_curves, steps_curves, w50_curves, width_curves
from analysis.data import load, load_config, load_runs
from analysis.fits import FitError
from analysis.claim import verdict_object
from analysis.verdict import render_report
from analysis.w50 import w50_frame
from scaling import search
from scaling.constructions import unit_counts
from scaling.errors import UserError
from scaling.outputs import FIGURE_SUFFIXES, FIGURES, FIGURES_DIR, FITS, REPORT, SUMMARY, write_atomic
from scaling.stats import crossfit_rates, latest_budget, min_width_by_budget, summarize, width_cells
from scaling.store import stored_members

BOOTSTRAP_REPS = 200
PNG_DPI = 200


def point_intervals(curve: Curve, reps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Bootstrap 95 % percentile interval of each point (NaN where a replicate set is empty), and the curve's
    centring: the share of replicates above (and below) their point, over the points a fit uses, and the
    mid-p centring (above + half the ties). A centred bootstrap gives 0.5; a lopsided one says the estimate
    sits at an edge of its own distribution."""
    if curve.resample is None:
        nan = np.full(len(curve.x), np.nan)
        return nan, nan, {}
    rng = np.random.default_rng(seed)
    draws: dict[float, list[float]] = {x: [] for x in curve.x}
    for _ in range(reps):
        bx, by = curve.resample(rng)
        for x, y in zip(bx, by):
            draws[x].append(y)
    lo = np.array([np.percentile(draws[x], 2.5) if draws[x] else np.nan for x in curve.x])
    hi = np.array([np.percentile(draws[x], 97.5) if draws[x] else np.nan for x in curve.x])
    used = [(np.array(draws[x]), y) for x, y, out in zip(curve.x, curve.y, curve.excluded) if not out and draws[x]]
    centring = {}
    if used:
        above = float(np.mean([np.mean(d > y) for d, y in used]))
        below = float(np.mean([np.mean(d < y) for d, y in used]))
        # Mid-p: ties (common for a discrete w*) count half, so a centred bootstrap gives 0.5.
        centring = {"p_above": above, "p_below": below, "centring": above + (1 - above - below) / 2}
    return lo, hi, centring


def fit_all(curves: list[Curve], reps: int) -> tuple[dict[str, FitComparison], dict[str, str]]:
    """compare_fits for every fitted curve with enough points; the others get a reason, never a silent gap."""
    done, skipped = {}, {}
    for c in curves:
        if not c.fitted:
            continue
        try:
            boot = Bootstrap(c.resample, reps=reps) if c.resample is not None else None
            done[c.name] = compare_fits(c.x, c.y, censored=c.censored, limited=c.limited, bootstrap=boot,
                                        sigma=c.sigma)
        except FitError as e:
            skipped[c.name] = str(e)
    return done, skipped


def _fit_source(c: Curve, fits: dict[str, FitComparison]) -> tuple[FitComparison | None, float]:
    """The fit a curve is drawn with, and its scale: units = depth x w* are drawn with w*'s fit, scaled."""
    if c.fitted:
        return fits.get(c.name), 1.0
    if c.scale is None or np.ptp(c.scale) > 0:
        return None, 1.0  # a depth that changes with n: points only
    return fits.get(c.name.replace(f"{c.quantity}/", "w_star/")), float(c.scale[0])


def _frames(curves: list[Curve], fits: dict[str, FitComparison], reps: int):
    points, fitted, weights, centring = [], [], [], {}
    for c in curves:
        lo, hi, centring[c.name] = point_intervals(c, reps)
        points.append(pd.DataFrame({"curve": c.name, "quantity": c.quantity, "group": c.group, "n": c.x, "y": c.y,
                                    "censored": c.censored, "limited": c.excluded & ~c.censored, "lo": lo, "hi": hi}))
        comp, scale = _fit_source(c, fits)
        if comp is not None:
            fitted_x = c.x[~c.excluded]  # draw fits where they were fitted, not over the bounds
            grid = np.linspace(fitted_x.min(), fitted_x.max(), 60)
            for rank, fam in enumerate(comp.table["family"], start=1):
                fitted.append(pd.DataFrame({"curve": c.name, "family": fam, "rank": rank, "n": grid,
                                            "y": scale * comp.fits[fam].predict(grid)}))
        if c.name in fits:
            w = fits[c.name].table[["family", "weight"]].assign(curve=c.name)
            w["boot_win_rate"] = w["family"].map(fits[c.name].win_rate or {})
            weights.append(w)
    cat = lambda parts, cols: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return (cat(points, ["curve", "quantity", "group", "n", "y", "censored", "limited", "lo", "hi"]),
            cat(fitted, ["curve", "family", "rank", "n", "y"]),
            cat(weights, ["curve", "family", "weight", "boot_win_rate"]), centring)


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
    wanted = set(search.wanted_members(cfg, df))
    missing = len(wanted - stored_members(df))
    if missing:
        notes.append(f"The store holds {len(wanted) - missing} of the {len(wanted)} members that the search asks "
                     f"for at this point: the sweep is incomplete, so w* and the fits may change. Rerun "
                     f"`scaling sweep` with this config and the same --out to finish it.")
    return notes


def analyze(dir: str | Path, reps: int = BOOTSTRAP_REPS) -> list[Path]:
    """Everything `scaling analyze` writes; returns the paths written."""
    dir = Path(dir)
    df, cfg, runs = load(dir), load_config(dir), load_runs(dir)
    if df.empty:
        raise UserError(str(dir), "the store has no trained members yet")
    shaped = latest_budget(width_cells(df, cfg))  # w* at each cell's largest budget
    base = df[df["steps_budget"] == cfg.steps]  # L* compares depths at one budget
    w50 = w50_frame(shaped, cfg.success_threshold)
    summary = summarize(df, cfg).merge(w50[["n", "depth", "w50", "w50_lo", "w50_hi"]], on=["n", "depth"], how="left")
    by_budget = min_width_by_budget(shaped, cfg.success_threshold)
    stars = summary[summary["kind"] == "min_width"]
    curves = (width_curves(shaped, stars, cfg) + depth_curves(base, cfg) + w50_curves(w50)
              + steps_curves(shaped, sorted(set(shaped["depth"]))))
    fits, skipped = fit_all(curves, reps)
    points, fitted, weights, centring = _frames(curves, fits, reps)
    verdicts = verdict_object(cfg, stars, fits, skipped)
    fits_json = {name: comp.as_dict() | {"bootstrap_centring": centring.get(name) or None}
                 for name, comp in fits.items()}
    fits_json.update({name: {"skipped": why} for name, why in skipped.items()})
    fits_json["verdict"] = verdicts
    theory = unit_counts(cfg.ns)
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
    assert tuple(drawn) == FIGURES, "scaling.outputs.FIGURES names every figure (--fresh removes them)"
    files: dict[Path, bytes | str] = {dir / SUMMARY: summary.to_csv(index=False),
                                      dir / FITS: json.dumps(fits_json, indent=2, default=float)}
    for name, fig in drawn.items():
        for suffix in FIGURE_SUFFIXES:
            files[dir / FIGURES_DIR / f"{name}{suffix}"] = _figure_bytes(fig, suffix[1:])
    warnings = store_warnings(cfg, df, runs)
    files[dir / REPORT] = render_report(cfg, df, runs, summary, fits, skipped, theory, list(drawn), warnings,
                                        by_budget, verdicts, centring)
    write_atomic(files)  # all or nothing, the report last
    return list(files)
