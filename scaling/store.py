"""The results store: DIR/results.sqlite with a members table (one row per trained member), a runs table, and
the plans table (each round's plan, stored before it trains: scaling.rounds).

A sweep is the one writer: it holds an OS lock on DIR/.lock for its whole run, opens the store read-write
(so SQLite rolls back what a crash left half-committed), checks that the file is an intact store of this
project, and checks the config hash and records its run in one transaction. Readers (analyze) take no lock
and open the store read-only. Every store and OS fault becomes one UserError line.

A new store's first write is its marker (SQLite's application_id), before any table: a store whose creation
failed part way (a full disk) is still recognised as ours, so a rerun or --fresh recovers it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import os
import platform
import sqlite3
import subprocess
import urllib.parse
from pathlib import Path

import pandas as pd

from scaling.config import Config
from scaling.errors import UserError
from scaling.outputs import remove_outputs
from scaling.population import Member, MemberResult

STORE_NAME = "results.sqlite"
APPLICATION_ID = 0x53434C47  # "SCLG": the marker in the SQLite header of every store this project creates
LOCK_NAME = ".lock"
_SIDE_SUFFIXES = ("-wal", "-shm", "-journal")  # SQLite's own files beside the store

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
               "compile_s": "REAL"}
# Written when a run ends. compiles and compile_s came later: a store without them gains them (ALTER TABLE).
_RUN_END = ("ended_at", "compiles", "compile_s")
_ADDED_LATER = ("compiles", "compile_s")
_RUN_START = [c for c in RUN_COLUMNS if c != "run_id" and c not in _RUN_END]
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs ({", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())});
CREATE TABLE IF NOT EXISTS members (
    run_id INTEGER REFERENCES runs(run_id), {", ".join(f"{k} {v}" for k, v in MEMBER_COLUMNS.items())},
    UNIQUE ({", ".join(_IDENTITY)}));
CREATE TABLE IF NOT EXISTS plans (
    round INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(run_id), plan TEXT NOT NULL);
"""
_INSERT = (f"INSERT INTO members (run_id, {', '.join(MEMBER_COLUMNS)}) "
           f"VALUES ({', '.join('?' * (1 + len(MEMBER_COLUMNS)))})")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def member_of(row) -> Member:
    """The Member identity of a members-table row (a dict or a pandas row)."""
    return Member(**{f.name: _FROM_SQL[f.type](row[col]) for col, f in _IDENTITY.items()})


def _row(run_id: int, bucket: str, m: Member, r: MemberResult) -> tuple:
    result = [None if isinstance(v, float) and v != v else v for v in dataclasses.astuple(r)]  # NaN -> NULL
    return (run_id, *dataclasses.astuple(m), *result, bucket)


def _tables(conn: sqlite3.Connection, path: Path) -> set[str]:
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise UserError(str(path), f"is not a results store ({e}); it was not written by scaling: move it "
                                   "away or choose another --out") from None


def _is_ours(conn: sqlite3.Connection, tables: set[str]) -> bool:
    """A store of this project: its marker, or (a store from before the marker) its tables."""
    marked = conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    return "members" in tables or "runs" in tables or marked


def _is_empty(conn: sqlite3.Connection, tables: set[str]) -> bool:
    """A store of ours whose first run never stored its tables (its creation failed): nothing to lose."""
    return not tables and conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def check_store(conn: sqlite3.Connection, path: Path, writer: bool = False) -> None:
    """Refuse a file that is not an intact store of this project's schema, saying what is wrong and what to do.
    A writer (the sweep) also accepts a store of ours that has no tables yet."""
    tables = _tables(conn, path)
    if not _is_ours(conn, tables):
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
        missing = [c for c in columns if c not in have and not (table == "runs" and c in _ADDED_LATER)]
        if missing:
            raise UserError(str(path), f"was written by another version of scaling (its {table} table lacks "
                                       f"{', '.join(missing)}); read it with that version, or start over with --fresh")


def _uri(path: Path) -> str:
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
    uri = _uri(path)
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


