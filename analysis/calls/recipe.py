"""Does the W50 of a cell keep falling with the training recipe or the step budget, or does it stay?

Per (n, depth) cell, at its largest budget, from the stored rows alone (no training):
- W50 under each initialisation alone (its learning rates cross-fitted), and under the recipe searched over
  every (init, lr) pair (cross-fitted: chosen on one seed half, counted on the other);
- W50 of the searched recipe re-read at half the cell's budget from the stored solve steps.
W50 "falls" from one to the other where their 95 % seed-bootstrap intervals do not overlap (two separate
bootstraps: a conservative test), or where it was above the widths tested before and is measured after; "rises"
the other way, and otherwise "stays". A cell that the budget rule
reran at twice its budget up to search.max_steps is read at its largest budget, so "stays" with budget means it
stayed at the last doubling the config allowed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.calls.verdict import inflated
from analysis.measurement.intervals import interval95
from analysis.measurement.measure import measure_cell
from scaling.experiment.config import Config
from scaling.planning.stats import at_budget, latest_budget, width_cells


def _w50(cell: pd.DataFrame, threshold: float, reps: int, rng) -> tuple[float, float, float]:
    m = measure_cell(cell, threshold, reps, rng)
    lo, hi = interval95(inflated(m.w50, m.w50_reps))  # spread as the estimator check measured, as elsewhere
    widest = cell[cell["width"] == cell["width"].max()]
    failing = widest.groupby("lr")["solved"].mean().max() < threshold  # no rate reaches it at the widest width
    if m.beyond == "above" or (m.beyond == "no rise" and failing):  # W50 is above the widest: all that is known
        return (np.inf, float(m.bound), np.inf)
    return (m.w50, float(lo), float(hi)) if not m.beyond else (np.nan, np.nan, np.nan)


def _change(before: tuple, after: tuple) -> str:
    if np.isnan(before[0]) or np.isnan(after[0]) or (np.isinf(before[0]) and np.isinf(after[0])):
        return "not measured"
    return "falls" if after[2] < before[1] else "rises" if after[1] > before[2] else "stays"


def recipe_effects(df: pd.DataFrame, cfg: Config, reps: int = 200, seed: int = 0) -> pd.DataFrame:
    """One row per (n, depth): W50 [lo, hi] per init and for the searched recipe, at the largest budget and at
    half of it, and whether W50 falls with the recipe (against the first listed init) and with the budget."""
    rng = np.random.default_rng(seed)
    threshold = cfg.search.success_threshold
    first = str(cfg.model.inits[0])
    rows = []
    cells = latest_budget(width_cells(df[df["depth"] > 0], cfg))
    for (n, depth), cell in cells.groupby(["n", "depth"]):
        budget = int(cell["steps_budget"].max())
        row = {"n": int(n), "depth": int(depth), "budget": budget}
        for init in cfg.model.inits:
            own = cell[cell["init"] == str(init)]
            row[f"w50_{init}"] = _w50(own, threshold, reps, rng) if len(own) else (np.nan,) * 3
        row["w50_searched"] = _w50(cell, threshold, reps, rng)
        row["w50_half_budget"] = _w50(at_budget(cell, budget // 2), threshold, reps, rng)
        row["recipe"] = _change(row[f"w50_{first}"], row["w50_searched"]) if len(cfg.model.inits) > 1 else ""
        row["budget_change"] = _change(row["w50_half_budget"], row["w50_searched"])
        rows.append(row)
    return pd.DataFrame(rows)


def recipe_lines(effects: pd.DataFrame, cfg: Config) -> list[str]:
    """REPORT.md's section: one line per cell, with the intervals."""
    if effects.empty:
        return ["No cell has a measured W50."]
    fmt = lambda t: ("n/a" if np.isnan(t[0]) else f"above the widths tested (> {t[1]:.3g})" if np.isinf(t[0])
                     else f"{t[0]:.3g} [{t[1]:.3g}, {t[2]:.3g}]")
    first = str(cfg.model.inits[0])
    lines = []
    for r in effects.to_dict("records"):
        inits = ", ".join(f"{init} {fmt(r[f'w50_{init}'])}" for init in cfg.model.inits)
        text = f"- n = {r['n']}, depth {r['depth']} (budget {r['budget']} steps): W50 by init: {inits}; searched "
        text += f"recipe {fmt(r['w50_searched'])}"
        if r["recipe"]:
            text += f", so with the recipe W50 **{r['recipe']}** against {first} alone"
        text += (f"; at half the budget {fmt(r['w50_half_budget'])}, so with the budget it **{r['budget_change']}**"
                 ".")
        lines.append(text)
    return lines
