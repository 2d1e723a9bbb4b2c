"""Growth laws (analysis.calls.laws) and the class call (analysis.calls.growth) on curves whose truth is known."""

import numpy as np
import pytest

from analysis.calls.growth import UNDECIDED, between_cell_sd, decide
from analysis.calls.laws import EXPONENTIAL, LAWS, MAX_DEGREE, POLYNOMIAL, aicc, fit_law, free_parameters

N = np.arange(2, 13, dtype=float)
TRUTH = {"exponential": (0.75, 2.0), "shifted_exponential": (3.0, 0.5, 1.3), "power_exponential": (1.0, 1.0, 1.2),
         "power": (0.75, 1.5),
         "shifted_power": (2.5, 0.4, 1.8), "linear": (1.0, 1.0), "logarithmic": (1.5, 3.0)}


@pytest.mark.parametrize("name", list(LAWS))
def test_each_law_recovers_an_exact_curve_to_one_percent(name):
    law = LAWS[name]
    y = law.predict(N, TRUTH[name])
    params, chi2 = fit_law(law, N, np.log(y), np.full(N.size, 0.05), refine=True)
    np.testing.assert_allclose(params[0], TRUTH[name], rtol=0.01)
    assert chi2[0] < 1e-6


@pytest.mark.parametrize("noise", [0.05, 0.8])
@pytest.mark.parametrize("name", ["shifted_exponential", "shifted_power", "power_exponential"])
def test_replicates_are_fitted_like_one_curve_each(name, noise):
    """The vectorized fit of R replicates equals R separate fits (on the shape grid, without refinement), also
    where some replicates' fits take many more steps than others (large noise)."""
    law, rng = LAWS[name], np.random.default_rng(0)
    logy = np.log(law.predict(N, TRUTH[name])) + noise * rng.standard_normal((6, N.size))
    sigma = rng.uniform(0.03, 0.08, N.size)
    together, chi2 = fit_law(law, N, logy, sigma)
    for r in range(len(logy)):
        alone, chi2_alone = fit_law(law, N, logy[r], sigma)
        np.testing.assert_allclose(together[r], alone[0], rtol=1e-9)
        assert chi2[r] == pytest.approx(chi2_alone[0], rel=1e-9)


def test_offsets_are_floors_and_powers_stop_at_the_largest_degree():
    """A curve that a negative offset or a degree above MAX_DEGREE would fit exactly is fitted on the bounds."""
    sinking = 10.0 * N**1.5 - 8.0  # a + b n^k with a < 0
    params, _ = fit_law(LAWS["shifted_power"], N, np.log(sinking), np.full(N.size, 0.05), refine=True)
    assert params[0, 0] == 0.0
    steep = 0.01 * N**5
    for name in ("power", "shifted_power"):
        params, _ = fit_law(LAWS[name], N, np.log(steep), np.full(N.size, 0.05), refine=True)
        assert params[0, -1] == pytest.approx(MAX_DEGREE)


def test_aicc_counts_the_laws_parameters():
    assert aicc(10.0, 9, 2) == pytest.approx(10.0 + 4 + 12 / 6)
    assert aicc(10.0, 4, 3) == pytest.approx(10.0 + 6)  # m <= K + 1: AIC


def _replicates(y, sigma, rng, reps=100):
    return y * np.exp(sigma * rng.standard_normal((reps, y.size)))


@pytest.mark.parametrize("truth,growth", [(lambda n: 0.75 * 2.0**n, EXPONENTIAL),
                                          (lambda n: 0.75 * n**1.5, POLYNOMIAL)])
def test_a_clear_curve_is_called_for_its_class(truth, growth):
    rng, sigma = np.random.default_rng(1), np.full(N.size, 0.05)
    y = truth(N) * np.exp(sigma * rng.standard_normal(N.size))
    call = decide(N, y, sigma, _replicates(y, sigma, rng))
    assert call.call == growth and not call.reasons
    assert call.class_weight[growth] >= 0.8 and call.class_fits[growth] >= 0.05


