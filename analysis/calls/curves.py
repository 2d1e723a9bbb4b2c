"""The curves beside the verdict's (analysis.calls.verdict: W50 and w*): L* over n and steps to solve, each with its
bootstrap resampler, fitted by analysis.calls.compare.

A bootstrap replicate of L* resamples whole seeds, jointly for every width and learning rate at one
(n, width): a seed's runs share their initial weights across learning rates and widths, so
they are not independent draws. Then the statistic is recomputed from the resampled success rates.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.calls.compare import Resampler
from analysis.measurement.measure import crossfit_draws, solved_cube
from scaling.experiment.config import Config
from scaling.planning.stats import min_depth_rows, monotone_min


@dataclasses.dataclass
class Curve:
    name: str  # e.g. "L_star/width=2"
    quantity: str  # L_star | steps
    group: str  # "width=2" | "depth=1"
    x: np.ndarray  # n
    y: np.ndarray  # the statistic; for censored points, the lower bound
    censored: np.ndarray  # lower bounds: they enter the fits through a censored likelihood
    resample: Resampler | None


def _seed_cubes(df: pd.DataFrame, along: str) -> list[tuple[float, np.ndarray, list[np.ndarray]]]:
    """Per n: the tested values along `along`, and per seed half (even, odd seeds) solved as a
    (value x lr x seed) array (NaN where untrained)."""
    cubes = []
    for n, grp in df.groupby("n"):
        values, solved_VxLxS, seeds = solved_cube(grp, along)
        halves = [solved_VxLxS[:, :, seeds % 2 == h] for h in (0, 1)]
        cubes.append((n, values.astype(float), [h for h in halves if h.shape[2]]))
    return cubes


def _star_resampler(df: pd.DataFrame, along: str, threshold: float) -> Resampler:
    """Resampler of the monotone minimum along `along` (width or depth) for every n.
    Seeds are drawn with replacement once per n, within each half, and used for every value and learning
    rate; the rate is cross-fitted like the point estimate's."""
    cubes = _seed_cubes(df, along)

    def resample(rng: np.random.Generator):
        xs, ys = [], []
        for n, values, halves in cubes:
            solved, trials = crossfit_draws(halves, [rng.integers(0, h.shape[2], (1, h.shape[2])) for h in halves])
            rate = np.where(trials[0] > 0, solved[0] / np.maximum(trials[0], 1), -1.0)
            star = monotone_min(values, rate >= threshold)
            if star is not None:
                xs.append(n)
                ys.append(star)
        return np.array(xs, float), np.array(ys, float)

    return resample


def depth_curves(base: pd.DataFrame, cfg: Config) -> list[Curve]:
    """L*(n) at each L* width (fixed, or proportional to n), at the base budget."""
    rows_all = min_depth_rows(base, cfg)
    curves = []
    for group, rows in (rows_all.groupby("group", sort=False) if not rows_all.empty else []):
        rows = rows.sort_values("n")
        width_of = dict(zip(rows["n"], rows["width"]))
        members = base[base["width"] == base["n"].map(width_of)]
        y = np.where(rows["censored"], rows["bound"], rows["L_star"]).astype(float)
        resample = _star_resampler(members, "depth", cfg.search.success_threshold)
        curves.append(Curve(f"L_star/{group}", "L_star", group, rows["n"].to_numpy(float), y,
                            rows["censored"].to_numpy(bool), resample))
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
        for (_, lr), runs in cell[cell["width"] == width].groupby(["init", "lr"]):
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
