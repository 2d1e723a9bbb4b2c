import sqlite3
import subprocess
import sys
import threading

import pandas as pd
import pytest
from configs import TINY

from scaling import sweep
from scaling.engine.devices import training_threads
from scaling.errors import UserError
from scaling.experiment import config
from scaling.planning import plan
from scaling.planning.guesses import RoundTail
from scaling.storage.store import STORE_NAME
from scaling.sweep import _Stopped, run_sweep, train_concurrently

KEY = ["n", "depth", "width", "lr", "seed"]
RESULT = ["steps_run", "solved", "step_solved", "diverged"]


def _rows(out):
    with sqlite3.connect(out / STORE_NAME) as conn:
        return pd.read_sql_query("SELECT * FROM members", conn).sort_values(KEY).reset_index(drop=True)


@pytest.fixture
def uninterrupted(tiny_sweep):
    return tiny_sweep


def test_tiny_end_to_end_sweep(uninterrupted):
    out, outcome = uninterrupted
    rows = _rows(out)
    assert len(rows) == outcome.trained and not rows.duplicated(KEY).any()
    assert outcome.rounds >= 2  # the grid, then at least one bisection round
    summary = outcome.summary  # what the sweep prints; `scaling analyze` writes it as summary.csv
    widths = summary[summary["kind"] == "min_width"]
    # depths 1 and 2 at every n, and ceil(log2 n) + 1: 2, 3, 3 for n = 2, 3, 4
    assert set(zip(widths["n"], widths["depth"])) == {(n, d) for n in (2, 3, 4) for d in (1, 2)} | {(3, 3), (4, 3)}
    assert set(summary[summary["kind"] == "min_depth"]["width"]) == {2, 4}
    with sqlite3.connect(out / STORE_NAME) as conn:
        run = pd.read_sql_query("SELECT * FROM runs", conn).iloc[0]
    assert run["config_hash"] == config.parse(TINY).hash() and run["backend"] == "cpu" and run["ended_at"]


def test_resume_after_a_stop_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    full_out, full = uninterrupted
    cfg = config.parse(TINY)
    calls = []

    def stop_after_two(bucket):
        calls.append(bucket)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, tmp_path, progress=False, on_bucket=stop_after_two)
    partial = _rows(tmp_path)
    assert len(partial) == sum(len(b.members) for b in calls) < full.trained
    resumed = run_sweep(cfg, tmp_path, progress=False)
    assert resumed.skipped == len(partial)
    mine, theirs = _rows(tmp_path), _rows(full_out)
    assert len(mine) == len(theirs) and not mine.duplicated(KEY).any()
    pd.testing.assert_frame_equal(mine[KEY + RESULT], theirs[KEY + RESULT])
    assert (mine["final_loss"] - theirs["final_loss"]).abs().max() < 1e-5
    again = run_sweep(cfg, tmp_path, progress=False)
    assert again.trained == 0 and len(_rows(tmp_path)) == len(mine)


def test_buckets_trained_at_once_give_the_same_rows_as_one_at_a_time(uninterrupted, tmp_path, monkeypatch):
    out, concurrent = uninterrupted  # two threads
    # The plan for two threads (rounds of one bucket are split in two), trained by one.
    two_threads_plan = lambda *args, **kwargs: plan.plan_buckets(*args, **{**kwargs, "threads": 2})
    monkeypatch.setattr(sweep, "plan_buckets", two_threads_plan)
    alone = run_sweep(config.parse(TINY), tmp_path, progress=False, threads=1)
    mine, theirs = _rows(tmp_path), _rows(out)
    assert (alone.trained, alone.rounds, alone.buckets) == (concurrent.trained, concurrent.rounds, concurrent.buckets)
    columns = KEY + RESULT + ["final_loss", "final_accuracy", "bucket"]
    pd.testing.assert_frame_equal(mine[columns], theirs[columns])  # bit for bit, and in the same buckets


def test_a_stopped_round_stops_its_threads_and_starts_no_more():
    started, stopped = [], []

    def train(bucket, stop):
        started.append(bucket)
        if bucket == 0:
            return "first"
        while not stop.wait(0.01):
            pass
        stopped.append(bucket)
        raise _Stopped

    results = train_concurrently([0, 1, 2, 3, 4], 2, train)
    assert next(results) == "first"
    results.close()  # what the sweep does when storing fails or the user interrupts
    assert sorted(stopped) == sorted(set(started) - {0}) and len(started) <= 3 and 4 not in started

    def fails(bucket, stop):
        if bucket == 1:
            raise ValueError("out of memory")
        while not stop.wait(0.01):
            pass
        raise _Stopped

    with pytest.raises(ValueError, match="out of memory"):
        list(train_concurrently([0, 1, 2], 2, lambda b, stop: "ok" if b == 0 else fails(b, stop)))


def test_training_threads_default_to_the_cores_on_a_cpu_and_reject_a_bad_override(monkeypatch):
    monkeypatch.delenv("SCALING_THREADS", raising=False)
    monkeypatch.setenv("SCALING_WORKERS", "5")  # the variable's earlier name is still read
    assert training_threads(None) == 5
    monkeypatch.delenv("SCALING_WORKERS")
    assert training_threads(None) >= 1
    assert training_threads(None, bucket_mib=2**30) == 1  # no room in memory for a second bucket of 1 PiB
    monkeypatch.setenv("SCALING_THREADS", "3")
    assert training_threads(None) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("SCALING_THREADS", bad)
        with pytest.raises(UserError, match="SCALING_THREADS.*at least 1"):
            training_threads(None)


