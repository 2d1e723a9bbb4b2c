import numpy as np
import pytest

from analysis import Bootstrap, FitError, compare_fits, fit_curve
from analysis.calls.fits import FAMILIES, information_criterion
from analysis.calls.laws import akaike_weights

X = np.arange(2, 17, dtype=float)  # n = 2..16, the paper range
TRUTH = {
    "exponential": {"a": 1.5, "b": 1.4},
    "power": {"a": 0.8, "k": 1.7},
    "linear": {"a": 3.0, "b": 2.0},
    "logarithmic": {"a": 1.0, "b": 4.0},
}
NEAR_TWINS = {"linear", "power"}


def _curve(family, x):
    p = TRUTH[family]
    return {"exponential": lambda: p["a"] * p["b"] ** x, "power": lambda: p["a"] * x ** p["k"],
            "linear": lambda: p["a"] + p["b"] * x, "logarithmic": lambda: p["a"] + p["b"] * np.log2(x)}[family]()


def _noisy(family, rng):
    return _curve(family, X) * (1 + 0.05 * rng.standard_normal(X.size))


def test_noise_free_fit_recovers_parameters():
    for family in FAMILIES:
        fit = fit_curve(X, _curve(family, X), family)
        for name, value in TRUTH[family].items():
            assert fit.params[name] == pytest.approx(value, rel=1e-4), (family, name)
        np.testing.assert_allclose(fit.predict(X), _curve(family, X), rtol=1e-4)



@pytest.mark.parametrize("family", list(FAMILIES))
def test_fits_match_a_generic_solver_with_numeric_derivatives(family):
    """The closed form (log-linear families) and the analytic Jacobian (the others) against scipy's
    least_squares with finite differences on the same weighted residuals: the same optimum and the same CIs."""
    from scipy import optimize, stats

    rng = np.random.default_rng(3)
    x, y, sigma = X, _noisy(family, rng), rng.uniform(0.5, 2.0, X.size)
    fam, scale = FAMILIES[family], sigma / sigma.mean()
    residuals = lambda t: (np.log(fam.model(x, t)) - np.log(y)) / scale
    fit = fit_curve(x, y, family, sigma=sigma)
    generic = optimize.least_squares(residuals, fit.theta + 0.1, method="lm")  # from a start off the optimum
    np.testing.assert_allclose(fit.theta, generic.x, rtol=1e-5, atol=1e-8)
    assert fit.rss == pytest.approx(2 * generic.cost, rel=1e-8)
    cov = np.linalg.inv(generic.jac.T @ generic.jac) * fit.rss / (x.size - 2)
    half_width = stats.t.ppf(0.975, x.size - 2) * np.sqrt(np.diag(cov))
    lo, hi = fam.to_params(generic.x - half_width), fam.to_params(generic.x + half_width)
    for name, a, b in zip(fam.names, lo, hi):
        np.testing.assert_allclose(fit.ci[name], (min(a, b), max(a, b)), rtol=1e-4)

@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_ranks_its_own_data_first(family):
    """Exponential and logarithmic data are ranked first in every draw. Linear and power are near twins over
    n = 2..16: at 5 % noise the other twin sometimes wins by a little more than 2 (seen: 4 of 20 draws; at
    n = 2..12, 6 of 20), so for them we ask for first place or delta AICc < 2 in at least 75 % of 20 draws."""
    rng = np.random.default_rng(42)
    draws, good = 20, 0
    for _ in range(draws):
        comp = compare_fits(X, _noisy(family, rng))
        delta = comp.table.set_index("family").loc[family, "delta_aicc"]
        good += comp.best == family or (family in NEAR_TWINS and comp.best in NEAR_TWINS and delta < 2)
    assert good / draws >= (0.75 if family in NEAR_TWINS else 1.0), good


@pytest.mark.parametrize("family", list(FAMILIES))
def test_confidence_intervals_cover_the_truth(family):
    rng = np.random.default_rng(7)
    draws, covered = 100, {name: 0 for name in TRUTH[family]}
    for _ in range(draws):
        fit = fit_curve(X, _noisy(family, rng), family)
        for name, value in TRUTH[family].items():
            lo, hi = fit.ci[name]
            covered[name] += lo <= value <= hi
    for name, hits in covered.items():
        assert hits / draws >= 0.8, (family, name, hits)


def test_aicc_and_weights_match_a_hand_worked_example():
    # m = 6 points, RSS = 0.5, k = 2 (+ sigma^2: K = 3):
    # AIC = 6 ln(0.5 / 6) + 2*3 = -8.90944; AICc = AIC + 2*3*4 / (6 - 3 - 1) = 3.09056
    score, criterion = information_criterion(0.5, 6)
    assert criterion == "AICc" and score == pytest.approx(3.09056, abs=1e-5)
    assert information_criterion(0.5, 4)[1] == "AIC"  # m <= K + 1: correction undefined
    # delta = 0, 2, 4 -> weights e^0, e^-1, e^-2 normalised = 0.66524, 0.24473, 0.09003
    np.testing.assert_allclose(akaike_weights([10.0, 12.0, 14.0]), [0.66524, 0.24473, 0.09003], atol=1e-5)
    fit = fit_curve(X[:6], 2.0 ** X[:6] * np.array([1.1, 0.9, 1.05, 0.97, 1.0, 1.02]), "exponential")
    assert fit.aicc == pytest.approx(information_criterion(fit.rss, 6)[0])


