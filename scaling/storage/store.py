"""The results store's one writer: a sweep holds an OS lock on DIR/.lock for its whole run (scaling.storage.dirlock),
opens the store read-write (so SQLite rolls back what a crash left half-committed), checks that the file is
an intact store of this project, and checks the config hash and records its run in one transaction; then it
stores each round's plan and each bucket's rows. The schema and the readers are scaling.storage.results. Every store
and OS fault becomes one UserError line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import platform
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd

from scaling.engine.population import Member, MemberResult
from scaling.engine.tasks import SUBSETS, subset_text
from scaling.errors import UserError
from scaling.experiment.config import Config
from scaling.storage import filesystems
from scaling.storage.dirlock import LOCK_NAME, DirLock
from scaling.storage.outputs import remove_outputs
from scaling.storage.results import (
    ADDED_LATER,
    APPLICATION_ID,
    INSERT_MEMBER,
    MEMBER_COLUMNS,
    MEMBERS_ADDED_LATER,
    RUN_COLUMNS,
    RUN_START,
    SCHEMA,
    SIDE_SUFFIXES,
    STORE_NAME,
    check_store,
    is_ours,
    read_members,
    sqlite_uri,
    tables_of,
)

__all__ = ["LOCK_NAME", "STORE_NAME", "DirLock", "Store"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _row(run_id: int, bucket: str, m: Member, r: MemberResult) -> tuple:
    result = [None if isinstance(v, float) and v != v else v for v in dataclasses.astuple(r)]  # NaN -> NULL
    return (run_id, *dataclasses.astuple(m), *result, bucket)


def _check_out_dir(out_dir: Path) -> None:
    """A sweep writes only into a new or empty directory, or one that already holds a results store."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(str(out_dir), "is a file, not a results directory")
    if out_dir.is_dir() and not (out_dir / STORE_NAME).exists():
        # A store another sweep is creating right now (it holds the lock) is not "other files": the lock refuses.
        ours = {LOCK_NAME, STORE_NAME, *(f"{STORE_NAME}{suffix}" for suffix in SIDE_SUFFIXES)}
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
        if others:
            raise UserError(str(out_dir), f"holds other files ({', '.join(others[:3])}) but no results store; "
                                          "choose a new or empty --out")


def _check_removable(path: Path) -> None:
    """--fresh deletes a store of this project only, never an unrelated file named like one."""
    if path.exists() and path.stat().st_size:  # an empty file is a store whose first write failed
        try:
            with contextlib.closing(sqlite3.connect(f"{sqlite_uri(path)}?mode=ro", uri=True)) as conn:
                ours = is_ours(conn, tables_of(conn, path))
        except (sqlite3.Error, UserError):
            ours = False
        if not ours:
            raise UserError(str(path), "is not a results store of scaling; --fresh deletes only those: move it "
                                       "away or choose another --out")


def _remove_store(path: Path) -> None:
    """--fresh: delete the store (checked by _check_removable) with SQLite's side files."""
    for p in (path, *(Path(f"{path}{s}") for s in SIDE_SUFFIXES)):
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
                _check_removable(path)  # before anything is deleted
                remove_outputs(out)
                _remove_store(path)
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
                for p in (path, *(Path(f"{path}{s}") for s in SIDE_SUFFIXES)):  # the lock went with release()
                    p.unlink(missing_ok=True)
                out.rmdir()
            if isinstance(e, sqlite3.Error):
                raise UserError(str(path), f"cannot open the results store ({e})") from None
            raise

    def start_run(self, cfg: Config, hosts: list[str] | None = None) -> int:
        """Check that the store belongs to cfg and record this run, in one transaction. `hosts`: the host name
        of each process of a cluster (default: this process alone)."""
        import importlib.metadata

        import jax

        version = importlib.metadata.version  # flax's without importing it (a warm sweep never builds a network)
        devices = jax.devices()  # of every process
        hosts = hosts or [platform.node()]
        provenance = (cfg.experiment.name, cfg.source, cfg.hash(), jax.__version__, version("flax"), version("optax"),
                      platform.python_version(), jax.default_backend(), devices[0].device_kind, len(devices),
                      _git_commit(), _now(), len(hosts), json.dumps(hosts))
        try:
            self._refuse_another_config(cfg)  # before the first write, so a refused store stays byte for byte
            # WAL: readers never block the writer, nor it them; on a network filesystem, the rollback journal.
            self.conn.execute(f"PRAGMA journal_mode = {filesystems.journal_mode(self.path.parent)}")
            self.conn.executescript(SCHEMA)
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
            for column in (c for c in ADDED_LATER if c not in have):
                self.conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {RUN_COLUMNS[column]}")
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(members)")}
            for column, value in MEMBERS_ADDED_LATER.items():
                if column not in have:
                    self.conn.execute(f"ALTER TABLE members ADD COLUMN {column} {MEMBER_COLUMNS[column]} "
                                      f"DEFAULT '{value}'")
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self._refuse_another_config(cfg)
                # Runs of another config that stored no member (a crash before their first bucket) give way,
                # with the plans they stored: the new config never trains another config's plan.
                self.conn.execute("DELETE FROM plans WHERE run_id IN (SELECT run_id FROM runs WHERE config_hash "
                                  "!= ?)", (cfg.hash(),))
                self.conn.execute("DELETE FROM runs WHERE config_hash != ? AND run_id NOT IN "
                                  "(SELECT DISTINCT run_id FROM members)", (cfg.hash(),))
                cur = self.conn.execute(f"INSERT INTO runs ({', '.join(RUN_START)}) "
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
        if "runs" not in tables_of(self.conn, self.path):
            return  # a new store
        stored = {r[0] for r in self.conn.execute(
            "SELECT DISTINCT config_hash FROM runs WHERE run_id IN (SELECT DISTINCT run_id FROM members)")}
        other = sorted(stored - {cfg.hash()})
        if other:
            raise UserError(str(self.path), f"was written by another config (hash {other[0]}, this one is "
                                            f"{cfg.hash()}); use --fresh to start over or another --out")
        self._refuse_other_subsets(cfg)

    def _refuse_other_subsets(self, cfg: Config) -> None:
        """A resume must draw the hidden bits its members were trained on (numpy draws them from the run seed;
        another numpy could draw others, and the store would then mix two functions under one (n, k))."""
        if cfg.task.data == "table" or "subset" not in {r[1] for r in self.conn.execute("PRAGMA table_info(members)")}:
            return
        for n, k, stored in self.conn.execute("SELECT DISTINCT n, k, subset FROM members"):
            drawn = subset_text(SUBSETS[cfg.task.kind](cfg.run.seed, n, k))
            if stored != drawn:
                raise UserError(str(self.path), f"holds members of (n = {n}, k = {k}) trained on the bits {stored}, "
                                                f"but this numpy draws {drawn} from the run seed; resume with the "
                                                "numpy that made the store, or start over with --fresh")

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
                self.conn.executemany(INSERT_MEMBER, rows)
        except sqlite3.Error as e:
            raise _sql_fault(self.path, e, f"saving bucket {bucket}") from None

    def save_plan(self, run_id: int, round: int, plan: str) -> None:
        """Store a round's plan (scaling.planning.rounds) before the round trains."""
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
