"""Per (n, depth) cell: W50 and w* with one seed bootstrap, from the cross-fitted success counts per width.

Both statistics read the same counts that stats.min_width reads: at each tested width, the learning rate is
chosen on one half of the seeds and its successes counted on the other, both ways (stats.crossfit_counts).
- W50: the width where a logistic fit of those counts against log2(width) (binomial likelihood, half a
  pseudo-success and half a pseudo-failure per width) crosses the threshold. It uses every tested width,
  so one noisy width only widens its interval. One pseudo-trial in all (half a success), spread over the
  widths, keeps the slope finite where success jumps from none to all; a pseudo-count per width would
  flatten the curve wherever the gallop tested many widths far below W50.
- w*: the smallest width whose rate reaches the threshold and stays there above (stats.monotone_min).
A bootstrap replicate redraws whole seeds with replacement within each half, once per cell and jointly for
every width and learning rate (a seed's runs share their initial weights), and recomputes both. The spread
of log W50 (or log w*) over the replicates is the point's measured noise, which the growth fits use.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from analysis.measurement.intervals import interval95
from scaling.planning.stats import crossfit_counts, recipes

_PSEUDO = 0.5
_NEWTON_STEPS = 50


@dataclasses.dataclass(frozen=True)
class LogisticFit:
    """Success against log2(width), per leading index: P = expit(intercept + slope * log2 width)."""

    intercept: np.ndarray
    slope: np.ndarray  # per doubling of width

    def crossing(self, threshold: float) -> np.ndarray:
        """The width where success = threshold; NaN where success does not rise with width."""
        with np.errstate(divide="ignore", invalid="ignore"):
            g = (logit(threshold) - self.intercept) / self.slope
        return np.where(self.slope > 0, np.exp2(np.clip(g, -60.0, 60.0)), np.nan)


def fit_logistic(log2_width, solved, trials) -> LogisticFit:
    """Maximum-likelihood logistic regression of solved/trials on log2 width, by Newton's method, for every
    leading index of solved and trials (... x widths)."""
    x = np.asarray(log2_width, float)
    pseudo = _PSEUDO / x.size  # one pseudo-trial in all, half solved: a finite slope where success jumps
    k = np.asarray(solved, float) + pseudo
    t = np.asarray(trials, float) + 2 * pseudo
    theta = np.zeros(k.shape[:-1] + (2,))
    for _ in range(_NEWTON_STEPS):
        p = expit(theta[..., :1] + theta[..., 1:] * x)
        resid, info_w = k - t * p, t * p * (1 - p)
        g0, g1 = resid.sum(-1), (resid * x).sum(-1)
        h00, h01, h11 = info_w.sum(-1) + 1e-12, (info_w * x).sum(-1), (info_w * x * x).sum(-1) + 1e-12
        det = h00 * h11 - h01 * h01
        step = np.stack([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det], axis=-1)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return LogisticFit(theta[..., 0], theta[..., 1])


@dataclasses.dataclass
class CellMeasure:
    n: int
    depth: int
    widths: np.ndarray  # tested, ascending
    w50: float  # NaN where success does not rise with width
    w50_reps: np.ndarray  # (R,) bootstrap replicates (NaN: no rise in that replicate)
    w_star: float  # NaN where censored
    w_star_reps: np.ndarray  # (R,) NaN where a replicate is censored
    slope: float  # the logistic slope per doubling of width (the point fit)

    @property
    def bound(self) -> int:
        return int(self.widths[-1])

    @property
    def beyond(self) -> str:
        """Where W50 lies: "" inside the tested widths, "above" or "below" them, or "no rise"."""
        if not np.isfinite(self.w50):
            return "no rise"
        return "above" if self.w50 > self.widths[-1] else "below" if self.w50 < self.widths[0] else ""

    def w50_log_sd(self) -> float:
        """The measured noise of log W50: half the 16-84 % range of its replicates (robust to a few replicates
        without a rise); inf where most replicates have none."""
        reps = self.w50_reps[np.isfinite(self.w50_reps)]
        if len(reps) < len(self.w50_reps) / 2:
            return float("inf")
        lo, hi = np.percentile(np.log(reps), [16, 84])
        return float((hi - lo) / 2)

    def w_star_log_sd(self) -> float:
        """The measured noise of log w*: the replicates' spread (a censored replicate counts as twice the bound)
        plus the rounding of a discrete width (uniform within one unit)."""
        reps = np.where(np.isfinite(self.w_star_reps), self.w_star_reps, 2.0 * self.bound)
        lo, hi = np.percentile(np.log(reps), [16, 84])
        rounding = np.log1p(1.0 / self.w_star) / np.sqrt(12) if np.isfinite(self.w_star) else 0.0
        return float(np.hypot((hi - lo) / 2, rounding))


def solved_cube(cell: pd.DataFrame, along: str = "width") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the values along `along` ascending, solved as a value x recipe x seed array with NaN where untrained,
    the seeds) of one cell's members; a recipe is an (init, lr) pair (stats.recipes)."""
    values, v_of = np.unique(cell[along].to_numpy(), return_inverse=True)
    _, lr_of = recipes(cell)
    seeds, s_of = np.unique(cell["seed"].to_numpy(), return_inverse=True)
    cube = np.full((len(values), lr_of.max() + 1, len(seeds)), np.nan)
    cube[v_of, lr_of, s_of] = cell["solved"].to_numpy(float)
    return values, cube, seeds


