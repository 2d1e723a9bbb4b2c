"""The results store: DIR/results.sqlite with a members table (one row per trained member) and a runs table."""

from __future__ import annotations

import datetime as dt
import platform
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd

from scaling.config import Config
from scaling.errors import UserError
from scaling.population import Member
from scaling.train import MemberResult

STORE_NAME = "results.sqlite"
_MEMBER_COLUMNS = {
    "task": "TEXT", "n": "INTEGER", "encoding": "TEXT", "depth": "INTEGER", "width": "INTEGER",
    "activation": "TEXT", "init": "TEXT", "optimizer": "TEXT", "loss": "TEXT", "lr": "REAL", "seed": "INTEGER",
    "steps_budget": "INTEGER", "steps_run": "INTEGER", "solved": "INTEGER", "step_solved": "INTEGER",
    "final_loss": "REAL", "final_accuracy": "REAL", "diverged": "INTEGER", "bucket": "TEXT", "wall_s": "REAL",
}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, config_name TEXT, config_text TEXT, config_hash TEXT,
    jax_version TEXT, flax_version TEXT, optax_version TEXT, python_version TEXT, backend TEXT,
    device_kind TEXT, device_count INTEGER, git_commit TEXT, started_at TEXT, ended_at TEXT);
CREATE TABLE IF NOT EXISTS members (
    run_id INTEGER REFERENCES runs(run_id), {", ".join(f"{k} {v}" for k, v in _MEMBER_COLUMNS.items())},
    UNIQUE (task, n, encoding, depth, width, activation, init, optimizer, loss, lr, seed, steps_budget));
"""


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
    return Member(task=row["task"], n=int(row["n"]), encoding=row["encoding"], depth=int(row["depth"]),
                  width=int(row["width"]), activation=row["activation"], init=row["init"],
                  optimizer=row["optimizer"], loss=row["loss"], lr=float(row["lr"]), seed=int(row["seed"]),
                  steps=int(row["steps_budget"]))


class Store:
    """One results directory's SQLite store. Open it with Store.open (validates before it writes anything)."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn, self.path = conn, path

    @classmethod
    def open(cls, out_dir: str | Path, cfg: Config, *, fresh: bool = False) -> "Store":
        """Open or create DIR/results.sqlite for cfg; a store of another config is refused unless fresh."""
        path = Path(out_dir) / STORE_NAME
        if path.exists() and not fresh:
            stored = cls.read_config_hash(path)
            if stored is not None and stored != cfg.hash():
                raise UserError(str(path), f"was written by another config (hash {stored}, this one is "
                                           f"{cfg.hash()}); use --fresh to start over or another --out")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and fresh:
                path.unlink()
            conn = sqlite3.connect(path)
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise UserError(str(path), f"cannot create the results store ({e})") from None
        return cls(conn, path)

    @staticmethod
    def read_config_hash(path: Path) -> str | None:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT config_hash FROM runs ORDER BY run_id LIMIT 1").fetchone()
        except sqlite3.DatabaseError as e:
            raise UserError(str(path), f"is not a results store ({e})") from None
        return row[0] if row else None

    def start_run(self, cfg: Config) -> int:
        import flax
        import jax
        import optax

        devices = jax.devices()
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (config_name, config_text, config_hash, jax_version, flax_version, optax_version,"
                " python_version, backend, device_kind, device_count, git_commit, started_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (cfg.name, cfg.source, cfg.hash(), jax.__version__, flax.__version__, optax.__version__,
                 platform.python_version(), jax.default_backend(), devices[0].device_kind, len(devices),
                 _git_commit(), _now()))
        return int(cur.lastrowid)

    def end_run(self, run_id: int) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET ended_at = ? WHERE run_id = ?", (_now(), run_id))

    def insert(self, run_id: int, bucket: str, members, results: list[MemberResult]) -> None:
        """Commit one bucket's rows in one transaction: all of them or none."""
        rows = [
            (run_id, m.task, m.n, m.encoding, m.depth, m.width, m.activation, m.init, m.optimizer, m.loss, m.lr,
             m.seed, m.steps, r.steps_run, int(r.solved), r.step_solved,
             r.final_loss if r.final_loss == r.final_loss else None,  # NaN -> NULL
             r.final_accuracy, int(r.diverged), bucket, r.wall_s)
            for m, r in zip(members, results)
        ]
        with self.conn:
            self.conn.executemany(
                f"INSERT INTO members (run_id, {', '.join(_MEMBER_COLUMNS)}) VALUES ({', '.join('?' * 21)})", rows)

    def frame(self) -> pd.DataFrame:
        return read_members(self.conn)

    def close(self) -> None:
        self.conn.close()


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
