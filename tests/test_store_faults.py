"""Store and output faults: every one ends in one line and exit 2, and leaves the store's rows and files as
they were. The sweeps here are tiny; the one real store they damage is a copy of the shared tiny sweep's."""

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from configs import TINY
from streams import without_progress

from analysis.reporting.files import FITS, REPORT, SUMMARY
from scaling.cli import main
from scaling.errors import UserError
from scaling.experiment import config
from scaling.storage.outputs import MANIFEST, write_outputs
from scaling.storage.store import LOCK_NAME, STORE_NAME, DirLock, Store

KEY = ["n", "depth", "width", "lr", "seed"]


@contextlib.contextmanager
def _connect(path):
    """A connection that commits and is closed at the end (sqlite3's own context manager only commits)."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        yield conn


def _snapshot(directory):
    """Every file under directory (but the sweep lock) with its bytes: what 'unchanged' means."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def _one_line_error(capsys, code, expected: str):
    err = without_progress(capsys.readouterr().err)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and expected in err, err
    return err


@pytest.fixture
def store_copy(tiny_sweep, tmp_path):
    """A private copy of the tiny sweep's directory (store and summary), safe to damage."""
    src, _ = tiny_sweep
    dst = tmp_path / "copy"
    dst.mkdir()
    shutil.copy(src / STORE_NAME, dst / STORE_NAME)
    return dst


