"""The results store: DIR/results.sqlite with a members table (one row per trained member) and a runs table.

A sweep is the one writer: it holds an OS lock on DIR/.lock for its whole run, opens the store read-write
(so SQLite rolls back what a crash left half-committed), checks that the file is an intact store of this
project, and checks the config hash and records its run in one transaction. Readers (analyze) take no lock
and open the store read-only. Every store and OS fault becomes one UserError line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
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
"""
_INSERT = (f"INSERT INTO members (run_id, {', '.join(MEMBER_COLUMNS)}) "
           f"VALUES ({', '.join('?' * (1 + len(MEMBER_COLUMNS)))})")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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


def _is_ours(tables: set[str]) -> bool:
    return "members" in tables or "runs" in tables


def check_store(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not an intact store of this project's schema, saying what is wrong and what to do."""
    tables = _tables(conn, path)
    if not _is_ours(tables):
        raise UserError(str(path), "is not a results store (a SQLite file without members and runs tables); "
                                   "move it away or choose another --out")
    try:
        problems = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as e:  # damaged beyond what the check itself can walk
        problems = [(str(e),)]
    if problems != [("ok",)]:
        raise UserError(str(path), f"is damaged (integrity_check: {problems[0][0]}); copy out what is readable "
                                   f"with `sqlite3 {path} .recover > rows.sql`, or start over with --fresh")
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
    """An exclusive flock on DIR/.lock, held by the one sweep that writes DIR; it dies with the process."""

    def __init__(self, out_dir: Path):
        path = out_dir / LOCK_NAME
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(str(path), f"cannot create the sweep lock ({e.strerror or e})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise UserError(str(out_dir), f"another sweep (pid {holder}) is writing this results directory; "
                                          "wait for it to finish, or use another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
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
    if path.exists():
        try:
            with contextlib.closing(sqlite3.connect(f"{_uri(path)}?mode=ro", uri=True)) as conn:
                ours = _is_ours(_tables(conn, path))
        except sqlite3.Error:
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
    def open(cls, out_dir: str | Path, *, fresh: bool = False) -> "Store":
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
            existed = path.exists()
            conn = sqlite3.connect(path, isolation_level=None, timeout=30)  # rolls back a hot journal
            if existed:
                check_store(conn, path)
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

    def frame(self) -> pd.DataFrame:
        try:
            return read_members(self.conn)
        except (sqlite3.Error, pd.errors.DatabaseError) as e:
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


def read_members(conn: sqlite3.Connection) -> pd.DataFrame:
    df = pd.read_sql_query("SELECT * FROM members ORDER BY rowid", conn)
    for col in ("solved", "diverged"):
        df[col] = df[col].astype(bool)
    return df


def read_runs(conn: sqlite3.Connection) -> pd.DataFrame:
    return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", conn)
