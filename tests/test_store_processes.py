"""Real `scaling sweep` processes against one store: two at once, SIGKILLs mid-sweep, and Ctrl-C at start-up."""

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd

from conftest import TINY
from scaling.store import STORE_NAME

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


def test_sigkill_mid_sweep_then_resume_equals_an_uninterrupted_run(tiny_sweep, tmp_path):
    """Kill the sweep at random moments just after its store has grown, three times; then let it finish."""
    full_out, _ = tiny_sweep
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out, rng, kills, seen = tmp_path / "out", random.Random(0), 0, 0
    for _ in range(3):
        proc = _sweep(path, out)
        deadline = time.monotonic() + 120
        while proc.poll() is None and len(_rows(out)) <= seen and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.2))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate(timeout=60)
        seen = len(_rows(out))
        assert not _rows(out).duplicated(KEY).any()
    proc = _sweep(path, out)
    assert proc.communicate(timeout=300)[1].count("Traceback") == 0 and proc.returncode == 0
    mine, theirs = _rows(out), _rows(full_out)
    assert kills >= 2 and len(mine) == len(theirs)
    pd.testing.assert_frame_equal(mine[KEY + RESULT], theirs[KEY + RESULT])
    assert (mine["final_loss"] - theirs["final_loss"]).abs().max() < 1e-5


def test_ctrl_c_from_the_first_second_on_exits_130_with_one_line(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    # Start-up, jax's import, the first compile, training.
    for i, delay in enumerate((0.05, 0.2, 0.4, 0.7, 1.0, 2.5)):
        proc = _sweep(path, tmp_path / f"out{i}")
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
        assert proc.returncode == 130, (delay, proc.returncode, err)
        assert err.count("\n") == 1 and "Traceback" not in err and "interrupted" in err, (delay, err)
