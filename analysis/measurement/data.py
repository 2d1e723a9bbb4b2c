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
from scaling.storage.results import STORE_NAME, connect_readonly, read_members, read_runs


def _read(dir: str | Path, reader) -> pd.DataFrame:
    with closing(connect_readonly(dir)) as conn:
        try:
            return reader(conn)
        except (sqlite3.Error, pd.errors.DatabaseError, ValueError) as e:
            raise UserError(str(Path(dir) / STORE_NAME), f"cannot be read ({e})") from None


def load(dir: str | Path) -> pd.DataFrame:
    """The members table of DIR/results.sqlite: one row per trained member."""
    return _read(dir, read_members)


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
