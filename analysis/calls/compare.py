"""Model comparison across curve families: AICc ranking, Akaike weights, bootstrap win rates, extrapolation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.calls.fits import FAMILIES, Fit, FitError, akaike_weights, fit_curve
from analysis.measurement.intervals import interval95

# resample(rng) -> (x, y) of one bootstrap replicate (censored points already left out).
Resampler = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass
class Bootstrap:
    """How to redraw a curve: resample(rng) -> (x, y); reps replicates from a seeded generator."""

    resample: Resampler
    reps: int = 200
    seed: int = 0


@dataclasses.dataclass
class FitComparison:
    best: str
    table: pd.DataFrame  # family, aicc, delta_aicc, weight, params (+ extrapolation, bootstrap columns)
    fits: dict[str, Fit]
    notes: list[str]
    win_rate: dict[str, float] | None = None  # bootstrap: share of replicates each family wins
    boot_ci: dict[str, dict[str, tuple[float, float]]] | None = None  # bootstrap 95 % percentile CIs

    def as_dict(self) -> dict:
        return {
            "best": self.best,
            "ranking": [
                {k: row[k] for k in ("family", "aicc", "delta_aicc", "weight", "extrap_error")}
                | {"fit": self.fits[row["family"]].as_dict()}
                for _, row in self.table.iterrows()
            ],
            "notes": self.notes,
            "bootstrap_win_rate": self.win_rate,
            "bootstrap_ci95": {f: {k: list(v) for k, v in c.items()} for f, c in (self.boot_ci or {}).items()},
        }


def _fit_all(x, y, families, sigma=None) -> dict[str, Fit]:
    fits = {}
    for fam in families:
        try:
            fits[fam] = fit_curve(x, y, fam, sigma)
        except FitError:
            continue  # e.g. a family that cannot stay positive on these points; reported as missing
    return fits


def extrapolation_error(x, y, family: str, held_out: int = 2) -> float:
    """Fit on all but the `held_out` largest x; mean |log(pred / y)| on those (NaN if too few points)."""
    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    if len(x) - held_out < 3:
        return float("nan")
    try:
        fit = fit_curve(x[:-held_out], y[:-held_out], family)
    except FitError:
        return float("nan")
    pred = fit.predict(x[-held_out:])
    if np.any(pred <= 0):
        return float("inf")
    return float(np.mean(np.abs(np.log(pred / y[-held_out:]))))


# No curve is fitted, nor a bootstrap replicate used, on fewer points: with two parameters and sigma, fewer
# than 5 points leave AICc undefined and the families indistinguishable.
MIN_POINTS = 5


def _fit_all_bounded(x, y, lower, upper, families) -> dict[str, Fit]:
    """Every family by the censored likelihood (analysis.calls.censored), the bounds included."""
    from analysis.calls.censored import fit_censored

    fits = {}
    for fam in families:
        try:
            fits[fam] = fit_censored(x, y, fam, lower, upper)
        except FitError:
            continue
    return fits


def compare_fits(x, y, families=None, bootstrap: Bootstrap | None = None, censored=None,
                 limited=None, sigma=None) -> FitComparison:
    """Rank families by AICc on (x, y). Censored points (lower bounds: nothing passed up to them) and
    budget-limited points (upper bounds: more steps could only lower them) enter through a censored
    likelihood, not dropped; at least MIN_POINTS exact points are needed. A bootstrap replicate redraws the
    exact points and keeps the bounds as observed, and is fitted as the curve is (by the censored likelihood
    where bounds enter), so its intervals describe the estimate reported. `sigma` (each
    point's standard error of log y, e.g. from W50's interval) weights the least squares where no bounds are."""
    families = list(families or FAMILIES)
    x, y = np.asarray(x, float), np.asarray(y, float)
    notes = []
    censored = np.zeros(len(x), bool) if censored is None else np.asarray(censored, bool)
    limited = np.zeros(len(x), bool) if limited is None else np.asarray(limited, bool) & ~censored
    if censored.any():
        notes.append(f"{int(censored.sum())} censored point(s) at x = {', '.join(f'{v:g}' for v in x[censored])} "
                     "enter as lower bounds (censored likelihood): only that the value is larger is known there")
    if limited.any():
        notes.append(f"{int(limited.sum())} budget-limited point(s) at x = "
                     f"{', '.join(f'{v:g}' for v in x[limited])} enter as upper bounds (censored likelihood): "
                     "w* still moved between half the budget and the whole budget")
    exact = ~censored & ~limited
    if exact.sum() < MIN_POINTS:
        raise FitError(f"need at least {MIN_POINTS} points that are neither censored nor budget-limited to "
                       f"compare fits, got {int(exact.sum())}")
    bounded = not exact.all()
    if bounded and sigma is not None:
        notes.append("the per-point weights are not used where bounds enter the likelihood")
    fits = (_fit_all_bounded(x, y, censored, limited, families) if bounded
            else _fit_all(x, y, families, sigma))
    if not fits:
        raise FitError("no family could be fitted")
    missing = [f for f in families if f not in fits]
    if missing:
        notes.append(f"could not fit: {', '.join(missing)}")
    names = list(fits)
    scores = np.array([fits[f].aicc for f in names])
    if fits[names[0]].criterion.split()[0] == "AIC":
        notes.append(f"only {len(x)} points: ranked by AIC (the AICc correction needs more; it is equal "
                     "for all these two-parameter families, so the ranking is unchanged)")
    x_bounds, y_bounds = x[censored], y[censored]
    x_exact, y_exact = x[exact], y[exact]
    table = pd.DataFrame({
        "family": names, "aicc": scores, "delta_aicc": scores - scores.min(), "weight": akaike_weights(scores),
        "params": [fits[f].params for f in names],
        "extrap_error": [extrapolation_error(x_exact, y_exact, f) for f in names],
    }).sort_values("aicc", ignore_index=True)
    best = table["family"].iloc[0]
    if censored.any():
        below = x_bounds[fits[best].predict(x_bounds) < y_bounds]
        if below.size:
            notes.append(f"the {best} fit predicts less than the known lower bound at x = "
                         f"{', '.join(f'{v:g}' for v in below)}: treat its extrapolation with care")
    comparison = FitComparison(best=best, table=table, fits=fits, notes=notes)
    if bootstrap is not None:
        bounds = (x[censored | limited], y[censored | limited], censored[censored | limited],
                  limited[censored | limited]) if bounded else None
        _bootstrap(comparison, families, bootstrap, x_exact, bounds)
    return comparison


def _bootstrap(comparison: FitComparison, families, boot: Bootstrap, fitted_x: np.ndarray, bounds=None) -> None:
    """Refit every family on each replicate (with the observed `bounds`: x, y, lower, upper) and record the
    families' wins and the parameters' percentile intervals."""
    rng = np.random.default_rng(boot.seed)
    wins = {f: 0 for f in families}
    draws: dict[str, list[np.ndarray]] = {f: [] for f in families}
    used = 0
    for _ in range(boot.reps):
        bx, by = boot.resample(rng)
        keep = np.isin(bx, fitted_x)  # a replicate uses the points that the fit itself used, no others
        bx, by = bx[keep], by[keep]
        if len(bx) < MIN_POINTS:
            continue
        if bounds is None:
            fits = _fit_all(bx, by, families)
        else:  # the replicate's exact points, then the observed bounds
            exact = np.zeros(len(bx), bool)
            fits = _fit_all_bounded(np.concatenate([bx, bounds[0]]), np.concatenate([by, bounds[1]]),
                                    np.concatenate([exact, bounds[2]]), np.concatenate([exact, bounds[3]]), families)
        if not fits:
            continue
        used += 1
        wins[min(fits, key=lambda f: fits[f].aicc)] += 1
        for f, fit in fits.items():
            draws[f].append(np.array(list(fit.params.values())))
    if used == 0:
        comparison.notes.append(f"bootstrap: no replicate had {MIN_POINTS} uncensored points; no bootstrap intervals")
        return
    if used < boot.reps:
        comparison.notes.append(f"bootstrap: {boot.reps - used} of {boot.reps} replicates had too few "
                                "uncensored points and were dropped")
    comparison.win_rate = {f: wins[f] / used for f in families}
    comparison.boot_ci = {}
    for f, rows in draws.items():
        if rows:
            arr = np.stack(rows)
            comparison.boot_ci[f] = {name: tuple(map(float, interval95(arr[:, i])))
                                     for i, name in enumerate(FAMILIES[f].names)}
    comparison.table["boot_win_rate"] = comparison.table["family"].map(comparison.win_rate)