def _write_tiny(tmp_path, text=TINY, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("change, key", [
    (("steps = 400", "steps = 9223372036854775807"), "[train] steps"),
    (("seeds = 3", "seeds = 1000000000"), "[search] seeds"),
    (("widths = {max = 8}", "widths = [100000000]"), "[model] widths"),
    (("depths = {fixed = [1, 2], log2 = [1]}", "depths = [100000]"), "[model] depths"),
    (("min_depth_widths = [2, 4]", "min_depth_widths = [2, 4]\nmin_depth_max = 100000"), "[search] min_depth_max"),
    (("lrs = [3e-2]", "lrs = [inf]"), "[train] lrs"),
    (("lrs = [3e-2]", "lrs = [nan]"), "[train] lrs"),
    (("lrs = [3e-2]", "lrs = [1e308]"), "[train] lrs"),  # finite, but its first Adam step overflows float32
    (("lrs = [3e-2]", "lrs = [1e-46]"), "[train] lrs"),  # zero in float32
    (('name = "tiny"', 'name = "a\\u0000b"'), "[experiment] name"),
    (('name = "tiny"', 'name = "../../x"'), "[experiment] name"),
    (('name = "tiny"', 'name = ".."'), "[experiment] name"),
])
def test_out_of_range_values_are_refused_before_anything_is_created(tmp_path, capsys, change, key):
    path = _write_tiny(tmp_path, TINY.replace(*change))
    _one_line_error(capsys, main(["sweep", str(path), "--out", str(tmp_path / "out")]), key)
    assert not (tmp_path / "out").exists()


def test_zero_devices_is_refused_before_anything_is_created(tmp_path, capsys):
    path = _write_tiny(tmp_path)
    _one_line_error(capsys, main(["sweep", str(path), "--out", str(tmp_path / "out"), "--devices", "0"]), "--devices")
    assert not (tmp_path / "out").exists()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    """A real `scaling sweep` against a directory whose lock this test holds."""
    out = tmp_path / "out"
    out.mkdir()
    lock = DirLock(out)
    try:
        proc = subprocess.run([sys.executable, "-m", "scaling", "sweep", str(_write_tiny(tmp_path)), "--out", str(out)],
                              capture_output=True, text=True, timeout=120)
    finally:
        lock.release()
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"another sweep (pid {__import__('os').getpid()})" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == []  # no store was created, and the released lock is gone


def test_a_run_that_crashed_before_its_first_bucket_does_not_block_the_corrected_config(tmp_path):
    wrong = config.parse(TINY.replace("steps = 400", "steps = 500"))
    store = Store.open(tmp_path)
    store.start_run(wrong)
    store.close()  # as if it crashed: a run row, no members
    store = Store.open(tmp_path)
    run_id = store.start_run(config.parse(TINY))
    hashes = [r[0] for r in store.conn.execute("SELECT config_hash FROM runs")]
    store.close()
    assert hashes == [config.parse(TINY).hash()] and run_id > 1


def test_a_plan_of_a_config_that_crashed_before_its_first_bucket_is_never_trained(tmp_path):
    """A run of another config that stored its round plan but no bucket gives way with its plan: the corrected
    config trains its own members only."""
    from scaling.engine.population import make_bucket
    from scaling.planning import search
    from scaling.planning.cost import load
    from scaling.planning.rounds import Calibration, RoundPlan
    from scaling.sweep import run_sweep

    wrong = config.parse(TINY.replace("steps = 400", "steps = 500"))
    store = Store.open(tmp_path)
    run_id = store.start_run(wrong)
    bucket = make_bucket(search.grid_members(wrong)[:4], eval_every=wrong.train.eval_every)
    store.save_plan(run_id, 0, RoundPlan(0, (bucket,), Calibration(load(), 2)).to_json())
    store.close()  # as if it crashed after storing its plan
    run_sweep(config.parse(TINY), tmp_path, progress=False, threads=2)
    with _connect(tmp_path / STORE_NAME) as conn:
        budgets = {r[0] for r in conn.execute("SELECT DISTINCT steps_budget FROM members")}
        hashes = {r[0] for r in conn.execute("SELECT config_hash FROM runs")}
    assert budgets == {400} and hashes == {config.parse(TINY).hash()}


def test_fresh_removes_this_projects_outputs_and_nothing_else(store_copy):
    write_outputs(store_copy, {SUMMARY: "old", FITS: "old", REPORT: "old", "figures/units_vs_bits.png": "old"})
    write_outputs(store_copy, {"figures/units_vs_bits.pdf": "old"})  # a second writer adds to the list
    assert (store_copy / MANIFEST).is_file()
    (store_copy / "notes.txt").write_text("mine")
    (store_copy / "figures" / "sketch.png").write_text("mine too")
    Store.open(store_copy, fresh=True).close()
    left = {p.relative_to(store_copy).as_posix() for p in store_copy.rglob("*") if p.is_file()}
    assert left == {STORE_NAME, "notes.txt", "figures/sketch.png"}
    with _connect(store_copy / STORE_NAME) as conn:  # a new, empty store: the old rows are gone
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone() == (0,)


@pytest.mark.parametrize("content", ["sqlite", "text"])
def test_fresh_never_deletes_an_unrelated_file_named_like_a_store(tmp_path, content):
    path = tmp_path / STORE_NAME
    if content == "sqlite":
        with _connect(path) as conn:
            conn.execute("CREATE TABLE recipes (name TEXT)")
    else:
        path.write_text("not a database")
    before = _snapshot(tmp_path)
    for fresh in (False, True):
        with pytest.raises(UserError, match="not a results store"):
            Store.open(tmp_path, fresh=fresh)
    assert _snapshot(tmp_path) == before


def test_a_sweep_never_writes_into_an_unrelated_directory(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / SUMMARY).write_text("someone else's table")
    code = main(["sweep", str(_write_tiny(tmp_path)), "--out", str(tmp_path / "out")])
    _one_line_error(capsys, code, "no results store")
    assert (tmp_path / "out" / SUMMARY).read_text() == "someone else's table"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [SUMMARY]


def _drop_runs(conn):
    conn.execute("DROP TABLE runs")


def _old_schema(conn):
    conn.execute("ALTER TABLE members DROP COLUMN wall_s")


def _corrupt_members_page(path):
    with _connect(path) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'members'").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    raw = bytearray(path.read_bytes())
    start = (root - 1) * size
    raw[start:start + size] = b"\xa5" * size  # the members table's root page, overwritten
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, expected", [
    (_drop_runs, "has no runs table"),
    (_old_schema, "another version of scaling"),
    ("corrupt", "is damaged"),
])
def test_a_damaged_store_is_named_and_left_alone(store_copy, capsys, tmp_path, damage, expected):
    path = store_copy / STORE_NAME
    if damage == "corrupt":
        _corrupt_members_page(path)
    else:
        with _connect(path) as conn:
            damage(conn)
    before = _snapshot(store_copy)
    _one_line_error(capsys, main(["analyze", str(store_copy)]), expected)
    _one_line_error(capsys, main(["sweep", str(_write_tiny(tmp_path)), "--out", str(store_copy)]), expected)
    assert _snapshot(store_copy) == before


