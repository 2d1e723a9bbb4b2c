"""Fits that use bounds: a censored (Tobit) likelihood in log space.

log y = log model(x) + N(0, sigma^2). An exact point contributes its density; a censored point (nothing
passed up to the bound, so the true value lies above it) contributes P(log y_true > log bound); a
budget-limited point (more steps could only lower it) contributes P(log y_true <= log y). With no bounds this
is least squares, and AICc ranks the families exactly as fits.fit_curve does.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

from analysis.calls.fits import FAMILIES, Fit, FitError, _check, criterion_name, fit_curve
from analysis.calls.laws import aicc
from scaling.planning.stats import Z95

_LOG_SQRT_2PI = np.log(np.sqrt(2 * np.pi))
_MIN_LOG_SIGMA = float(np.log(1e-4))  # a perfect fit of the exact points must not make the likelihood infinite


def _hessian(f, at: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Central finite differences: the observed information of the negative log-likelihood at its minimum
    (BFGS's own inverse-Hessian estimate is poor when it starts at the optimum)."""
    k = len(at)
    h = step * np.maximum(1.0, np.abs(at))
    hess = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            e_i, e_j = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            hess[i, j] = hess[j, i] = (f(at + e_i + e_j) - f(at + e_i - e_j) - f(at - e_i + e_j)
                                       + f(at - e_i - e_j)) / (4 * h[i] * h[j])
    return hess


def fit_censored(x, y, family: str, lower, upper) -> Fit:
    """Maximum likelihood with `lower` points known only to lie above y and `upper` points only below."""
    x, y = _check(x, y, family)
    lower, upper = np.asarray(lower, bool), np.asarray(upper, bool) & ~np.asarray(lower, bool)
    exact = ~lower & ~upper
    start = fit_curve(x[exact], y[exact], family)  # least squares on the exact points: the starting values
    fam, log_y = FAMILIES[family], np.log(y)

    def nll(params: np.ndarray) -> float:
        pred = fam.model(x, params[:2])
        if np.any(pred <= 0) or not np.all(np.isfinite(pred)):
            return 1e12
        log_s = max(params[2], _MIN_LOG_SIGMA)
        z = (log_y - np.log(pred)) / np.exp(log_s)
        # The standard normal's log density, log survival and log cdf, as scipy.stats.norm computes them
        # (called directly: its argument checks cost ten times the sums, in a function Nelder-Mead calls
        # hundreds of times per fit).
        ll = (np.sum(-z[exact] ** 2 / 2.0 - _LOG_SQRT_2PI) - exact.sum() * log_s
              + np.sum(special.log_ndtr(-z[lower])) + np.sum(special.log_ndtr(z[upper])))
        return float(-ll) if np.isfinite(ll) else 1e12

    sigma0 = max(np.sqrt(start.rss / max(exact.sum(), 1)), 1e-3)
    x0 = np.array([*start.theta, np.log(sigma0)])
    sol = optimize.minimize(nll, x0, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-9, "fatol": 1e-10})
    refined = optimize.minimize(nll, sol.x, method="BFGS")
    best = refined if refined.fun <= sol.fun and np.all(np.isfinite(refined.x)) else sol
    if best.x[2] < _MIN_LOG_SIGMA:  # sigma sits on its floor: the likelihood is flat below it
        best.x[2] = _MIN_LOG_SIGMA
    if best.fun >= 1e12:
        raise FitError(f"the {family} family cannot fit these points with y > 0 everywhere")
    try:
        cov = np.linalg.inv(_hessian(nll, best.x))
        se = np.sqrt(np.clip(np.diag(cov)[:2], 0, None))
    except np.linalg.LinAlgError:
        se = np.full(2, np.inf)
    theta = best.x[:2]
    lo, hi = fam.to_params(theta - Z95 * se), fam.to_params(theta + Z95 * se)
    score, criterion = float(aicc(2 * best.fun, len(x), 3)), criterion_name(len(x), 3)  # theta and sigma
    pred = fam.model(x[exact], theta)
    return Fit(
        family=family,
        params={n: float(v) for n, v in zip(fam.names, fam.to_params(theta))},
        ci={n: (float(min(a, b)), float(max(a, b))) for n, a, b in zip(fam.names, lo, hi)},
        aicc=score, criterion=f"{criterion} (censored)", rss=float(np.sum((log_y[exact] - np.log(pred)) ** 2)),
        n_points=len(x), theta=theta,
    )
