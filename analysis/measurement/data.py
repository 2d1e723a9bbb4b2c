"""Reading a results directory: the members table in long format, the runs table, and the run's config.

Reading needs no write access and takes no lock, so a store can be analysed while a sweep writes to it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd

from scaling.errors import UserError
from scaling.experiment import config as config_mod
from scaling.experiment.config import Config
from scaling.planning import search
from scaling.storage.results import STORE_KEY, STORE_NAME, connect_readonly, read_members, read_runs


def _read(dir: str | Path, reader) -> pd.DataFrame:
    with closing(connect_readonly(dir)) as conn:
        try:
            return reader(conn)
        except (sqlite3.Error, pd.errors.DatabaseError, ValueError) as e:
            raise UserError(str(Path(dir) / STORE_NAME), f"cannot be read ({e})") from None


def load(dir: str | Path) -> pd.DataFrame:
    """The members table of DIR/results.sqlite: one row per trained member, in the order of their store keys
    (not the order they were written, which follows the plan: a bootstrap that draws from rows in that order
    would change with the plan)."""
    df = _read(dir, read_members)
    return df.sort_values(list(STORE_KEY), kind="stable", ignore_index=True) if len(df) else df


def load_runs(dir: str | Path) -> pd.DataFrame:
    """The runs table (provenance of every sweep call that wrote to this store)."""
    return _read(dir, read_runs)


def load_config(dir: str | Path) -> Config:
    """The validated config that wrote this store (the latest run's saved text; every run shares its hash)."""
    runs = load_runs(dir)
    if runs.empty:
        raise UserError(str(Path(dir) / STORE_NAME), "has no runs recorded")
    text = runs["config_text"].iloc[-1]
    if not isinstance(text, str) or not text.strip():
        raise UserError(str(Path(dir) / STORE_NAME), "its latest run holds no config text (an edited or damaged "
                                                     "store); rerun the sweep with its experiment file to restore it")
    return config_mod.parse(text, f"{dir} (saved config)")


def store_warnings(cfg, df: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """What a reader must know before trusting the report: unfinished runs, members still missing."""
    notes = []
    unfinished = runs[runs["ended_at"].isna()]
    if len(unfinished):
        notes.append(f"{len(unfinished)} of {len(runs)} sweep run(s) did not finish (interrupted, or still "
                     f"running): run id {', '.join(str(int(r)) for r in unfinished['run_id'])}.")
    if not df["solved"].any():
        notes.append(f"No member of this store solved parity ({len(df)} trained): nothing here measures a width. "
                     "Check the learning rates (`lrs`) and the step budget (`steps`) of the experiment file.")
    diverged = int(df["diverged"].sum())
    if diverged > len(df) // 2:
        notes.append(f"{diverged} of {len(df)} members diverged (a loss that was not finite or above 10^4): the "
                     "learning rates are likely too large.")
    missing = len(set(search.next_round(cfg, df)))
    if missing:
        notes.append(f"The store lacks {missing} members that the search asks for at this point: the sweep is "
                     f"incomplete, so w* and the fits may change. Rerun "
                     f"`scaling sweep` with this config and the same --out to finish it.")
    return notes
