"""One two-parameter law fitted in log space with the noise estimated from the residuals (L* and steps to solve).

A family is one of the two-parameter growth laws (analysis.calls.laws.LAWS: its formula, parameters and basis
are the law's, fitted by the same routines) seen through an unconstrained parameterisation theta for the
intervals. Every family is fitted to log(y), so the residuals of all four live on one scale and their AICc
values compare. Each family has two parameters; with sigma^2, K = 3 for the information criterion. Curves are
compared, W50's and w*'s as these, by analysis.calls.comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from scipy import stats

from analysis.calls.laws import LAWS, Law, aicc, fit_affine, fit_log_linear

_TINY = 1e-300


@dataclasses.dataclass(frozen=True)
class Family:
    """A two-parameter law y(x; theta), linear in theta through its basis g(x): either log y = t0 + t1 g(x)
    (log_linear: least squares in log space is then linear, and solved in closed form) or y = t0 + t1 g(x).
    theta is the unconstrained parameterisation that the optimiser sees."""

    law: Law
    to_params: Callable[[np.ndarray], np.ndarray]  # theta -> reported params (monotone per coordinate)
    needs_positive_x: bool = False

    name = property(lambda self: self.law.name)
    formula = property(lambda self: self.law.formula)
    names = property(lambda self: self.law.names)
    log_linear = property(lambda self: self.law.log_linear)

    def basis(self, x: np.ndarray) -> np.ndarray:
        return self.law.basis(x, 0.0)

    def model(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """y(x; theta)."""
        line = theta[0] + theta[1] * self.basis(x)
        return np.exp(line) if self.log_linear else line


# The growth laws with two parameters, unbounded (the W50 call caps the power's degree; a steps curve may not).
FAMILIES: dict[str, Family] = {
    "exponential": Family(LAWS["exponential"], np.exp),
    "power": Family(dataclasses.replace(LAWS["power"], slope_max=np.inf), lambda t: np.array([np.exp(t[0]), t[1]]),
                    needs_positive_x=True),
    "linear": Family(LAWS["linear"], lambda t: t),
    "logarithmic": Family(LAWS["logarithmic"], lambda t: t, needs_positive_x=True),
}


class FitError(ValueError):
    """The data cannot be fitted as asked (too few points, a non-positive y, an unknown family)."""


@dataclasses.dataclass
class Fit:
    family: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]  # 95 %
    aicc: float  # AICc, or AIC where the sample is too small for the correction (see criterion)
    criterion: str  # "AICc" or "AIC"
    rss: float  # residual sum of squares of log(y)
    n_points: int
    theta: np.ndarray = dataclasses.field(repr=False)

    def predict(self, x) -> np.ndarray:
        return FAMILIES[self.family].model(np.asarray(x, float), self.theta)

    def as_dict(self) -> dict:
        return {"family": self.family, "formula": FAMILIES[self.family].formula, "params": self.params,
                "ci95": {k: list(v) for k, v in self.ci.items()}, "aicc": self.aicc, "criterion": self.criterion,
                "rss_log": self.rss, "n_points": self.n_points}


def criterion_name(m: int, K: int) -> str:
    """"AICc", or "AIC" where m <= K + 1 (the small-sample correction is undefined there)."""
    return "AICc" if m - K - 1 > 0 else "AIC"


def information_criterion(rss: float, m: int, k: int = 2) -> tuple[float, str]:
    """AICc of a least-squares fit with k parameters plus sigma^2 (K = k + 1); AIC where m <= K + 1."""
    K = k + 1
    return float(aicc(m * np.log(max(rss, _TINY) / m), m, K)), criterion_name(m, K)


def _check(x, y, family: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise FitError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise FitError("x and y must be finite (leave censored points out, or pass them as censored)")
    if len(x) < 3:
        raise FitError(f"need at least 3 points to fit a two-parameter curve, got {len(x)}")
    if np.any(y <= 0):
        raise FitError(f"every y must be > 0 to fit in log space, got min {y.min():g}")
    if family is not None:
        if family not in FAMILIES:
            raise FitError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
        if FAMILIES[family].needs_positive_x and np.any(x <= 0):
            raise FitError(f"the {family} family needs every x > 0")
    return x, y


def fit_curve(x, y, family: str, sigma=None) -> Fit:
    """Least squares of log(y) against log(model), by the growth laws' own routines (analysis.calls.laws: the
    closed form for log-linear families, Gauss-Newton for the others); 95 % CIs from the Jacobian (t
    quantiles). `sigma`, if given, is each point's relative standard error of log(y): weighted least squares."""
    x, y = _check(x, y, family)
    fam = FAMILIES[family]
    log_y = np.log(y)
    scale = np.ones_like(x) if sigma is None else np.asarray(sigma, float) / np.mean(sigma)
    design_Mx2 = np.stack([np.ones_like(x), fam.basis(x)], axis=1) / scale[:, None]

    if fam.log_linear:  # log y = t0 + t1 g(x): linear least squares, in closed form
        theta = np.array(fit_log_linear(fam.law, fam.basis(x), log_y, scale)[:2], float)
        resid, jac = design_Mx2 @ theta - log_y / scale, design_Mx2
    else:  # y = t0 + t1 g(x): Gauss-Newton in log space from the linear-space solution
        a, b, chi2 = fit_affine(log_y, scale, fam.basis(x))
        theta = np.array([a, b], float)
        pred = fam.model(x, theta)
        if not np.isfinite(chi2) or np.any(pred <= 0):
            raise FitError(f"the {family} family cannot fit these points with y > 0 everywhere")
        resid, jac = (np.log(pred) - log_y) / scale, design_Mx2 / pred[:, None]
    if not (np.all(np.isfinite(theta)) and np.all(fam.model(x, theta) > 0)):
        raise FitError(f"the {family} family cannot fit these points with y > 0 everywhere")
    m = len(x)
    rss = float(np.sum(resid**2))
    dof = m - 2
    try:
        cov = np.linalg.inv(jac.T @ jac) * rss / max(dof, 1)
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        se = np.full(2, np.inf)
    t = stats.t.ppf(0.975, max(dof, 1))
    lo, hi = fam.to_params(theta - t * se), fam.to_params(theta + t * se)
    params = fam.to_params(theta)
    score, criterion = information_criterion(rss, m)
    return Fit(
        family=family,
        params={n: float(v) for n, v in zip(fam.names, params)},
        ci={n: (float(min(a, b)), float(max(a, b))) for n, a, b in zip(fam.names, lo, hi)},
        aicc=score, criterion=criterion, rss=rss, n_points=m, theta=theta,
    )
