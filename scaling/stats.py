"""Success rates, Wilson intervals, w* and L*: the one definition that the sweep summary and analysis share.

Input frames are the members table in long format (one row per trained member).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from scaling.config import Config

Z95 = 1.959963984540054


def wilson(solved, trials, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (lo, hi) for solved/trials, vectorised."""
    k, n = np.asarray(solved, float), np.asarray(trials, float)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def success_rates(df: pd.DataFrame) -> pd.DataFrame:
    """p(n, depth, width, lr) = solved seeds / seeds, with Wilson 95 % bounds."""
    g = df.groupby(["n", "depth", "width", "lr"], as_index=False).agg(
        seeds=("solved", "size"), solved=("solved", "sum"))
    g["solved"] = g["solved"].astype(int)
    g["rate"] = g["solved"] / g["seeds"]
    g["rate_lo"], g["rate_hi"] = wilson(g["solved"], g["seeds"])
    return g


def best_lr(rates: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The best learning rate per cell: highest rate, ties to the smaller learning rate."""
    ordered = rates.sort_values([*by, "rate", "lr"], ascending=[True] * len(by) + [False, True])
    return ordered.groupby(by, as_index=False).first()


def monotone_min(values: np.ndarray, passed: np.ndarray):
    """Smallest value whose test passes and stays passed for every larger tested value; None if censored."""
    order = np.argsort(values)
    values, passed = values[order], passed[order]
    if not passed[-1]:
        return None
    failing = np.flatnonzero(~passed)
    return values[failing[-1] + 1] if failing.size else values[0]


def _minimum(df: pd.DataFrame, cell: list[str], along: str, threshold: float, name: str) -> pd.DataFrame:
    best = best_lr(success_rates(df), [*cell, along] if along not in cell else cell)
    rows = []
    for key, grp in best.groupby(cell):
        key = key if isinstance(key, tuple) else (key,)
        values, passed = grp[along].to_numpy(), (grp["rate"] >= threshold).to_numpy()
        star = monotone_min(values, passed)
        row = dict(zip(cell, key))
        at = grp[grp[along] == (star if star is not None else values.max())].iloc[0]
        row.update({
            name: float(star) if star is not None else np.nan,
            "censored": star is None,
            "bound": int(values.max()),
            "tested": len(values),
            "rate": float(at["rate"]), "rate_lo": float(at["rate_lo"]), "rate_hi": float(at["rate_hi"]),
            "best_lr": float(at["lr"]), "seeds": int(at["seeds"]),
        })
        rows.append(row)
    columns = [*cell, name, "censored", "bound", "tested", "rate", "rate_lo", "rate_hi", "best_lr", "seeds"]
    return pd.DataFrame(rows, columns=columns)


def min_width(df: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """w*(n, depth): smallest width whose best-lr success rate reaches the threshold and stays there above.

    A censored cell (nothing passes up to `bound`, the largest tested width) has w_star = NaN, never a guess.
    The rate columns describe w* itself (or the bound when censored); units = depth * w*.
    """
    out = _minimum(df, ["n", "depth"], "width", threshold, "w_star")
    out.insert(3, "units", out["depth"] * out["w_star"])
    return out


def min_depth(df: pd.DataFrame, width: int, threshold: float = 0.5) -> pd.DataFrame:
    """L*(n, width): smallest depth that reaches the threshold (and stays) at a fixed width."""
    out = _minimum(df[df["width"] == width], ["n", "width"], "depth", threshold, "L_star")
    return out


def summarize(df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """One row per (n, depth) with w*, and one per (n, width) with L*: the sweep's summary.csv."""
    parts = []
    if not df.empty:
        width_rows = min_width(df[df["depth"].isin(cfg.depths)], cfg.success_threshold)
        width_rows.insert(0, "kind", "min_width")
        parts.append(width_rows)
        for w in cfg.min_depth_widths:
            depth_rows = min_depth(df, w, cfg.success_threshold)
            depth_rows.insert(0, "kind", "min_depth")
            parts.append(depth_rows)
    if not parts:
        return pd.DataFrame()
    summary = pd.concat(parts, ignore_index=True)
    for col in ("depth", "width"):  # a column that only one kind fills is Int64 (blank where n/a), not float
        if col in summary:
            summary[col] = summary[col].astype("Int64")
    return summary
