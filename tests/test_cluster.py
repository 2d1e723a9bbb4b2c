"""Sweeps over a local jax.distributed cluster: the rows of one process, one writer, and its faults."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from configs import TINY
from streams import without_progress

from scaling.distributed.launch import free_port
from scaling.storage.store import STORE_NAME

KEY = ["n", "depth", "width", "lr", "seed", "steps_budget"]
OUTCOME = ["solved", "steps_run", "step_solved", "diverged"]
CONFIG = TINY.replace("seeds = 3", "seeds = 2").replace("min_depth_widths = [2, 4]", "min_depth_widths = [2]")
HEARTBEAT_S = 5


def _env(devices: int, **extra) -> dict:
    return {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), **extra}


def _member(config, out: str, process: int, port: int, cwd, config_path=None) -> subprocess.Popen:
    """One process of a 2-process cluster, started by hand (as a batch system would)."""
    args = [sys.executable, "-m", "scaling", "sweep", str(config_path or config), "--out", out,
            "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(process),
            "--heartbeat", str(HEARTBEAT_S)]
    return subprocess.Popen(args, cwd=cwd, env=_env(2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _rows(out) -> pd.DataFrame:
    with contextlib.closing(sqlite3.connect(f"file:{out / STORE_NAME}?mode=ro", uri=True)) as conn:
        return pd.read_sql_query("SELECT * FROM members", conn).sort_values(KEY).reset_index(drop=True)


def _same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Every outcome exact, every final loss within 1e-3 relative."""
    assert len(got) == len(want) > 0 and (got[KEY].to_numpy() == want[KEY].to_numpy()).all()
    pd.testing.assert_frame_equal(got[OUTCOME], want[OUTCOME])
    np.testing.assert_allclose(got["final_loss"], want["final_loss"], rtol=1e-3)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cluster") / "cluster.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def one_process(config_file, tmp_path_factory):
    """The rows of one process with two devices and two training threads: the plans of a 2 x 2 cluster (each
    process trains one bucket at a time on its mesh of two devices, so the cluster plans for two threads)."""
    out = tmp_path_factory.mktemp("one") / "out"
    run = subprocess.run([sys.executable, "-m", "scaling", "sweep", str(config_file), "--out", str(out)],
                         env=_env(2, SCALING_THREADS="2"), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return _rows(out)


def test_launch_two_processes_of_two_devices_store_the_rows_of_one_process(config_file, one_process, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "scaling", "launch", "--processes", "2", "--devices-per-process",
                          "2", "--", "sweep", str(config_file), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    _same_rows(_rows(out), one_process)
    with contextlib.closing(sqlite3.connect(out / STORE_NAME)) as conn:
        processes, devices, hosts = conn.execute("SELECT processes, device_count, hosts FROM runs").fetchone()
    assert (processes, devices, len(json.loads(hosts))) == (2, 4, 2)


def test_a_killed_process_stops_the_cluster_in_one_line_and_a_relaunch_resumes_to_the_same_rows(
        config_file, one_process, tmp_path):
    """Process 1 runs in a directory of its own, with the same relative --out: it never creates it (only
    process 0 touches the results directory)."""
    here, there = tmp_path / "host0", tmp_path / "host1"
    here.mkdir(), there.mkdir()
    port = free_port()
    leader, other = _member(config_file, "out", 0, port, here), _member(config_file, "out", 1, port, there)
    deadline = time.monotonic() + 120
    while not (here / "out" / STORE_NAME).exists() or _rows_or_none(here / "out") is None:
        assert leader.poll() is None and time.monotonic() < deadline, leader.stderr.read()
        time.sleep(0.05)
    other.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, err = leader.communicate(timeout=HEARTBEAT_S + 30)
    waited = time.monotonic() - killed
    other.wait()
    assert leader.returncode == 1 and waited < HEARTBEAT_S + 15, (leader.returncode, waited, err)
    lines = without_progress(err).strip().splitlines()
    assert len(lines) == 1 and "process 1" in lines[0] and "left the cluster" in lines[0], err
    assert not (there / "out").exists()
    stopped = len(_rows(here / "out"))
    port = free_port()
    leader, other = _member(config_file, "out", 0, port, here), _member(config_file, "out", 1, port, there)
    for p in (leader, other):
        assert p.wait(timeout=300) == 0, p.stderr.read()
    _same_rows(_rows(here / "out"), one_process)
    assert stopped < len(one_process) and not (there / "out").exists()


def _rows_or_none(out):
    try:
        rows = _rows(out)
    except (sqlite3.Error, pd.errors.DatabaseError):
        return None
    return rows if len(rows) else None


def test_processes_launched_with_different_configs_are_refused_before_anything_is_written(config_file, tmp_path):
    other_config = tmp_path / "other.toml"
    other_config.write_text(CONFIG.replace("steps = 400", "steps = 300"))
    port = free_port()
    leader = _member(config_file, "out", 0, port, tmp_path)
    other = _member(config_file, "out", 1, port, tmp_path, config_path=other_config)
    errors = [p.communicate(timeout=120)[1] for p in (leader, other)]
    assert leader.returncode == 1 and other.returncode == 1, errors
    for err in errors:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "another config" in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


_PUT_AND_TAKE = """
import sys
from scaling.distributed import cluster
cluster.PART_CHARS = 7  # many parts
c = cluster.join(cluster.Join(f"localhost:{sys.argv[2]}", 2, int(sys.argv[1]), 5))
text = "".join(chr(0x41 + (i * 7919) % 900) for i in range(5000))  # hard to compress, not only ASCII
if c.leader:
    c.put("big", text)
    print(c.take("back", [1]) == text[::-1], flush=True)
else:
    assert c.take("big", [0]) == text
    c.put("back", text[::-1])
c.leave()
"""


def test_large_values_travel_in_parts_and_arrive_whole(tmp_path):
    script = tmp_path / "put_and_take.py"
    script.write_text(_PUT_AND_TAKE)
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(port)], env=_env(1), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0].strip() == "True"


