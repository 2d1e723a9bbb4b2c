"""The program store: compiled programs on disk, loaded by another compile cache (another process) instead of
compiled again, training exactly as the compiled ones do."""

import dataclasses
import os
import time

import jax
import pytest

from scaling.engine import claims, program_store
from scaling.engine.population import make_bucket
from scaling.engine.programs import Programs
from scaling.engine.train import train_bucket


@pytest.fixture
def store_dir(tmp_path):
    """jax's compile cache (and so the program store) on, in a directory of the test's own."""
    names = ("jax_compilation_cache_dir", "jax_enable_compilation_cache", "jax_persistent_cache_min_compile_time_secs")
    was = [getattr(jax.config, name) for name in names]
    # jax decides once per process whether its persistent cache is on (at the first compile): decide again.
    from jax._src import compilation_cache

    for name, value in zip(names, (str(tmp_path), True, 0.0)):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    jax.clear_caches()  # and no executable memoised by an earlier test: each program is compiled here
    yield tmp_path / "programs"
    for name, value in zip(names, was):
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def test_a_program_compiled_once_is_loaded_by_the_next_cache_and_trains_the_same(store_dir, member_factory):
    bucket = make_bucket([member_factory(n=3, depth=2, width=3, seed=s, steps=200) for s in range(4)], eval_every=50)
    with Programs() as first:
        compiled_rows = train_bucket(bucket, programs=first)
    assert first.compiles >= 2 and first.loads == 0  # the draw and chunk programs at least
    assert len(list(store_dir.iterdir())) == first.compiles
    with Programs() as second:
        loaded_rows = train_bucket(bucket, programs=second)
    assert second.compiles == 0 and second.loads == first.compiles
    strip = lambda rows: [dataclasses.replace(r, wall_s=0.0) for r in rows]
    assert strip(loaded_rows) == strip(compiled_rows)


def test_other_compiler_options_and_a_torn_file_compile_again(store_dir, member_factory):
    bucket = make_bucket([member_factory(n=2, depth=1, width=2, seed=s, steps=100) for s in range(2)], eval_every=50)
    with Programs() as first:
        train_bucket(bucket, programs=first)
    with Programs(xla_defaults=True) as other:  # another program: its options differ
        train_bucket(bucket, programs=other)
    assert other.loads == 0 and other.compiles == first.compiles
    for path in store_dir.iterdir():
        path.write_bytes(path.read_bytes()[:100])
    with Programs() as torn:
        train_bucket(bucket, programs=torn)
    assert torn.loads == 0 and torn.compiles == first.compiles


def test_a_program_that_another_compile_cache_is_compiling_is_waited_for_not_compiled_again(store_dir):
    """Processes that need one program at once compile it once: the first claims it, the others wait for it in
    the store (two compile caches of one process stand for two processes)."""
    import threading

    import jax.numpy as jnp

    key = ("test", 3)
    lowered = jax.jit(lambda x: jnp.tanh(x) * 3.0).lower(jax.ShapeDtypeStruct((3,), jnp.float32))
    go = threading.Event()

    def held_back():
        go.wait(60)
        return lowered

    with Programs() as first, Programs() as second:
        compiling = threading.Thread(target=first._compile, args=(key, held_back))
        compiling.start()
        name = program_store.key(key, first._options)
        deadline = time.monotonic() + 30
        while not (store_dir / f".{name}.claim").exists():  # the first holds the claim
            assert time.monotonic() < deadline, "no claim while the first compile cache compiles"
            compiling.join(0.01)
        waited = []
        waiting = threading.Thread(target=lambda: waited.append(second._compile(key, lambda: lowered)))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and second.compiles == 0  # waits: the first is still lowering
        go.set()
        compiling.join(60)
        waiting.join(60)
        assert (first.compiles, first.loads, second.compiles, second.loads) == (1, 0, 0, 1)
        assert float(waited[0](jnp.ones(3, jnp.float32))[0]) == pytest.approx(3 * float(jnp.tanh(1.0)))
        assert not (store_dir / f".{name}.claim").exists()


def test_a_claim_whose_process_has_ended_is_not_waited_for(store_dir):
    import subprocess
    import sys

    import jax.numpy as jnp

    key = ("test", 4)
    lowered = jax.jit(lambda x: x + 1.0).lower(jax.ShapeDtypeStruct((2,), jnp.float32))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with Programs() as cache:
        claim = store_dir / f".{program_store.key(key, cache._options)}.claim"
        claim.parent.mkdir(parents=True, exist_ok=True)
        claim.write_text(f"{os.uname().nodename} {ended.stdout.strip()} 0")
        assert claims.stale(claim)  # not by its age (CLAIM_S): the test would pass after two minutes
        claim.write_text(f"{os.uname().nodename} {os.getppid()} 0")
        assert not claims.stale(claim)  # a process that lives
        claim.write_text(f"{os.uname().nodename} {ended.stdout.strip()} 0")
        cache._compile(key, lambda: lowered)
        assert (cache.compiles, cache.loads) == (1, 0) and not claim.exists()


def test_a_process_leaving_mid_compile_releases_its_claim_and_no_other(store_dir, monkeypatch):
    """A sweep leaves without waiting for a guess still compiling (os._exit): it first drops that compile's claim,
    so that no process on another host waits CLAIM_S for a program that will never be stored."""
    import threading

    import jax.numpy as jnp

    key = ("test", 7)
    lowered = jax.jit(lambda x: x - 1.0).lower(jax.ShapeDtypeStruct((2,), jnp.float32))
    compiling, finish = threading.Event(), threading.Event()

    def slow():
        compiling.set()
        finish.wait(10)
        return lowered

    monkeypatch.setattr(claims, "_leaving", False)  # this process goes on after release_held
    with Programs() as cache:
        claim = store_dir / f".{program_store.key(key, cache._options)}.claim"
        worker = threading.Thread(target=cache._compile, args=(key, slow))
        worker.start()
        assert compiling.wait(10) and claim.exists()
        claims.release_held()
        assert not claim.exists() and not claims._held
        assert claims.claim(claim.with_name(".other.claim")) is None  # leaving: it claims nothing more
        claim.write_text("another-host 1 0")  # another process claims it meanwhile: ours never removes theirs
        finish.set()
        worker.join(10)
        assert claim.read_text() == "another-host 1 0"


