"""The results store's schema and its read API: DIR/results.sqlite with a members table (one row per trained
member), a runs table, and the plans table (each round's plan, stored before it trains: scaling.planning.rounds).

Readers (the analysis) take no lock and open the store read-only; the one writer is scaling.storage.store.Store. A
new store's first write is its marker (SQLite's application_id), before any table: a store whose creation
failed part way (a full disk) is still recognised as ours, so a rerun or --fresh recovers it.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import urllib.parse
from pathlib import Path

import pandas as pd

from scaling.engine.population import Member, MemberResult
from scaling.errors import UserError

STORE_NAME = "results.sqlite"
APPLICATION_ID = 0x53434C47  # "SCLG": the marker in the SQLite header of every store this project creates
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")  # SQLite's own files beside the store

# The columns are generated from the dataclasses, so a member is defined once (population.Member).
_SQL_TYPE = {"str": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "INTEGER", "int | None": "INTEGER"}
_FROM_SQL = {"str": str, "int": int, "float": float}
_COLUMN_OF = {"steps": "steps_budget"}  # the results schema's name for Member.steps
_IDENTITY = {_COLUMN_OF.get(f.name, f.name): f for f in dataclasses.fields(Member)}
IDENTITY_COLUMNS = tuple(_IDENTITY)  # the columns that name a member (the UNIQUE key)
MEMBER_COLUMNS = {**{c: _SQL_TYPE[f.type] for c, f in _IDENTITY.items()},
                  **{f.name: _SQL_TYPE[f.type] for f in dataclasses.fields(MemberResult)}, "bucket": "TEXT"}
RUN_COLUMNS = {"run_id": "INTEGER PRIMARY KEY AUTOINCREMENT", "config_name": "TEXT", "config_text": "TEXT",
               "config_hash": "TEXT", "jax_version": "TEXT", "flax_version": "TEXT", "optax_version": "TEXT",
               "python_version": "TEXT", "backend": "TEXT", "device_kind": "TEXT", "device_count": "INTEGER",
               "git_commit": "TEXT", "started_at": "TEXT", "ended_at": "TEXT", "compiles": "INTEGER",
               "compile_s": "REAL", "processes": "INTEGER", "hosts": "TEXT"}
# device_count counts the devices of every process; hosts is a JSON list, one host name per process.
# Written when a run ends. Columns added later: a store without them gains them (ALTER TABLE).
RUN_END = ("ended_at", "compiles", "compile_s")
ADDED_LATER = ("compiles", "compile_s", "processes", "hosts")
# Member columns added later, with the value every earlier row had: a store without one gains it (ALTER TABLE),
# and a reader fills it in.
MEMBERS_ADDED_LATER = {"profile": "constant", "weight_decay": 0.0, "k": 0, "data": "table", "samples": 0,
                       "batch_size": 0, "eval_samples": 0, "subset": ""}
RUN_START = [c for c in RUN_COLUMNS if c != "run_id" and c not in RUN_END]
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs ({", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())});
CREATE TABLE IF NOT EXISTS members (
    run_id INTEGER REFERENCES runs(run_id), {", ".join(f"{k} {v}" for k, v in MEMBER_COLUMNS.items())},
    UNIQUE ({", ".join(_IDENTITY)}));
CREATE TABLE IF NOT EXISTS plans (
    round INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(run_id), plan TEXT NOT NULL);
"""
INSERT_MEMBER = (f"INSERT INTO members (run_id, {', '.join(MEMBER_COLUMNS)}) "
           f"VALUES ({', '.join('?' * (1 + len(MEMBER_COLUMNS)))})")


def member_of(row) -> Member:
    """The Member identity of a members-table row (a dict or a pandas row)."""
    return Member(**{f.name: _FROM_SQL[f.type](row[col]) for col, f in _IDENTITY.items()})


def tables_of(conn: sqlite3.Connection, path: Path) -> set[str]:
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise UserError(str(path), f"is not a results store ({e}); it was not written by scaling: move it "
                                   "away or choose another --out") from None


def is_ours(conn: sqlite3.Connection, tables: set[str]) -> bool:
    """A store of this project: its marker, or (a store from before the marker) its tables."""
    marked = conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    return "members" in tables or "runs" in tables or marked