def test_every_process_stores_its_programs_and_a_warm_relaunch_compiles_none(config_file, tmp_path):
    """jax's persistent cache is written by process 0 only; the program store by every process, into one
    directory (an executable is loaded onto the loading process's device), so a relaunch loads every program in
    every process. One training thread per process, so that process 1 gets buckets of its own."""
    env = {**os.environ, "SCALING_JAX_CACHE": str(tmp_path / "jax"), "SCALING_THREADS": "1"}
    store = tmp_path / "jax" / "programs"
    launch = lambda out: subprocess.run(
        [sys.executable, "-m", "scaling", "launch", "--processes", "2", "--", "sweep", str(config_file),
         "--out", str(tmp_path / out)], env=env, capture_output=True, text=True, timeout=300)
    first = launch("cold")
    assert first.returncode == 0, first.stderr
    files = {p.name: p.stat().st_ino for p in store.glob("[0-9a-f]*")}
    with contextlib.closing(sqlite3.connect(tmp_path / "cold" / STORE_NAME)) as conn:
        compiled_by_0 = conn.execute("SELECT compiles FROM runs").fetchone()[0]
    assert len(files) >= compiled_by_0 > 0
    second = launch("warm")
    assert second.returncode == 0, second.stderr
    # No program of the cold run was compiled again (a compile rewrites its file). A guess about a next round
    # that started in this run only may add a file: guesses start when a core idles, which is timing.
    after = {p.name: p.stat().st_ino for p in store.glob("[0-9a-f]*")}
    assert all(after[name] == inode for name, inode in files.items())
    with contextlib.closing(sqlite3.connect(tmp_path / "warm" / STORE_NAME)) as conn:
        assert conn.execute("SELECT compiles FROM runs").fetchone()[0] <= len(after) - len(files)
    _same_rows(_rows(tmp_path / "warm"), _rows(tmp_path / "cold"))


def test_jaxs_private_key_value_client_still_has_what_a_cluster_calls(monkeypatch):
    """The first test to fail when a jax release moves the private client that the cluster uses."""
    from jax._src import distributed
    from jax._src.lib import _jax

    from scaling.distributed.jax_key_value import KEY_VALUE_METHODS, client
    from scaling.errors import ClusterError

    assert all(hasattr(_jax.DistributedRuntimeClient, m) for m in KEY_VALUE_METHODS)
    assert client() is distributed.global_state.client  # None before jax.distributed.initialize
    monkeypatch.setattr(distributed.global_state, "client", object())  # a release whose client lacks them
    with pytest.raises(ClusterError, match="moved its key-value client .*key_value_set"):
        client()


def test_launch_names_itself_in_its_errors_and_leaves_jax_to_its_processes():
    # The launching process only starts processes: jax imported there would take a core from them.
    probe = ("import sys; from scaling.cli import main; code = main(['launch', '--processes', '0', '--', 'sweep', "
             "'x.toml']); print(code, 'jax' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert run.stdout.split() == ["2", "False"], run.stderr
    assert run.stderr.strip() == "scaling launch: error: --processes: must be at least 1, got 0"


def test_programs_dealt_in_a_round_count_as_held_by_every_process_that_shares_the_program_store():
    from scaling.distributed.cluster import Cluster

    cluster = Cluster.__new__(Cluster)  # no runtime: the bookkeeping alone
    cluster.shapes = [{"a"}, {"b"}, {"c"}]
    cluster.shares_programs = [True, True, False]  # process 2 reads a program store of its own
    cluster.pool_shapes()
    assert cluster.shapes == [{"a", "b"}, {"a", "b"}, {"c"}]


def test_a_joining_process_waits_for_the_coordinator_to_listen_and_no_longer_than_its_timeout():
    """Processes other than 0 ask for the coordination service only once it listens (asked earlier, the runtime
    retries them a second later)."""
    import socket
    import threading

    from scaling.distributed.cluster import _await_coordinator

    port = free_port()
    listener = socket.socket()

    def listen_later():
        time.sleep(0.3)
        listener.bind(("localhost", port))
        listener.listen()

    threading.Thread(target=listen_later, daemon=True).start()
    start = time.monotonic()
    _await_coordinator(f"localhost:{port}", 10)
    waited = time.monotonic() - start
    listener.close()
    assert 0.25 < waited < 5  # returned once the port listened, not at its timeout
    start = time.monotonic()
    _await_coordinator(f"localhost:{free_port()}", 0.3)  # nothing listens: gives up, jax.distributed reports
    assert 0.25 < time.monotonic() - start < 3
