"""Is w* a measurement? w* against the budget, W50, the joint-seed bootstrap, and calibration of the verdict
on synthetic stores whose truth is known (logistic success in log2 width around W50(n))."""

import numpy as np
import pandas as pd
import pytest

from analysis.claim import judge
from analysis.compare import Bootstrap, compare_fits
from analysis.curves import width_curves
from analysis.report import point_intervals
from analysis.w50 import fit_logistic, w50_frame
from scaling import config
from scaling.stats import budget_convergence, min_width_by_budget, summarize

def _cfg(ns):
    return config.parse(f'[experiment]\nname = "synthetic"\n[task]\nn = [{min(ns)}, {max(ns)}]\n'
                        '[model]\ndepths = [1]\n[search]\nmin_depth_widths = []\n')


def _w_star_curve(df):
    cfg = _cfg(df["n"].unique())
    summary = summarize(df, cfg)
    return next(c for c in width_curves(df, summary[summary["kind"] == "min_width"], cfg)
                if c.name == "w_star/depth=1")


# A quarter-octave width grid up to 1024: dense enough that w* tracks W50, small enough to stay fast.
WIDTHS = np.unique(np.round(2.0 ** (np.arange(0, 41) / 4)).astype(int))


def _frame(steps_by_width: dict[int, list], n=3, depth=1, budget=800) -> pd.DataFrame:
    rows = [dict(n=n, depth=depth, width=w, lr=0.01, seed=seed, solved=st is not None, step_solved=st,
                 steps_budget=budget) for w, steps in steps_by_width.items() for seed, st in enumerate(steps)]
    return pd.DataFrame(rows)


def test_w_star_is_reread_at_fractions_of_the_budget_from_the_stored_steps():
    df = _frame({2: [None] * 4, 4: [700, 750, None, 100], 8: [100, 200, 300, None]})
    by_budget = min_width_by_budget(df).set_index("fraction")
    assert by_budget.loc[0.125, "censored"] and by_budget.loc[0.125, "budget"] == 100
    assert by_budget.loc[[0.25, 0.5, 1.0], "w_star"].tolist() == [8, 8, 4]
    assert not budget_convergence(min_width_by_budget(df))["budget_converged"].iloc[0]
    settled = _frame({2: [None] * 4, 4: [100, 150, None, 300], 8: [100, 200, 300, None]})
    assert budget_convergence(min_width_by_budget(settled))["budget_converged"].iloc[0]


def test_the_one_seed_range_says_where_one_seed_decides_w_star():
    """One learning rate, so the cross-fitted counts are the raw ones: w* with one more, and one fewer, solved
    seed at every tested width. 8 seeds, threshold 0.5 (4 of 8)."""
    from analysis.verdict import one_seed_cells
    from scaling.stats import min_width

    solved = lambda k: [100] * k + [None] * (8 - k)
    firm = min_width(_frame({2: solved(0), 4: solved(1), 8: solved(7), 16: solved(8)})).iloc[0]
    assert (firm.w_star, firm.one_seed_lo, firm.one_seed_hi) == (8, 8, 8)
    edge = min_width(_frame({2: solved(0), 4: solved(3), 8: solved(4), 16: solved(8)})).iloc[0]
    assert (edge.w_star, edge.one_seed_lo, edge.one_seed_hi) == (8, 4, 16)  # 3/8 -> 4/8 passes; 4/8 -> 3/8 fails
    top = min_width(_frame({2: solved(3), 4: solved(4)})).iloc[0]
    assert (top.w_star, top.one_seed_lo) == (4, 2) and np.isnan(top.one_seed_hi)  # nothing above 4 was tested
    censored = min_width(_frame({2: solved(0), 4: solved(3)})).iloc[0]
    assert censored.censored and censored.one_seed_lo == 4 and np.isnan(censored.one_seed_hi)
    assert one_seed_cells(pd.DataFrame([firm, edge, top, censored]), "w_star") == 3


