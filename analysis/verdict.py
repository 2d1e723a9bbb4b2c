"""The machine-readable verdict on the lecture's claim (fits.json "verdict"; REPORT.md renders the same).

Per depth: the growth of w* ("exponential", "polynomial" or "undecided"), whether that call is robust, the
exponential base with its interval, and how many cells were censored or budget-limited. Then the claim's
second half, measured directly: total hidden units and parameters of the deep networks against the shallow
ones at equal n.
"""

from __future__ import annotations

import pandas as pd

from analysis.compare import FitComparison
from scaling.config import Config
from scaling.population import count_parameters

# A family is called robustly only when the data pick it both ways: by Akaike weight and across resamples.
ROBUST_WEIGHT = 0.8
ROBUST_WIN_RATE = 0.8
POLYNOMIAL = ("power", "linear", "logarithmic")


def judge(comp: FitComparison | None) -> dict:
    """growth, robust, the best family with its weight and bootstrap win rate, and the exponential base."""
    if comp is None:
        return {"growth": "undecided", "robust": False, "best": None, "weight": None, "bootstrap_win_rate": None,
                "exponential_base": None, "exponential_base_ci95": None}
    weight = float(comp.table.set_index("family").loc[comp.best, "weight"])
    win = (comp.win_rate or {}).get(comp.best)
    robust = weight >= ROBUST_WEIGHT and win is not None and win >= ROBUST_WIN_RATE
    growth = "undecided"
    if robust:
        growth = "exponential" if comp.best == "exponential" else "polynomial" if comp.best in POLYNOMIAL else growth
    exp = comp.fits.get("exponential")
    return {"growth": growth, "robust": bool(robust), "best": comp.best, "weight": weight, "bootstrap_win_rate": win,
            "exponential_base": None if exp is None else float(exp.params["b"]),
            "exponential_base_ci95": None if exp is None else [float(v) for v in exp.ci["b"]]}


def deep_vs_shallow(stars: pd.DataFrame) -> list[dict]:
    """Per n with an uncensored w* at its shallowest depth and at some deeper one: units (depth x w*) and
    parameters at every depth with an uncensored w*."""
    rows = []
    for n, cells in stars[stars["depth"] > 0].sort_values("depth").groupby("n"):
        if cells["censored"].iloc[0] or (~cells["censored"]).sum() < 2:
            continue
        ok = cells[~cells["censored"]]
        rows.append({"n": int(n),
                     "units": {int(d): int(d * w) for d, w in zip(ok["depth"], ok["w_star"])},
                     "parameters": {int(d): count_parameters(int(d), int(w), int(n))
                                    for d, w in zip(ok["depth"], ok["w_star"])}})
    return rows


def _group_cells(stars: pd.DataFrame, cfg: Config, group: str) -> pd.DataFrame:
    depth_of = {n: cfg.group_depth(group, n) for n in cfg.ns}
    return stars[stars["depth"] == stars["n"].map(depth_of)]


def verdict_object(cfg: Config, stars: pd.DataFrame, fits: dict[str, FitComparison],
                   skipped: dict[str, str]) -> dict:
    per_depth = {}
    for group in cfg.depth_groups:
        name = f"w_star/{group}"
        cells = _group_cells(stars, cfg, group)
        if (cells["depth"] == 0).all():
            continue  # depth 0 has no width
        limited = ~cells["budget_converged"].fillna(True).astype(bool) & ~cells["censored"].astype(bool)
        per_depth[group.split("=", 1)[1]] = {
            "curve": name, **judge(fits.get(name)), "cells": int(len(cells)),
            "censored_cells": int(cells["censored"].sum()), "budget_limited_cells": int(limited.sum()),
            "not_fitted": skipped.get(name)}
    comparison = deep_vs_shallow(stars)
    last = comparison[-1] if comparison else None
    if last is not None:
        shallow, deeper = min(last["units"]), [d for d in last["units"] if d != min(last["units"])]
        fewest = min(deeper, key=lambda d: last["units"][d])
    return {
        "depths": per_depth,
        "deep_vs_shallow": comparison,
        "at_largest_n": None if last is None else {
            "n": last["n"], "shallow_depth": shallow, "leanest_deeper_depth": fewest,
            "deep_uses_fewer_units": bool(last["units"][fewest] < last["units"][shallow]),
            "deep_uses_fewer_parameters": bool(min(last["parameters"][d] for d in deeper)
                                               < last["parameters"][shallow]),
        },
        "robustness_rule": f"Akaike weight >= {ROBUST_WEIGHT} and bootstrap win rate >= {ROBUST_WIN_RATE}",
    }
