"""Reading a results directory: the members table in long format, the runs table, and the run's config."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

from scaling import config as config_mod
from scaling.config import Config
from scaling.errors import UserError
from scaling.store import STORE_NAME, read_members, read_runs


def _connect(dir: str | Path) -> sqlite3.Connection:
    path = Path(dir) / STORE_NAME
    if not path.is_file():
        raise UserError(str(path), "no results store here; run `scaling sweep CONFIG --out DIR` first")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def load(dir: str | Path) -> pd.DataFrame:
    """The members table of DIR/results.sqlite: one row per trained member."""
    with _connect(dir) as conn:
        try:
            return read_members(conn)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as e:
            raise UserError(str(Path(dir) / STORE_NAME), f"is not a results store ({e})") from None


def load_runs(dir: str | Path) -> pd.DataFrame:
    """The runs table (provenance of every sweep call that wrote to this store)."""
    with _connect(dir) as conn:
        return read_runs(conn)


def load_config(dir: str | Path) -> Config:
    """The validated config that wrote this store (from its first run's saved text)."""
    runs = load_runs(dir)
    if runs.empty:
        raise UserError(str(Path(dir) / STORE_NAME), "has no runs recorded")
    return config_mod.parse(runs["config_text"].iloc[0], f"{dir} (saved config)")
