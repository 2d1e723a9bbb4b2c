"""The adaptive search (scaling.planning.search): galloping, bisection, the confirming width, the budget and the
learning-rate edge rules, against oracles and against the exhaustive grid."""


import pandas as pd
from configs import MONOTONE, TINY

from scaling.experiment import config
from scaling.planning import search
from scaling.planning.stats import min_width, summarize
from scaling.sweep import run_sweep

KEY = ["n", "depth", "width", "lr", "seed"]




def test_adaptive_search_matches_the_exhaustive_grid(tmp_path):
    """A real small case whose success rates rise monotonically with width (6 seeds; with 3 seeds a lucky
    seed at an untested width can make the exhaustive grid's w* differ, which is the definition at work)."""
    adaptive = run_sweep(config.parse(MONOTONE), tmp_path / "a", progress=False)
    grid = config.parse(MONOTONE.replace("widths = {max = 8}", "widths = [1, 2, 3, 4, 5, 6, 7, 8]"))
    exhaustive = run_sweep(grid, tmp_path / "e", progress=False)
    assert exhaustive.trained > adaptive.trained
    pick = lambda s: s[s["kind"] == "min_width"].set_index(["n", "depth"])[["w_star", "censored"]].sort_index()
    pd.testing.assert_frame_equal(pick(adaptive.summary), pick(exhaustive.summary))


def _oracle_config():
    """TINY at depths 1 and 2, widths up to 64, 2 seeds, no L* search: the config the oracle tests search."""
    return config.parse(TINY.replace("widths = {max = 8}", "widths = {max = 64}").replace("seeds = 3", "seeds = 2")
                        .replace("min_depth_widths = [2, 4]", "min_depth_widths = []")
                        .replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1, 2]"))


def _search_against(cfg, solve_step) -> pd.DataFrame:
    """Run the search loop against an oracle: solve_step(member) is the step it solves at, or None."""
    rows: list[dict] = []
    for _ in range(30):
        df = pd.DataFrame(rows, columns=["n", "depth", "width", "init", "lr", "seed", "steps_budget", "solved",
                                         "step_solved"])
        done = {(r["n"], r["depth"], r["width"], r["init"], r["lr"], r["seed"], r["steps_budget"]) for r in rows}
        todo = [m for m in search.wanted_members(cfg, df)
                if (m.n, m.depth, m.width, m.init, m.lr, m.seed, m.steps) not in done]
        if not todo:
            return df
        for m in todo:
            step = solve_step(m)
            solved = step is not None and step <= m.steps
            rows.append({"n": m.n, "depth": m.depth, "width": m.width, "init": m.init, "lr": m.lr, "seed": m.seed,
                         "steps_budget": m.steps, "solved": solved, "step_solved": step if solved else None})
    raise AssertionError("the search did not settle in 30 rounds")


def test_bisection_finds_every_threshold_with_few_widths():
    """The search loop against an oracle (solved iff width >= k): exact w* at every k up to the bound, censored
    above."""
    cfg = _oracle_config()
    thresholds = {(2, 1): 1, (2, 2): 37, (3, 1): 64, (3, 2): 65, (4, 1): 5, (4, 2): 20}
    df = _search_against(cfg, lambda m: 10 if m.width >= thresholds[(m.n, m.depth)] else None)
    stars = min_width(df).set_index(["n", "depth"])
    for cell, k in thresholds.items():
        if k > 64:
            assert stars.loc[cell, "censored"] and stars.loc[cell, "bound"] == 64
        else:
            assert stars.loc[cell, "w_star"] == k, cell
    assert set(df["steps_budget"]) == {cfg.train.steps}  # nothing budget-limited: the budget rule never fires
    widths_tested = df.groupby(["n", "depth"])["width"].nunique()
    assert widths_tested.max() <= 7 + 6  # the coarse grid plus log2(32) bisection steps, not all 64 widths


def test_galloping_matches_the_exhaustive_grid_with_fewer_members_and_never_trains_above_twice_w_star():
    """The same oracle against the gallop (1, 2, 4, ... then bisection) and against every width 1..64."""
    cfg = _oracle_config()
    thresholds = {(2, 1): 1, (2, 2): 37, (3, 1): 33, (3, 2): 65, (4, 1): 5, (4, 2): 20}
    oracle = lambda m: 10 if m.width >= thresholds[(m.n, m.depth)] else None
    gallop = _search_against(cfg, oracle)
    exhaustive = _search_against(cfg.replace(widths=tuple(range(1, 65)), width_search="grid"), oracle)
    pick = lambda df: min_width(df).set_index(["n", "depth"])[["w_star", "censored", "bound"]].sort_index()
    mine, theirs = pick(gallop), pick(exhaustive)
    pd.testing.assert_frame_equal(mine[["w_star", "censored"]], theirs[["w_star", "censored"]])
    assert (mine.loc[mine["censored"], "bound"] == 64).all()  # a censored cell climbed to the bound
    assert len(gallop) < len(exhaustive) / 4
    widest = gallop.groupby(["n", "depth"])["width"].max()
    for cell, k in thresholds.items():
        assert widest[cell] <= (2 * k if k <= 64 else 64), cell  # the first passing rung lies in [w*, 2 w*)