def test_analyze_warns_first_and_a_full_disk_leaves_the_previous_outputs_whole(store_copy, monkeypatch):
    """One analysis of a store with an unfinished run, runs without a git commit and missing members; then a
    second one that meets a full disk part-way through writing its outputs."""
    import scaling.storage.outputs as outputs
    from analysis.reporting.report import analyze

    with _connect(store_copy / STORE_NAME) as conn:
        conn.execute("UPDATE runs SET git_commit = NULL")
        conn.execute("INSERT INTO runs (config_name, config_text, config_hash, git_commit, started_at) "
                     "SELECT config_name, config_text, config_hash, 'abc123', started_at FROM runs")
        conn.execute("DELETE FROM members WHERE n = 4 AND depth = 2 AND width > 2")
    analyze(store_copy, reps=5)
    head = (store_copy / REPORT).read_text().split("\n\n")[:5]
    assert head[1].startswith("> **Warning:** 1 of 2 sweep run(s) did not finish"), head
    assert head[2].startswith("> **Warning:** The store lacks") and "the sweep is incomplete" in head[2], head
    assert head[3].startswith("**Answer.**") and "run id 1 .. 2" in head[4], head

    before = _snapshot(store_copy)
    real_fsync, calls = outputs.os.fsync, []

    def fsync_then_full(fd):
        calls.append(fd)
        if len(calls) == 4:  # a few outputs are written before the disk fills
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(outputs.os, "fsync", fsync_then_full)
    with pytest.raises(UserError, match="No space left on device"):
        analyze(store_copy, reps=5)
    assert _snapshot(store_copy) == before  # every old output intact, no temporary file left behind


def test_a_full_disk_during_a_sweep_is_one_line_keeps_the_saved_buckets_and_resumes_exactly(
        tiny_sweep, tmp_path, monkeypatch, capsys):
    """The disk fills after the first bucket; once space is freed, the rerun ends with every member of an
    uninterrupted run, with its results bit for bit."""
    monkeypatch.setenv("SCALING_THREADS", "2")  # as the shared tiny sweep trained
    real_insert, inserted = Store.insert, []

    def insert_until_full(self, run_id, bucket, members, results):
        if inserted:  # after the first bucket, the disk is full: SQLite's own limit makes it so
            pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
            self.conn.execute(f"PRAGMA max_page_count = {pages}")
        real_insert(self, run_id, bucket, members, results)
        inserted.append(len(members))

    monkeypatch.setattr(Store, "insert", insert_until_full)
    out = tmp_path / "out"
    _one_line_error(capsys, main(["sweep", str(_write_tiny(tmp_path)), "--out", str(out)]), "full")
    with _connect(out / STORE_NAME) as conn:
        rows = pd.read_sql_query("SELECT * FROM members", conn)
    assert len(rows) == sum(inserted) and not rows.duplicated(KEY).any()  # whole buckets, none half-saved
    monkeypatch.setattr(Store, "insert", real_insert)  # space is freed
    assert main(["sweep", str(_write_tiny(tmp_path)), "--out", str(out)]) == 0
    with _connect(out / STORE_NAME) as conn, _connect(tiny_sweep[0] / STORE_NAME) as full:
        mine, theirs = (pd.read_sql_query("SELECT * FROM members ORDER BY n, depth, width, lr, seed, steps_budget", c)
                        for c in (conn, full))
    columns = KEY + ["steps_budget", "steps_run", "solved", "step_solved", "final_loss", "bucket"]
    pd.testing.assert_frame_equal(mine[columns], theirs[columns], check_exact=True)