def _synthetic(w50_of_n, ns, rng, seeds=8, lrs=(1e-3, 1e-2, 1e-1), slope=3.0, budget=1000) -> pd.DataFrame:
    """A members table from a known truth: P(solved) = sigmoid(slope * (log2 width - log2 W50(n))) at every
    learning rate; solved members solve early, so every cell is budget-converged."""
    n_, w_, lr_, s_ = (a.ravel() for a in np.meshgrid(ns, WIDTHS, lrs, np.arange(seeds), indexing="ij"))
    p = 1 / (1 + np.exp(-slope * (np.log2(w_) - np.log2(w50_of_n(n_.astype(float))))))
    solved = rng.random(p.shape) < p
    return pd.DataFrame({"n": n_, "depth": 1, "width": w_, "lr": lr_, "seed": s_, "solved": solved,
                         "step_solved": np.where(solved, budget // 10, np.nan), "steps_budget": budget})


def test_a_budget_limited_cell_enters_the_fit_as_an_upper_bound():
    rng = np.random.default_rng(3)
    df = _synthetic(lambda n: 2.0 ** (n - 1), np.arange(2, 9), rng)
    late = (df["n"] == 8) & df["solved"] & (df["width"] < 200)
    df.loc[late, "step_solved"] = 900  # at n = 8 the narrow widths solve only in the last half of the budget
    curve = _w_star_curve(df)
    assert curve.limited.tolist() == [False] * 6 + [True]
    comp = compare_fits(curve.x, curve.y, censored=curve.censored, limited=curve.limited)
    assert comp.fits["exponential"].n_points == 7 and comp.fits["exponential"].criterion == "AICc (censored)"
    assert any("budget-limited" in note and "upper bounds" in note for note in comp.notes)


def test_w50_recovers_a_known_logistic_curve_and_survives_one_noisy_width():
    log2_w = np.log2(WIDTHS[:25])
    truth = 1 / (1 + np.exp(-2.0 * (log2_w - np.log2(12.0))))
    trials = np.full(len(log2_w), 4000)
    fit = fit_logistic(log2_w, np.round(truth * trials), trials)
    w50, lo, hi = fit.crossing(0.5)
    assert abs(w50 / 12.0 - 1) < 0.03 and lo < 12.0 < hi
    df = _synthetic(lambda n: 3.0 * n, np.array([5]), np.random.default_rng(0))
    top = df["width"] == df["width"].max()
    df.loc[top, "solved"] = df.loc[top, "seed"] >= 4  # one noisy width at the bound: 4 of 8 at best
    df.loc[top & (df["lr"] != 1e-2), "solved"] = False
    row = w50_frame(df).iloc[0]
    assert row["beyond"] == "" and 7 < row["w50"] < 25 and row["w50_lo"] < row["w50"] < row["w50_hi"]


def _call(df, reps):
    curve = _w_star_curve(df)
    comp = compare_fits(curve.x, curve.y, censored=curve.censored, limited=curve.limited,
                        bootstrap=Bootstrap(curve.resample, reps=reps))
    return curve, comp, judge(comp)


def _calibration(draws: int, reps: int):
    ns = np.arange(2, 11)
    rng = np.random.default_rng(2026)
    power_robust_exp = exp_called = covers_two = 0
    for _ in range(draws):
        _, _, verdict = _call(_synthetic(lambda n: 1.5 * n**1.2, ns, rng), reps)
        power_robust_exp += verdict["growth"] == "exponential" and verdict["robust"]
        curve, comp, verdict = _call(_synthetic(lambda n: 2.0 ** (n - 1), np.arange(2, 9), rng), reps)
        exp_called += comp.best == "exponential"
        lo, hi = comp.boot_ci["exponential"]["b"]
        covers_two += lo <= 2.0 <= hi
    return power_robust_exp / draws, exp_called / draws, covers_two / draws


def test_the_verdict_is_calibrated_on_synthetic_truths_fast():
    """The calibration below on 8 draws (the default run); test_..._40_draws is the full check."""
    power_robust_exp, exp_called, covers_two = _calibration(draws=8, reps=40)
    assert power_robust_exp <= 1 / 8 and exp_called >= 7 / 8 and covers_two >= 5 / 8


@pytest.mark.slow
def test_the_verdict_is_calibrated_on_synthetic_truths_40_draws():
    power_robust_exp, exp_called, covers_two = _calibration(draws=40, reps=100)
    assert power_robust_exp <= 0.05 and exp_called >= 0.95 and covers_two >= 0.80


def test_the_joint_seed_bootstrap_is_centred():
    curve, _, _ = _call(_synthetic(lambda n: 2.0 ** (n - 1), np.arange(2, 9), np.random.default_rng(5)), reps=5)
    _, _, centring = point_intervals(curve, reps=200)
    assert 0.35 <= centring["centring"] <= 0.65, centring


def test_cross_fitting_removes_the_winners_curse():
    """Three learning rates with the same true success rate 0.4: the best of them on the same seeds looks
    better than 0.4; chosen on one half and measured on the other, it does not."""
    from scaling.stats import crossfit_rates

    rng = np.random.default_rng(11)
    n_, w_, lr_, s_ = (a.ravel() for a in np.meshgrid([4], np.arange(1, 401), [1e-3, 1e-2, 1e-1], np.arange(8),
                                                      indexing="ij"))
    df = pd.DataFrame({"n": n_, "depth": 1, "width": w_, "lr": lr_, "seed": s_, "solved": rng.random(n_.size) < 0.4})
    rates = crossfit_rates(df, ["n", "depth", "width"])
    assert rates["in_sample_rate"].mean() > 0.5  # the winner's curse
    assert abs(rates["rate"].mean() - 0.4) < 0.02 and (rates["seeds"] == 8).all()
    assert abs(rates["pooled_rate"].mean() - 0.4) < 0.01