def crossfit_draws(halves: list[np.ndarray], draws: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted (solved, trials) per replicate and width (R x V) from each half's seed draws (R x S_h)."""
    solved, trials = [], []
    for cube, idx in zip(halves, draws):
        drawn = cube[:, :, idx]  # V x L x R x S_h
        solved.append(np.nansum(drawn, axis=-1))
        trials.append(np.sum(~np.isnan(drawn), axis=-1).astype(float))
    if len(halves) == 1:  # one seed: no cross-fitting, the in-sample counts
        solved.append(np.zeros_like(solved[0]))
        trials.append(np.zeros_like(trials[0]))
    to_rvlh = lambda parts: np.moveaxis(np.stack(parts, axis=-1), 2, 0)  # R x V x L x 2
    k, t, _ = crossfit_counts(to_rvlh(solved), to_rvlh(trials))
    return k, t


def _monotone_min(widths: np.ndarray, passed_RxV: np.ndarray) -> np.ndarray:
    """stats.monotone_min for every replicate (widths ascending): NaN where the widest fails."""
    last_fail = np.where(~passed_RxV, np.arange(len(widths)), -1).max(axis=1)
    return np.where(passed_RxV[:, -1], widths[np.minimum(last_fail + 1, len(widths) - 1)], np.nan)


def bootstrap_draws(seeds: np.ndarray, reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The seed bootstrap's draws of one cell: per half of the seeds (even, odd), `reps` x its size indices."""
    return [rng.integers(0, size, (reps, size)) for size in (np.sum(seeds % 2 == h) for h in (0, 1)) if size]


def measure_cube(n: int, depth: int, widths: np.ndarray, solved_VxLxS: np.ndarray, seeds: np.ndarray,
                 threshold: float, reps: int, rng: np.random.Generator) -> CellMeasure:
    """W50 and w* of one cell from its solved array (widths ascending x recipes x seeds; NaN where
    untrained), with `reps` joint seed-bootstrap replicates."""
    return measure_drawn(n, depth, widths, solved_VxLxS, seeds, threshold, bootstrap_draws(seeds, reps, rng))


def measure_drawn(n: int, depth: int, widths: np.ndarray, solved_VxLxS: np.ndarray, seeds: np.ndarray,
                  threshold: float, redrawn: list[np.ndarray]) -> CellMeasure:
    """measure_cube with its bootstrap's draws given (bootstrap_draws): no random stream, so it may run on
    another process than the one that drew them."""
    halves = [solved_VxLxS[:, :, seeds % 2 == h] for h in (0, 1) if np.any(seeds % 2 == h)]
    same = [np.arange(h.shape[2])[None] for h in halves]
    x = np.log2(widths.astype(float))
    k, t = crossfit_draws(halves, same)
    point = fit_logistic(x, k, t)
    k_r, t_r = crossfit_draws(halves, redrawn)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_star = _monotone_min(widths, k / t >= threshold)[0]
        w_star_reps = _monotone_min(widths, k_r / t_r >= threshold)
    return CellMeasure(n, depth, widths, float(point.crossing(threshold)[0]),
                       fit_logistic(x, k_r, t_r).crossing(threshold), float(w_star), w_star_reps, float(point.slope[0]))


def measure_cell(cell: pd.DataFrame, threshold: float, reps: int, rng: np.random.Generator) -> CellMeasure:
    """measure_cube of one (n, depth) cell's members at one budget."""
    widths, cube, seeds = solved_cube(cell)
    return measure_cube(int(cell["n"].iloc[0]), int(cell["depth"].iloc[0]), widths, cube, seeds, threshold, reps, rng)


def measure_cells(df: pd.DataFrame, threshold: float, reps: int = 200, seed: int = 0) -> dict[tuple, CellMeasure]:
    """(n, depth) -> CellMeasure for every cell with a hidden layer (members at one budget per cell)."""
    rng = np.random.default_rng(seed)
    return {(int(n), int(d)): measure_cell(cell, threshold, reps, rng)
            for (n, d), cell in df[df["depth"] > 0].groupby(["n", "depth"])}


def w50_frame(cells: dict[tuple, CellMeasure]) -> pd.DataFrame:
    """One row per cell: W50 with its seed-bootstrap 95 % interval, where it lies, and its log noise."""
    rows = []
    for m in cells.values():
        lo, hi = interval95(m.w50_reps)
        rows.append({"n": m.n, "depth": m.depth, "widths": len(m.widths), "bound": m.bound, "w50": m.w50,
                     "w50_lo": lo, "w50_hi": hi, "beyond": m.beyond, "w50_log_sd": m.w50_log_sd(),
                     "slope": m.slope})
    return pd.DataFrame(rows, columns=["n", "depth", "widths", "bound", "w50", "w50_lo", "w50_hi", "beyond",
                                       "w50_log_sd", "slope"])