class DirLock:
    """An exclusive flock on DIR/.lock, held by the one sweep that writes DIR; it dies with the process.

    The lock file is never followed through a symbolic link, and it is removed on release (while still
    locked): a sweep that takes the lock checks that the file it locked is still the one at DIR/.lock, so a
    sweep that opened the file just before it was removed tries again instead of locking a stale file."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_NAME
        for _ in range(100):
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as e:
                problem = ("is a symbolic link; a sweep never follows one: remove it" if e.errno == errno.ELOOP else
                           f"cannot create the sweep lock ({e.strerror or e})")
                raise UserError(str(self.path), problem) from None
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(self.fd)
                raise UserError(str(out_dir), f"another sweep (pid {holder}) is writing this results directory; "
                                              "wait for it to finish, or use another --out") from None
            try:
                current = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            mine = os.fstat(self.fd)
            if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                break
            os.close(self.fd)  # removed (or replaced) by the sweep that held it: lock the new one
        else:
            raise UserError(str(self.path), "keeps being replaced while this sweep tries to lock it")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass  # a read-only directory keeps its lock file: harmless
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _check_out_dir(out_dir: Path) -> None:
    """A sweep writes only into a new or empty directory, or one that already holds a results store."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(str(out_dir), "is a file, not a results directory")
    if out_dir.is_dir() and not (out_dir / STORE_NAME).exists():
        others = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK_NAME)
        if others:
            raise UserError(str(out_dir), f"holds other files ({', '.join(others[:3])}) but no results store; "
                                          "choose a new or empty --out")


def _remove_store(path: Path) -> None:
    """--fresh: delete a store of this project (never an unrelated file) with SQLite's side files."""
    if path.exists() and path.stat().st_size:  # an empty file is a store whose first write failed
        try:
            with contextlib.closing(sqlite3.connect(f"{_uri(path)}?mode=ro", uri=True)) as conn:
                ours = _is_ours(conn, _tables(conn, path))
        except (sqlite3.Error, UserError):
            ours = False
        if not ours:
            raise UserError(str(path), "is not a results store of scaling; --fresh deletes only those: move it "
                                       "away or choose another --out")
    for p in (path, *(Path(f"{path}{s}") for s in _SIDE_SUFFIXES)):
        try:
            p.unlink(missing_ok=True)
        except OSError as e:
            raise UserError(str(p), f"cannot remove for --fresh ({e.strerror or e})") from None


def _sql_fault(path: Path, e: sqlite3.Error, doing: str) -> UserError:
    full = "full" in str(e).lower()
    advice = ("free some space and rerun to resume" if full else "rerun to resume; if it persists, start over "
              "with --fresh or another --out")
    return UserError(str(path), f"{doing} failed ({e}); the buckets saved before are intact: {advice}")


