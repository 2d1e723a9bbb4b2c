"""The figures' public frames (see analysis.reporting.figures): measured points with their intervals, fitted lines and
Akaike weights, built from a verdict and the L* and steps-to-solve curves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.calls.compare import Bootstrap, FitComparison, compare_fits
from analysis.calls.curves import Curve
from analysis.calls.fits import FitError
from analysis.calls.laws import LAWS
from analysis.calls.verdict import GroupVerdict, Verdict
from analysis.measurement.intervals import interval95
from scaling.engine.population import units_at


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


def figure_frames(verdict: Verdict, cfg, other: list[Curve], fits: dict[str, FitComparison], reps: int):
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
