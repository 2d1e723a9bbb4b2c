"""Synthetic stores: what a sweep of a design would leave if a known truth W50(n) decided each member's outcome.

A member of width w solves with probability expit((w - T') / (scale * T')), where T' is the truth's W50 at n
times a learning-rate factor (the middle rate of the grid is the best; the others need RATE_FACTOR times the
width), and scale = 0.2, the slope of the real stores' success curves. The widths are the project's own search's
(scaling.planning.search.settle: round by round, as a sweep would ask for them). The calibration and the power
analysis draw their stores here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.special import expit

from scaling.experiment import config
from scaling.experiment.config import Config
from scaling.experiment.schema import WidthSearch
from scaling.planning import search

SCALE = 0.2
RATE_FACTOR = 1.3
GEOMETRIC = tuple(int(round(2 ** (k / 2))) for k in range(2, 41))  # 2, 3, 4, 6, 8, 11, 16, 23, ...: x sqrt(2)
LRS = (3e-3, 1e-2, 3e-2)


@dataclasses.dataclass(frozen=True)
class Design:
    n_max: int
    seeds: int
    n_min: int = 2

    @property
    def label(self) -> str:
        return f"n={self.n_min}..{self.n_max}, {self.seeds} seeds"


def synthetic_config(design: Design, max_width: int, lrs=LRS, deep: bool = False, profile: str = "constant",
                     grid: str = "adaptive") -> Config:
    """Depth 1 (and with `deep`, depth ceil(log2 n) as well), the default's width search from 2 up to max_width
    (a simulation: no memory check), no L* search. grid = "geometric": instead, every width of GEOMETRIC up to
    max_width at every n, as users also run."""
    depths = '{fixed = [1], log2 = [0]}' if deep else "[1]"
    cfg = config.parse(f"""
[experiment]
name = "calibration"
[task]
n = [{design.n_min}, {design.n_max}]
[model]
depths = {depths}
profile = "{profile}"
widths = {{min = 2, max = 4, search = "adaptive"}}
[train]
lrs = {list(lrs)}
[search]
seeds = {design.seeds}
min_depth_widths = []
""", "<calibration>")
    if grid == "geometric":
        return cfg.replace(widths=tuple(w for w in GEOMETRIC if w <= max_width), width_search=WidthSearch.GRID)
    return cfg.replace(widths=tuple(2**k for k in range(1, int(np.log2(max(max_width, 4))) + 1)))


def solve_probability(w50, width, lr_factor, scale: float = SCALE) -> np.ndarray:
    """P(solved) of a member: logistic in width around its W50 x lr_factor, with scale `scale` x that."""
    centre = np.asarray(w50, float) * lr_factor
    return expit((np.asarray(width, float) - centre) / (scale * centre))


def draw_store(cfg: Config, truth: Callable, rng: np.random.Generator, scale_lr: dict | None = None,
               deep_truth: Callable | None = None) -> pd.DataFrame:
    """A members table as a sweep of cfg would leave it, with outcomes drawn from the truth (the W50 at depth 1;
    deep_truth, the first-layer W50 at every other depth, where given)."""
    lrs = sorted(cfg.train.lrs)
    factor = scale_lr or {lr: (1.0 if i == len(lrs) // 2 else RATE_FACTOR) for i, lr in enumerate(lrs)}

    def draw(todo: list) -> pd.DataFrame:
        n = np.array([m.n for m in todo], float)
        w50 = np.where(np.array([m.depth for m in todo]) == 1, truth(n), (deep_truth or truth)(n))
        p = solve_probability(w50, [m.width for m in todo], [factor.get(m.lr, RATE_FACTOR**2) for m in todo])
        solved = rng.random(len(todo)) < p
        rows = pd.DataFrame({"n": [m.n for m in todo], "depth": [m.depth for m in todo],
                             "width": [m.width for m in todo], "init": [m.init for m in todo],
                             "lr": [m.lr for m in todo],
                             "seed": [m.seed for m in todo], "steps_budget": [m.steps for m in todo],
                             "profile": [m.profile for m in todo],
                             "solved": solved, "step_solved": np.where(solved, 1.0, np.nan)})
        return rows

    return search.settle(cfg, draw)


def max_width_for(truth: Callable, design: Design) -> int:
    """A power of two past twice the truth's largest width, so that no cell is censored by the grid."""
    return int(2 ** np.ceil(np.log2(max(4.0, 2.5 * RATE_FACTOR * float(truth(np.float64(design.n_max)))))))


def tested_widths(design: Design, truth) -> dict[int, np.ndarray]:
    """n -> the widths the search tests when a member solves iff its width reaches the truth (no noise; the
    seeds do not matter then, so two are replayed)."""
    grid_top = int(2 ** np.ceil(np.log2(max(8.0, 2.5 * float(truth(design.n_max))))))
    cfg = synthetic_config(dataclasses.replace(design, seeds=2), grid_top, lrs=(1e-2,))
    df = search.settle(cfg, lambda todo: search.assumed_rows(todo, lambda m: m.width >= truth(m.n)))
    return {int(n): np.sort(cell["width"].unique()) for n, cell in df.groupby("n")}
