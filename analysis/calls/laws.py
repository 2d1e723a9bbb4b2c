"""Growth laws y(n), fitted to log y with each point's measured noise, vectorized over bootstrap replicates.

Every law is fitted by weighted least squares in log space: point i has a known standard error sigma_i of
log y_i (its seed-bootstrap spread), so the residual sum chi^2 = sum ((log y_i - log f(n_i)) / sigma_i)^2 is
a goodness-of-fit statistic with m - K degrees of freedom, and chi^2 + 2K (+ the small-sample correction) is
an AICc that compares laws on one scale. Nothing is estimated from the residuals.

Three laws are log-linear: a b^n and a n^k (log y = p0 + p1 g(n): closed form), and a n^k b^n (closed form
in (log a, k) for each base b of a grid, then a bounded search for the point fit). The others are
y = a + b g(n; s), linear in (a, b) for a fixed shape s: (a, b) by Newton steps from the linear-space
solution, s by a grid (then a bounded scalar search for the point fit).

The shifted laws give exponential and power growth a floor, a >= 0: the smallest width that training needs
at any n. Each choice below was made by the calibration (analysis.simulation.calibration, 40 draws per cell at n = 2..10
with 16 seeds unless said otherwise); `python -m analysis.simulation.calibration --laws VARIANT --designs 10x16 --truth
TRUTH` reruns each alternative:
- offsets on both sides: with the four two-parameter laws alone (`--laws two-parameter`; these figures predate
  the law a n^k b^n, which that variant drops too), a floor at small n
  lifts a curve such as 3 + 0.1 n^2, it looks convex in log space, only the plain exponential fits it, and it
  was called exponential in 11 of 40 draws; with offsets on the polynomial side only (`--laws one-sided`),
  2 + 0.25 * 1.5^n was called polynomial in 13 of 40. With both, neither truth was ever miscalled;
- the offset is a floor, never negative: a + b c^n with a < 0 bends like a power over a short range, and a +
  b n^k with a < 0 like an exponential; with free offsets (`--laws free-offsets`) 0.75 n^1.5 was called
  polynomial in 1 of 40 draws, with floors in 30 of 40;
- the shifted exponential's base starts at 1.1: below it a + b c^n is numerically the line a + b + b ln(c) n,
  which the linear law already is, and counting that as exponential growth would keep any line from being
  called;
- polynomial degrees stop at MAX_DEGREE = 3: over n <= 16 a higher power is what an exponential looks like.
  With degrees up to 6 (`--laws degree-6 --designs 8x8 --truth 0.75*2^n`) the claim's 0.75 * 2^n at n = 2..8
  with 8 seeds was called in 4 of 40 draws; up to 3, in 37 of 40. The lecture's deep claim is degree 1, so
  growth steeper than n^3 counts as exponential here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from scipy import optimize

EXPONENTIAL, POLYNOMIAL = "exponential", "polynomial"
MAX_DEGREE = 3.0  # polynomial growth up to n^3; steeper growth is what an exponential looks like over n <= 16


@dataclasses.dataclass(frozen=True)
class Law:
    name: str
    formula: str
    growth: str  # EXPONENTIAL or POLYNOMIAL: the level at which the claim is stated
    names: tuple[str, ...]  # reported parameters, in order
    basis: Callable[[np.ndarray, np.ndarray], np.ndarray]  # g(n; shape)
    log_linear: bool  # log y = p0 + p1 g(n); otherwise y = a + b g(n; shape)
    shapes: np.ndarray | None = None  # the grid over the shape parameter; None for two-parameter laws
    floor: bool = False  # the offset a is a floor: a >= 0
    slope_max: float = np.inf  # log-linear laws: the largest p1 (the power law's degree)
    slope_min: float = -np.inf  # log-linear laws: the smallest p1

    @property
    def k(self) -> int:
        return len(self.names)

    def predict(self, x, params) -> np.ndarray:
        """y at x for reported params (a 1-D sequence in `names` order)."""
        x, p = np.asarray(x, float), np.asarray(params, float)
        if self.log_linear and self.shapes is not None:  # params (a, k, b) of a * n^k * b^n
            return p[0] * x ** p[1] * p[2] ** x
        if self.log_linear:  # params (a, b) of a * b^n, or (a, k) of a * n^k
            return p[0] * (p[1] ** x if self.name == "exponential" else x ** p[1])
        return p[0] + p[1] * self.basis(x, p[2] if self.shapes is not None else 0.0)


LAWS: dict[str, Law] = {law.name: law for law in (
    Law("exponential", "a * b^n", EXPONENTIAL, ("a", "b"), lambda x, s: x, True),
    Law("shifted_exponential", "a + b * c^n", EXPONENTIAL, ("a", "b", "c"), lambda x, c: c**x, False,
        1 + np.geomspace(0.1, 3.0, 48), floor=True),
    # A polynomial prefactor on an exponential (n * 1.2^n): without it the exponential laws, all convex in log
    # space, miss such a truth and only the polynomial class fits it over a short range.
    Law("power_exponential", "a * n^k * b^n", EXPONENTIAL, ("a", "k", "b"), lambda x, s: np.log(x), True,
        1 + np.geomspace(0.1, 3.0, 48), slope_max=MAX_DEGREE, slope_min=0.0),
    Law("power", "a * n^k", POLYNOMIAL, ("a", "k"), lambda x, s: np.log(x), True, slope_max=MAX_DEGREE),
    Law("shifted_power", "a + b * n^k", POLYNOMIAL, ("a", "b", "k"), lambda x, k: x**k, False,
        np.geomspace(0.1, MAX_DEGREE, 40), floor=True),
    Law("linear", "a + b * n", POLYNOMIAL, ("a", "b"), lambda x, s: x, False),
    Law("logarithmic", "a + b * log2(n)", POLYNOMIAL, ("a", "b"), lambda x, s: np.log2(x), False),
)}

_NEWTON_STEPS = 12
_BACKTRACK = (1.0, 0.3, 0.0)


def _solve2(a11, a12, a22, b1, b2):
    """Batched 2x2 symmetric solve (a tiny ridge keeps flat directions finite; a singular system gives 0)."""
    a11, a22 = a11 + 1e-12, a22 + 1e-12
    det = a11 * a22 - a12 * a12
    with np.errstate(divide="ignore", invalid="ignore"):
        x1, x2 = (a22 * b1 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det
    return np.where(np.isfinite(x1), x1, 0.0), np.where(np.isfinite(x2), x2, 0.0)


def _chi2_MxB(logy_MxB, sigma_MxB, f_MxB):
    """sum of squared standardized log residuals over the points (axis 0); inf where the curve is not positive
    at every point."""
    ok = np.all(f_MxB > 0, axis=0)
    r = (logy_MxB - np.log(np.where(f_MxB > 0, f_MxB, 1.0))) / sigma_MxB
    return np.where(ok, np.einsum("mb,mb->b", r, r), np.inf)


def fit_affine(logy, sigma, g, floor: bool = False):
    """Fit y = a + b g in log space for every leading index. logy: (..., M), g: broadcastable to it (> 0
    where floor). With `floor`, a >= 0: where the free fit has a < 0, the fit with a = 0 (closed form).
    Returns a, b, chi2 with the leading shape."""
    shape = np.broadcast_shapes(np.shape(logy), np.shape(g), np.shape(sigma))
    lead, m = shape[:-1], shape[-1]
    # The points' axis first: each sum over the points is then m - 1 adds of whole rows.
    logy, sigma, g = (np.ascontiguousarray(np.broadcast_to(v, shape).reshape(-1, m).T) for v in (logy, sigma, g))
    y, w = np.exp(logy), 1.0 / sigma**2
    lw = w / y**2
    a, b = _solve2(lw.sum(0), (lw * g).sum(0), (lw * g * g).sum(0), (lw * y).sum(0), (lw * g * y).sum(0))
    chi2 = _chi2_MxB(logy, sigma, a + b * g)
    live = np.arange(a.size)  # the fits still moving: a settled fit leaves the batch, so each fit is its own
    for _ in range(_NEWTON_STEPS):
        ly, sg, gg, ww = logy[:, live], sigma[:, live], g[:, live], w[:, live]
        la, lb, lc = a[live], b[live], chi2[live]
        f = la + lb * gg
        safe = np.where(f > 0, f, 1.0)
        r = ly - np.log(safe)
        ja = ww / safe
        # Newton's step: chi^2's Hessian is Gauss-Newton's with each weight times (1 + r), where that is positive;
        # Gauss-Newton's while the curve is not yet positive everywhere (r is then no residual of the model)
        curv = np.where((1.0 + r > 0) & np.isfinite(lc), 1.0 + r, 1.0) * ja / safe
        h11, h12, h22 = curv.sum(0), (curv * gg).sum(0), (curv * gg * gg).sum(0)
        da, db = _solve2(h11, h12, h22, (ja * r).sum(0), (ja * gg * r).sum(0))
        before = lc
        for t in _BACKTRACK[:-1]:
            ta, tb = la + t * da, lb + t * db
            trial = _chi2_MxB(ly, sg, ta + tb * gg)
            better = trial < lc
            la, lb, lc = np.where(better, ta, la), np.where(better, tb, lb), np.where(better, trial, lc)
        a[live], b[live], chi2[live] = la, lb, lc
        with np.errstate(invalid="ignore"):
            moving = np.isfinite(lc) & (before - lc > 1e-12 * (1 + lc))
        live = live[moving | ~np.isfinite(lc)]  # a fit with no positive curve yet keeps stepping
        if not live.size:
            break
    if floor:
        log_b = (w * (logy - np.log(g))).sum(0) / w.sum(0)
        on_edge = (w * (logy - log_b - np.log(g)) ** 2).sum(0)
        below = a < 0
        a, b, chi2 = np.where(below, 0.0, a), np.where(below, np.exp(log_b), b), np.where(below, on_edge, chi2)
    return a.reshape(lead), b.reshape(lead), chi2.reshape(lead)


def fit_law(law: Law, x, logy, sigma, refine: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fit `law` to every row of logy (R x M) with per-point sigma (M,). Returns params (R x K) and chi2 (R,).
    `refine` polishes the shape of each row beyond the grid (for point fits; replicates keep the grid)."""
    x, logy = np.asarray(x, float), np.atleast_2d(np.asarray(logy, float))
    sigma = np.broadcast_to(np.asarray(sigma, float), logy.shape)
    if law.log_linear and law.shapes is not None:
        return _fit_power_exponential(law, x, logy, sigma, refine)
    if law.log_linear:
        p0, p1, chi2 = fit_log_linear(law, law.basis(x, 0.0), logy, sigma)
        params = np.stack([np.exp(p0), np.exp(p1) if law.name == "exponential" else p1], axis=1)
        return params, chi2
    if law.shapes is None:
        a, b, chi2 = fit_affine(logy, sigma, law.basis(x, 0.0))
        return np.stack([a, b], axis=1), chi2
    grid = law.shapes
    g_GxM = np.stack([law.basis(x, s) for s in grid])
    a, b, chi2 = fit_affine(logy[:, None, :], sigma[:, None, :], g_GxM[None], law.floor)  # (R, G)
    best = np.argmin(chi2, axis=1)
    rows = np.arange(len(logy))
    params = np.stack([a[rows, best], b[rows, best], grid[best]], axis=1)
    chi2 = chi2[rows, best]
    if refine:
        for r in rows:
            i = best[r]
            lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
            profile = lambda s: float(fit_affine(logy[r], sigma[r], law.basis(x, s), law.floor)[2])
            sol = optimize.minimize_scalar(profile, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
            if sol.fun < chi2[r]:
                ra, rb, rc = fit_affine(logy[r], sigma[r], law.basis(x, sol.x), law.floor)
                params[r], chi2[r] = (float(ra), float(rb), float(sol.x)), float(rc)
    return params, chi2


def fit_log_linear(law: Law, g, logy, sigma):
    """log y = p0 + p1 g by weighted least squares for every leading index, p1 held within its bounds (the
    constrained optimum lies on the bound, where p0 has a closed form). Returns p0, p1, chi2."""
    w = 1.0 / sigma**2
    p0, p1 = _solve2(np.sum(w, -1), np.sum(w * g, -1), np.sum(w * g * g, -1), np.sum(w * logy, -1),
                     np.sum(w * g * logy, -1))
    bounded = np.clip(p1, law.slope_min, law.slope_max)
    p0 = np.where(bounded != p1, np.sum(w * (logy - bounded[..., None] * g), -1) / np.sum(w, -1), p0)
    chi2 = np.sum(((logy - p0[..., None] - bounded[..., None] * g) / sigma) ** 2, -1)
    return p0, bounded, chi2


def _fit_power_exponential(law: Law, x, logy, sigma, refine: bool):
    """a * n^k * b^n: (log a, k) in closed form for each base b of the grid, the best b per row (then, with
    `refine`, a bounded search between the grid's neighbours)."""
    g, grid = np.log(x), law.shapes
    target_RxGxM = logy[:, None, :] - np.log(grid)[None, :, None] * x
    p0, p1, chi2 = fit_log_linear(law, g, target_RxGxM, sigma[:, None, :])  # (R, G)
    best = np.argmin(chi2, axis=1)
    rows = np.arange(len(logy))
    params = np.stack([np.exp(p0[rows, best]), p1[rows, best], grid[best]], axis=1)
    chi2 = chi2[rows, best]
    if refine:
        for r in rows:
            lo, hi = grid[max(best[r] - 1, 0)], grid[min(best[r] + 1, len(grid) - 1)]
            one = lambda b: fit_log_linear(law, g, logy[r] - np.log(b) * x, sigma[r])
            sol = optimize.minimize_scalar(lambda b: float(one(b)[2]), bounds=(lo, hi), method="bounded",
                                           options={"xatol": 1e-10})
            if sol.fun < chi2[r]:
                q0, q1, c = one(sol.x)
                params[r], chi2[r] = (float(np.exp(q0)), float(q1), float(sol.x)), float(c)
    return params, chi2


def free_parameters(law: Law, params_RxK) -> np.ndarray:
    """Parameters of each fit that are not held at a bound (R,): a floor at 0, the power's degree cap, or a
    shape at an end of its range. A parameter at its bound is fixed by the bound, not fitted, so it counts
    neither in the degrees of freedom nor in AICc's penalty."""
    p = np.atleast_2d(np.asarray(params_RxK, float))
    active = np.zeros(len(p), int)
    if law.floor:
        active += p[:, 0] <= 0
    if law.log_linear:
        active += np.isclose(p[:, 1], law.slope_max) | np.isclose(p[:, 1], law.slope_min)
    if law.shapes is not None:
        active += np.isclose(p[:, 2], law.shapes[0]) | np.isclose(p[:, 2], law.shapes[-1])
    return law.k - active


def aicc(chi2, m: int, k: int) -> np.ndarray:
    """AICc with known noise: chi^2 + 2K + 2K(K+1)/(m-K-1) (AIC where m <= K + 1); k may be an array."""
    k = np.asarray(k, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        correction = np.where(m - k - 1 > 0, 2 * k * (k + 1) / (m - k - 1), 0.0)
    return np.asarray(chi2, float) + 2 * k + correction


def akaike_weights(aicc_values, priors=None) -> np.ndarray:
    """prior * exp(-delta / 2), normalised; a law whose AICc is not finite (it could not fit) weighs 0."""
    scores = np.asarray(aicc_values, float)
    finite = np.isfinite(scores)
    prior = np.ones_like(scores) if priors is None else np.asarray(priors, float)
    if not finite.any():  # no law could fit: nothing to weigh
        return np.zeros_like(scores)
    weight = np.where(finite, prior * np.exp(-0.5 * np.where(finite, scores - scores[finite].min(), 0.0)), 0.0)
    return weight / weight.sum()
