"""The one comparison of growth laws (analysis.calls.comparison) behind both the verdict's call and compare_fits."""

import numpy as np
import pytest

from analysis import Bootstrap, compare_fits
from analysis.calls.comparison import ESTIMATED, MEASURED, compare_laws
from analysis.calls.fits import FAMILIES
from analysis.calls.laws import fit_law

X = np.arange(3, 13, dtype=float)
TWO_PARAMETER = {name: fam.law for name, fam in FAMILIES.items()}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    y = 0.7 * 1.45**X * np.exp(0.08 * rng.standard_normal(X.size))
    reps = y * np.exp(0.08 * rng.standard_normal((30, X.size)))
    return y, reps


def test_measured_and_estimated_noise_agree_where_every_point_has_one_sigma():
    """Both noise models are least squares in log space: with one sigma for every point they give the same
    parameters, the same ranking of equal-sized laws and the same replicate winners."""
    y, reps = _data()
    measured = compare_laws(X, y, TWO_PARAMETER, noise=MEASURED, sigma=np.full(X.size, 0.08), replicates_RxM=reps)
    estimated = compare_laws(X, y, TWO_PARAMETER, noise=ESTIMATED, replicates_RxM=reps)
    assert list(measured.table["law"]) == list(estimated.table["law"])
    for law in TWO_PARAMETER:
        np.testing.assert_allclose(measured.params[law], estimated.params[law], rtol=1e-6)
        np.testing.assert_allclose(measured.reps[law], estimated.reps[law], rtol=1e-6)
    np.testing.assert_array_equal(np.argmin(measured.reps_aicc, 0), np.argmin(estimated.reps_aicc, 0))
    assert measured.best() == "exponential"


def test_a_replicate_is_fitted_as_the_point_fit_is():
    y, reps = _data(1)
    sigma = np.linspace(0.05, 0.2, X.size)
    comparison = compare_laws(X, y, TWO_PARAMETER, sigma=sigma, replicates_RxM=reps)
    for law in ("exponential", "linear"):
        alone, _ = fit_law(TWO_PARAMETER[law], X, np.log(reps), sigma)
        np.testing.assert_allclose(comparison.reps[law], alone, rtol=1e-9)


def test_a_replicate_that_lacks_points_wins_for_no_law():
    """A replicate with too few points is not fitted: it wins nothing and the win rates say so (they are shares
    of every replicate drawn), in either noise model."""
    y, reps = _data(2)
    reps[:10, :7] = np.nan  # 3 points left in a third of the replicates
    measured = compare_laws(X, y, TWO_PARAMETER, sigma=np.full(X.size, 0.08), replicates_RxM=reps)
    estimated = compare_laws(X, y, TWO_PARAMETER, noise=ESTIMATED, replicates_RxM=reps, min_points=5)
    for comparison in (measured, estimated):
        assert comparison.table["win_rate"].sum() == pytest.approx(20 / 30)
        assert all(len(draws) == 20 for draws in comparison.reps.values())
    rows = iter(reps)
    comp = compare_fits(X, y, bootstrap=Bootstrap(lambda rng: (X[np.isfinite(r := next(rows))], r[np.isfinite(r)]),
                                                  reps=30))
    assert sum(comp.win_rate.values()) == pytest.approx(20 / 30)
    assert any("10 of 30 replicates" in note for note in comp.notes)


def test_laws_with_shapes_need_measured_noise():
    from analysis.calls.laws import LAWS

    with pytest.raises(ValueError, match="two-parameter"):
        compare_laws(X, X, LAWS, noise=ESTIMATED)
    with pytest.raises(ValueError, match="sigma"):
        compare_laws(X, X, LAWS)


def test_a_curve_no_family_can_fit_is_a_fit_error_and_a_replicate_with_a_zero_fails():
    from analysis import FitError

    with pytest.raises(FitError, match="no family could be fitted"):
        compare_fits(X, np.where(X == 5, 0.0, X))  # a median of 0 steps has no logarithm
    y, reps = _data(3)
    reps[:4, 2] = 0.0
    comparison = compare_laws(X, y, TWO_PARAMETER, noise=ESTIMATED, replicates_RxM=reps, min_points=5)
    assert comparison.table["win_rate"].sum() == pytest.approx(26 / 30)
