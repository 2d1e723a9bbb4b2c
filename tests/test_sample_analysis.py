"""The analysis of a run that learns parities from samples: t_c per point, alpha in t_c ∝ n^alpha recovered on
synthetic truths whose exponent is known, "alpha grows with k" decided right on them (and its controls), and a
real tiny sweep analysed end to end."""

import numpy as np
import pandas as pd
import pytest

from analysis.calls.sample_scaling import FALLS, GROWS, alpha_grows, slopes, tc_points
from analysis.simulation.sample_controls import control, synthetic_members

NS = [8, 11, 16, 23, 32, 45, 64]


def truth(alphas: dict[int, float], seeds=25, sigma=0.3, cap=10**9, every=10, seed=0, level=4.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return synthetic_members(NS, {k: (level, a) for k, a in alphas.items()}, seeds, cap, every, sigma, rng)


def test_tc_points_reads_medians_quartiles_success_and_censoring():
    rows = pd.DataFrame({"k": 2, "n": 10, "depth": 1, "width": 8, "init": "he", "lr": 0.1, "seed": range(5),
                         "steps_budget": 1000,
                         "solved": [True, True, True, False, False],
                         "step_solved": [100.0, 300.0, 200.0, np.nan, np.nan]})
    half_failed = rows.assign(n=12, solved=[True, True, False, False, False],
                              step_solved=[100.0, 300.0, np.nan, np.nan, np.nan])
    p = tc_points(pd.concat([rows, half_failed]), reps=200).set_index("n")
    assert p.loc[10, "tc_median"] == 300 and p.loc[10, "success"] == pytest.approx(0.6)
    assert (p.loc[10, "tc_q25"], p.loc[10, "tc_q75"]) == (200, np.inf)
    assert p.loc[10, "tc_lo"] <= 300 <= p.loc[10, "tc_hi"]
    assert p.loc[12, "tc_median"] == np.inf and p.loc[12, "solved"] == 2  # more than half censored: not reached


@pytest.mark.parametrize("alpha", [0.6, 1.5, 3.0])
def test_alpha_is_recovered_with_an_interval_that_holds_it(alpha):
    fit = slopes(truth({3: alpha}, seed=int(alpha * 10)), "n", eval_every=10)[0]
    assert fit.slope == pytest.approx(alpha, abs=0.15)
    assert fit.lo < alpha < fit.hi and fit.hi - fit.lo < 0.5
    assert fit.x == NS and not fit.left_out


def test_medians_past_the_cap_or_at_the_first_evaluation_are_listed_not_fitted():
    rows = truth({2: 2.0}, cap=4000, every=200, level=1.0)  # t_c = e * n^2: 174 at n = 8, past 4000 at n = 45, 64
    fit = slopes(rows, "n", eval_every=200)[0]
    assert fit.left_out == [45, 64] and fit.first_eval == [8] and fit.x == [11, 16, 23, 32]
    assert fit.slope == pytest.approx(2.0, abs=0.3)
    assert fit.lo < fit.slope < fit.hi and fit.lo < 2.0 < fit.hi  # on a coarse evaluation grid, not degenerate


@pytest.mark.parametrize("alphas, call", [({2: 0.5, 3: 1.0, 4: 1.5}, GROWS), ({2: 1.5, 3: 1.0, 4: 0.5}, FALLS)])
def test_the_growth_test_calls_known_truths(alphas, call):
    assert alpha_grows(slopes(truth(alphas), "n", eval_every=10)).call == call


def test_equal_alphas_are_rarely_called_growing():
    said = [alpha_grows(slopes(truth({2: 1.0, 3: 1.0, 4: 1.0}, seed=s), "n", eval_every=10, reps=200)).call
            for s in range(20)]
    assert said.count(GROWS) <= 2


def test_the_controls_measure_false_positives_and_power_at_the_design():
    rows = truth({2: 0.5, 3: 1.0, 4: 1.5}, sigma=0.4)
    result = control(slopes(rows, "n", eval_every=10, reps=200), rows, eval_every=10, simulations=10)
    assert result.passes and result.false_positive <= 0.1 and result.power >= 0.8
    assert result.sigma == pytest.approx(0.4, abs=0.1)


SWEEP = """
[experiment]
name = "sp_tiny"
[task]
kind = "sparse_parity"
n = [6, 8, 10]
k = [2, 3]
data = "online"
eval_samples = 512
[model]
depths = [1]
widths = [16, 32]
[train]
optimizer = "sgd"
lrs = [0.1]
loss = "hinge"
weight_decay = 0.01
batch_size = 32
steps = 4000
eval_every = 20
[search]
seeds = 4
min_depth_widths = []
lr_extend = 0
"""


def test_a_tiny_sparse_sweep_is_analysed_end_to_end(tmp_path):
    """The sweep trains (k, n) tasks with their hidden bits stored; the analysis writes the alpha table, the
    growth test, both figures and summary.csv, and the study object holds the frames."""
    import analysis
    from scaling.engine.tasks import hidden_subset, subset_text
    from scaling.experiment import config
    from scaling.sweep import run_sweep

    outcome = run_sweep(config.parse(SWEEP), tmp_path, progress=False, threads=1)
    assert outcome.trained == 3 * 2 * 2 * 4 and list(outcome.summary.columns[:2]) == ["k", "kind"]
    members = analysis.load(tmp_path)
    assert all(row.subset == subset_text(hidden_subset(0, row.n, row.k)) for row in members.itertuples())
    written = analysis.analyze(tmp_path, power=False)
    names = {p.name for p in written}
    assert {"REPORT.md", "summary.csv", "fits.json", "tc_vs_n.png", "tc_vs_width.png"} <= names
    study = analysis.study(tmp_path)
    assert len(study.points) == 3 * 2 * 2 and {a.at["k"] for a in study.alphas} == {2, 3}
    report = (tmp_path / "REPORT.md").read_text()
    assert "## α: t_c ∝ n^α" in report and "## Hidden bits" in report


def test_inits_are_points_of_their_own_and_censored_replicates_take_the_cap():
    rows = pd.concat([truth({3: 1.0}), truth({3: 1.0}, seed=1).assign(init="lecun")])
    assert len(tc_points(rows)) == 2 * len(NS) and len(slopes(rows, "n", eval_every=10)) == 2
    near_cap = truth({3: 2.0}, cap=int(np.exp(4.0) * 64**2 * 1.05), seed=3)  # about 45 % censored at n = 64
    fit = slopes(near_cap, "n", eval_every=10)[0]
    assert fit.x[-1] == 64 and fit.capped > 0 and len(fit.draws) == 400  # kept, not dropped
    assert fit.lo < fit.slope < fit.hi


def test_the_slope_along_width_is_recovered_on_a_known_truth():
    """t_c ∝ n * width^-0.5: the curves over four widths find about -0.5, within their intervals (one miss allowed)."""
    rng = np.random.default_rng(7)
    rows = pd.concat([synthetic_members(NS, {3: (6.0 - 0.5 * np.log(w), 1.0)}, 25, 10**9, 10, 0.3, rng, width=w)
                      for w in (25, 50, 100, 200)])
    fits = slopes(rows, "width", eval_every=10)
    assert len(fits) == len(NS) and all(f.x == [25, 50, 100, 200] for f in fits)
    assert np.median([f.slope for f in fits]) == pytest.approx(-0.5, abs=0.1)
    assert sum(f.lo < -0.5 < f.hi for f in fits) >= len(NS) - 1
