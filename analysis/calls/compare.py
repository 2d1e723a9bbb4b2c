"""compare_fits: a curve without per-point noise (L*, steps to solve) across the two-parameter families, by the
one comparison (analysis.calls.comparison, noise estimated from the residuals), with its notes, extrapolation
errors, and a bootstrap drawn from a resampler."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.calls.comparison import ESTIMATED, LawComparison, compare_laws, held_out_residuals
from analysis.calls.fits import FAMILIES, Fit, FitError

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


def extrapolation_error(x, y, family: str, held_out: int = 2) -> float:
    """Fit on all but the `held_out` largest x; mean |log(pred / y)| on those (NaN if too few points)."""
    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    residuals = held_out_residuals(FAMILIES[family].law, x, np.log(y), np.ones_like(x), held_out)
    return float("nan") if residuals is None else float(np.mean(np.abs(residuals)))


# No curve is fitted, nor a bootstrap replicate used, on fewer points: with two parameters and sigma, fewer
# than 5 points leave AICc undefined and the families indistinguishable.
MIN_POINTS = 5


def compare_fits(x, y, families=None, bootstrap: Bootstrap | None = None, censored=None,
                 limited=None, sigma=None) -> FitComparison:
    """Rank families by AICc on (x, y). Censored points (lower bounds: nothing passed up to them) and
    budget-limited points (upper bounds: more steps could only lower them) enter through a censored
    likelihood, not dropped; at least MIN_POINTS exact points are needed. A bootstrap replicate redraws the
    exact points and keeps the bounds as observed, and is fitted as the curve is (by the censored likelihood
    where bounds enter), so its intervals describe the estimate reported. `sigma` (each
    point's standard error of log y, e.g. from W50's interval) weights the least squares where no bounds are."""
    families = list(families or FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise FitError(f"unknown family {unknown[0]!r}; choose one of {', '.join(FAMILIES)}")
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
        sigma = None
    laws = {f: FAMILIES[f].law for f in families}
    comparison = compare_laws(x, y, laws, noise=ESTIMATED, sigma=sigma, lower=censored, upper=limited,
                              replicates_RxM=None if bootstrap is None else _replicates(bootstrap, x[exact]),
                              min_points=MIN_POINTS)
    fits = comparison.fits
    if not fits:
        raise FitError("no family could be fitted")
    missing = [f for f in families if f not in fits]
    if missing:
        notes.append(f"could not fit: {', '.join(missing)}")
    if comparison.criterion.split()[0] == "AIC":
        notes.append(f"only {len(x)} points: ranked by AIC (the AICc correction needs more; it is equal "
                     "for all these two-parameter families, so the ranking is unchanged)")
    ranked = comparison.table[comparison.table["law"].isin(list(fits))]
    table = pd.DataFrame({
        "family": ranked["law"], "aicc": ranked["aicc"], "delta_aicc": ranked["delta"], "weight": ranked["weight"],
        "params": [fits[f].params for f in ranked["law"]],
        "extrap_error": [extrapolation_error(x[exact], y[exact], f) for f in ranked["law"]],
    }).reset_index(drop=True)
    best = table["family"].iloc[0]
    if censored.any():
        below = x[censored][fits[best].predict(x[censored]) < y[censored]]
        if below.size:
            notes.append(f"the {best} fit predicts less than the known lower bound at x = "
                         f"{', '.join(f'{v:g}' for v in below)}: treat its extrapolation with care")
    result = FitComparison(best=best, table=table, fits=fits, notes=notes)
    if bootstrap is not None:
        _bootstrap_summary(result, comparison, bootstrap.reps)
    return result


def _replicates(boot: Bootstrap, fitted_x: np.ndarray) -> np.ndarray:
    """The bootstrap's replicates as an R x M array over `fitted_x` (NaN where a replicate lacks a point; points
    at other x, such as a bound's, are not used). A resampler returns one value per x (a curve's statistic)."""
    rng = np.random.default_rng(boot.seed)
    reps_RxM = np.full((boot.reps, len(fitted_x)), np.nan)
    column = {float(v): i for i, v in enumerate(fitted_x)}
    for r in range(boot.reps):
        bx, by = boot.resample(rng)
        for v, value in zip(bx, by):
            if float(v) in column:
                reps_RxM[r, column[float(v)]] = value
    return reps_RxM


def _bootstrap_summary(result: FitComparison, comparison: LawComparison, reps: int) -> None:
    """The families' bootstrap win rates and their parameters' percentile intervals."""
    used = int(np.isfinite(comparison.reps_aicc).any(axis=0).sum())
    if used == 0:
        result.notes.append(f"bootstrap: no replicate had {MIN_POINTS} uncensored points; no bootstrap intervals")
        return
    if used < reps:
        result.notes.append(f"bootstrap: {reps - used} of {reps} replicates had too few uncensored points and "
                            "won for no family")
    rate = dict(zip(comparison.table["law"], comparison.table["win_rate"]))
    result.win_rate = {f: rate[f] for f in comparison.laws}
    result.boot_ci = {f: {name: comparison.ci(f, name) for name in FAMILIES[f].names}
                      for f, draws in comparison.reps.items() if len(draws)}
    result.table["boot_win_rate"] = result.table["family"].map(result.win_rate)
