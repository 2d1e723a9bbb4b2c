"""The curves that get fitted, drawn from a members frame, each with its bootstrap resampler.

A bootstrap replicate resamples the seeds within every (n, depth, width, lr) cell and recomputes the
statistic. For a 0/1 outcome, resampling k seeds with replacement is the same as drawing the solved count
from Binomial(k, solved / k), which is what the resamplers do (fast, and exact).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.compare import Resampler
from scaling.stats import min_depth, min_width, monotone_min, success_rates


@dataclasses.dataclass
class Curve:
    name: str  # e.g. "w_star/depth=1"
    quantity: str  # w_star | units | L_star | steps
    group: str  # "depth=1" | "width=2"
    x: np.ndarray  # n
    y: np.ndarray  # the statistic; for censored points, the lower bound
    censored: np.ndarray
    resample: Resampler | None


def _star_resampler(rates: pd.DataFrame, along: str, threshold: float, scale: float) -> Resampler:
    """Resampler of the monotone minimum along `along` (width or depth) for every n; y scaled by `scale`."""
    tables = []
    for n, grp in rates.groupby("n"):
        pivot_s = grp.pivot_table(index=along, columns="lr", values="seeds", aggfunc="sum")
        pivot_k = grp.pivot_table(index=along, columns="lr", values="solved", aggfunc="sum")
        tables.append((n, pivot_s.index.to_numpy(float), pivot_s.to_numpy(float), pivot_k.to_numpy(float)))

    def resample(rng: np.random.Generator):
        xs, ys = [], []
        for n, values, seeds, solved in tables:
            ok = np.isfinite(seeds)
            draw = np.full(seeds.shape, np.nan)
            draw[ok] = rng.binomial(seeds[ok].astype(int), solved[ok] / seeds[ok]) / seeds[ok]
            star = monotone_min(values, np.nanmax(draw, axis=1) >= threshold)
            if star is not None:
                xs.append(n)
                ys.append(star * scale)
        return np.array(xs, float), np.array(ys, float)

    return resample


def width_curves(df: pd.DataFrame, depths, threshold: float) -> list[Curve]:
    """w*(n) and total units depth * w*(n), one curve each per depth."""
    stars = min_width(df[df["depth"].isin(depths)], threshold)
    curves = []
    for depth, rows in stars.groupby("depth"):
        rows = rows.sort_values("n")
        rates = success_rates(df[df["depth"] == depth])
        y = np.where(rows["censored"], rows["bound"], rows["w_star"]).astype(float)
        for quantity, scale in (("w_star", 1), ("units", depth)):
            curves.append(Curve(f"{quantity}/depth={depth}", quantity, f"depth={depth}", rows["n"].to_numpy(float),
                                y * scale, rows["censored"].to_numpy(bool),
                                _star_resampler(rates, "width", threshold, scale)))
    return curves


def depth_curves(df: pd.DataFrame, widths, threshold: float) -> list[Curve]:
    """L*(n) at each fixed width."""
    curves = []
    for width in widths:
        rows = min_depth(df, width, threshold).sort_values("n")
        if rows.empty:
            continue
        rates = success_rates(df[df["width"] == width])
        y = np.where(rows["censored"], rows["bound"], rows["L_star"]).astype(float)
        curves.append(Curve(f"L_star/width={width}", "L_star", f"width={width}", rows["n"].to_numpy(float), y,
                            rows["censored"].to_numpy(bool), _star_resampler(rates, "depth", threshold, 1)))
    return curves


def steps_frame(df: pd.DataFrame, width_at: dict[int, int], depths) -> pd.DataFrame:
    """Median steps to solve per (n, depth) at the width width_at[n] and each cell's best learning rate.

    The median is censored (only > budget is known) when fewer than half of the seeds solved.
    """
    at = df[(df["width"] == df["n"].map(width_at)) & df["depth"].isin(depths)]
    rows = []
    for (n, depth), cell in at.groupby(["n", "depth"]):
        best = None
        for lr, runs in cell.groupby("lr"):
            steps = np.where(runs["solved"], runs["step_solved"], np.inf)
            med = float(np.median(steps))
            if best is None or med < best[1]:
                best = (lr, med, steps)
        lr, med, steps = best
        rows.append({"n": n, "depth": depth, "width": width_at[n], "best_lr": lr, "median_steps": med,
                     "censored": not np.isfinite(med), "budget": int(cell["steps_budget"].max()),
                     "solved": int(np.isfinite(steps).sum()), "seeds": len(steps), "_steps": steps})
    return pd.DataFrame(rows)


def steps_curves(df: pd.DataFrame, width_at: dict[int, int], depths) -> list[Curve]:
    frame = steps_frame(df, width_at, depths)
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
