"""Does W50 fall with the recipe or the budget (analysis.calls.recipe), on stores whose answer is known."""

import numpy as np
import pandas as pd
from configs import TINY

from analysis.calls.recipe import recipe_effects, recipe_lines
from scaling.experiment import config

CFG = config.parse(TINY.replace("n = [2, 4]", "n = 5").replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [2]")
                   .replace("[model]", '[model]\ninit = ["he", "lecun_bias"]').replace("seeds = 3", "seeds = 24")
                   .replace("min_depth_widths = [2, 4]", "min_depth_widths = []\nmax_steps = 800"))


def _store(w50_of_init: dict, late_from: int | None) -> pd.DataFrame:
    """Members of one cell (n = 5, depth 2) at budget 800: a member solves with probability logistic in width
    around its init's W50; with `late_from`, members narrower than that solve only after step 400."""
    rng, rows = np.random.default_rng(0), []
    for init, w50 in w50_of_init.items():
        for width in (2, 3, 4, 6, 8, 12, 16, 24, 32):
            for lr in CFG.train.lrs:
                for seed in range(CFG.search.seeds):
                    solved = rng.random() < 1 / (1 + np.exp(-(width - w50) / (0.2 * w50)))
                    step = (600 if late_from and width < late_from else 200) if solved else np.nan
                    rows.append({"n": 5, "depth": 2, "width": width, "init": init, "lr": lr, "seed": seed,
                                 "steps_budget": 800, "solved": solved, "step_solved": step})
    return pd.DataFrame(rows)


def test_w50_falls_with_the_recipe_and_with_the_budget_where_it_does_and_stays_where_it_does_not():
    effects = recipe_effects(_store({"he": 12.0, "lecun_bias": 5.0}, late_from=10), CFG, reps=100)
    row = effects.iloc[0]
    assert (row["recipe"], row["budget_change"]) == ("falls", "falls")
    assert row["w50_searched"][0] < row["w50_he"][0] and row["w50_half_budget"][0] > row["w50_searched"][0]
    steady = recipe_effects(_store({"he": 6.0, "lecun_bias": 6.0}, late_from=None), CFG, reps=100).iloc[0]
    assert (steady["recipe"], steady["budget_change"]) == ("stays", "stays")
    line = recipe_lines(effects, CFG)[0]
    assert "**falls** against he alone" in line and "with the budget it **falls**" in line


def test_a_recipe_that_brings_w50_within_the_widths_tested_lowers_it():
    effects = recipe_effects(_store({"he": 200.0, "lecun_bias": 6.0}, late_from=None), CFG, reps=100)
    row = effects.iloc[0]
    assert np.isinf(row["w50_he"][0]) and row["recipe"] == "falls"
    assert "he above the widths tested (> 32)" in recipe_lines(effects, CFG)[0]
