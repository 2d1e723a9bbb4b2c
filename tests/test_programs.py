"""The compile cache (scaling.engine.programs) and its programs (scaling.engine.steps): each compiled once per
shape, in the background where it can, with XLA options that change compile time only; a population started on the host
equals the compiled init program."""

import dataclasses
import sqlite3

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from configs import MONOTONE, TINY

from scaling.engine.population import make_bucket
from scaling.engine.programs import Programs
from scaling.engine.steps import compiler_options, init_population
from scaling.engine.train import train_bucket
from scaling.experiment import config
from scaling.planning import search
from scaling.planning.guesses import queue_next_round
from scaling.planning.rounds import Calibration
from scaling.storage.store import STORE_NAME
from scaling.sweep import run_sweep


def test_a_thin_round_compiles_the_next_rounds_likely_programs_meanwhile():
    """While a round trains, the programs of the next round are queued as if every member failed, then as if
    every one solved (the gallop climbs, or the cells settle)."""
    from scaling.planning import cost
    from scaling.planning.plan import plan_buckets

    cfg = config.parse(MONOTONE)
    model, programs = cost.load(), Programs()
    round0 = search.wanted_members(cfg, pd.DataFrame())
    queue_next_round(cfg, pd.DataFrame(), round0, Calibration(model, 1), set(), programs, None)
    programs.wait_idle()
    climb = search.wanted_members(cfg, search.with_assumed_rows(pd.DataFrame(), round0, lambda m: False))
    expected = {(b.spec, b.slots) for b in plan_buckets(sorted(set(climb) - set(round0)), cfg, model)}
    assert expected and all(programs.has("chunk", spec, slots, None) for spec, slots in expected)
    assert programs.compiles >= 2 * len(expected)  # an init and a chunk program for each guessed bucket
    # Guesses are not known shapes until a round asks for them: plans must not depend on which guesses started.
    assert programs.shapes() == set()
    spec, slots = next(iter(expected))
    compiled = programs.compiles
    programs.chunk(spec, slots, None)
    assert programs.shapes() == {(spec, slots)} and programs.compiles == compiled  # asked for: known, not recompiled


def test_a_program_needed_now_does_not_wait_behind_the_queue():
    import threading

    from scaling.engine.population import make_bucket

    cfg = config.parse(MONOTONE)
    bucket = make_bucket(search.wanted_members(cfg, pd.DataFrame())[:4], eval_every=cfg.train.eval_every)
    programs, release = Programs(), threading.Event()
    programs._pool.submit(release.wait)  # the one background thread is busy
    programs.prefetch(bucket)  # queued behind it
    compiled = threading.Event()
    asker = threading.Thread(target=lambda: (programs.chunk(bucket.spec, bucket.slots, None), compiled.set()))
    asker.start()
    try:
        assert compiled.wait(60), "the chunk program waited behind the busy background thread"
        assert programs.compiles == 1 and programs.shapes() == {(bucket.spec, bucket.slots)}
    finally:
        release.set()
        asker.join()
    programs.wait_idle()
    assert programs.compiles == 2  # the init program, from the queue; the chunk program was not compiled twice


def test_a_sweep_compiles_each_program_once_and_a_bounded_number_of_them(tmp_path):
    """Counted by the sweep's compile cache: programs repeat across rounds (far fewer than one per bucket and
    round), and an identical second sweep with the same cache compiles none (no silent recompiles)."""
    with Programs() as programs:
        first = run_sweep(config.parse(TINY), tmp_path / "a", progress=False, programs=programs)
        chunk_shapes = programs.shapes()
        assert first.compile_s > 0
        # chunk, compaction and start-up programs
        assert first.compiles <= 3 * len(chunk_shapes) and first.compiles <= 24
        programs.wait_idle()  # a guess still compiling when the sweep ended (it does not wait for one)
        compiled, guessed = programs.compiles, programs.guessed
        assert compiled - guessed <= first.compiles <= compiled  # what finished later was a guess
        second = run_sweep(config.parse(TINY), tmp_path / "b", progress=False, programs=programs)
        programs.wait_idle()
        # Nothing compiled again; only a guess about a next round that did not start in the first sweep may be
        # new (guesses start when a thread idles: timing).
        assert second.trained == first.trained and programs.compiles - compiled == programs.guessed - guessed
    with sqlite3.connect(tmp_path / "a" / STORE_NAME) as conn:
        assert conn.execute("SELECT compiles FROM runs").fetchone()[0] == first.compiles


