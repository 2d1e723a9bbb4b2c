"""The curves that get fitted, drawn from a members frame, each with its bootstrap resampler.

A bootstrap replicate of w* or L* resamples whole seeds, jointly for every width and learning rate at one
(n, depth) or (n, width): a seed's runs share their initial weights across learning rates and widths, so
they are not independent draws. Then the statistic is recomputed from the resampled success rates.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.compare import Resampler
from scaling.config import Config
from scaling.stats import Z95, min_depth_rows, monotone_min


@dataclasses.dataclass
class Curve:
    name: str  # e.g. "w_star/depth=1"
    quantity: str  # w_star | units | L_star | steps
    group: str  # "depth=1" | "width=2"
    x: np.ndarray  # n
    y: np.ndarray  # the statistic; for censored points, the lower bound
    censored: np.ndarray
    resample: Resampler | None
    limited: np.ndarray | None = None  # budget-limited points: w* at half the budget differs (an upper bound)
    fitted: bool = True  # units = depth x w* is drawn, but not fitted again (its fit is w*'s, scaled)
    scale: np.ndarray | None = None  # per point, y = scale * w* (the depth, for units curves)
    sigma: np.ndarray | None = None  # per point, the standard error of log y (W50's interval): fit weights

    @property
    def excluded(self) -> np.ndarray:
        """Points known only as bounds: censored (lower bounds) or budget-limited (upper bounds). They enter
        the fits through a censored likelihood, and no bootstrap replicate."""
        return self.censored if self.limited is None else self.censored | self.limited


def _seed_cubes(df: pd.DataFrame, along: str) -> list[tuple[float, np.ndarray, list[np.ndarray]]]:
    """Per n: the tested values along `along`, and per seed half (even, odd seeds) solved as a
    (value x lr x seed) array (NaN where untrained)."""
    cubes = []
    for n, grp in df.groupby("n"):
        cube = grp.pivot_table(index=along, columns=["lr", "seed"], values="solved", aggfunc="mean")
        lrs, seeds = sorted(grp["lr"].unique()), np.array(sorted(grp["seed"].unique()))
        cube = cube.reindex(columns=pd.MultiIndex.from_product([lrs, seeds]))
        values = cube.index.to_numpy(float)
        solved_VxLxS = cube.to_numpy(float).reshape(len(values), len(lrs), len(seeds))
        halves = [solved_VxLxS[:, :, seeds % 2 == h] for h in (0, 1)]
        cubes.append((n, values, [h for h in halves if h.shape[2]]))
    return cubes


def _rates(drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    trained = np.sum(~np.isnan(drawn), axis=2)
    return np.nansum(drawn, axis=2), trained


def _crossfit(halves: list[np.ndarray]) -> np.ndarray:
    """Held-out success rate per value (stats.crossfit_rates on arrays): choose the learning rate on one
    half of the seeds, measure it on the other, both ways, pooled. One half alone: its in-sample best."""
    counts = [_rates(h) for h in halves]
    rate = [np.where(t > 0, k / np.maximum(t, 1), -1.0) for k, t in counts]
    if len(halves) == 1:
        return rate[0].max(axis=1)
    rows = np.arange(rate[0].shape[0])
    a, b = rate[0].argmax(axis=1), rate[1].argmax(axis=1)  # argmax: ties to the smaller learning rate
    solved = counts[1][0][rows, a] + counts[0][0][rows, b]
    trials = counts[1][1][rows, a] + counts[0][1][rows, b]
    return np.where(trials > 0, solved / np.maximum(trials, 1), -1.0)


def _star_resampler(df: pd.DataFrame, along: str, threshold: float, scale: dict | None = None) -> Resampler:
    """Resampler of the monotone minimum along `along` (width or depth) for every n; y scaled by scale[n].
    Seeds are drawn with replacement once per n, within each half, and used for every value and learning
    rate; the rate is cross-fitted like the point estimate's."""
    cubes = _seed_cubes(df, along)

    def resample(rng: np.random.Generator):
        xs, ys = [], []
        for n, values, halves in cubes:
            drawn = [h[:, :, rng.integers(0, h.shape[2], h.shape[2])] for h in halves]
            star = monotone_min(values, _crossfit(drawn) >= threshold)
            if star is not None:
                xs.append(n)
                ys.append(star * (scale or {}).get(n, 1))
        return np.array(xs, float), np.array(ys, float)

    return resample


def _cells(frame: pd.DataFrame, cells: list[tuple[int, int]]) -> pd.DataFrame:
    index = pd.MultiIndex.from_frame(frame[["n", "depth"]])
    return frame[index.isin(pd.MultiIndex.from_tuples(cells, names=["n", "depth"]))]


