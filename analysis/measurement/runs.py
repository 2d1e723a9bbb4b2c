"""Two results directories of one experiment, compared member by member and cell by cell: how far a change of
engine, plan or machine moved the results (a GPU run against a CPU run, an engine before and after a change).

Training parity near w* is chaotic: float rounding that differs by 1e-7 in one step (another bucket shape,
another XLA kernel) can end a member solved in one run and unsolved in the other. Such flips are noise
when they go both ways in equal numbers; a cell whose w* or L* rests on one seed moves with them.

    python -m analysis.measurement.runs DIR_A DIR_B
"""

from __future__ import annotations

import dataclasses
import sys

import pandas as pd

from analysis.measurement.data import load, load_config
from scaling.errors import UserError
from scaling.planning.stats import summarize
from scaling.storage.results import IDENTITY_COLUMNS

_CELL = ["kind", "n", "depth", "width"]


@dataclasses.dataclass
class RunComparison:
    members_a: int
    members_b: int
    common: int  # members trained in both runs
    same_loss: int  # of those, final losses equal bit for bit
    gained: int  # solved in B, not in A
    lost: int  # solved in A, not in B
    cells: pd.DataFrame  # every w* and L* cell of either run, both values side by side
    # The cells whose w* or L* differ, with one_seed: whether either run's one-seed range (its w* or L* had one
    # more, or one fewer, seed solved at every tested value) holds the other run's value.
    changed: pd.DataFrame

    def text(self) -> str:
        lines = [f"members: {self.members_a} in A, {self.members_b} in B, {self.common} in both; final loss equal bit "
                 f"for bit in {self.same_loss}; solved flags differ in {self.gained + self.lost} "
                 f"({self.gained} solved only in B, {self.lost} only in A)",
                 f"cells: w* or L* differs in {len(self.changed)} of {len(self.cells)}, outside both runs' one-seed "
                 f"ranges in {int((~self.changed['one_seed']).sum()) if len(self.changed) else 0}"]
        if len(self.changed):
            lines.append(self.changed.to_string(index=False))
        return "\n".join(lines)


def _within(star: pd.Series, lo: pd.Series, hi: pd.Series) -> pd.Series:
    """Whether star lies in [lo, hi]; NaN is censored: beyond every tested value (hi NaN: no upper end)."""
    return (star.isna() & hi.isna()) | ((star >= lo) & ((star <= hi) | hi.isna()))


def compare_runs(dir_a, dir_b) -> RunComparison:
    """Members in common, bit-equal losses, solved flags gained and lost, and w*/L* cell by cell (each run's
    summary from its own saved config)."""
    a, b = load(dir_a), load(dir_b)
    both = a.merge(b, on=list(IDENTITY_COLUMNS), suffixes=("_a", "_b"))
    # A summary lacks the columns of a kind it has no rows of (no L* search: no width, no L_star).
    summaries = [summarize(df, load_config(d)) for df, d in ((a, dir_a), (b, dir_b))]
    cell = (["k"] if any("k" in s for s in summaries) else []) + _CELL  # a sparse parity's cells are per k
    summaries = [s.reindex(columns=cell + ["w_star", "L_star", "rate", "tested", "one_seed_lo", "one_seed_hi"])
                 for s in summaries]
    cells = summaries[0].merge(summaries[1], on=cell, how="outer", suffixes=("_a", "_b"), indicator=True)
    differs = pd.Series(False, index=cells.index)
    for col in ("w_star", "L_star"):
        differs |= cells[f"{col}_a"].fillna(-1) != cells[f"{col}_b"].fillna(-1)
    star = {run: cells[f"w_star_{run}"].where(cells["kind"] == "min_width", cells[f"L_star_{run}"]) for run in "ab"}
    cells["one_seed"] = (cells["_merge"] == "both") & (  # a cell of one run only is in no range of the other
        _within(star["b"], cells["one_seed_lo_a"], cells["one_seed_hi_a"])
        | _within(star["a"], cells["one_seed_lo_b"], cells["one_seed_hi_b"]))
    cells = cells.drop(columns=["_merge", *(f"one_seed_{end}_{run}" for end in ("lo", "hi") for run in "ab")])
    return RunComparison(
        members_a=len(a), members_b=len(b), common=len(both),
        same_loss=int((both["final_loss_a"] == both["final_loss_b"]).sum()),
        gained=int((~both["solved_a"] & both["solved_b"]).sum()),
        lost=int((both["solved_a"] & ~both["solved_b"]).sum()),
        cells=cells, changed=cells[differs].reset_index(drop=True),
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m analysis.measurement.runs DIR_A DIR_B", file=sys.stderr)
        return 2
    try:
        print(compare_runs(*argv).text())
    except UserError as e:
        print(f"python -m analysis.measurement.runs: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