def test_degenerate_inputs_raise_clear_errors():
    with pytest.raises(FitError, match="at least 3 points"):
        fit_curve([2, 3], [1, 2], "power")
    with pytest.raises(FitError, match="> 0"):
        fit_curve([2, 3, 4], [1, 0, 2], "exponential")
    with pytest.raises(FitError, match="unknown family"):
        fit_curve([2, 3, 4], [1, 2, 3], "cubic")
    with pytest.raises(FitError, match="at least 5 points"):
        compare_fits([2, 3, 4, 5, 6, 7], [4, 8, 16, 32, 64, 128], censored=[True, False, False, False, False, True])
    with pytest.raises(FitError, match="finite"):
        fit_curve([2, 3, 4], [1, np.nan, 3], "linear")


def test_censored_points_enter_as_lower_bounds_with_a_note():
    x = np.arange(2, 10, dtype=float)
    y = 2.0 ** x
    censored = x >= 8
    comp = compare_fits(x, np.where(censored, 64, y), censored=censored)
    assert comp.best == "exponential" and comp.fits["exponential"].n_points == 8
    assert comp.fits["exponential"].params["b"] == pytest.approx(2.0, rel=0.02)
    lo, hi = comp.fits["exponential"].ci["b"]
    assert lo <= 2.0 <= hi and hi / lo < 1.2  # an interval from the observed information, not a placeholder
    assert any("2 censored point(s)" in note and "lower bounds" in note for note in comp.notes)


def test_budget_limited_points_enter_as_upper_bounds():
    x = np.arange(2, 11, dtype=float)
    limited = np.isin(x, [9, 10])
    comp = compare_fits(x, np.where(limited, 2.0 ** 12, 2.0 ** x), limited=limited)
    assert comp.best == "exponential" and comp.fits["exponential"].n_points == 9
    assert comp.fits["exponential"].params["b"] == pytest.approx(2.0, rel=0.02)
    assert any("2 budget-limited" in note and "upper bounds" in note for note in comp.notes)


def test_weights_follow_the_precise_points():
    """A wild point with a huge standard error barely moves a weighted fit; unweighted, it pulls it."""
    x = np.arange(2, 10, dtype=float)
    y = 2.0**x
    y_bad = y.copy()
    y_bad[-1] *= 8
    sigma = np.where(x == 9, 100.0, 0.05)
    weighted, plain = fit_curve(x, y_bad, "exponential", sigma), fit_curve(x, y_bad, "exponential")
    assert weighted.params["b"] == pytest.approx(2.0, rel=0.01) and plain.params["b"] > 2.1


def test_the_censored_likelihood_uses_the_bounds():
    """Without bounds it is least squares; with bounds just below a steeper truth, the fit must respect them
    where dropping them would not."""
    from analysis.calls.censored import fit_censored

    rng = np.random.default_rng(4)
    x = np.arange(2, 11, dtype=float)
    y = 1.5 * 1.6**x * np.exp(0.05 * rng.standard_normal(x.size))
    plain, censored_fit = fit_curve(x, y, "exponential"), fit_censored(x, y, "exponential", x < 0, x < 0)
    assert censored_fit.params["b"] == pytest.approx(plain.params["b"], rel=1e-3)
    bounds = x >= 8
    y_seen = np.where(bounds, 0.95 * 1.5 * 1.6**x, y)  # the truth lies above these bounds
    y_exact = np.where(x < 8, 1.5 * 1.3**x, y_seen)  # the exact points alone suggest a shallower curve
    dropped = fit_curve(x[~bounds], y_exact[~bounds], "exponential")
    used = fit_censored(x, y_exact, "exponential", bounds, x < 0)
    assert np.all(dropped.predict(x[bounds]) < y_exact[bounds])  # dropping the bounds contradicts them
    assert used.params["b"] > dropped.params["b"]
    assert np.mean(used.predict(x[bounds]) >= 0.9 * y_exact[bounds]) >= 2 / 3


def test_bootstrap_reports_win_rates_and_intervals():
    rng_data = np.random.default_rng(0)
    y = _noisy("exponential", rng_data)
    boot = Bootstrap(lambda rng: (X, y * (1 + 0.05 * rng.standard_normal(X.size))), reps=40, seed=1)
    comp = compare_fits(X, y, bootstrap=boot)
    assert sum(comp.win_rate.values()) == pytest.approx(1.0)
    assert comp.win_rate["exponential"] >= 0.5
    lo, hi = comp.boot_ci["exponential"]["b"]
    assert lo < TRUTH["exponential"]["b"] < hi
    assert np.isfinite(comp.table["extrap_error"]).all()


def test_a_censored_curves_bootstrap_interval_holds_its_own_estimate():
    """The point fit uses the bounds (censored likelihood), so its replicates must too: an interval from the
    exact points alone would describe another estimate, and miss this one."""
    rng = np.random.default_rng(2)
    x = np.arange(2, 11, dtype=float)
    exact = 1.5 * 1.3**x * np.exp(0.05 * rng.standard_normal(x.size))
    bounds = x >= 9
    y = np.where(bounds, 1.5 * 1.6**x, exact)  # lower bounds well above the exact points' trend
    boot = Bootstrap(lambda r: (x[~bounds], exact[~bounds] * np.exp(0.05 * r.standard_normal((~bounds).sum()))),
                     reps=30, seed=1)
    comp = compare_fits(x, y, families=["exponential", "power"], bootstrap=boot, censored=bounds)
    estimate = comp.fits["exponential"].params["b"]
    assert estimate > fit_curve(x[~bounds], exact[~bounds], "exponential").params["b"] * 1.02  # the bounds pull it
    lo, hi = comp.boot_ci["exponential"]["b"]
    assert lo <= estimate <= hi
