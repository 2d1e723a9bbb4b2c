"""Every state a store can be left in, met by `scaling analyze` and by a rerun of the sweep: stores where nothing
solved, one member, all diverged, a run with no end, columns edited to NULL or text, a first sweep that died on
a full disk; and the small faults around them (the lock file, signals, outputs in the way, odd --assume-wstar)."""

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from configs import TINY
from streams import without_progress

from analysis.reporting.files import FITS, REPORT, SUMMARY
from scaling.cli import main
from scaling.engine.population import MemberResult
from scaling.experiment import config
from scaling.planning import search
from scaling.storage.store import LOCK_NAME, STORE_NAME, Store

FAILED = lambda m: MemberResult(m.steps, False, None, 0.69, 0.5, False, 0.1)
SOLVED = lambda m: MemberResult(100, True, 100, 0.01, 1.0, False, 0.1)
DIVERGED = lambda m: MemberResult(100, False, None, float("nan"), 0.5, True, 0.1)


def _store(out, result_of, count=None, end=True, text=TINY):
    """A store of the tiny config's first-round members (the first `count`), each with result_of(member)."""
    cfg = config.parse(text)
    store = Store.open(out)
    run_id = store.start_run(cfg)
    members = search.grid_members(cfg)[:count]
    store.insert(run_id, "r0b0", members, [result_of(m) for m in members])
    if end:
        store.end_run(run_id)
    store.close()
    return out


def _edit(out, sql):
    with contextlib.closing(sqlite3.connect(out / STORE_NAME)) as conn, conn:
        conn.execute(sql)


def _error_line(capsys, code, expected):
    err = without_progress(capsys.readouterr().err)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and expected in err, (code, err)


@pytest.mark.parametrize("result_of, count, end, says", [
    (FAILED, None, True, "No member of this store solved"),
    (SOLVED, 1, True, "The store lacks"),
    (FAILED, 1, True, "No member of this store solved"),
    (DIVERGED, None, True, "diverged"),
    (FAILED, None, False, "did not finish"),
], ids=["none-solved", "one-member", "one-failed-member", "all-diverged", "no-end"])
def test_analyze_reports_what_a_store_cannot_conclude(tmp_path, capsys, result_of, count, end, says):
    out = _store(tmp_path / "out", result_of, count, end)
    code = main(["analyze", str(out)])
    assert code == 0, capsys.readouterr().err
    report = (out / REPORT).read_text()
    assert says in report and "cannot say" in report
    assert (out / FITS).is_file() and (out / SUMMARY).is_file()


@pytest.mark.parametrize("sql, expected", [
    ("UPDATE members SET width = NULL WHERE rowid = 1", "NULL in column width"),
    ("UPDATE members SET lr = 'abc' WHERE rowid = 1", "'abc' in column lr"),
    ("UPDATE members SET solved = NULL", "NULL in column solved"),
    ("UPDATE runs SET config_text = NULL", "no config text"),
    ("DELETE FROM runs", "no runs recorded"),
    ("DELETE FROM members", "no trained members yet"),
])
def test_analyze_refuses_an_edited_store_with_one_line(tmp_path, capsys, sql, expected):
    out = _store(tmp_path / "out", FAILED)
    _edit(out, sql)
    _error_line(capsys, main(["analyze", str(out)]), expected)


def test_a_sweep_over_an_edited_store_is_one_line(tmp_path, capsys):
    out = _store(tmp_path / "out", FAILED)
    _edit(out, "UPDATE members SET seed = 'x' WHERE rowid = 2")
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    _error_line(capsys, main(["sweep", str(path), "--out", str(out)]), "'x' in column seed")