def test_one_compile_per_bucket_shape(member_factory):
    members = [member_factory(n=3, depth=2, width=7, seed=s, lr=1e-9, steps=200) for s in range(4)]
    bucket = make_bucket(members, eval_every=40)
    with Programs() as programs:
        train_bucket(bucket, programs=programs)
        # Five chunks, one chunk program and the population's start (nothing solves at lr 1e-9: no compaction).
        assert programs.compiles == 2
        relabelled = [member_factory(n=3, depth=2, width=7, seed=s + 10, lr=2e-9, steps=200) for s in range(4)]
        train_bucket(make_bucket(relabelled, eval_every=40), programs=programs)
        assert programs.compiles == 2  # new seeds and learning rates reuse the compiled programs


def test_the_engines_xla_options_train_like_xlas_defaults(member_factory):
    """compiler_options (LLVM at O1 on a CPU) buys compile time only: the same members, compiled with XLA's
    defaults, reach the same losses up to float rounding and solve at the same steps. (Over hundreds of steps
    the rounding can grow, as training near w* is chaotic: one of these members differed by 1e-4 at 400.)"""
    assert compiler_options() == ({"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None)
    bucket = make_bucket([member_factory(n=4, depth=d, width=w, seed=s, lr=3e-2, steps=100)
                          for d, w in ((1, 4), (2, 3), (3, 6)) for s in range(3)], eval_every=50)
    engine = train_bucket(bucket, programs=Programs())
    defaults = train_bucket(bucket, programs=Programs(xla_defaults=True))
    assert sum(r.solved for r in engine) > 0
    for a, b in zip(engine, defaults):
        assert abs(a.final_loss - b.final_loss) < 1e-6
        assert (a.solved, a.step_solved, a.steps_run) == (b.solved, b.step_solved, b.steps_run)


@pytest.mark.parametrize("n, depth, width, init, optimizer, profile, weight_decay",
                         [(5, 3, 6, "he", "adam", "constant", 0.0),
                          (3, 1, 4, "rademacher", "momentum", "constant", 0.0),
                          (4, 0, 1, "lecun", "sgd", "constant", 0.0), (6, 4, 9, "he", "adam", "halving", 0.0),
                          (5, 3, 5, "lecun_bias", "adam", "halving", 0.0),
                          (5, 3, 5, "orthogonal", "adam", "halving", 0.0),
                          (3, 2, 7, "orthogonal", "adam", "constant", 0.0), (4, 2, 5, "he", "adam", "constant", 1e-3),
                          (4, 1, 3, "he", "momentum", "constant", 1e-3)])
def test_a_population_started_on_the_host_equals_the_compiled_init_program(member_factory, monkeypatch, n, depth,
                                                                            width, init, optimizer, profile,
                                                                            weight_decay):
    """On one CPU device populations start from one shape-generic draw program (scaling.engine.host_init): every
    array of the state, with its dtype and shape, equals what the bucket shape's init program computes, for
    members of other n, depths, widths and learning rates padded together. (64 draws per call, so that these
    few members span several calls, the last one padded. Orthogonal kernels agree to float rounding: the host
    takes each real block's SVD in float64, the program the padded block's in float32.)"""
    from scaling.engine import host_init

    monkeypatch.setattr(host_init, "DRAWS_PER_CALL", 64)
    members = [member_factory(n=max(2, n - s % 2) if depth else n, depth=max(1, depth - s % 2) if depth else 0,
                              width=max(1, width - s % 3), seed=s, lr=(1e-2, 3e-3)[s % 2], init=init,
                              optimizer=optimizer, profile=profile, weight_decay=weight_decay) for s in range(6)]
    bucket = make_bucket(members, eval_every=50)
    args = (jnp.asarray(np.stack([m.key_data(0) for m in members])),
            *(jnp.asarray([getattr(m, f) for m in members], jnp.int32) for f in ("n", "depth", "width")),
            jnp.asarray([m.lr for m in members], jnp.float32))
    programs = Programs()
    host = programs.init(bucket.spec, len(members), None)(*args)
    compiled = init_population(*args, spec=bucket.spec)
    assert jax.tree.structure(host) == jax.tree.structure(compiled)
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(compiled)):
        assert a.dtype == b.dtype and a.shape == b.shape
        if init == "orthogonal":
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=2e-6)
        else:
            assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.any(np.asarray(host.params["out_kernel"]) != 0)
    # Another bucket shape with the same init compiles nothing new to start from.
    before = programs.compiles
    wider = make_bucket(members + [member_factory(n=n, depth=depth, width=width + 7, init=init, optimizer=optimizer,
                                                  profile=profile, weight_decay=weight_decay)], eval_every=50)
    programs.init(wider.spec, len(wider.members), None)
    assert programs.compiles == before


