"""Experiment files shared by the tests (tests/ is on the import path: `from configs import TINY`)."""

TINY = """
[experiment]
name = "tiny"
description = "A seconds-long sweep for the tests."
[task]
n = [2, 4]
[model]
depths = {fixed = [1, 2], log2 = [1]}
widths = {max = 8}
[train]
lrs = [3e-2]
steps = 400
eval_every = 100
[search]
seeds = 3
min_depth_widths = [2, 4]
"""

# One depth and two n, six seeds: success grows with width (the search and compile-cache tests).
MONOTONE = (TINY.replace("n = [2, 4]", "n = [2, 3]").replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1]")
            .replace("seeds = 3", "seeds = 6").replace("steps = 400", "steps = 300")
            .replace("min_depth_widths = [2, 4]", "min_depth_widths = []"))