@pytest.mark.parametrize("how", ["full-disk", "empty-file"])
def test_a_first_sweep_that_died_writing_its_store_is_recovered_by_a_rerun_or_fresh(tmp_path, capsys, monkeypatch,
                                                                                    how):
    """A full disk while the first sweep creates its tables leaves a marked store without tables (SQLite's
    max_page_count makes the disk full); a kill before its first write leaves an empty file. A rerun resumes
    it, and so does --fresh; nothing needs deleting by hand."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    for flags in ([], ["--fresh"]):
        out = tmp_path / f"out{len(flags)}"
        if how == "full-disk":
            real_start = Store.start_run

            def start_on_a_full_disk(self, cfg):
                self.conn.execute("PRAGMA max_page_count = 1")  # the marker's page is written; no table fits
                return real_start(self, cfg)

            monkeypatch.setattr(Store, "start_run", start_on_a_full_disk)
            _error_line(capsys, main(["sweep", str(path), "--out", str(out)]), "full")
            monkeypatch.undo()
            _error_line(capsys, main(["analyze", str(out)]), "holds no runs yet")
        else:
            out.mkdir()
            (out / STORE_NAME).touch()
        assert not (out / LOCK_NAME).exists()
        assert main(["sweep", str(path), "--out", str(out), *flags]) == 0, capsys.readouterr().err
        with contextlib.closing(sqlite3.connect(out / STORE_NAME)) as conn:
            assert conn.execute("SELECT COUNT(*) FROM members").fetchone()[0] > 0


def test_the_lock_is_never_followed_through_a_link_and_a_refused_sweep_leaves_none(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out, target = tmp_path / "out", tmp_path / "precious.txt"
    out.mkdir()
    target.write_text("keep me")
    (out / LOCK_NAME).symlink_to(target)
    _error_line(capsys, main(["sweep", str(path), "--out", str(out)]), "symbolic link")
    assert target.read_text() == "keep me" and not (out / STORE_NAME).exists()
    (out / LOCK_NAME).unlink()
    (out / LOCK_NAME).hardlink_to(target)  # a hard link: the same file under two names
    _error_line(capsys, main(["sweep", str(path), "--out", str(out)]), "not a plain lock file")
    assert target.read_text() == "keep me"
    (out / LOCK_NAME).unlink()
    _store(out, FAILED, text=TINY.replace("steps = 400", "steps = 500"))  # a store of another config
    _error_line(capsys, main(["sweep", str(path), "--out", str(out)]), "another config")
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_a_sweep_like_ctrl_c(tmp_path, signum):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "scaling", "sweep", str(path), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not (out / STORE_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + signum, (proc.returncode, err)
    assert err.count("\n") == 1 and signal.Signals(signum).name in err and "rerun to resume" in err, err


def test_an_output_in_the_way_is_refused_before_any_output_is_replaced(tmp_path, capsys):
    out = _store(tmp_path / "out", SOLVED)
    assert main(["analyze", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in (SUMMARY, FITS)}
    (out / REPORT).unlink()
    (out / REPORT).mkdir()
    capsys.readouterr()
    _error_line(capsys, main(["analyze", str(out)]), "is a directory")
    assert {name: (out / name).read_bytes() for name in (SUMMARY, FITS)} == before


@pytest.mark.parametrize("expr, expected", [
    ("9**9**9", "fails at n = 2"), ("ceil(9)**9**9", "fails at n = 2"), ("", "is empty"),
    ("(1e308*10)-(1e308*10)", "finite number > 0"), ("0*n - 1", "finite number > 0"), ("'a'*99", "only numbers"),
    ("1" * 400, "too large for a float"), ("+" * 499 + "n", "nests too deeply"),
])
def test_assume_wstar_is_bounded_and_checked(tmp_path, capsys, expr, expected):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    start = time.monotonic()
    _error_line(capsys, main(["plan", str(path), f"--assume-wstar={expr}"]), expected)
    assert time.monotonic() - start < 60  # it used to run for ever; the bound is generous for a loaded machine


def test_a_store_on_a_network_filesystem_uses_the_rollback_journal(tmp_path, monkeypatch):
    from scaling.storage import filesystems

    mounts = ("/dev/sda1 / ext4 rw 0 0\nserver:/export /mnt/shared\\040data nfs4 rw 0 0\n"
              "lustre@o2ib:/fs /lus lustre rw 0 0\ntmpfs /mnt/shared\\040data/tmp tmpfs rw 0 0\n")
    assert filesystems.filesystem_type("/mnt/shared data/results/x", mounts) == "nfs4"
    assert filesystems.filesystem_type("/mnt/shared data/tmp/x", mounts) == "tmpfs"  # the deepest mount point
    assert filesystems.filesystem_type("/mnt/shared datax", mounts) == "ext4"  # a prefix is not a parent
    assert [filesystems.journal_mode(p, mounts) for p in ("/lus/run", "/home/me", "/mnt/shared data")] == \
        ["DELETE", "WAL", "DELETE"]
    cfg = config.parse(TINY)
    for kind, mode in (("ext4", "wal"), ("nfs4", "delete")):
        monkeypatch.setattr(filesystems, "filesystem_type", lambda path, mounts=None, kind=kind: kind)
        store = Store.open(tmp_path / kind)
        try:
            store.start_run(cfg)
            assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == mode
            assert (tmp_path / kind / f"{STORE_NAME}-wal").exists() == (mode == "wal")
        finally:
            store.close()