def test_a_compile_that_fails_leaves_no_claim_and_a_read_only_store_still_loads(store_dir, monkeypatch):
    import jax.numpy as jnp

    key = ("test", 5)
    lowered = jax.jit(lambda x: x * 2.0).lower(jax.ShapeDtypeStruct((2,), jnp.float32))

    def fails():
        raise RuntimeError("compile failed")

    with Programs() as cache:
        with pytest.raises(RuntimeError, match="compile failed"):
            cache._compile(key, fails)
        assert not list(store_dir.glob(".*.claim"))
        cache._compile(key, lambda: lowered)  # stored

    def read_only(*args):  # chmod would not stop a test run as root
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "link", read_only)  # no claim can be made
    with Programs() as warm:
        warm._compile(key, lambda: lowered)
        assert (warm.compiles, warm.loads) == (0, 1)
        warm._compile(("test", 6), lambda: lowered)  # compiled all the same
        assert warm.compiles == 1 and not list(store_dir.glob(".*.claim"))


def test_a_program_that_cannot_be_stored_is_compiled_unclaimed_from_then_on(store_dir):
    """jax's own cache served it (so it is not stored): nobody waits for another's compile of it again."""
    import threading

    import jax.numpy as jnp

    compiled = jax.jit(lambda x: x - 1.0).lower(jax.ShapeDtypeStruct((2,), jnp.float32)).compile()
    name = "0" * 64
    assert program_store.load_or_compile(name, lambda: (compiled, False)) == (compiled, True)
    assert (store_dir / f".{name}.unstorable").exists() and not (store_dir / name).exists()
    (store_dir / f".{name}.claim").write_text(f"{os.uname().nodename} {os.getpid()} live")  # held, not stale
    done = []
    again = threading.Thread(target=lambda: done.append(program_store.load_or_compile(name, lambda: (compiled, False))),
                             daemon=True)
    again.start()
    again.join(10)
    assert done == [(compiled, True)]  # compiled at once: without the mark it would wait for the claim


def test_a_program_that_jaxs_own_cache_served_is_not_stored(tmp_path):
    """jax's persistent cache hands back executables that lose code when serialised again (one failed at its
    first call): such programs are not stored, and a sweep after them loads nothing broken. Three sweeps of
    the command line (jax decides once per process whether its cache is on)."""
    import re
    import shutil
    import subprocess
    import sys

    from configs import TINY

    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    env = {**os.environ, "SCALING_JAX_CACHE": str(tmp_path / "jax")}
    sweep = lambda out: subprocess.run([sys.executable, "-m", "scaling", "sweep", str(config), "--out",
                                        str(tmp_path / out)], env=env, capture_output=True, text=True, timeout=300)
    first = sweep("a")  # XLA compiles: into jax's cache and into the store
    assert first.returncode == 0, first.stderr
    shutil.rmtree(tmp_path / "jax" / "programs")
    served = sweep("b")  # jax's cache serves what it holds
    assert served.returncode == 0, served.stderr
    compiled = int(re.search(r"compiled (\d+) programs", served.stdout)[1])
    stored = len(list((tmp_path / "jax" / "programs").glob("[0-9a-f]*")))
    assert stored < compiled
    third = sweep("c")
    assert third.returncode == 0, third.stderr
    # At most what the second stored (a guess about a next round is loaded only if this run guesses it too).
    assert int(re.search(r"loaded (\d+) from", third.stdout)[1]) <= stored


def test_the_store_is_off_with_jaxs_cache(member_factory, tmp_path):
    was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        assert program_store.directory() is None
    finally:
        jax.config.update("jax_enable_compilation_cache", was)


_ON_ANOTHER_DEVICE = """
import jax, numpy as np
jax.config.update("jax_num_cpu_devices", 2)
from jax.experimental import serialize_executable
from scaling.engine.program_store import load_onto

first, second = jax.devices()
step = jax.jit(lambda w_IxO, x_RxI: jax.nn.relu(x_RxI @ w_IxO).sum(0))
w, x = np.arange(6.0, dtype=np.float32).reshape(3, 2), np.ones((4, 3), np.float32)
compiled = step.lower(jax.device_put(w, first), jax.device_put(x, first)).compile()
loaded = load_onto(*serialize_executable.serialize(compiled), second)
out = loaded(jax.device_put(w, second), jax.device_put(x, second))
print(out.devices() == {second}, np.array_equal(out, compiled(jax.device_put(w, first), jax.device_put(x, first))))
"""


def test_a_program_compiled_for_one_device_runs_on_another():
    """What lets the processes of a cluster share one program store: an executable names its device, and is
    loaded onto the loading process's own (two CPU devices of one process stand for two processes)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _ON_ANOTHER_DEVICE], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["True", "True"], run.stderr[-2000:]


def test_processes_reading_one_directory_share_its_identity_and_others_do_not(store_dir, tmp_path):
    first = program_store.identity()
    assert first is not None and program_store.identity() == first  # kept in the directory
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "elsewhere"))
    assert program_store.identity() not in (None, first)
    jax.config.update("jax_enable_compilation_cache", False)
    assert program_store.identity() is None