class _Queue:
    """Stands in for Programs: records the member widths of each bucket queued as a guess."""

    def __init__(self):
        self.widths: list[list[int]] = []

    def prefetch(self, bucket, mesh=None, guess=False):
        assert guess
        self.widths.append(sorted({m.width for m in bucket.members}))


def test_a_width_ladder_of_short_rounds_is_compiled_rounds_ahead_and_a_long_round_waits(monkeypatch):
    """Rounds that train for less time than their programs compile queue the programs of the rounds after
    them too, if every member fails (the gallop climbs 2, 4, 8); a round that trains for longer than the
    next round's compile ends the chain (that round compiles its own programs in time)."""
    from scaling.planning import cost, plan

    monkeypatch.setattr(plan, "PAD_UP", 0.0)  # one program per width, to see each round's own
    cfg = config.parse(TINY.replace("n = [2, 4]", "n = 4").replace("depths = {fixed = [1, 2], log2 = [1]}",
                                                                   "depths = [1]")
                       .replace("min_depth_widths = [2, 4]", "min_depth_widths = []"))
    model = cost.CostModel("cpu", "test", compile_s=1.0, compile_s_per_layer=0.0, step_latency_s=0.0,
                           unit_s=(0.0, 0.0, 0.0, 1e-9), calibrated=True)  # a round trains in milliseconds
    round0 = search.wanted_members(cfg, pd.DataFrame())
    assert {m.width for m in round0} == {1}
    queued = _Queue()
    queue_next_round(cfg, pd.DataFrame(), round0, Calibration(model, 1), set(), queued, None)
    # next if all fail, next if all solve (settled at 1: confirmed at the next rung), then the climb on
    assert queued.widths == [[2], [2], [4], [8]]
    slow = dataclasses.replace(model, unit_s=(0.0, 0.0, 0.0, 1e-3))  # a guessed round trains for longer
    long_rounds = _Queue()
    queue_next_round(cfg, pd.DataFrame(), round0, Calibration(slow, 1), set(), long_rounds, None)
    assert long_rounds.widths == [[2], [2]]  # the next round, either way; its successor compiles in time


def test_a_sweeps_end_waits_for_the_programs_asked_for_but_not_for_a_guess_still_compiling():
    """A sweep ends (wait_idle(guesses=False)) without waiting for a guess of a round that never came (a cold
    bench sweep waited 0.45-0.5 s for one); a program that something asked for is finished first, and closing
    the compile cache waits for everything (the command line leaves with os._exit instead)."""
    import threading

    for guess in (True, False):
        programs = Programs()
        compiling, finish = threading.Event(), threading.Event()

        def slow():
            compiling.set()
            finish.wait(10)
            return "program"

        programs._compile = lambda key, lower: lower()  # the compile itself stands in for XLA's
        future = programs._future(("chunk", "a shape"), slow, "queue", guess=guess)
        assert compiling.wait(10)
        if not guess:
            threading.Timer(0.3, finish.set).start()
        programs.wait_idle(guesses=False)
        assert future.done() is not guess
        threading.Timer(0.3, finish.set).start()
        programs.close()
        assert future.done() and future.result() == "program"
