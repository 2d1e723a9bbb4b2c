"""The compile cache of the population engine: its programs (scaling.engine.steps) compiled ahead of time, once each.

A sweep uses one Programs, closed when it ends (its compile threads with it; the command line leaves without
closing it, so as not to wait for a guess still compiling): programs are
compiled when first needed or in background threads while buckets train (prefetch), and a guess about the
next round never counts as compiled until something asks for it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from scaling.engine import host_init, program_store
from scaling.engine.model import INITS
from scaling.engine.population import Bucket, BucketSpec
from scaling.engine.steps import (
    compiler_options,
    gather,
    host_init_applies,
    host_population,
    init_population,
    member_group,
    shardings,
    train_chunk,
)


def _struct(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


class Programs:
    """The compiled XLA programs of the population engine, by (kind, spec, population size), each compiled once;
    a context manager that closes its compile threads.

    Programs are lowered and compiled ahead of time (jit(...).lower(...).compile()), either when first needed
    or in background threads while buckets train (prefetch): XLA's compiler releases the GIL. The
    counters say how many programs were compiled and how many seconds the compiler spent on them (on any
    thread, so they may add up to more than the wall time), and how long training threads waited for a
    compile (summed over the threads).
    """

    def __init__(self, xla_defaults: bool = False):
        """xla_defaults: compile with XLA's default options instead of compiler_options() (for comparisons)."""
        self._options = None if xla_defaults else compiler_options()
        self._lock = threading.Lock()
        self._futures: dict[tuple, concurrent.futures.Future] = {}
        self._guesses: set[tuple] = set()  # queued by a guess about the next round, and not asked for since
        self._threads = 1
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="scaling-compile")
        self._now = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="scaling-compile-now")
        self.compiles = 0
        self.compile_s = 0.0
        self.guessed = 0  # of the compiles, those of a guess that nothing had asked for when it was compiled
        self.loads = 0  # programs read from the program store instead of compiled
        self.load_s = 0.0
        self.wait_s = 0.0

    def close(self) -> None:
        """Drop the compiles that have not started and end the compile threads (those compiling finish first)."""
        self.cancel_pending()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._now.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Programs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _compile(self, key: tuple, lower: Callable[[], jax.stages.Lowered]):
        """The program from the shared program store (scaling.engine.program_store), else compiled (and stored).
        Programs sharded over a mesh are compiled every time: their executables name the devices."""
        start = time.perf_counter()

        def compile_here():
            begun = time.perf_counter()  # after any wait for another process's compile
            compiled, storable = program_store.compile_fresh(lower(), self._options)
            with self._lock:
                self.compiles += 1
                self.guessed += key in self._guesses
                self.compile_s += time.perf_counter() - begun
            return compiled, storable

        if any(isinstance(part, Mesh) for part in key):
            return compile_here()[0]
        stored = (*key, member_group(*key[1:])) if key[0] == "chunk" else key  # the group is the program's too
        program, compiled = program_store.load_or_compile(program_store.key(stored, self._options), compile_here)
        if not compiled:
            with self._lock:
                self.loads += 1
                self.load_s += time.perf_counter() - start  # with any wait for another process's compile
        return program

    def _future(self, key: tuple, lower, where: str, guess: bool = False) -> concurrent.futures.Future:
        """The program's future. where: "queue" (the background threads, in order), "now" (a thread of its own)
        or "here" (this thread). A program asked for now or here that still waits in the queue leaves the queue
        and compiles at once: training never waits behind guesses or later buckets."""
        with self._lock:
            if not guess:
                self._guesses.discard(key)
            elif key not in self._futures:
                self._guesses.add(key)
            future = self._futures.get(key)
            if future is not None and where != "queue" and future.cancel():
                future = None  # it had not started
            fresh = future is None
            if fresh:
                future = (self._pool.submit(self._compile, key, lower) if where == "queue" else
                          self._now.submit(self._compile, key, lower) if where == "now" else
                          concurrent.futures.Future())
                if where == "here":
                    future.set_running_or_notify_cancel()  # compiling now: cancel_pending must leave it be
                self._futures[key] = future
        if fresh and where == "here":  # compile on this thread, outside the lock
            try:
                future.set_result(self._compile(key, lower))
            except BaseException as e:
                with self._lock:
                    del self._futures[key]
                future.set_exception(e)
        return future

    def _get(self, key: tuple, lower):
        """The compiled program, compiling it here if nobody has started to; the time spent counts as waited."""
        start = time.perf_counter()
        result = self._future(key, lower, "here").result()
        with self._lock:  # several training threads may wait at once
            self.wait_s += time.perf_counter() - start
        return result

    # The three programs, each lowered from abstract shapes (with the mesh's shardings when there is one).
    @staticmethod
    def _init_args(slots: int, pop) -> tuple:
        """Abstract arguments of init_population: key data, n, depth, width and lr per member."""
        i32 = _struct((slots,), jnp.int32, pop)
        return _struct((slots, 2), jnp.uint32, pop), i32, i32, i32, _struct((slots,), jnp.float32, pop)

    def _lower_init(self, spec: BucketSpec, slots: int, mesh: Mesh | None):
        pop, _ = shardings(mesh)
        return lambda: init_population.lower(*self._init_args(slots, pop), spec=spec)

    @staticmethod
    def _lower_draw(distribution: str):
        u32 = lambda *shape: _struct(shape, jnp.uint32, None)
        q = host_init.DRAWS_PER_CALL
        return lambda: host_init.draw.lower(u32(q, 2), u32(q), u32(q), u32(q), distribution=distribution)

    def _init_program(self, spec: BucketSpec, slots: int, mesh: Mesh | None) -> tuple[tuple, Callable]:
        """The key and lowering of what starts a population: the shape-generic draw program where
        host_init_applies, else the bucket shape's init program."""
        if host_init_applies(mesh):
            distribution = INITS[spec.init].distribution
            return ("draw", distribution, host_init.DRAWS_PER_CALL), self._lower_draw(distribution)
        return ("init", spec, slots, mesh), self._lower_init(spec, slots, mesh)

    def _state_struct(self, spec: BucketSpec, slots: int, mesh: Mesh | None):
        pop, _ = shardings(mesh)
        shapes = jax.eval_shape(functools.partial(init_population, spec=spec), *self._init_args(slots, None))
        return jax.tree.map(lambda a: _struct(a.shape, a.dtype, pop), shapes)

    def _lower_chunk(self, spec: BucketSpec, slots: int, mesh: Mesh | None):
        _, whole = shardings(mesh)

        def lower():
            state = self._state_struct(spec, slots, mesh)
            rows = spec.eval_rows
            return train_chunk.lower(state, _struct((rows, spec.n), jnp.float32, whole),
                                      _struct((rows,), jnp.float32, whole), _struct((), jnp.int32, whole),
                                      _struct((), jnp.int32, whole), _struct((), jnp.int32, whole), spec=spec,
                                      group=member_group(spec, slots, mesh))
        return lower

    def _lower_gather(self, spec: BucketSpec, slots: int, new_slots: int, mesh: Mesh | None):
        pop, _ = shardings(mesh)
        return lambda: gather.lower(self._state_struct(spec, slots, mesh), _struct((new_slots,), jnp.int32, pop))

    def lowered(self, kind: str, spec: BucketSpec, slots: int, mesh: Mesh | None = None) -> jax.stages.Lowered:
        """The traced and lowered, not compiled, "init", "chunk" or "gather" (to half the population) program of
        a bucket shape (for measurements)."""
        if kind == "gather":
            return self._lower_gather(spec, slots, max(1, slots // 2), mesh)()
        lower = {"init": self._lower_init, "chunk": self._lower_chunk}[kind]
        return lower(spec, slots, mesh)()

    def init(self, spec, slots, mesh):
        """(key_data_Px2, n_P, depth_P, width_P, lr_P) -> the population's initial PopState."""
        key, lower = self._init_program(spec, slots, mesh)
        program = self._get(key, lower)
        return functools.partial(host_population, program, spec) if key[0] == "draw" else program

    def chunk(self, spec, slots, mesh):
        return self._get(("chunk", spec, slots, mesh), self._lower_chunk(spec, slots, mesh))

    def gather(self, spec, slots, new_slots, mesh):
        return self._get(("gather", spec, slots, new_slots, mesh), self._lower_gather(spec, slots, new_slots, mesh))

    def chunk_soon(self, spec, slots, mesh) -> None:
        """Start compiling a chunk program on a thread of its own (unless it is compiled or compiling), so that
        it compiles while the calling thread starts the bucket's population."""
        self._future(("chunk", spec, slots, mesh), self._lower_chunk(spec, slots, mesh), "now")

    def prefetch(self, bucket: Bucket, mesh: Mesh | None = None, guess: bool = False) -> None:
        """Start compiling a bucket's first programs in the background (a no-op for programs already there).
        A guess (a bucket that the next round may ask for) stays out of shapes() until something asks for it."""
        slots = population_slots(bucket, mesh)
        for key, lower in (self._init_program(bucket.spec, slots, mesh),
                           (("chunk", bucket.spec, slots, mesh), self._lower_chunk(bucket.spec, slots, mesh))):
            self._future(key, lower, "queue", guess=guess)

    def set_compile_threads(self, threads: int) -> None:
        """Compile up to `threads` programs at once in the background (queued compiles keep their order)."""
        with self._lock:
            if threads != self._threads:
                self._pool.shutdown(wait=False)  # what it has queued still runs
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads,
                                                                   thread_name_prefix="scaling-compile")
                self._threads = threads

    def wait_idle(self, guesses: bool = True) -> None:
        """Block until the background compiles queued so far have finished (guesses=False: all but the guesses)."""
        with self._lock:
            pending = [f for key, f in self._futures.items() if guesses or key not in self._guesses]
        concurrent.futures.wait(pending)

    def has(self, kind: str, spec: BucketSpec, slots: int, mesh: Mesh | None) -> bool:
        with self._lock:
            return (kind, spec, slots, mesh) in self._futures

    def cancel_pending(self) -> None:
        """Drop queued background compiles that have not started (a sweep that stops early need not wait)."""
        with self._lock:
            for key, future in list(self._futures.items()):
                if future.cancel():
                    del self._futures[key]
                    self._guesses.discard(key)

    def shapes(self) -> set[tuple[BucketSpec, int]]:
        """(spec, population size) of every chunk program that training or a plan has asked for, compiled or
        compiling (for the planner's costing). Guesses are left out: whether one started before the next round
        dropped it depends on timing, and plans must not."""
        with self._lock:
            return {(key[1], key[2]) for key in self._futures if key[0] == "chunk" and key not in self._guesses}

    def counters(self) -> dict[str, float]:
        return {"compiles": self.compiles, "compile_s": self.compile_s, "loads": self.loads, "load_s": self.load_s,
                "compile_wait_s": self.wait_s}



def population_slots(bucket: Bucket, mesh: Mesh | None) -> int:
    """The bucket's population size, rounded up to a multiple of the mesh's devices."""
    multiple = 1 if mesh is None else mesh.devices.size
    return -(-bucket.slots // multiple) * multiple
