"""Real `scaling sweep` processes against one store: two at once, SIGKILLs mid-sweep, and Ctrl-C at start-up."""

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest
from configs import TINY
from streams import without_progress

from scaling.errors import UserError
from scaling.storage.store import STORE_NAME

KEY = ["n", "depth", "width", "lr", "seed"]
RESULT = ["steps_run", "solved", "step_solved", "diverged"]
SMALL = (TINY.replace("n = [2, 4]", "n = [2, 3]").replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1]")
         .replace("seeds = 3", "seeds = 2").replace("min_depth_widths = [2, 4]", "min_depth_widths = []"))


def _sweep(config_path, out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scaling", "sweep", str(config_path), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _rows(out) -> pd.DataFrame:
    """The members table as a reader sees it now (empty while there is no store or no table yet)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True)) as conn:
            return pd.read_sql_query("SELECT * FROM members", conn).sort_values(KEY).reset_index(drop=True)
    except (sqlite3.Error, pd.errors.DatabaseError):
        return pd.DataFrame(columns=KEY)


def test_two_sweeps_started_at_once_one_runs_and_the_other_is_refused(tmp_path):
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text(SMALL)
    second.write_text(SMALL.replace("steps = 400", "steps = 300"))  # another config
    out = tmp_path / "out"
    procs = [_sweep(first, out), _sweep(second, out)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], errors
    loser = errors[codes.index(2)]
    assert loser.count("\n") == 1 and "Traceback" not in loser and "another sweep (pid" in loser, loser
    with contextlib.closing(sqlite3.connect(out / STORE_NAME)) as conn:
        hashes = conn.execute("SELECT DISTINCT config_hash FROM runs").fetchall()
    rows = _rows(out)
    assert len(hashes) == 1 and len(rows) > 0 and not rows.duplicated(KEY).any()


# A sweep that kills itself (SIGKILL) at the k-th time it reaches one moment; the moments are the places where a
# stop could change what a resume trains: a round planned but not trained, a bucket mid-training, a bucket
# trained but not committed, and one just committed.
_KILLED_AT = """
import os, signal, sys, threading
moment, k = sys.argv[1], int(sys.argv[2])
calls, lock = [0], threading.Lock()

def tick():  # training threads call it concurrently
    with lock:
        calls[0] += 1
        if calls[0] >= k:
            os.kill(os.getpid(), signal.SIGKILL)

def after(owner, name):
    real = getattr(owner, name)
    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        tick()
        return out
    setattr(owner, name, wrapped)

from scaling.storage import store
from scaling import sweep
if moment == "planned":
    after(store.Store, "save_plan")
elif moment == "committed":
    after(store.Store, "insert")
elif moment == "trained":
    real_insert = store.Store.insert
    def insert(*args, **kwargs):
        tick()
        return real_insert(*args, **kwargs)
    store.Store.insert = insert
elif moment == "training":
    real_train = sweep.train_bucket
    def train_bucket(bucket, **kwargs):
        on_chunk = kwargs["on_chunk"]
        def chunk(finished, live):
            tick()
            on_chunk(finished, live)
        return real_train(bucket, **{**kwargs, "on_chunk": chunk})
    sweep.train_bucket = train_bucket
from scaling.__main__ import run
run(sys.argv[3:])
"""


def _plans(out) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True)) as conn:
        return [r[0] for r in conn.execute("SELECT plan FROM plans ORDER BY round")]


def _assert_same_rows(mine: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Outcomes exact and final losses bit for bit, for every member of `mine` (a subset of `theirs`)."""
    if mine.empty:
        return
    merged = mine.merge(theirs, on=KEY + ["steps_budget"], how="left", suffixes=("", "_full"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][KEY]
    for column in RESULT + ["final_loss", "final_accuracy", "bucket"]:
        pd.testing.assert_series_equal(merged[column], merged[f"{column}_full"], check_names=False,
                                       check_exact=True, check_dtype=False)


def test_sigkill_at_five_moments_then_resume_gives_the_uninterrupted_rows_bit_for_bit(tiny_sweep, tmp_path):
    """SIGKILL a sweep at five random moments (a round planned, a bucket training, trained but not committed, just
    committed, and at a random time), each on a store of its own, then resume it: the rows and the stored
    plans equal an uninterrupted run's, outcomes exact and final losses bit for bit (one calibration: the
    suite's fixed cost model; the same training threads)."""
    from scaling.experiment import config
    from scaling.sweep import run_sweep

    full_out, _ = tiny_sweep
    theirs, their_plans = _rows(full_out), _plans(full_out)
    buckets, rng = theirs["bucket"].nunique(), random.Random(7)
    moments = [("planned", rng.randint(1, len(their_plans))), ("training", rng.randint(2, 2 * buckets)),
               ("trained", rng.randint(1, buckets)), ("committed", rng.randint(1, buckets - 1)),
               ("timed", rng.uniform(0.0, 0.5))]
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    env = {**os.environ, "SCALING_THREADS": "2"}  # the reference trained on two threads
    kills = 0
    for i, (moment, at) in enumerate(moments):
        out = tmp_path / f"out{i}"
        command = ["-m", "scaling"] if moment == "timed" else ["-c", _KILLED_AT, moment, str(at)]
        proc = subprocess.Popen([sys.executable, *command, "sweep", str(path), "--out", str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if moment == "timed":  # once the store holds a bucket, at a random moment in the next half second
            deadline = time.monotonic() + 120
            while proc.poll() is None and len(_rows(out)) == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(at)
            proc.kill()
        proc.communicate(timeout=300)
        if moment == "timed" and proc.returncode == 0:
            continue  # a fast machine finished the sweep first: nothing was stopped
        kills += 1
        assert proc.returncode == -signal.SIGKILL, (moment, at, proc.returncode)
        stopped = _rows(out)
        assert len(stopped) < len(theirs), (moment, at)
        _assert_same_rows(stopped, theirs)  # what was stored before the kill is already right
        run_sweep(config.parse(TINY), out, progress=False, threads=2)  # the resume
        mine = _rows(out)
        assert len(mine) == len(theirs), (moment, at)
        _assert_same_rows(mine, theirs)
        assert _plans(out) == their_plans, (moment, at)
    assert kills >= 4


@pytest.mark.parametrize("lost", ["one learning rate of a width", "one seed", "a whole width"])
def test_members_lost_from_a_finished_store_are_trained_again(tmp_path, lost):
    """Delete rows from a finished store: the rerun trains exactly those members again (whole points), with the
    same results, and asks for nothing else."""
    import shutil

    from scaling.experiment import config
    from scaling.sweep import run_sweep

    cfg = config.parse(SMALL.replace("lrs = [3e-2]", "lrs = [1e-2, 3e-2]"))
    full_out, out = tmp_path / "full", tmp_path / "out"
    run_sweep(cfg, full_out, progress=False, threads=2)
    shutil.copytree(full_out, out)
    theirs = _rows(full_out)
    cell = theirs[(theirs["n"] == 3) & (theirs["depth"] == 1)]
    width = int(cell["width"].max())
    where = {"one learning rate of a width": "lr = 0.03", "one seed": "lr = 0.03 AND seed = 1",
             "a whole width": "1"}[lost]
    with contextlib.closing(sqlite3.connect(out / STORE_NAME)) as conn, conn:
        gone = conn.execute(f"DELETE FROM members WHERE n = 3 AND depth = 1 AND width = ? AND {where}",
                            (width,)).rowcount
    assert gone > 0
    outcome = run_sweep(cfg, out, progress=False, threads=2)
    assert outcome.trained == gone and len(_rows(out)) == len(theirs)
    pd.testing.assert_frame_equal(_rows(out)[KEY + RESULT], theirs[KEY + RESULT])


def _handlers_installed(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until the process catches SIGTERM: the command line's first statement installs its handlers for
    SIGINT, SIGTERM and SIGHUP at once (Python itself catches SIGINT from start-up on, but never SIGTERM).
    Before that, the interpreter is still starting, and no Python code of the tool has run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with open(f"/proc/{proc.pid}/status") as status:
            caught = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.001)
    raise AssertionError("the sweep never installed its signal handlers")


def _run_ended(out) -> bool:
    """Whether the store's run was recorded as finished."""
    with contextlib.closing(sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT ended_at FROM runs").fetchone()[0] is not None


def test_ctrl_c_from_the_first_moment_on_exits_130_with_one_line(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    # From the handlers' installation on: jax's import, the first compile, training. (A loaded machine may take
    # longer than any fixed delay to start the interpreter, so the delays count from there.)
    for i, delay in enumerate((0.0, 0.05, 0.2, 0.4, 0.7, 1.0, 2.5)):
        proc = _sweep(path, tmp_path / f"out{i}")
        _handlers_installed(proc)
        time.sleep(delay)
        if proc.poll() is not None and delay >= 1.0:  # a fast machine with warm caches finished first
            assert proc.returncode == 0
            continue
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
        if (delay >= 1.0 and proc.returncode == -signal.SIGINT and not without_progress(err).strip()
                and _run_ended(tmp_path / f"out{i}")):
            continue  # it had finished (warm programs) and was exiting: Python drops its handlers at the very end
        assert proc.returncode == 130, (delay, proc.returncode, err)
        err = without_progress(err)
        assert err.count("\n") == 1 and "Traceback" not in err and "interrupted" in err, (delay, err)


def test_a_store_another_sweep_is_creating_is_not_taken_for_other_files(tmp_path, monkeypatch):
    """The race of two sweeps started at once: between this sweep's look for a store and its listing of the
    directory, the other one creates results.sqlite; that is left to the lock to refuse, not called other files."""
    from pathlib import Path

    from scaling.storage.store import _check_out_dir

    (tmp_path / STORE_NAME).write_bytes(b"")
    (tmp_path / f"{STORE_NAME}-journal").write_bytes(b"")
    real = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if self.name == STORE_NAME else real(self))
    _check_out_dir(tmp_path)  # no error: the lock decides
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds other files \(notes.txt\)"):
        _check_out_dir(tmp_path)