def test_when_both_classes_fit_within_the_noise_the_call_is_undecided():
    """n + 1 over n = 2..8 with 30 % noise: a line and a slow exponential both fit; however small one's
    residuals, no class is called."""
    n = np.arange(2, 9, dtype=float)
    sigma = np.full(n.size, 0.3)
    y = n + 1.0
    call = decide(n, y, sigma, _replicates(y, sigma, np.random.default_rng(2)))
    assert call.call == UNDECIDED
    assert any("also fits within the measured noise" in r for r in call.reasons)


def test_a_call_needs_five_points():
    with pytest.raises(ValueError, match="at least 5"):
        decide(N[:4], N[:4], np.full(4, 0.1), np.ones((3, 4)))


def test_each_class_has_half_the_prior_weight_however_many_laws_it_has():
    """Where every law fits equally well (a curve that all of them hold exactly is impossible, so equal chi^2
    is imposed through identical AICc), the class weights are 1/2 each, not 3/7 against 4/7."""
    from analysis.calls.growth import _class_priors

    prior = _class_priors(LAWS)
    totals = {c: sum(p for law, p in prior.items() if LAWS[law].growth == c) for c in (EXPONENTIAL, POLYNOMIAL)}
    assert totals == pytest.approx({EXPONENTIAL: 0.5, POLYNOMIAL: 0.5})


def test_between_cell_noise_is_estimated_so_more_seeds_do_not_make_every_law_fail():
    """0.75 * 2^n with a 10 % odd/even zigzag that no law has, measured with seed noise 0.01 (many seeds): the
    between-cell term absorbs the zigzag and the exponential still fits; a smooth curve adds no such term."""
    zigzag = np.where(N % 2 == 0, 1.1, 1 / 1.1)
    sigma = np.full(N.size, 0.01)
    y = 0.75 * 2.0**N * zigzag
    assert between_cell_sd(N, np.log(y), sigma) == pytest.approx(np.log(1.1) * 4 / np.sqrt(6), rel=0.05)
    assert between_cell_sd(N, np.log(0.75 * 2.0**N), sigma) == 0.0
    call = decide(N, y, sigma, _replicates(y, sigma, np.random.default_rng(3)))
    assert call.class_fits[EXPONENTIAL] >= 0.05 and call.tau > 0.1


def test_a_parameter_held_at_its_bound_is_not_counted_as_fitted():
    sinking = 10.0 * N**1.5 - 8.0  # a + b n^k fitted with a = 0 (its floor)
    params, _ = fit_law(LAWS["shifted_power"], N, np.log(sinking), np.full(N.size, 0.05), refine=True)
    assert free_parameters(LAWS["shifted_power"], params)[0] == 2
    params, _ = fit_law(LAWS["power"], N, np.log(0.01 * N**5), np.full(N.size, 0.05))
    assert free_parameters(LAWS["power"], params)[0] == 1  # the degree at its cap
    assert free_parameters(LAWS["linear"], np.array([[1.0, 2.0]]))[0] == 2


def test_a_failed_replicate_wins_for_no_class():
    rng, sigma = np.random.default_rng(4), np.full(N.size, 0.05)
    y = 0.75 * 2.0**N * np.exp(sigma * rng.standard_normal(N.size))
    reps = _replicates(y, sigma, rng)
    reps[:30, 3] = np.nan  # 30 of 100 replicates have no value at one n
    call = decide(N, y, sigma, reps)
    assert sum(call.class_win_rate.values()) == pytest.approx(0.7)
    assert all(len(r) == 70 for r in call.reps.values())


@pytest.mark.parametrize("base", [1.2, 1.5])
def test_a_fit_whose_first_curve_is_not_positive_still_finds_one_that_is(base):
    """Noisy points whose linear-space start gives a curve <= 0 somewhere: the steps must still reach a positive
    curve (Newton's weights 1 + r mean nothing there; Gauss-Newton's steps are taken until it is positive)."""
    from analysis.calls.laws import fit_affine

    logy = np.array([1.61, 2.68, 2.34, 3.99, 1.25, -0.17, 4.73])
    a, b, chi2 = fit_affine(logy, np.full(7, 0.3), base ** np.arange(2.0, 9.0))
    assert np.isfinite(chi2) and np.all(a + b * base ** np.arange(2.0, 9.0) > 0)
