"""Is w* a measurement? w* against the budget, W50, the joint-seed bootstrap and cross-fitting, on synthetic
stores whose truth is known (logistic success in log2 width around W50(n))."""

import numpy as np
import pandas as pd

from analysis.calls.verdict import judge
from analysis.measurement.measure import fit_logistic, measure_cells, w50_frame
from scaling.experiment import config
from scaling.planning.stats import budget_convergence, min_width, min_width_by_budget


def _cfg(ns):
    return config.parse(f'[experiment]\nname = "synthetic"\n[task]\nn = [{min(ns)}, {max(ns)}]\n'
                        '[model]\ndepths = [1]\n[search]\nmin_depth_widths = []\n')


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
    from analysis.reporting.markdown import one_seed_cells

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


def test_a_budget_limited_cell_is_left_out_of_the_verdicts_fits():
    rng = np.random.default_rng(3)
    df = _synthetic(lambda n: 2.0 ** (n - 1), np.arange(2, 9), rng)
    late = (df["n"] == 8) & df["solved"] & (df["width"] < 200)
    df.loc[late, "step_solved"] = 900  # at n = 8 the narrow widths solve only in the last half of the budget
    group = judge(df, _cfg(df["n"].unique()), reps=40).groups["depth=1"]
    assert group.budget_limited_cells == 1 and 8 not in group.w50.x and "budget-limited" in group.w50.left_out[8]
    assert list(group.w50.x) == [2, 3, 4, 5, 6, 7]


def test_w50_recovers_a_known_logistic_curve_and_survives_one_noisy_width():
    log2_w = np.log2(WIDTHS[:25])
    truth = 1 / (1 + np.exp(-2.0 * (log2_w - np.log2(12.0))))
    trials = np.full(len(log2_w), 4000)
    assert abs(fit_logistic(log2_w, np.round(truth * trials), trials).crossing(0.5) / 12.0 - 1) < 0.03
    df = _synthetic(lambda n: 3.0 * n, np.array([5]), np.random.default_rng(0))
    top = df["width"] == df["width"].max()
    df.loc[top, "solved"] = df.loc[top, "seed"] >= 4  # one noisy width at the bound: 4 of 8 at best
    df.loc[top & (df["lr"] != 1e-2), "solved"] = False
    row = w50_frame(measure_cells(df, 0.5, reps=100)).iloc[0]
    assert row["beyond"] == "" and 7 < row["w50"] < 25 and row["w50_lo"] < row["w50"] < row["w50_hi"]


def test_w50_and_w_star_read_the_same_cross_fitted_counts_as_the_summary():
    """measure.measure_cells' w* is stats.min_width's, cell by cell (one cross-fit for both)."""
    df = _synthetic(lambda n: 1.5 * n, np.arange(2, 7), np.random.default_rng(4))
    df = df[df["width"] <= 16]
    cells, stars = measure_cells(df, 0.5, reps=10), min_width(df).set_index(["n", "depth"])
    for key, cell in cells.items():
        assert (np.isnan(cell.w_star) and stars.loc[key, "censored"]) or cell.w_star == stars.loc[key, "w_star"]


def test_the_joint_seed_bootstrap_is_centred():
    """The share of W50 replicates above their point, over the cells of a synthetic store, is near a half."""
    df = _synthetic(lambda n: 2.0 ** (n - 1), np.arange(2, 9), np.random.default_rng(5))
    cells = measure_cells(df, 0.5, reps=200)
    above = np.mean([np.mean(c.w50_reps > c.w50) for c in cells.values()])
    assert 0.35 <= above <= 0.65, above


def test_a_w_star_that_rose_with_more_steps_is_not_budget_limited():
    """Solved by half the budget implies solved by the whole, so only the learning-rate choice can raise w*:
    seed noise, not evidence that more steps would lower it."""
    by_budget = pd.DataFrame({"n": 5, "depth": 3, "fraction": [0.5, 1.0], "budget": [1500, 3000],
                              "w_star": [5.0, 6.0], "censored": False, "bound": 8})
    assert budget_convergence(by_budget)["budget_converged"].iloc[0]
    fell = by_budget.assign(w_star=[6.0, 5.0])
    assert not budget_convergence(fell)["budget_converged"].iloc[0]
    found = by_budget.assign(w_star=[np.nan, 6.0], censored=[True, False])
    assert not budget_convergence(found)["budget_converged"].iloc[0]


def test_cross_fitting_removes_the_winners_curse():
    """Three learning rates with the same true success rate 0.4: the best of them on the same seeds looks
    better than 0.4; chosen on one half and measured on the other, it does not."""
    from scaling.planning.stats import crossfit_rates

    rng = np.random.default_rng(11)
    n_, w_, lr_, s_ = (a.ravel() for a in np.meshgrid([4], np.arange(1, 401), [1e-3, 1e-2, 1e-1], np.arange(8),
                                                      indexing="ij"))
    df = pd.DataFrame({"n": n_, "depth": 1, "width": w_, "lr": lr_, "seed": s_, "solved": rng.random(n_.size) < 0.4})
    rates = crossfit_rates(df, ["n", "depth", "width"])
    assert rates["in_sample_rate"].mean() > 0.5  # the winner's curse
    assert abs(rates["rate"].mean() - 0.4) < 0.02 and (rates["seeds"] == 8).all()
    assert abs(rates["pooled_rate"].mean() - 0.4) < 0.01