def width_curves(shaped: pd.DataFrame, stars: pd.DataFrame, cfg: Config) -> list[Curve]:
    """w*(n) per depth group (a fixed depth, or depth ceil(log2 n) + k), and total units depth * w*(n) (drawn,
    not fitted again), from the members and the summary's w* rows (stats.summarize: with budget_converged).
    Budget-limited cells (w* at half the budget differs) are marked: the fits take them as upper bounds."""
    threshold = cfg.success_threshold
    curves = []
    for group in cfg.depth_groups:
        cells = [(n, cfg.group_depth(group, n)) for n in cfg.ns]
        rows, members = _cells(stars, cells).sort_values("n"), _cells(shaped, cells)
        if rows.empty:
            continue
        y = np.where(rows["censored"], rows["bound"], rows["w_star"]).astype(float)
        limited = ~rows["budget_converged"].fillna(True).to_numpy(bool) & ~rows["censored"].to_numpy(bool)
        depth_of = dict(cells)
        for quantity, scale in (("w_star", None), ("units", depth_of)):
            factor = np.array([1.0 if scale is None else scale[n] for n in rows["n"]])
            curves.append(Curve(f"{quantity}/{group}", quantity, group, rows["n"].to_numpy(float), y * factor,
                                rows["censored"].to_numpy(bool), _star_resampler(members, "width", threshold, scale),
                                limited, fitted=quantity == "w_star", scale=factor))
    return curves


def depth_curves(base: pd.DataFrame, cfg: Config) -> list[Curve]:
    """L*(n) at each L* width (fixed, or proportional to n), at the base budget."""
    rows_all = min_depth_rows(base, cfg)
    curves = []
    for group, rows in (rows_all.groupby("group", sort=False) if not rows_all.empty else []):
        rows = rows.sort_values("n")
        width_of = dict(zip(rows["n"], rows["width"]))
        members = base[base["width"] == base["n"].map(width_of)]
        y = np.where(rows["censored"], rows["bound"], rows["L_star"]).astype(float)
        curves.append(Curve(f"L_star/{group}", "L_star", group, rows["n"].to_numpy(float), y,
                            rows["censored"].to_numpy(bool), _star_resampler(members, "depth", cfg.success_threshold)))
    return curves


def steps_frame(df: pd.DataFrame, depths) -> pd.DataFrame:
    """Median steps to solve per (n, depth) at the first tested width >= 2n (Tesauro & Janssens' N-2N-1, or the
    next width tested), at each cell's best learning rate. Steps are exact where training was full batch.

    The median is censored (only > budget is known) when fewer than half of the seeds solved.
    """
    rows = []
    for (n, depth), cell in df[df["depth"].isin(depths) & (df["depth"] > 0)].groupby(["n", "depth"]):
        widths = np.sort(cell["width"].unique())
        width = int(widths[widths >= 2 * n][0]) if np.any(widths >= 2 * n) else int(widths[-1])
        best = None
        for lr, runs in cell[cell["width"] == width].groupby("lr"):
            steps = np.where(runs["solved"], runs["step_solved"], np.inf)
            med = float(np.median(steps))
            if best is None or med < best[1]:
                best = (lr, med, steps)
        lr, med, steps = best
        rows.append({"n": n, "depth": depth, "width": width, "best_lr": lr, "median_steps": med,
                     "censored": not np.isfinite(med), "budget": int(cell["steps_budget"].max()),
                     "solved": int(np.isfinite(steps).sum()), "seeds": len(steps), "_steps": steps})
    return pd.DataFrame(rows)


def steps_curves(df: pd.DataFrame, depths) -> list[Curve]:
    frame = steps_frame(df, depths)
    curves = []
    for depth, rows in (frame.groupby("depth") if not frame.empty else []):
        rows = rows.sort_values("n")
        samples = list(zip(rows["n"], rows["_steps"]))

        def resample(rng, samples=samples):
            xs, ys = [], []
            for n, steps in samples:
                med = np.median(rng.choice(steps, size=len(steps), replace=True))
                if np.isfinite(med):
                    xs.append(n)
                    ys.append(med)
            return np.array(xs, float), np.array(ys, float)

        y = np.where(rows["censored"], rows["budget"], rows["median_steps"]).astype(float)
        curves.append(Curve(f"steps/depth={depth}", "steps", f"depth={depth}", rows["n"].to_numpy(float), y,
                            rows["censored"].to_numpy(bool), resample))
    return curves


def w50_curves(w50: pd.DataFrame) -> list[Curve]:
    """W50(n) per depth (analysis.w50). A W50 above the widths tested is a lower bound (censored at the
    largest width); one below them, an upper bound (limited); a cell whose success never rises is left out."""
    curves = []
    for depth, rows in w50[w50["beyond"] != "no rise"].groupby("depth"):
        rows = rows.sort_values("n")
        above = (rows["beyond"] == "above").to_numpy(bool)
        y = np.where(above, rows["bound"], rows["w50"]).astype(float)
        sigma = ((np.log(rows["w50_hi"]) - np.log(rows["w50_lo"])) / (2 * Z95)).to_numpy(float)
        sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, np.nanmax(sigma[np.isfinite(sigma)], initial=1.0))
        curves.append(Curve(f"w50/depth={depth}", "w50", f"depth={depth}", rows["n"].to_numpy(float), y, above,
                            None, (rows["beyond"] == "below").to_numpy(bool), sigma=sigma))
    return curves