def _is_empty(conn: sqlite3.Connection, tables: set[str]) -> bool:
    """A store of ours whose first run never stored its tables (its creation failed): nothing to lose."""
    return not tables and conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def check_store(conn: sqlite3.Connection, path: Path, writer: bool = False) -> None:
    """Refuse a file that is not an intact store of this project's schema, saying what is wrong and what to do.
    A writer (the sweep) also accepts a store of ours that has no tables yet."""
    tables = tables_of(conn, path)
    if not is_ours(conn, tables):
        raise UserError(str(path), "is not a results store (a SQLite file without members and runs tables); "
                                   "move it away or choose another --out")
    try:
        problems = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as e:  # damaged beyond what the check itself can walk
        problems = [(str(e),)]
    if problems != [("ok",)]:
        raise UserError(str(path), f"is damaged (integrity_check: {problems[0][0]}); copy out what is readable "
                                   f"with `sqlite3 {path} .recover > rows.sql`, or start over with --fresh")
    if _is_empty(conn, tables):
        if writer:
            return  # the sweep creates the tables
        raise UserError(str(path), "holds no runs yet (its first sweep stopped before storing any); "
                                   "rerun that sweep")
    for table, columns in (("runs", RUN_COLUMNS), ("members", {"run_id": "", **MEMBER_COLUMNS})):
        if table not in tables:
            raise UserError(str(path), f"has no {table} table (it was dropped or never written); "
                                       "start over with --fresh or another --out")
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        later = ADDED_LATER if table == "runs" else MEMBERS_ADDED_LATER
        missing = [c for c in columns if c not in have and c not in later]
        if missing:
            raise UserError(str(path), f"was written by another version of scaling (its {table} table lacks "
                                       f"{', '.join(missing)}); read it with that version, or start over with --fresh")


def sqlite_uri(path: Path) -> str:
    """A SQLite URI for path (quoted, so that '?' or '#' in a directory name cannot break it)."""
    return f"file:{urllib.parse.quote(str(path.resolve()))}"


def connect_readonly(out_dir: str | Path) -> sqlite3.Connection:
    """A checked read-only connection to DIR/results.sqlite; needs no write access and takes no lock."""
    path = Path(out_dir) / STORE_NAME
    if not path.is_file():
        raise UserError(str(path), "no results store here; run `scaling sweep CONFIG --out DIR` first")
    if path.stat().st_size == 0:
        raise UserError(str(path), "holds no runs yet (its first sweep stopped before storing any); rerun that sweep")
    if Path(f"{path}-journal").exists():
        raise UserError(str(path), "holds an unfinished write from an interrupted sweep; rerun that sweep "
                                   "(`scaling sweep CONFIG --out DIR`) to roll it back, then analyze")
    uri = sqlite_uri(path)
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True)
        try:
            check_store(conn, path)
            return conn
        except sqlite3.OperationalError:  # a read-only directory: SQLite cannot create its WAL index (-shm)
            conn.close()
            if Path(f"{path}-wal").exists() and Path(f"{path}-wal").stat().st_size:
                raise
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True)  # safe: no write-ahead log holds newer rows
        check_store(conn, path)
        return conn
    except sqlite3.Error as e:
        raise UserError(str(path), f"cannot be read ({e})") from None


# What tells the members of one store apart: the store holds one config's members (Store.start_run checks the
# hash), so the fields that config fixes need no comparing.
STORE_KEY = ("n", "depth", "width", "init", "lr", "seed", "steps_budget", "k")


def store_key(m: Member) -> tuple:
    """A member's STORE_KEY values, as a row of its store holds them."""
    return (m.n, m.depth, m.width, m.init, m.lr, m.seed, m.steps, m.k)


def stored_keys(df: pd.DataFrame) -> set[tuple]:
    """The STORE_KEY of every row of a members frame (of rows with at least those columns, but for columns added
    later, which take their default)."""
    return set() if df.empty else set(with_defaults(df)[list(STORE_KEY)].itertuples(index=False, name=None))


def with_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with every member column added later that it lacks, at the value earlier rows had."""
    missing = {col: value for col, value in MEMBERS_ADDED_LATER.items() if col not in df}
    return df.assign(**missing) if missing else df


# Columns that every row must fill with a number; the others may be NULL (step_solved of an unsolved member, the
# final loss and accuracy of a diverged one).
_REQUIRED = ("n", "depth", "width", "lr", "seed", "steps_budget", "k", "steps_run", "solved", "diverged")
_OPTIONAL = ("step_solved", "final_loss", "final_accuracy", "wall_s")


def read_members(conn: sqlite3.Connection) -> pd.DataFrame:
    """The members table, numbers as numbers (NULL as NaN where a column may be empty); ValueError naming the
    column when an edited or damaged store holds NULL or text where a number belongs."""
    df = with_defaults(pd.read_sql_query("SELECT * FROM members ORDER BY rowid", conn))
    for col in (*_REQUIRED, *_OPTIONAL):
        values = pd.to_numeric(df[col], errors="coerce")
        odd = values.isna() & (df[col].notna() | (col in _REQUIRED))
        if odd.any():
            what = "NULL" if df.loc[odd, col].isna().all() else repr(df.loc[odd, col].iloc[0])
            raise ValueError(f"its members table holds {what} in column {col} ({int(odd.sum())} row(s)); an edited "
                             "or damaged store: fix or delete those rows, or start over with --fresh")
        df[col] = values
    for col in ("solved", "diverged"):
        df[col] = df[col].astype(bool)
    return df


def read_runs(conn: sqlite3.Connection) -> pd.DataFrame:
    return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", conn)
