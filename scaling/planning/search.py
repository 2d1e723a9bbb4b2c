"""The adaptive search: which members the current results ask for next.

The search is a pure function of the config and the rows trained so far, so a stopped sweep resumes by
asking it again. Widths grow from below (galloping): round 0 trains the first width of the coarse grid in
every (n, depth) cell (grid_members), and each later round trains the next coarse width (twice the last)
in every cell where no tested width passes yet. Once one passes, the search bisects the gap between the
largest failing width and w* (by the monotone definition in stats) until the two are adjacent, and trains
one confirming width above w* (the next rung) where w* is the widest width tested: the seed bootstrap of the
analysis then finds a passing width above a resampled w* instead of censoring the cell. So a cell never
trains a width above twice its first passing width, and the wide, expensive end of the grid is only reached
by cells that need it. A cell where nothing passes up to the bound stays censored.

The budget rule: a settled cell whose w* fell between half its budget and its whole budget is
budget-limited (stats.budget_convergence); while twice its budget stays within search.max_steps, every
width it tested is trained again at twice the budget (new members: the budget is part of a member's
identity), and the search goes on at that budget. w* is read at each cell's largest budget (stats.latest_budget).

Whole points: every (width, budget) with a stored member wants all its learning rates and seeds, and every
(width, budget, learning rate) all its seeds, whatever else the cell holds; so members lost to a fault or
deleted by hand are asked for again, and a cell is decided only from whole points.

The learning-rate edge rule: in a settled cell, when success at a transition width (w* and the largest
failing width below it) still rises towards the smallest or largest learning rate tested there, the next
value beyond it (/ 3 or x 3) is trained at that width, up to search.lr_extend factors beyond the grid.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from scaling.engine.population import SHARED_FIELDS, Member
from scaling.experiment.config import Config
from scaling.experiment.schema import WidthSearch
from scaling.planning.stats import budget_convergence, crossfit_rates, lr_edge, min_width_by_budget, monotone_min
from scaling.storage.results import store_key, stored_keys, with_defaults


def members_at(cfg: Config, n: int, depth: int, width: int, steps: int | None = None,
               lrs: tuple[float, ...] | None = None, k: int = 0) -> list[Member]:
    """Every (init, lr, seed) member of one (n, depth, width) point of the task (n, k), at the config's budget or
    at `steps`. Depth
    0 (logistic regression) has no hidden layer, so its one point per n is stored with width 0 instead of once
    per grid width. `lrs` replaces the config's learning rates (the search's edge extensions)."""
    width = 0 if depth == 0 else width
    # Plain strings, not the config's enums: a member's identity (and its key) is the repr of its fields.
    shared = dict(task=str(cfg.task.kind), encoding=str(cfg.task.encoding), activation=str(cfg.model.activation),
                  optimizer=str(cfg.train.optimizer), loss=str(cfg.train.loss), profile=str(cfg.model.profile),
                  weight_decay=cfg.train.weight_decay, data=str(cfg.task.data), samples=cfg.task.samples,
                  batch_size=cfg.train.batch_size, eval_samples=cfg.task.eval_samples)
    assert set(shared) | {"init"} == set(SHARED_FIELDS)
    return [Member(**shared, init=str(init), n=n, depth=depth, width=width, lr=lr, seed=seed,
                   steps=steps or cfg.train.steps, k=k)
            for init, lr, seed in itertools.product(cfg.model.inits, lrs or cfg.train.lrs, range(cfg.search.seeds))]


def grid_members(cfg: Config) -> list[Member]:
    """The first round: the width grid at every (n, k, depth) (only its first width when the search is adaptive:
    the search climbs from there), and the depth grid at every min-depth width."""
    first = (lambda ws: ws[:1]) if cfg.model.width_search == WidthSearch.ADAPTIVE else (lambda ws: ws)
    points = {(n, d, 0 if d == 0 else w, k)
              for n, k in cfg.tasks() for d in cfg.depths_at(n) for w in first(cfg.widths_at(n))}
    points |= {(n, d, w, k) for n, k in cfg.tasks() for w in cfg.min_depth_widths_at(n)
               for d in range(1, cfg.min_depth_max_at(n) + 1)}
    return [m for n, d, w, k in sorted(points) for m in members_at(cfg, n, d, w, k=k)]


def _next_widths(by_width: pd.DataFrame, ladder: tuple[int, ...], threshold: float) -> tuple[int, ...]:
    """The next widths to test in one (n, depth) cell from its cross-fitted rates per width (stats.crossfit_rates);
    none when the cell is settled or censored.

    `ladder` is the coarse grid (doubling widths up to the bound) that the gallop climbs. Once the bisection
    is done, a cell whose w* is its widest tested width trains the next rung above it: a confirming width,
    so that a bootstrap resample that fails at w* finds the passing width above instead of censoring the cell.
    """
    widths = by_width["width"].to_numpy()
    hi = monotone_min(widths, (by_width["rate"] >= threshold).to_numpy())
    if hi is None:  # the widest tested width fails: climb one rung, or stay censored at the bound
        above = [w for w in ladder if w > widths.max()]
        return tuple(above[:1])
    below = widths[widths < hi]
    if len(below) and hi - below.max() > 1:
        return ((int(below.max()) + int(hi)) // 2,)  # bisect between the largest failing width and w*
    if hi == widths.max():  # settled, with nothing wider tested: confirm at the next rung
        return tuple(w for w in ladder if w > hi)[:1]
    return ()


BUDGET_FACTOR = 2
LR_FACTOR = 3


def _edge_lrs(cell: pd.DataFrame, rates: pd.DataFrame, cfg: Config) -> dict[int, float]:
    """Transition width -> the learning rate one step beyond the grid edge towards which success still rises
    (`rates`: the cell's cross-fitted rates per width)."""
    widths = rates["width"].to_numpy()
    star = monotone_min(widths, (rates["rate"] >= cfg.search.success_threshold).to_numpy())
    if star is None:
        return {}
    transition = [int(star)] + ([int(widths[widths < star].max())] if np.any(widths < star) else [])
    lo, hi = cfg.lr_range()
    extra = {}
    best_init = dict(zip(rates["width"], rates["init"]))
    for width in transition:
        direction, edge = lr_edge(cell[cell["width"] == width], best_init.get(width))
        if direction == 0:
            continue
        beyond = edge * LR_FACTOR if direction > 0 else edge / LR_FACTOR
        if lo * 0.999 <= beyond <= hi * 1.001:
            extra[width] = float(f"{beyond:.6g}")
    return extra


def _settled_budget_limited(cell: pd.DataFrame, threshold: float) -> bool:
    return not bool(budget_convergence(min_width_by_budget(cell, threshold))["budget_converged"].iloc[0])


def wanted_members(cfg: Config, df: pd.DataFrame) -> list[Member]:
    """Every member the search wants, given the rows so far (a superset of what is already trained)."""
    wanted = grid_members(cfg)
    if df.empty:
        return wanted
    cells = dict(iter(with_defaults(df).groupby(["n", "k", "depth"])))
    for n, k in cfg.tasks():
        for depth in cfg.depths_at(n):
            cell = cells.get((n, k, depth))
            if cell is not None:
                wanted += _cell_wanted(cfg, n, k, depth, cell)
    return wanted


_CELL_MEMO: dict = {}  # (cfg, n, k, depth, the cell's rows) -> its members: replays ask again for settled cells


def _cell_wanted(cfg: Config, n: int, k: int, depth: int, cell: pd.DataFrame) -> tuple[Member, ...]:
    """The members one (n, k, depth) cell wants, from its rows (a pure function of them, so remembered: a
    replay of the search asks again for every cell each round, and most have not changed)."""
    key = (cfg, n, k, depth, pd.util.hash_pandas_object(cell, index=False).to_numpy().tobytes(),
           tuple(cell.columns), tuple(map(str, cell.dtypes)))
    if key not in _CELL_MEMO:
        if len(_CELL_MEMO) >= 512:
            _CELL_MEMO.clear()
        _CELL_MEMO[key] = tuple(_decide_cell(cfg, n, k, depth, cell))
    return _CELL_MEMO[key]


def _decide_cell(cfg: Config, n: int, k: int, depth: int, cell: pd.DataFrame) -> list[Member]:
    wanted = []
    at = functools.partial(members_at, cfg, n, k=k)  # (depth, width, steps=, lrs=) of this task
    for (width, steps), lrs in cell.groupby(["width", "steps_budget"])["lr"]:  # whole points
        wanted += at(depth, int(width), steps=int(steps),
                     lrs=tuple(sorted(set(cfg.train.lrs) | set(lrs.tolist()))))
    budget = int(cell["steps_budget"].max())
    if budget > cfg.train.steps:  # a rerun: every width tested at a smaller budget, at this one
        for width in sorted(cell.loc[cell["steps_budget"] < budget, "width"].unique()):
            wanted += at(depth, int(width), steps=budget)
    now = cell[cell["steps_budget"] == budget]
    # Only decide on widths whose every (init, lr, seed) is in, the config's learning rates and any added
    # at an edge: never from a half-trained point.
    lr_counts = now.groupby(["width", "init", "lr"]).size()
    partial = set(lr_counts[lr_counts < cfg.search.seeds].index.get_level_values("width"))
    lrs_of = now.groupby("width")["lr"].agg(set)
    recipes_of = now.groupby("width")[["init", "lr"]].apply(lambda p: set(zip(p["init"], p["lr"])))
    inits = list(map(str, cfg.model.inits))
    full = [w for w, lrs in lrs_of.items() if w not in partial and set(cfg.train.lrs) <= lrs
            and {(i, lr) for i in inits for lr in lrs} <= recipes_of[w]]  # every init at every rate
    complete = now[now["width"].isin(full)]
    if complete.empty or len(lrs_of) != len(full):
        return wanted
    rates = crossfit_rates(complete, ["width"])
    widths = (_next_widths(rates, cfg.widths_at(n), cfg.search.success_threshold)
              if cfg.model.width_search == WidthSearch.ADAPTIVE and depth > 0 else ())
    for width in widths:
        wanted += at(depth, width, steps=budget)
    if widths:
        return wanted
    for w, lr in _edge_lrs(complete, rates, cfg).items():
        wanted += at(depth, w, steps=budget, lrs=(lr,))
    if (budget * BUDGET_FACTOR <= cfg.search.max_steps
            and _settled_budget_limited(complete, cfg.search.success_threshold)):
        for w in sorted(complete["width"].unique()):
            wanted += at(depth, int(w), steps=budget * BUDGET_FACTOR)
    return wanted


def next_round(cfg: Config, rows: pd.DataFrame) -> list[Member]:
    """The next round: the members the search wants, in its order, that `rows` (this config's rows so far) lack;
    empty when the search is done. A pure function of the config and the rows, so a resume simply asks again;
    the sweep carries each round out on its training threads (or a cluster), and replay() on an oracle."""
    stored = stored_keys(rows)
    return [m for m in wanted_members(cfg, rows) if store_key(m) not in stored]


class Unsettled(Exception):
    """The search asked for more rounds than replay() was allowed."""


def replay(cfg: Config, execute: Callable[[list[Member]], pd.DataFrame], rows: pd.DataFrame | None = None,
           max_rounds: int | None = None) -> Iterator[tuple[list[Member], pd.DataFrame]]:
    """Carry the search out on an oracle: `execute(members)` gives a round's rows (from an assumed w* in `scaling
    plan`, a synthetic truth in the power analysis and the calibration). Yields each round's members and the
    rows after it; raises Unsettled past max_rounds."""
    rows = pd.DataFrame() if rows is None else rows
    for _ in itertools.count() if max_rounds is None else range(max_rounds):
        members = next_round(cfg, rows)
        if not members:
            return
        new = execute(members)
        rows = new if rows.empty else pd.concat([rows, new], ignore_index=True)
        yield members, rows
    if next_round(cfg, rows):
        raise Unsettled(f"the search did not settle within {max_rounds} rounds")


def settle(cfg: Config, execute: Callable[[list[Member]], pd.DataFrame], rows: pd.DataFrame | None = None
           ) -> pd.DataFrame:
    """replay() to the end: the rows the search leaves when `execute` answers every round."""
    last = pd.DataFrame() if rows is None else rows
    for _, last in replay(cfg, execute, rows):  # noqa: B007 (the last round's rows are the answer)
        pass
    return last


def assumed_rows(members: list[Member], solves: Callable[[Member], bool], results: dict | None = None
                 ) -> pd.DataFrame:
    """Rows as if `members` had been trained, each solving (at step 1) iff solves(member), but those in
    `results` (member -> MemberResult), which keep their real outcome: what the search reads, for replaying
    rounds (scaling plan, the power analysis) and guessing the next round's programs (the sweep)."""
    results = results or {}
    outcome = lambda m: ((results[m].solved, results[m].step_solved) if m in results else
                         (bool(solves(m)), 1 if solves(m) else None))
    return pd.DataFrame([(m.n, m.depth, m.width, m.init, m.lr, m.seed, m.steps, m.k, *outcome(m)) for m in members],
                        columns=["n", "depth", "width", "init", "lr", "seed", "steps_budget", "k", "solved",
                                 "step_solved"])


def with_assumed_rows(df: pd.DataFrame, members: list[Member], solves: Callable[[Member], bool],
                      results: dict | None = None) -> pd.DataFrame:
    """The rows so far (the search's columns) plus assumed_rows(members, solves, results)."""
    rows = assumed_rows(members, solves, results)
    return rows if df.empty else pd.concat([df[rows.columns], rows], ignore_index=True)
