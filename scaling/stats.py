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


def crossfit_rates(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The success rate per cell `by` at its best learning rate, without the winner's curse.

    Seeds are split by parity. The learning rate is chosen on one half and its rate measured on the other,
    both ways, and the two held-out counts are pooled (cross-fitting): choosing and measuring on the same
    seeds would bias the rate up. Columns: by, lr (the best on all seeds, for reference), solved and seeds
    (held out), rate with Wilson bounds, in_sample_rate (the old, biased one) and pooled_rate (over every
    learning rate). A cell with one seed cannot be cross-fitted; it keeps its in-sample rate.
    """
    counted = df.assign(_half=(df["seed"] % 2).astype(int), _solved=df["solved"].astype(int))
    per_lr = (counted.groupby([*by, "lr", "_half"])["_solved"].agg(["sum", "size"])
              .unstack("_half", fill_value=0).reindex(columns=pd.MultiIndex.from_product([["sum", "size"], [0, 1]]),
                                                      fill_value=0))
    per_lr.columns = ["k0", "k1", "n0", "n1"]
    per_lr = per_lr.reset_index()
    per_lr["rate0"] = per_lr["k0"] / per_lr["n0"].where(per_lr["n0"] > 0)
    per_lr["rate1"] = per_lr["k1"] / per_lr["n1"].where(per_lr["n1"] > 0)
    per_lr["rate_all"] = (per_lr["k0"] + per_lr["k1"]) / (per_lr["n0"] + per_lr["n1"])

    def chosen_by(rate: str) -> pd.DataFrame:
        ordered = per_lr.sort_values([*by, rate, "lr"], ascending=[True] * len(by) + [False, True], na_position="last")
        return ordered.groupby(by, as_index=False).first()

    on0, on1, best = chosen_by("rate0"), chosen_by("rate1"), chosen_by("rate_all")
    totals = per_lr.groupby(by, as_index=False)[["k0", "k1", "n0", "n1"]].sum()
    out = best[[*by, "lr", "rate_all"]].rename(columns={"rate_all": "in_sample_rate"})
    crossfit = (on0["n1"] > 0) & (on1["n0"] > 0)
    out["solved"] = np.where(crossfit, on0["k1"] + on1["k0"], best["k0"] + best["k1"]).astype(int)
    out["seeds"] = np.where(crossfit, on0["n1"] + on1["n0"], best["n0"] + best["n1"]).astype(int)
    out["rate"] = out["solved"] / out["seeds"]
    out["rate_lo"], out["rate_hi"] = wilson(out["solved"], out["seeds"])
    out["pooled_rate"] = (totals["k0"] + totals["k1"]) / (totals["n0"] + totals["n1"])
    return out


def monotone_min(values: np.ndarray, passed: np.ndarray):
    """Smallest value whose test passes and stays passed for every larger tested value; None if censored."""
    order = np.argsort(values)
    values, passed = values[order], passed[order]
    if not passed[-1]:
        return None
    failing = np.flatnonzero(~passed)
    return values[failing[-1] + 1] if failing.size else values[0]


def _minimum(df: pd.DataFrame, cell: list[str], along: str, threshold: float, name: str) -> pd.DataFrame:
    best = crossfit_rates(df, [*cell, along] if along not in cell else cell)
    rows = []
    for key, grp in best.groupby(cell):
        key = key if isinstance(key, tuple) else (key,)
        values, solved, seeds = grp[along].to_numpy(), grp["solved"].to_numpy(), grp["seeds"].to_numpy()
        star = monotone_min(values, solved / seeds >= threshold)
        # The same rule with one more, and one fewer, held-out seed solved at every tested value: where the
        # two differ from star, one seed decides the cell (and float rounding alone can move it).
        one_more, one_fewer = (monotone_min(values, (solved + d) / seeds >= threshold) for d in (1, -1))
        row = dict(zip(cell, key))
        at = grp[grp[along] == (star if star is not None else values.max())].iloc[0]
        row.update({
            name: float(star) if star is not None else np.nan,
            "censored": star is None,
            "bound": int(values.max()),
            "tested": len(values),
            "rate": float(at["rate"]), "rate_lo": float(at["rate_lo"]), "rate_hi": float(at["rate_hi"]),
            "in_sample_rate": float(at["in_sample_rate"]), "pooled_rate": float(at["pooled_rate"]),
            "best_lr": float(at["lr"]), "seeds": int(at["seeds"]),
            "one_seed_lo": float(one_more) if one_more is not None else np.nan,
            "one_seed_hi": float(one_fewer) if one_fewer is not None else np.nan,
        })
        rows.append(row)
    columns = [*cell, name, "censored", "bound", "tested", "rate", "rate_lo", "rate_hi", "in_sample_rate",
               "pooled_rate", "best_lr", "seeds", "one_seed_lo", "one_seed_hi"]
    return pd.DataFrame(rows, columns=columns)


def min_width(df: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """w*(n, depth): smallest width whose best-lr success rate reaches the threshold and stays there above.

    A censored cell (nothing passes up to `bound`, the largest tested width) has w_star = NaN, never a guess.
    The rate columns describe w* itself (or the bound when censored); units = depth * w*. one_seed_lo and
    one_seed_hi are w* had every tested width solved one more, or one fewer, held-out seed (NaN: censored).
    """
    out = _minimum(df, ["n", "depth"], "width", threshold, "w_star")
    out.insert(3, "units", out["depth"] * out["w_star"])
    return out


def min_depth(df: pd.DataFrame, width: int, threshold: float = 0.5) -> pd.DataFrame:
    """L*(n, width): smallest depth that reaches the threshold (and stays) at a fixed width."""
    out = _minimum(df[df["width"] == width], ["n", "width"], "depth", threshold, "L_star")
    return out


# w* is re-read at these fractions of each cell's step budget; a cell is budget-converged when w* at half
# the budget equals w* at the whole budget (a budget-limited w* only bounds what more training would need).
BUDGET_FRACTIONS = (0.125, 0.25, 0.5, 1.0)


def latest_budget(df: pd.DataFrame) -> pd.DataFrame:
    """The members of each (n, depth) cell at its largest step budget: what w* is read from once the budget
    rule has rerun a budget-limited cell (the rows at smaller budgets stay in the store)."""
    if df.empty:
        return df
    largest = df.groupby(["n", "depth"])["steps_budget"].transform("max")
    return df[df["steps_budget"] == largest]


def at_budget(df: pd.DataFrame, steps: int) -> pd.DataFrame:
    """The members frame as if every budget had been `steps`: solved only where step_solved <= steps."""
    solved_by = df["step_solved"].astype(float).fillna(np.inf) <= steps
    return df.assign(solved=df["solved"].astype(bool) & solved_by)


def min_width_by_budget(df: pd.DataFrame, threshold: float = 0.5, fractions=BUDGET_FRACTIONS) -> pd.DataFrame:
    """w*(n, depth) at fractions of each cell's budget, from the stored solve steps (no training): one row
    per (n, depth, fraction) with the budget in steps, w_star (NaN when censored), censored and bound."""
    parts = []
    for (n, depth), cell in df.groupby(["n", "depth"]):
        budget = int(cell["steps_budget"].max())
        cell = cell[cell["steps_budget"] == budget]
        for fraction in fractions:
            steps = int(round(budget * fraction))
            star = min_width(at_budget(cell, steps), threshold)
            parts.append(star[["n", "depth", "w_star", "censored", "bound"]].assign(fraction=fraction, budget=steps))
    columns = ["n", "depth", "fraction", "budget", "w_star", "censored", "bound"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def budget_convergence(by_budget: pd.DataFrame) -> pd.DataFrame:
    """Per (n, depth): w* at half the budget and whether it equals w* at the whole budget."""
    half = by_budget[by_budget["fraction"] == 0.5].set_index(["n", "depth"])
    whole = by_budget[by_budget["fraction"] == 1.0].set_index(["n", "depth"])
    same = (half["censored"] & whole["censored"]) | (~half["censored"] & ~whole["censored"]
                                                      & (half["w_star"] == whole["w_star"]))
    return pd.DataFrame({"w_star_half_budget": half["w_star"], "budget_converged": same.astype(bool)}).reset_index()


def width_cells(df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The members of the (n, depth) cells whose w* the config searches (fixed depths and the log2 schedule)."""
    if df.empty:
        return df
    wanted = pd.MultiIndex.from_tuples([(n, d) for n in cfg.ns for d in cfg.depths_at(n)], names=["n", "depth"])
    return df[pd.MultiIndex.from_frame(df[["n", "depth"]]).isin(wanted)]


def min_depth_rows(df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """L*(n, width) for every L* width of the config (width k * n when min_depth_widths = {times_n = k}), at
    the base budget so that depths are compared at one budget; column `group` names the curve."""
    base = df[df["steps_budget"] == cfg.steps] if not df.empty else df
    if cfg.min_depth_times_n:
        k = cfg.min_depth_times_n
        parts = [min_depth(base[base["n"] == n], k * n, cfg.success_threshold).assign(group=f"width={k}n")
                 for n in cfg.ns]
    else:
        parts = [min_depth(base, w, cfg.success_threshold).assign(group=f"width={w}") for w in cfg.min_depth_widths]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _lr_at_edge(df: pd.DataFrame, stars: pd.DataFrame) -> list[bool]:
    """Per w* row: is its best learning rate the smallest or largest tested at that width (after any edge
    extensions)? Then a rate beyond the grid might have done better there."""
    edges = []
    for row in stars.itertuples():
        width = row.bound if row.censored else row.w_star
        tested = sorted(df.loc[(df["n"] == row.n) & (df["depth"] == row.depth) & (df["width"] == width), "lr"].unique())
        edges.append(len(tested) > 1 and row.best_lr in (tested[0], tested[-1]))
    return edges


def summarize(df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """One row per (n, depth) with w* (at each cell's largest budget), and one per (n, width) with L*: the
    sweep's summary.csv."""
    parts = []
    if not df.empty:
        shaped = latest_budget(width_cells(df, cfg))
        width_rows = min_width(shaped, cfg.success_threshold)
        converged = budget_convergence(min_width_by_budget(shaped, cfg.success_threshold))
        width_rows = width_rows.merge(converged, on=["n", "depth"], how="left")
        width_rows["lr_at_edge"] = _lr_at_edge(shaped, width_rows)
        width_rows.insert(0, "kind", "min_width")
        parts.append(width_rows)
        depth_rows = min_depth_rows(df, cfg)
        if not depth_rows.empty:
            depth_rows.insert(0, "kind", "min_depth")
            parts.append(depth_rows)
    if not parts:
        return pd.DataFrame()
    summary = pd.concat(parts, ignore_index=True)
    for col in ("depth", "width"):  # a column that only one kind fills is Int64 (blank where n/a), not float
        if col in summary:
            summary[col] = summary[col].astype("Int64")
    return summary