class Store:
    """One results directory's store, opened for writing by Store.open (one sweep at a time)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock: DirLock):
        self.conn, self.path, self.lock = conn, path, lock

    @classmethod
    def open(cls, out_dir: str | Path, *, fresh: bool = False) -> Store:
        """Lock DIR and open (or create) DIR/results.sqlite; with fresh, first delete this project's store and
        outputs there. Nothing is created when a check fails."""
        out = Path(out_dir)
        path = out / STORE_NAME
        _check_out_dir(out)
        created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(str(out), f"cannot create the results directory ({e.strerror or e})") from None
        lock = DirLock(out)
        try:
            if fresh:
                _remove_store(path)
                remove_outputs(out)
            existed = path.exists() and path.stat().st_size > 0  # an empty file: its first write failed
            conn = sqlite3.connect(path, isolation_level=None, timeout=30)  # rolls back a hot journal
            if existed:
                check_store(conn, path, writer=True)
            else:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")  # the marker, before anything else
            return cls(conn, path, lock)
        except BaseException as e:
            lock.release()
            if created:  # leave no trace of a directory this call made
                for p in (path, *(Path(f"{path}{s}") for s in _SIDE_SUFFIXES), out / LOCK_NAME):
                    p.unlink(missing_ok=True)
                out.rmdir()
            if isinstance(e, sqlite3.Error):
                raise UserError(str(path), f"cannot open the results store ({e})") from None
            raise

    def start_run(self, cfg: Config) -> int:
        """Check that the store belongs to cfg and record this run, in one transaction."""
        import flax
        import jax
        import optax

        devices = jax.devices()
        provenance = (cfg.name, cfg.source, cfg.hash(), jax.__version__, flax.__version__, optax.__version__,
                      platform.python_version(), jax.default_backend(), devices[0].device_kind, len(devices),
                      _git_commit(), _now())
        try:
            self._refuse_another_config(cfg)  # before the first write, so a refused store stays byte for byte
            self.conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer, nor it them
            self.conn.executescript(_SCHEMA)
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
            for column in (c for c in _ADDED_LATER if c not in have):
                self.conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {RUN_COLUMNS[column]}")
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self._refuse_another_config(cfg)
                self.conn.execute("DELETE FROM runs WHERE config_hash != ? AND run_id NOT IN "
                                  "(SELECT DISTINCT run_id FROM members)", (cfg.hash(),))
                cur = self.conn.execute(f"INSERT INTO runs ({', '.join(_RUN_START)}) "
                                        f"VALUES ({', '.join('?' * len(provenance))})", provenance)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # a failed COMMIT (a full disk) has already rolled back
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise _sql_fault(self.path, e, "recording the run") from None
        return int(cur.lastrowid)

    def _refuse_another_config(self, cfg: Config) -> None:
        """Only runs that stored members claim the store: a run that crashed before its first bucket must not
        lock out the corrected config."""
        if "runs" not in _tables(self.conn, self.path):
            return  # a new store
        stored = {r[0] for r in self.conn.execute(
            "SELECT DISTINCT config_hash FROM runs WHERE run_id IN (SELECT DISTINCT run_id FROM members)")}
        other = sorted(stored - {cfg.hash()})
        if other:
            raise UserError(str(self.path), f"was written by another config (hash {other[0]}, this one is "
                                            f"{cfg.hash()}); use --fresh to start over or another --out")

    def end_run(self, run_id: int, compiles: int | None = None, compile_s: float | None = None) -> None:
        """Mark a run finished, with the programs it compiled and the compiler's seconds."""
        try:
            self.conn.execute("UPDATE runs SET ended_at = ?, compiles = ?, compile_s = ? WHERE run_id = ?",
                              (_now(), compiles, compile_s, run_id))
        except sqlite3.Error as e:
            raise _sql_fault(self.path, e, "closing the run") from None

    def insert(self, run_id: int, bucket: str, members, results: list[MemberResult]) -> None:
        """Commit one bucket's rows in one transaction: all of them or none."""
        rows = [_row(run_id, bucket, m, r) for m, r in zip(members, results)]
        try:
            with self.conn:  # sqlite3's context manager opens no transaction in autocommit mode: do it here
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.executemany(_INSERT, rows)
        except sqlite3.Error as e:
            raise _sql_fault(self.path, e, f"saving bucket {bucket}") from None

    def save_plan(self, run_id: int, round: int, plan: str) -> None:
        """Store a round's plan (scaling.rounds) before the round trains."""
        try:
            self.conn.execute("INSERT INTO plans (round, run_id, plan) VALUES (?, ?, ?)", (round, run_id, plan))
        except sqlite3.Error as e:
            raise _sql_fault(self.path, e, f"saving the plan of round {round}") from None

    def plans(self) -> list[str]:
        """The stored round plans, in round order."""
        try:
            return [r[0] for r in self.conn.execute("SELECT plan FROM plans ORDER BY round")]
        except sqlite3.Error as e:
            raise UserError(str(self.path), f"cannot be read ({e})") from None

    def frame(self) -> pd.DataFrame:
        try:
            return read_members(self.conn)
        except (sqlite3.Error, pd.errors.DatabaseError, ValueError) as e:
            raise UserError(str(self.path), f"cannot be read ({e})") from None

    def close(self) -> None:
        try:
            # Back to a single self-contained file, so that readers (even in a read-only directory) need no
            # write-ahead log. It fails harmlessly while a reader holds the store open; the next close retries.
            self.conn.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.Error:
            pass
        try:
            self.conn.close()
        finally:
            self.lock.release()


def stored_members(df: pd.DataFrame) -> set[Member]:
    """The identities of the members in a members frame (what a resumed sweep skips)."""
    return {member_of(r) for r in df.to_dict("records")}


# Columns that every row must fill with a number; the others may be NULL (step_solved of an unsolved member, the
# final loss and accuracy of a diverged one).
_REQUIRED = ("n", "depth", "width", "lr", "seed", "steps_budget", "steps_run", "solved", "diverged")
_OPTIONAL = ("step_solved", "final_loss", "final_accuracy", "wall_s")


def read_members(conn: sqlite3.Connection) -> pd.DataFrame:
    """The members table, numbers as numbers (NULL as NaN where a column may be empty); ValueError naming the
    column when an edited or damaged store holds NULL or text where a number belongs."""
    df = pd.read_sql_query("SELECT * FROM members ORDER BY rowid", conn)
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