def test_bench_to_a_bad_path_fails_at_once(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for bad in (Path("/proc/scaling-bench.json"), tmp_path / "file" / "bench.json", tmp_path / "file" / "a" / "b.json"):
        for command in (["bench"], ["bench", "--processes", "2"]):
            if command[-1] == "2" and len(os.sched_getaffinity(0)) < 2:
                continue
            _one_line_error(capsys, main([*command, "--out", str(bad)]), "cannot be written")


def test_bench_output_in_a_folder_still_to_make_is_fine():
    from scaling.storage.outputs import check_writable

    check_writable(Path("/tmp") / f"scaling-bench-{os.getpid()}" / "new" / "bench.json")  # made at the end


def test_a_first_analysis_on_a_full_disk_leaves_no_empty_folder(store_copy, monkeypatch):
    import scaling.storage.outputs as outputs
    from analysis.reporting.report import analyze

    real_fsync = outputs.os.fsync

    def full(fd):  # the disk fills once the figures' folder has been made
        if "/figures/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    before = _snapshot(store_copy)
    monkeypatch.setattr(outputs.os, "fsync", full)
    with pytest.raises(UserError, match="No space left on device"):
        analyze(store_copy, reps=5, power=False)
    assert _snapshot(store_copy) == before and not (store_copy / "figures").exists()


def test_a_member_is_defined_once_and_round_trips_through_the_store(member_factory):
    import dataclasses

    from scaling.engine.population import Member, MemberResult
    from scaling.storage.results import MEMBER_COLUMNS, member_of
    from scaling.storage.store import _row

    member = member_factory(n=3, depth=2, width=5, lr=3e-3, seed=4, steps=700, weight_decay=0.01)
    result = MemberResult(steps_run=300, solved=True, step_solved=300, final_loss=float("nan"),
                          final_accuracy=1.0, diverged=False, wall_s=0.5)
    row = dict(zip(["run_id", *MEMBER_COLUMNS], _row(1, "r0b0", member, result)))
    assert member_of(row) == member and row["steps_budget"] == 700 and row["final_loss"] is None
    assert len(MEMBER_COLUMNS) == len(dataclasses.fields(Member)) + len(dataclasses.fields(MemberResult)) + 1


def test_analysis_and_the_cli_help_do_not_load_jax():
    script = ("import sys, contextlib, io\nimport analysis\nanalysis.analyze, analysis.figures.units_vs_bits\n"
              "from scaling.cli import build_parser\n"
              "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
              "    build_parser().parse_args(['--help'])\n"
              "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_a_store_from_before_the_width_profile_is_read_and_resumed(store_copy, tmp_path):
    """A store written before members had a width profile: its rows read as the constant profile, and a
    sweep of its config resumes into it (gaining the column) without retraining anything."""
    from analysis.measurement.data import load

    path = store_copy / STORE_NAME
    with _connect(path) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(members)") if r[1] != "profile"]
        conn.execute(f"CREATE TABLE old AS SELECT {', '.join(columns)} FROM members")
        conn.execute("DROP TABLE members")
        conn.execute("ALTER TABLE old RENAME TO members")
        rows = conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]
    before = load(store_copy)
    assert len(before) == rows and set(before["profile"]) == {"constant"}
    assert main(["sweep", str(_write_tiny(tmp_path)), "--out", str(store_copy)]) == 0
    with _connect(path) as conn:
        assert conn.execute("SELECT COUNT(*), MIN(profile), MAX(profile) FROM members").fetchone() == (
            rows, "constant", "constant")