def test_store_of_another_config_is_refused_unless_fresh(uninterrupted, tmp_path):
    out, _ = uninterrupted
    other = config.parse(TINY.replace("steps = 400", "steps = 200"))
    before = (out / STORE_NAME).read_bytes()
    with pytest.raises(UserError, match="another config"):
        run_sweep(other, out, progress=False)
    assert (out / STORE_NAME).read_bytes() == before  # untouched
    (tmp_path / STORE_NAME).write_text("not a database")
    with pytest.raises(UserError, match="not a results store"):
        run_sweep(other, tmp_path, progress=False)


def test_python_dash_m_reports_bad_input_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("[model]", "[model]\ncolour = 1"))
    proc = subprocess.run([sys.executable, "-m", "scaling", "sweep", str(bad), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("[model] colour: unknown key; expected one of depths, widths, profile, "
                                        "activation, init")
    assert not (tmp_path / "o").exists()




def test_the_round_tail_guesses_the_next_round_once_a_training_thread_idles(member_factory):
    """Four buckets on two threads: the third finished bucket leaves one training, so one thread idles and
    queues the next round's guess, knowing the three buckets' real results; a failing guess stops nothing."""
    from scaling.engine.population import MemberResult, make_bucket

    buckets = [make_bucket([member_factory(seed=s, width=w)], eval_every=100) for s, w in enumerate((2, 3, 4, 6))]
    result = lambda solved: [MemberResult(steps_run=100, solved=solved, step_solved=50 if solved else None,
                                          final_loss=0.1, final_accuracy=1.0, diverged=False, wall_s=0.0)]
    guesses = []
    tail = RoundTail(lambda known: [known], guesses.append, buckets=4, threads=2)
    settle = lambda: [t.join() for t in threading.enumerate() if t.name == "scaling-guess"]  # it runs apart
    for k, bucket in enumerate(buckets):
        tail.done(bucket, result(k % 2 == 0))
        settle()
        assert len(guesses) == (1 if k >= 2 else 0)
    assert {m.width: r.solved for m, r in guesses[0].items()} == {2: True, 3: False, 4: True}

    def fails(known):
        raise RuntimeError("a guess went wrong")

    failing = RoundTail(fails, guesses.append, buckets=2, threads=2)
    failing.done(buckets[0], result(True))  # the guess raises on its own thread, and is only logged
    settle()

    # A guess still being planned when its round ends queues nothing: the next round has begun, and a wrong
    # guess compiled then would take a training core.
    planning, queued = threading.Event(), []

    def slow(known):
        planning.wait(10)
        return ["late guess"]

    late = RoundTail(slow, queued.append, buckets=2, threads=2)
    late.done(buckets[0], result(False))
    late.close()
    planning.set()
    settle()
    assert queued == []
    on_time = RoundTail(lambda known: ["guess"], queued.append, buckets=2, threads=2)
    on_time.done(buckets[0], result(False))
    settle()
    on_time.close()
    assert queued == ["guess"]


def test_assumed_rows_keep_the_known_outcomes(member_factory):
    from scaling.engine.population import MemberResult
    from scaling.planning.search import with_assumed_rows

    known_member, guessed = member_factory(seed=1), member_factory(seed=2)
    known = {known_member: MemberResult(steps_run=300, solved=True, step_solved=240, final_loss=0.1,
                                        final_accuracy=1.0, diverged=False, wall_s=0.0)}
    rows = with_assumed_rows(pd.DataFrame(), [known_member, guessed], lambda m: False, results=known)
    assert rows[["seed", "solved"]].values.tolist() == [[1, True], [2, False]]
    assert rows["step_solved"].iloc[0] == 240 and pd.isna(rows["step_solved"].iloc[1])


def test_without_a_terminal_each_round_logs_one_timestamped_line(tmp_path, caplog):
    import logging
    import re

    caplog.set_level(logging.INFO, logger="scaling")
    outcome = run_sweep(config.parse(TINY).replace(seeds=1), tmp_path, progress=True)  # pytest's stderr: no tty
    lines = [r.getMessage() for r in caplog.records if " round " in r.getMessage()]
    assert len(lines) == outcome.rounds
    line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d round (\d+): ([\d,]+) members to train in \d+ buckets? "
                      r"\(([\d,]+) trained so far\); \d+ s elapsed, \d+ s of compiler time \(all threads\); "
                      r"this round at most \d+ s")
    found = [line.match(text) for text in lines]
    assert all(found), lines
    assert [int(m.group(1)) for m in found] == list(range(outcome.rounds))
    to_train = [int(m.group(2).replace(",", "")) for m in found]
    assert [int(m.group(3).replace(",", "")) for m in found] == [sum(to_train[:i]) for i in range(len(to_train))]
    assert sum(to_train) == outcome.trained


def test_guesses_compile_only_on_a_core_the_round_leaves_idle(tmp_path, monkeypatch):
    """On one core with one training thread every round's bucket trains on the only core: no round queues
    guesses of the next round's programs (compiled there, a wrong guess costs a whole compile). With a spare
    core the same sweep guesses."""
    from scaling.planning import guesses

    calls = []
    monkeypatch.setattr(guesses, "queue_next_round", lambda *args, **kwargs: calls.append(args[2]))
    cfg = config.parse(TINY)
    for cores, expect_guesses in ((1, False), (3, True)):
        calls.clear()
        monkeypatch.setattr(sweep, "cores", lambda cores=cores: cores)
        run_sweep(cfg, tmp_path / f"cores{cores}", progress=False, threads=1)
        assert bool(calls) == expect_guesses, cores
