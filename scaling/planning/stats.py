"""Success rates, Wilson intervals, w* and L*: the one definition that the sweep summary and analysis share.

Input frames are the members table in long format (one row per trained member).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.engine.population import hidden_units

if TYPE_CHECKING:
    from scaling.experiment.config import Config

Z95 = 1.959963984540054


def wilson(solved, trials, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (lo, hi) for solved/trials, vectorised."""
    k, n = np.asarray(solved, float), np.asarray(trials, float)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def recipes(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The training recipes of a members frame, (init, lr) pairs, ordered by learning rate and then by the
    init's name (so that a tie goes to the smaller rate, then to the init first in alphabetical order), and each
    row's recipe index. A frame without an init column has one init."""
    keys = pd.DataFrame({"lr": df["lr"].to_numpy(float),
                         "init": df["init"].astype(str).to_numpy() if "init" in df else np.full(len(df), "")})
    table = keys.drop_duplicates().sort_values(["lr", "init"], ignore_index=True)
    index = pd.MultiIndex.from_frame(table)
    return table, index.get_indexer(pd.MultiIndex.from_frame(keys))


def success_rates(df: pd.DataFrame) -> pd.DataFrame:
    """p(n, depth, width, init, lr) = solved seeds / seeds, with Wilson 95 % bounds."""
    g = df.groupby(["n", "depth", "width", *(["init"] if "init" in df else []), "lr"], as_index=False).agg(
        seeds=("solved", "size"), solved=("solved", "sum"))
    g["solved"] = g["solved"].astype(int)
    g["rate"] = g["solved"] / g["seeds"]
    g["rate_lo"], g["rate_hi"] = wilson(g["solved"], g["seeds"])
    return g


def crossfit_counts(solved_LxH: np.ndarray, trials_LxH: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-fitted (held-out) solved and trial counts, over arrays of any leading shape `...`.

    The last two axes are the recipe (init and learning rate, stats.recipes' order) and seed half (even, odd
    seeds). The recipe is chosen on one half, its success counted on the other, both ways, and the two held-out
    counts pooled: choosing and measuring on the same seeds would bias the rate up. Ties go to the smaller
    learning rate.
    Where a cell cannot be cross-fitted (a half without trials), its counts are the in-sample best's.
    Returns (solved, trials, best) with shape `...`; best indexes the in-sample best recipe.
    """
    def choose(k, t):  # -> index of the best rate; untried rates last, rates tried elsewhere in the cell first
        tried = trials_LxH.sum(axis=-1) > 0
        score = np.where(t > 0, k / np.maximum(t, 1), np.where(tried, -1.0, -2.0))
        return np.argmax(score, axis=-1)[..., None]

    pick = lambda a, i: np.take_along_axis(a, i, axis=-1)[..., 0]
    k0, k1, t0, t1 = solved_LxH[..., 0], solved_LxH[..., 1], trials_LxH[..., 0], trials_LxH[..., 1]
    on0, on1, best = choose(k0, t0), choose(k1, t1), choose(k0 + k1, t0 + t1)
    crossfit = (pick(t1, on0) > 0) & (pick(t0, on1) > 0)
    solved = np.where(crossfit, pick(k1, on0) + pick(k0, on1), pick(k0 + k1, best))
    trials = np.where(crossfit, pick(t1, on0) + pick(t0, on1), pick(t0 + t1, best))
    return solved, trials, best[..., 0]


def crossfit_rates(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The success rate per cell `by` at its best recipe (init and learning rate), without the winner's curse
    (crossfit_counts).

    Columns: by, lr and init (the best recipe on all seeds, for reference), solved and seeds (held out), rate
    with Wilson bounds, in_sample_rate (the biased one) and pooled_rate (over every recipe). A cell with one
    seed cannot be cross-fitted; it keeps its in-sample rate.
    """
    if df.empty:  # no rows: no cells (np.argmax has nothing to choose from)
        return pd.DataFrame(columns=[*by, "lr", "init", "in_sample_rate", "solved", "seeds", "rate", "rate_lo",
                                     "rate_hi", "pooled_rate"])
    keys, cell_of = np.unique(df[by].to_numpy(float), axis=0, return_inverse=True)
    cells = pd.DataFrame(keys, columns=by).astype(df[by].dtypes.to_dict())
    recipe, lr_of = recipes(df)
    shape = (len(cells), len(recipe), 2)
    flat = np.ravel_multi_index((cell_of.ravel(), lr_of, df["seed"].to_numpy() % 2), shape)
    solved_CxLxH = np.bincount(flat, weights=df["solved"].to_numpy(float), minlength=np.prod(shape)).reshape(shape)
    trials_CxLxH = np.bincount(flat, minlength=np.prod(shape)).reshape(shape).astype(float)
    solved, trials, best = crossfit_counts(solved_CxLxH, trials_CxLxH)
    rows = np.arange(len(cells))
    out = cells
    out["lr"], out["init"] = recipe["lr"].to_numpy()[best], recipe["init"].to_numpy()[best]
    out["in_sample_rate"] = solved_CxLxH.sum(-1)[rows, best] / trials_CxLxH.sum(-1)[rows, best]
    out["solved"], out["seeds"] = solved.astype(int), trials.astype(int)
    out["rate"] = out["solved"] / out["seeds"]
    out["rate_lo"], out["rate_hi"] = wilson(out["solved"], out["seeds"])
    out["pooled_rate"] = solved_CxLxH.sum((1, 2)) / trials_CxLxH.sum((1, 2))
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
            "best_lr": float(at["lr"]), "best_init": str(at["init"]), "seeds": int(at["seeds"]),
            "one_seed_lo": float(one_more) if one_more is not None else np.nan,
            "one_seed_hi": float(one_fewer) if one_fewer is not None else np.nan,
        })
        rows.append(row)
    columns = [*cell, name, "censored", "bound", "tested", "rate", "rate_lo", "rate_hi", "in_sample_rate",
               "pooled_rate", "best_lr", "best_init", "seeds", "one_seed_lo", "one_seed_hi"]
    return pd.DataFrame(rows, columns=columns)