def test_a_settled_cell_whose_w_star_is_its_widest_width_trains_one_confirming_width_above():
    """So that a seed-bootstrap resample that fails at w* finds a passing width above it, not a censored cell."""
    cfg = _oracle_config()
    thresholds = {(2, 1): 4, (2, 2): 1, (3, 1): 64, (3, 2): 6, (4, 1): 5, (4, 2): 65}
    df = _search_against(cfg, lambda m: 10 if m.width >= thresholds[(m.n, m.depth)] else None)
    widest = df.groupby(["n", "depth"])["width"].max()
    assert widest[(2, 1)] == 8 and widest[(2, 2)] == 2  # w* is a rung: the next rung confirms it
    assert widest[(3, 2)] == 8 and widest[(4, 1)] == 8  # the gallop already tested a width above w*
    assert widest[(3, 1)] == 64 and widest[(4, 2)] == 64  # nothing wider than the bound to confirm with
    stars = min_width(df).set_index(["n", "depth"])
    assert [stars.loc[cell, "w_star"] for cell in [(2, 1), (2, 2), (3, 2), (4, 1)]] == [4, 1, 6, 5]


def test_the_budget_rule_reruns_budget_limited_cells_at_twice_the_budget_up_to_max_steps():
    """Oracle: at n = 2 a member of width w solves at step 6400 / w, so each doubling of the budget halves
    w*; at n = 3 it solves at step 10 from width 5 on, whatever the budget."""
    cfg = config.parse(TINY.replace("widths = {max = 8}", "widths = {max = 64}").replace("seeds = 3", "seeds = 2")
                       .replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1]")
                       .replace("n = [2, 4]", "n = [2, 3]")
                       .replace("min_depth_widths = [2, 4]", "min_depth_widths = []\nmax_steps = 1600"))
    df = _search_against(cfg, lambda m: 6400 // m.width if m.n == 2 else (10 if m.width >= 5 else None))
    budgets = df.groupby("n")["steps_budget"].unique()
    assert sorted(budgets[2]) == [400, 800, 1600] and list(budgets[3]) == [400]
    summary = summarize(df, cfg).set_index("n")
    assert summary.loc[2, "w_star"] == 4 and not summary.loc[2, "budget_converged"]  # 6400 / 1600; capped
    assert summary.loc[3, "w_star"] == 5 and summary.loc[3, "budget_converged"]


def test_the_learning_rate_edge_rule_extends_the_grid_at_transition_widths_up_to_its_cap():
    """Oracle: lr 1e-2 solves from width 8, lr 3e-2 from width 6, lr 9e-2 (one step beyond the grid) from 4.
    The best rate at the transition widths sits at the grid's top edge, so 9e-2 is added there, never 2.7e-1."""
    cfg = config.parse(TINY.replace("widths = {max = 8}", "widths = {max = 16}").replace("seeds = 3", "seeds = 2")
                       .replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1]").replace("n = [2, 4]", "n = 3")
                       .replace("lrs = [3e-2]", "lrs = [1e-2, 3e-2]")
                       .replace("min_depth_widths = [2, 4]", "min_depth_widths = []\nlr_extend = 1"))
    need = lambda lr: 8 if lr < 0.02 else 6 if lr < 0.05 else 4
    df = _search_against(cfg, lambda m: 10 if m.width >= need(m.lr) else None)
    extended = df[~df["lr"].isin(cfg.train.lrs)]
    assert set(extended["lr"]) == {0.09} and set(extended["width"]) <= {5, 6, 7, 8}  # never below: no gain there
    summary = summarize(df, cfg).set_index("n")
    assert summary.loc[3, "w_star"] == 6 and summary.loc[3, "best_lr"] in (0.03, 0.09)


def test_a_list_of_inits_is_a_recipe_searched_per_cell_like_the_learning_rate():
    """Oracle: at depth 2 LeCun with positive biases solves from width 4 and He from width 8; at depth 1 both from
    width 6. Every tested width trains every init, w* is read at the best recipe of each cell (cross-fitted),
    and the summary names it."""
    cfg = config.parse(TINY.replace("widths = {max = 8}", "widths = {max = 16}").replace("seeds = 3", "seeds = 4")
                       .replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1, 2]")
                       .replace("n = [2, 4]", "n = 3").replace("min_depth_widths = [2, 4]", "min_depth_widths = []")
                       .replace('[model]', '[model]\ninit = ["he", "lecun_bias"]'))
    need = lambda m: 6 if m.depth == 1 else 4 if m.init == "lecun_bias" else 8
    df = _search_against(cfg, lambda m: 10 if m.width >= need(m) else None)
    per_point = df.groupby(["depth", "width"])["init"].agg(set)
    assert all(inits == {"he", "lecun_bias"} for inits in per_point)
    summary = summarize(df, cfg).set_index("depth")
    assert summary.loc[2, "w_star"] == 4 and summary.loc[2, "best_init"] == "lecun_bias"
    assert summary.loc[1, "w_star"] == 6
