"""`scaling analyze DIR` (= `python -m analysis DIR`): fits.json, figures/*.pdf|png and REPORT.md from a store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.compare import Bootstrap, FitComparison, compare_fits
from analysis.curves import Curve, depth_curves, steps_curves, width_curves
from analysis.data import load, load_config, load_runs
from analysis.fits import FitError
from analysis.verdict import render_report
from scaling import search
from scaling.constructions import unit_counts
from scaling.errors import UserError
from scaling.outputs import FIGURE_SUFFIXES, FIGURES, FIGURES_DIR, FITS, REPORT, SUMMARY, write_atomic
from scaling.stats import best_lr, success_rates, summarize
from scaling.store import stored_members

BOOTSTRAP_REPS = 200
PNG_DPI = 200


def point_intervals(curve: Curve, reps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap 95 % percentile interval of each uncensored point (NaN where a replicate set is empty)."""
    rng = np.random.default_rng(seed)
    draws: dict[float, list[float]] = {x: [] for x in curve.x}
    for _ in range(reps):
        bx, by = curve.resample(rng)
        for x, y in zip(bx, by):
            draws[x].append(y)
    lo = np.array([np.percentile(draws[x], 2.5) if draws[x] else np.nan for x in curve.x])
    hi = np.array([np.percentile(draws[x], 97.5) if draws[x] else np.nan for x in curve.x])
    return lo, hi


def fit_all(curves: list[Curve], reps: int) -> tuple[dict[str, FitComparison], dict[str, str]]:
    """compare_fits for every curve with 3+ uncensored points; the others get a reason, never a silent gap."""
    done, skipped = {}, {}
    for c in curves:
        try:
            done[c.name] = compare_fits(c.x, c.y, censored=c.censored, bootstrap=Bootstrap(c.resample, reps=reps))
        except FitError as e:
            skipped[c.name] = str(e)
    return done, skipped


def _frames(curves: list[Curve], fits: dict[str, FitComparison], reps: int):
    points, fitted, weights = [], [], []
    for c in curves:
        lo, hi = point_intervals(c, reps)
        points.append(pd.DataFrame({"curve": c.name, "quantity": c.quantity, "group": c.group, "n": c.x, "y": c.y,
                                    "censored": c.censored, "lo": lo, "hi": hi}))
        if c.name in fits:
            fitted_x = c.x[~c.censored]  # draw fits where they were fitted, not over the censored bounds
            grid = np.linspace(fitted_x.min(), fitted_x.max(), 60)
            comp = fits[c.name]
            for rank, fam in enumerate(comp.table["family"], start=1):
                fitted.append(pd.DataFrame({"curve": c.name, "family": fam, "rank": rank, "n": grid,
                                            "y": comp.fits[fam].predict(grid)}))
            w = comp.table[["family", "weight"]].assign(curve=c.name)
            w["boot_win_rate"] = w["family"].map(comp.win_rate or {})
            weights.append(w)
    cat = lambda parts, cols: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return (cat(points, ["curve", "quantity", "group", "n", "y", "censored", "lo", "hi"]),
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
    summary = summarize(df, cfg)
    curves = (width_curves(df, cfg.depths, cfg.success_threshold)
              + depth_curves(df, cfg.min_depth_widths, cfg.success_threshold)
              + steps_curves(df, {n: cfg.steps_width(n) for n in cfg.ns}, cfg.depths))
    fits, skipped = fit_all(curves, reps)
    fits_json = {name: comp.as_dict() for name, comp in fits.items()}
    fits_json.update({name: {"skipped": why} for name, why in skipped.items()})
    points, fitted, weights = _frames(curves, fits, reps)
    theory = unit_counts(cfg.ns)
    rates = best_lr(success_rates(df[df["depth"].isin(cfg.depths)]), ["n", "depth", "width"])
    stars = summary[summary["kind"] == "min_width"]
    bases = {name: comp.fits["exponential"].params["b"] for name, comp in fits.items()
             if name.startswith("steps/") and "exponential" in comp.fits}
    drawn = {
        "units_vs_bits": figures.units_vs_bits(points, fitted, theory),
        "total_units": figures.total_units(points, fitted, theory),
        "success_heatmaps": figures.success_heatmaps(rates, stars),
        "min_depth": figures.min_depth(points, fitted),
        "steps_to_solve": figures.steps_to_solve(points, fitted, bases),
        "fit_comparison": figures.fit_comparison(weights),
    }
    assert tuple(drawn) == FIGURES, "scaling.outputs.FIGURES names every figure (--fresh removes them)"
    files: dict[Path, bytes | str] = {dir / SUMMARY: summary.to_csv(index=False),
                                      dir / FITS: json.dumps(fits_json, indent=2, default=float)}
    for name, fig in drawn.items():
        for suffix in FIGURE_SUFFIXES:
            files[dir / FIGURES_DIR / f"{name}{suffix}"] = _figure_bytes(fig, suffix[1:])
    warnings = store_warnings(cfg, df, runs)
    files[dir / REPORT] = render_report(cfg, df, runs, summary, fits, skipped, theory, list(drawn), warnings)
    write_atomic(files)  # all or nothing, the report last
    return list(files)
