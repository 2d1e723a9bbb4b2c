"""The adaptive search: which members the current results ask for next.

The search is a pure function of the config and the rows trained so far, so a stopped sweep resumes by
asking it again. Round 0 is the grid (plan.grid_members). Each later round bisects, in every (n, depth)
cell, the gap between the largest failing width and w* (by the monotone definition in stats), until the
two are adjacent. A cell where nothing passes up to the bound stays censored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling import plan
from scaling.config import Config
from scaling.population import Member
from scaling.stats import crossfit_rates, monotone_min


def _refinement_width(cell: pd.DataFrame, threshold: float) -> int | None:
    """The next width to test in one (n, depth) cell, or None when the cell is settled or censored."""
    by_width = crossfit_rates(cell, ["width"])
    widths = by_width["width"].to_numpy()
    hi = monotone_min(widths, (by_width["rate"] >= threshold).to_numpy())
    if hi is None or not np.any(widths < hi):
        return None  # censored (nothing passes at the bound), or the smallest tested width passes
    lo = int(widths[widths < hi].max())  # the largest failing width below w*
    return (lo + int(hi)) // 2 if hi - lo > 1 else None


def wanted_members(cfg: Config, df: pd.DataFrame) -> list[Member]:
    """Every member the search wants, given the rows so far (a superset of what is already trained)."""
    wanted = plan.grid_members(cfg)
    if cfg.width_search != "adaptive" or df.empty:
        return wanted
    expected = len(cfg.lrs) * cfg.seeds
    for n in cfg.ns:
        for depth in cfg.depths:
            cell = df[(df["n"] == n) & (df["depth"] == depth)]
            counts = cell.groupby("width").size()
            # Only bisect on widths whose every (lr, seed) is in: never decide from a half-trained point.
            complete = cell[cell["width"].isin(counts[counts >= expected].index)]
            if complete.empty or len(counts) != len(complete["width"].unique()):
                continue
            width = _refinement_width(complete, cfg.success_threshold)
            if width is not None:
                wanted += plan.members_at(cfg, n, depth, width)
    return wanted
