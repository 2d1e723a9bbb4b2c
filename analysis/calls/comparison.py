"""The one comparison of growth laws that every curve goes through (W50 and w* for the verdict, L* and steps to
solve beside it): each law's point fit, its AICc, Akaike weights, and its fits to bootstrap replicates.

Every law is fitted to log y by least squares (analysis.calls.laws). What differs between curves is the noise
model, an option here:
- measured: each point's standard error of log y is known (W50, w*: their seed-bootstrap spread), so chi^2 is
  a goodness-of-fit statistic and AICc = chi^2 + 2K (+ the small-sample correction), K counting the parameters
  not held at a bound;
- estimated: sigma^2 is one more parameter, taken from the residuals (L*, steps: no per-point noise model), so
  AICc = m log(RSS/m) + 2(K+1) (+ its correction), with `sigma` at most relative weights; where bounds enter
  (censored points, budget-limited points) the fit is the censored likelihood (analysis.calls.censored).
A replicate is fitted exactly as the point fit is (the same noise, the same bounds), so its win rates and
intervals describe the estimate reported. Replicates come as an R x M array over the points' x; NaN marks a
point a replicate lacks. A replicate with fewer than `min_points` points, a value <= 0, or no law that fits it
fails: it wins for no law (win rates are shares of all R replicates) and enters no interval.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats

from analysis.calls.fits import FAMILIES, Fit, FitError, fit_curve
from analysis.calls.laws import Law, aicc, akaike_weights, fit_law, free_parameters
from analysis.measurement.intervals import interval95

MEASURED, ESTIMATED = "measured", "estimated"


@dataclasses.dataclass
class LawComparison:
    x: np.ndarray
    laws: dict[str, Law]  # every law compared (a law that cannot fit these points has aicc = inf)
    table: pd.DataFrame  # one row per law, best first: law, growth, k, chi2, dof, p_fit, aicc, prior, delta,
    #                      weight, win_rate (chi2 is RSS and p_fit NaN where the noise is estimated)
    params: dict[str, np.ndarray]  # law -> point params (K,), in the law's `names` order
    fits: dict[str, Fit]  # estimated noise: law -> its Fit (intervals from the Jacobian or the likelihood)
    reps: dict[str, np.ndarray]  # law -> params of the replicates that law fitted (R' x K)
    reps_aicc: np.ndarray  # L x R, in `laws` order: inf where the replicate failed or the law could not fit it
    criterion: str  # "AICc", or "AIC" where too few points leave the correction undefined

    def predict(self, law: str, x) -> np.ndarray:
        return self.laws[law].predict(x, self.params[law])

    def best(self, growth: str | None = None) -> str:
        """The law with the smallest AICc (within one class, if named)."""
        rows = self.table if growth is None else self.table[self.table["growth"] == growth]
        return str(rows.sort_values("aicc")["law"].iloc[0])

    def ci(self, law: str, name: str) -> tuple[float, float]:
        """95 % bootstrap percentile interval of one parameter."""
        return tuple(map(float, interval95(self.reps[law][:, self.laws[law].names.index(name)])))


def held_out_residuals(law: Law, x, logy, sigma, held_out: int) -> np.ndarray | None:
    """Standardized log residuals at the `held_out` largest x of `law` fitted to the rest (x ascending); None
    where too few points remain, inf where the prediction is not positive."""
    if len(x) - held_out < law.k + 1:
        return None
    params, chi2 = fit_law(law, x[:-held_out], logy[:-held_out], sigma[:-held_out])
    if not np.isfinite(chi2[0]):
        return None
    pred = law.predict(x[-held_out:], params[0])
    if np.any(~(pred > 0)):
        return np.full(held_out, np.inf)
    return (logy[-held_out:] - np.log(pred)) / sigma[-held_out:]


def _estimated_fit(law: Law, x, y, sigma, lower, upper) -> Fit:
    if lower.any() or upper.any():
        from analysis.calls.censored import fit_censored

        return fit_censored(x, y, law.name, lower, upper)
    return fit_curve(x, y, law.name, sigma)


def _replicates_measured(law: Law, x, y, reps_RxM, sigma, ok):
    """Vectorised over replicates: a failed row's missing points are filled with y's, and the row dropped."""
    m = len(x)
    with np.errstate(invalid="ignore"):
        filled_RxM = np.where(np.isfinite(reps_RxM) & (reps_RxM > 0), reps_RxM, y)
    params, chi2 = fit_law(law, x, np.log(filled_RxM), sigma)
    return params, np.where(ok, aicc(chi2, m, free_parameters(law, params)), np.inf)


def _replicates_estimated(law: Law, x, reps_RxM, sigma, bounds, ok):
    """One fit per replicate on the points it has, with the observed bounds (x, y, lower, upper) added."""
    params, scores = np.full((len(reps_RxM), law.k), np.nan), np.full(len(reps_RxM), np.inf)
    for r in np.flatnonzero(ok):
        has = np.isfinite(reps_RxM[r])
        bx, by = np.concatenate([x[has], bounds[0]]), np.concatenate([reps_RxM[r, has], bounds[1]])
        exact = np.zeros(has.sum(), bool)
        weights = None if sigma is None else sigma[has]
        try:
            fit = _estimated_fit(law, bx, by, weights, np.concatenate([exact, bounds[2]]),
                                 np.concatenate([exact, bounds[3]]))
        except FitError:
            continue
        params[r], scores[r] = list(fit.params.values()), fit.aicc
    return params, scores


def compare_laws(x, y, laws: dict[str, Law], *, noise: str = MEASURED, sigma=None, lower=None, upper=None,
                 replicates_RxM=None, min_points: int | None = None, priors: dict[str, float] | None = None,
                 refine: bool = True) -> LawComparison:
    """Fit every law to y(x) (x ascending, y > 0) under one noise model and rank them by AICc.

    noise MEASURED: `sigma` is each point's standard error of log y. noise ESTIMATED: `sigma` (optional) only
    weights the points relative to each other, and `lower` / `upper` mark bounds (the true value lies above /
    below y), which enter by the censored likelihood. `replicates_RxM`: bootstrap replicates of the points that
    are not bounds (NaN where a replicate lacks one). `priors`: each law's prior weight (default equal).
    `refine`: polish the point fits' shapes beyond their grids (measured noise)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    m = len(x)
    lower = np.zeros(m, bool) if lower is None else np.asarray(lower, bool)
    upper = (np.zeros(m, bool) if upper is None else np.asarray(upper, bool)) & ~lower
    exact = ~lower & ~upper
    sigma = None if sigma is None else np.broadcast_to(np.asarray(sigma, float), (m,))
    if noise == MEASURED and (sigma is None or not exact.all()):
        raise ValueError("measured noise needs every point's sigma, and no bounds")
    if noise not in (MEASURED, ESTIMATED):
        raise ValueError(f"noise is {MEASURED!r} or {ESTIMATED!r}, got {noise!r}")
    if noise == ESTIMATED and any(name not in FAMILIES or law is not FAMILIES[name].law for name, law in laws.items()):
        raise ValueError(f"estimated noise fits the two-parameter families only: {', '.join(FAMILIES)}")
    reps = np.zeros((0, int(exact.sum()))) if replicates_RxM is None else np.asarray(replicates_RxM, float)
    has = np.isfinite(reps)
    reps = np.where(has, reps, np.nan)
    with np.errstate(invalid="ignore"):  # a value <= 0 has no log: that replicate fails
        ok = (has.sum(axis=1) >= (exact.sum() if min_points is None else min_points)) & ~np.any(reps <= 0, axis=1)
    bounds = (x[~exact], y[~exact], lower[~exact], upper[~exact])
    prior = priors or {name: 1.0 / len(laws) for name in laws}
    rows, params, fits, boot, boot_aicc = [], {}, {}, {}, []
    for name, law in laws.items():
        row = {"law": name, "growth": law.growth, "prior": prior[name]}
        if noise == MEASURED:
            p, chi2 = fit_law(law, x, np.log(y), sigma, refine=refine)
            k = int(free_parameters(law, p)[0])
            dof = m - k
            params[name] = p[0]
            row |= {"k": k, "chi2": float(chi2[0]), "dof": dof, "aicc": float(aicc(chi2[0], m, k)),
                    "p_fit": float(stats.chi2.sf(chi2[0], dof)) if dof > 0 else float(chi2[0] < 1e-9)}
            reps_p, scores = _replicates_measured(law, x, y, reps, sigma, ok)
        else:
            try:
                fits[name] = fit = _estimated_fit(law, x, y, sigma, lower, upper)
            except FitError:
                fit = None
            params[name] = np.full(law.k, np.nan) if fit is None else np.array(list(fit.params.values()))
            row |= {"k": law.k, "chi2": np.nan if fit is None else fit.rss, "dof": m - law.k, "p_fit": np.nan,
                    "aicc": np.inf if fit is None else fit.aicc}
            reps_p, scores = _replicates_estimated(law, x[exact], reps, sigma if sigma is None else sigma[exact],
                                                   bounds, ok)
        rows.append(row)
        boot[name] = reps_p[np.isfinite(scores)]
        boot_aicc.append(scores)
    table = pd.DataFrame(rows)
    table["delta"] = table["aicc"] - table.loc[np.isfinite(table["aicc"]), "aicc"].min()
    table["weight"] = akaike_weights(table["aicc"], table["prior"])
    aicc_LxR = np.array(boot_aicc, float).reshape(len(laws), len(reps))
    winners = np.where(np.isfinite(aicc_LxR).any(axis=0), np.array(list(laws))[np.argmin(aicc_LxR, axis=0)], "")
    table["win_rate"] = [float(np.mean(winners == name)) if len(reps) else np.nan for name in table["law"]]
    criterion = next((f.criterion for f in fits.values()), "AICc" if m - table["k"].max() - 1 > 0 else "AIC")
    return LawComparison(x, laws, table.sort_values("aicc", ignore_index=True), params, fits, boot, aicc_LxR,
                         criterion)