def min_width(df: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """w*(n, depth): smallest width whose best-recipe success rate reaches the threshold and stays there above.

    A censored cell (nothing passes up to `bound`, the largest tested width) has w_star = NaN, never a guess.
    The rate columns describe w* itself (or the bound when censored); units = the hidden units in total at
    first-layer width w* (depth x w* with the constant width profile; population.hidden_units). one_seed_lo and
    one_seed_hi are w* had every tested width solved one more, or one fewer, held-out seed (NaN: censored).
    """
    out = _minimum(df, ["n", "depth"], "width", threshold, "w_star")
    profile = str(df["profile"].iloc[0]) if "profile" in df and len(df) else "constant"  # one per store
    out.insert(3, "units", [hidden_units(w, int(d), profile) if np.isfinite(w) else np.nan
                            for w, d in zip(out["w_star"], out["depth"])])
    return out


def min_depth(df: pd.DataFrame, width: int, threshold: float = 0.5) -> pd.DataFrame:
    """L*(n, width): smallest depth that reaches the threshold (and stays) at a fixed width."""
    out = _minimum(df[df["width"] == width], ["n", "width"], "depth", threshold, "L_star")
    return out


# w* is re-read at these fractions of each cell's step budget; a cell is budget-limited when w* fell between
# half the budget and the whole (budget_convergence): a budget-limited w* only bounds what more training needs.
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
    columns = ["n", "depth", "fraction", "budget", "w_star", "censored", "bound"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    largest = df.groupby(["n", "depth"])["steps_budget"].transform("max")
    df = df[df["steps_budget"] == largest]
    largest = largest[df.index]
    cell_budget = df.groupby(["n", "depth"], as_index=False)["steps_budget"].max()
    parts = []
    for fraction in fractions:
        star = min_width(at_budget(df, (largest * fraction).round()), threshold)
        budgets = cell_budget.assign(budget=(cell_budget["steps_budget"] * fraction).round().astype(int))
        parts.append(star.merge(budgets[["n", "depth", "budget"]], on=["n", "depth"]).assign(fraction=fraction))
    return pd.concat(parts, ignore_index=True).sort_values(["n", "depth", "fraction"], ignore_index=True)[columns]


def w_star_fell(half: pd.DataFrame, whole: pd.DataFrame) -> pd.Series:
    """Per aligned row of w* at half the budget and at the whole: censored at half and found at the whole, or
    smaller at the whole."""
    return ~whole["censored"] & (half["censored"] | (whole["w_star"] < half["w_star"]))


def budget_convergence(by_budget: pd.DataFrame) -> pd.DataFrame:
    """Per (n, depth): w* at half the budget and whether the cell is budget-converged. It is not (it is
    budget-limited) only where w* fell with more steps: censored at half the budget and found at the whole,
    or smaller at the whole. A w* that rose is seed noise (solved by half the budget implies solved by the
    whole, so only the learning-rate choice can raise it), not evidence that more steps would lower it."""
    half = by_budget[by_budget["fraction"] == 0.5].set_index(["n", "depth"])
    whole = by_budget[by_budget["fraction"] == 1.0].set_index(["n", "depth"])
    fell = w_star_fell(half, whole)
    return pd.DataFrame({"w_star_half_budget": half["w_star"], "budget_converged": ~fell.astype(bool)}).reset_index()


def width_cells(df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The members of the (n, depth) cells whose w* the config searches (fixed depths and the log2 schedule)."""
    if df.empty:
        return df
    wanted = pd.MultiIndex.from_tuples([(n, d) for n in cfg.task.ns for d in cfg.depths_at(n)], names=["n", "depth"])
    return df[pd.MultiIndex.from_frame(df[["n", "depth"]]).isin(wanted)]


def min_depth_rows(df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """L*(n, width) for every L* width of the config (width k * n when min_depth_widths = {times_n = k}), at
    the base budget so that depths are compared at one budget; column `group` names the curve."""
    base = df[df["steps_budget"] == cfg.train.steps] if not df.empty else df
    if cfg.search.min_depth_times_n:
        k = cfg.search.min_depth_times_n
        parts = [min_depth(base[base["n"] == n], k * n, cfg.search.success_threshold).assign(group=f"width={k}n")
                 for n in cfg.task.ns]
    else:
        parts = [min_depth(base, w, cfg.search.success_threshold).assign(group=f"width={w}")
                 for w in cfg.search.min_depth_widths]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _lr_at_edge(df: pd.DataFrame, stars: pd.DataFrame) -> list[bool]:
    """Per w* row: does success at that width still rise towards the smallest or largest learning rate tested
    there (after any edge extensions)? Then a rate beyond might have done better. A tie with the inner
    neighbour (every rate solves at a small n) says nothing about the rates beyond, so it is no edge."""
    edges = []
    for row in stars.itertuples():
        width = row.bound if row.censored else row.w_star
        at = df[(df["n"] == row.n) & (df["depth"] == row.depth) & (df["width"] == width)]
        edges.append(lr_edge(at, row.best_init)[0] != 0)
    return edges


def lr_edge(at: pd.DataFrame, best_init: str | None = None) -> tuple[int, float | None]:
    """(+1, largest lr) where success over these rows (one width) still rises towards the largest learning
    rate tested, (-1, smallest lr) towards the smallest, (0, None) where neither: a tie with the inner
    neighbour says nothing about the rates beyond. `best_init`: the rates of that recipe alone."""
    if "init" in at and best_init:
        at = at[at["init"] == best_init]
    rate = at.groupby("lr")["solved"].mean()  # sorted by lr
    if len(rate) < 2:
        return 0, None
    if rate.iloc[-1] > rate.iloc[-2]:
        return 1, float(rate.index[-1])
    if rate.iloc[0] > rate.iloc[1]:
        return -1, float(rate.index[0])
    return 0, None


def summarize(df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """One row per (n, depth) with w* (at each cell's largest budget), and one per (n, width) with L*: what the
    sweep prints, and the analysis's summary.csv with W50 added. A sparse parity's tasks are summarized one k at a
    time (a leading k column)."""
    if cfg.task.ks and not df.empty:
        parts = [summarize(part, cfg.replace(ks=())).assign(k=k) for k, part in df.groupby("k")]
        summary = pd.concat(parts, ignore_index=True)
        return summary[["k", *summary.columns[:-1]]]
    parts = []
    if not df.empty:
        shaped = latest_budget(width_cells(df, cfg))
        width_rows = min_width(shaped, cfg.search.success_threshold)
        converged = budget_convergence(min_width_by_budget(shaped, cfg.search.success_threshold))
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
