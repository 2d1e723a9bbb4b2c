"""The population engine's XLA programs and their compilation.

Three programs, each jit-compiled once per (spec, population size): the initialisation of a population, a
training chunk (eval_every steps of jit(vmap(step)) under lax.scan, then one evaluation on all rows), and the
gather that compacts a population. On one CPU device a population starts from the host instead
(scaling.host_init: one draw program for every shape). Programs compiles them ahead of time, in the
background where it can.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scaling import host_init, names
from scaling.model import forward, init_member, param_mask
from scaling.population import Bucket, BucketSpec

OPTIMIZERS = {
    "adam": optax.adam,
    "sgd": optax.sgd,
    "momentum": lambda learning_rate: optax.sgd(learning_rate, momentum=0.9),
}
assert tuple(OPTIMIZERS) == names.OPTIMIZERS, "scaling.names.OPTIMIZERS must list exactly these"
# Traces of the chunk program per static signature: a guard against silent recompiles (tests read it).
_TRACES: collections.Counter = collections.Counter()


class PopState(NamedTuple):
    """Everything that evolves, stacked on a leading population axis P."""

    params: dict
    opt_state: optax.OptState
    masks: dict
    key_data_Px2: jax.Array
    rows_P: jax.Array  # int32: the member's own rows, 2^n (a prefix of the bucket's table)
    active_P: jax.Array
    first_solved_P: jax.Array  # int32: the first step whose full-batch forward got every row right, or -1


def compiler_options() -> dict | None:
    """XLA options for every program of the engine. On a CPU, LLVM runs at O1 instead of XLA's default O2: a
    CPU sweep is compile-bound, and on the 2-core CPU O1 cut the compiler's seconds to about 0.74x at the
    same training speed (python -m scaling.profile compares them). Other backends keep their defaults."""
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None


def trace_count(spec: BucketSpec | None = None) -> int:
    """How many times the chunk program was traced (for one spec, or in total)."""
    if spec is None:
        return sum(_TRACES.values())
    return sum(v for (s, _), v in _TRACES.items() if s == spec)


def _optimizer(name: str, lr) -> optax.GradientTransformation:
    return optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=lr)


def _loss(logits_R: jax.Array, y_R: jax.Array, valid_R: jax.Array, kind: str) -> jax.Array:
    """The mean loss over the member's own rows (valid_R): rows of a larger n's table are left out."""
    if kind == "bce":
        per_row_R = optax.sigmoid_binary_cross_entropy(logits_R, y_R)
    else:
        per_row_R = (logits_R - (2.0 * y_R - 1.0)) ** 2  # mse on the logit against a +-1 target
    return jnp.sum(jnp.where(valid_R, per_row_R, 0.0)) / jnp.sum(valid_R)


@functools.partial(jax.jit, static_argnames=("spec",))
def _init_population(key_data_Px2, n_P, depth_P, width_P, lr_P, spec: BucketSpec) -> PopState:
    def one(key_data, n, depth, width, lr):
        key = jax.random.wrap_key_data(key_data)
        params, masks = init_member(
            spec.n, depth, width, jax.random.fold_in(key, 0), n_real=n,
            depth_max=spec.depth_max, width_max=spec.width_max, activation=spec.activation, init=spec.init,
        )
        return params, _optimizer(spec.optimizer, lr).init(params), masks

    params, opt_state, masks = jax.vmap(one)(key_data_Px2, n_P, depth_P, width_P, lr_P)
    return PopState(params, opt_state, masks, key_data_Px2, jnp.left_shift(1, n_P).astype(jnp.int32),
                    jnp.ones(depth_P.shape, bool), jnp.full(depth_P.shape, -1, jnp.int32))


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("state",))
def _train_chunk(state: PopState, x_RxN, y_R, step0, budget, spec: BucketSpec):
    """eval_every steps for every member, then one evaluation on all rows: (state, (loss_P, acc_P, solved_P)).

    With full batches, each step's forward pass already sees every row, so the first step at which every
    row is right is recorded exactly (state.first_solved_P), at no extra cost; mini-batch buckets rely on the
    chunk-end evaluation alone.
    """
    _TRACES[(spec, state.active_P.shape[0])] += 1
    tx = _optimizer(spec.optimizer, 0.0)  # the real learning rate lives in each member's opt_state
    rows = x_RxN.shape[0]
    full_batch = spec.batch_rows >= rows

    def member_step(params, opt_state, masks, key_data, own_rows, active, step):
        if spec.batch_rows < rows:  # mini-batches: never mixed with other n, so every row is the member's own
            key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key_data), 1), step)
            idx_B = jax.random.randint(key, (spec.batch_rows,), 0, rows)
            x_BxN, y_B, valid_B = x_RxN[idx_B], y_R[idx_B], jnp.ones((spec.batch_rows,), bool)
        else:  # the table's first 2^n rows are the n-bit table (the extra bits are 0 there, and masked anyway)
            x_BxN, y_B, valid_B = x_RxN, y_R, jnp.arange(rows) < own_rows

        def loss_and_logits(p):
            logits_B = forward(p, masks, x_BxN, spec.activation)
            return _loss(logits_B, y_B, valid_B, spec.loss), logits_B

        (_, logits_B), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(params)
        # Every row right, of the parameters after `step` updates.
        all_right = jnp.all(((logits_B > 0) == (y_B > 0.5)) | ~valid_B)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        # Padded parameters get exactly zero updates, whatever the optimizer does with a zero gradient.
        updates = jax.tree.map(jnp.multiply, updates, param_mask(params, masks))
        new_params = optax.apply_updates(params, updates)
        live = active & (step < budget)
        keep = lambda new, old: jnp.where(live, new, old)
        return jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_opt_state, opt_state), live & all_right

    step_all = jax.vmap(member_step, in_axes=(0, 0, 0, 0, 0, 0, None))

    def body(carry, i):
        params, opt_state, first_P = carry
        step = step0 + i
        params, opt_state, right_P = step_all(params, opt_state, state.masks, state.key_data_Px2, state.rows_P,
                                              state.active_P, step)
        if full_batch:
            first_P = jnp.where((first_P < 0) & right_P, step, first_P)
        return (params, opt_state, first_P), None

    carry = (state.params, state.opt_state, state.first_solved_P)
    (params, opt_state, first_P), _ = jax.lax.scan(body, carry, jnp.arange(spec.eval_every))

    def evaluate(p, masks, own_rows):
        logits_R = forward(p, masks, x_RxN, spec.activation)
        correct_R, valid_R = (logits_R > 0) == (y_R > 0.5), jnp.arange(rows) < own_rows
        accuracy = jnp.sum(correct_R & valid_R) / own_rows
        return _loss(logits_R, y_R, valid_R, spec.loss), accuracy, jnp.all(correct_R | ~valid_R)

    metrics = jax.vmap(evaluate)(params, state.masks, state.rows_P)
    return state._replace(params=params, opt_state=opt_state, first_solved_P=first_P), metrics


def host_init_applies(mesh: Mesh | None) -> bool:
    """Whether populations start from the host (scaling.host_init) rather than a compiled init program: on one
    CPU device, where host memory is the device's and init programs were half of a sweep's compiles."""
    return mesh is None and jax.default_backend() == "cpu"


def _host_population(draw, spec: BucketSpec, key_data_Px2, n_P, depth_P, width_P, lr_P) -> PopState:
    """What _init_population returns, with the weights drawn by the shape-generic `draw` program and laid out
    on the host (the same values, tested). The optimizer's state starts at zero but for its hyperparameters:
    each member's learning rate, and the optimizer's defaults (Adam's b1, b2, eps)."""
    keys, n, depth, width, lr = (np.asarray(a) for a in (key_data_Px2, n_P, depth_P, width_P, lr_P))
    params, masks = host_init.initial_params(spec, keys, n, depth, width, draw)
    opt_shapes = jax.eval_shape(jax.vmap(lambda p, rate: _optimizer(spec.optimizer, rate).init(p)), params, lr)
    hyperparams = _optimizer(spec.optimizer, 0.0).init({}).hyperparams
    defaults = {**{name: np.asarray(value) for name, value in hyperparams.items()}, "learning_rate": lr}

    def start(path, leaf):
        if getattr(path[0], "name", None) == "hyperparams":
            return np.broadcast_to(defaults[path[1].key], leaf.shape).astype(leaf.dtype)
        return np.zeros(leaf.shape, leaf.dtype)

    opt_state = jax.tree_util.tree_map_with_path(start, opt_shapes)
    state = PopState(params, opt_state, masks, keys, np.left_shift(1, n).astype(np.int32), np.ones(len(n), bool),
                     np.full(len(n), -1, np.int32))
    return jax.device_put(state)


@jax.jit
def _gather(state: PopState, take_Q: jax.Array) -> PopState:
    """The members at slots take_Q, as a population of Q slots (compaction)."""
    return jax.tree.map(lambda a: a[take_Q], state)


def _struct(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


class Programs:
    """The compiled XLA programs of the population engine, by (kind, spec, population size), each compiled once.

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
        self.wait_s = 0.0

    def _compile(self, lower: Callable[[], jax.stages.Lowered]):
        start = time.perf_counter()
        compiled = lower().compile(self._options)
        with self._lock:
            self.compiles += 1
            self.compile_s += time.perf_counter() - start
        return compiled

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
                future = (self._pool.submit(self._compile, lower) if where == "queue" else
                          self._now.submit(self._compile, lower) if where == "now" else concurrent.futures.Future())
                self._futures[key] = future
        if fresh and where == "here":  # compile on this thread, outside the lock
            try:
                future.set_result(self._compile(lower))
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
    def _shardings(mesh: Mesh | None):
        if mesh is None:
            return None, None
        return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0])), NamedSharding(mesh, PartitionSpec())

    @staticmethod
    def _init_args(cap: int, pop) -> tuple:
        """Abstract arguments of _init_population: key data, n, depth, width and lr per member."""
        i32 = _struct((cap,), jnp.int32, pop)
        return _struct((cap, 2), jnp.uint32, pop), i32, i32, i32, _struct((cap,), jnp.float32, pop)

    def _lower_init(self, spec: BucketSpec, cap: int, mesh: Mesh | None):
        pop, _ = self._shardings(mesh)
        return lambda: _init_population.lower(*self._init_args(cap, pop), spec=spec)

    @staticmethod
    def _lower_draw(distribution: str):
        u32 = lambda *shape: _struct(shape, jnp.uint32, None)
        q = host_init.DRAWS_PER_CALL
        return lambda: host_init.draw.lower(u32(q, 2), u32(q), u32(q), u32(q), distribution=distribution)

    def _init_program(self, spec: BucketSpec, cap: int, mesh: Mesh | None) -> tuple[tuple, Callable]:
        """The key and lowering of what starts a population: the shape-generic draw program where
        host_init_applies, else the bucket shape's init program."""
        if host_init_applies(mesh):
            distribution = host_init.sampler(spec.init)
            return ("draw", distribution), self._lower_draw(distribution)
        return ("init", spec, cap, mesh), self._lower_init(spec, cap, mesh)

    def _state_struct(self, spec: BucketSpec, cap: int, mesh: Mesh | None):
        pop, _ = self._shardings(mesh)
        shapes = jax.eval_shape(functools.partial(_init_population, spec=spec), *self._init_args(cap, None))
        return jax.tree.map(lambda a: _struct(a.shape, a.dtype, pop), shapes)

    def _lower_chunk(self, spec: BucketSpec, cap: int, mesh: Mesh | None):
        _, whole = self._shardings(mesh)

        def lower():
            state = self._state_struct(spec, cap, mesh)
            rows = 2**spec.n
            return _train_chunk.lower(state, _struct((rows, spec.n), jnp.float32, whole),
                                      _struct((rows,), jnp.float32, whole), _struct((), jnp.int32, whole),
                                      _struct((), jnp.int32, whole), spec=spec)
        return lower

    def _lower_gather(self, spec: BucketSpec, cap: int, new_cap: int, mesh: Mesh | None):
        pop, _ = self._shardings(mesh)
        return lambda: _gather.lower(self._state_struct(spec, cap, mesh), _struct((new_cap,), jnp.int32, pop))

    def init(self, spec, cap, mesh):
        """(key_data_Px2, n_P, depth_P, width_P, lr_P) -> the population's initial PopState."""
        key, lower = self._init_program(spec, cap, mesh)
        program = self._get(key, lower)
        return functools.partial(_host_population, program, spec) if key[0] == "draw" else program

    def chunk(self, spec, cap, mesh):
        return self._get(("chunk", spec, cap, mesh), self._lower_chunk(spec, cap, mesh))

    def gather(self, spec, cap, new_cap, mesh):
        return self._get(("gather", spec, cap, new_cap, mesh), self._lower_gather(spec, cap, new_cap, mesh))

    def chunk_soon(self, spec, cap, mesh) -> None:
        """Start compiling a chunk program on a thread of its own (unless it is compiled or compiling), so that
        it compiles while the calling thread starts the bucket's population."""
        self._future(("chunk", spec, cap, mesh), self._lower_chunk(spec, cap, mesh), "now")

    def prefetch(self, bucket: Bucket, mesh: Mesh | None = None, guess: bool = False) -> None:
        """Start compiling a bucket's first programs in the background (a no-op for programs already there).
        A guess (a bucket that the next round may ask for) stays out of shapes() until something asks for it."""
        cap = population_slots(bucket, mesh)
        for key, lower in (self._init_program(bucket.spec, cap, mesh),
                           (("chunk", bucket.spec, cap, mesh), self._lower_chunk(bucket.spec, cap, mesh))):
            self._future(key, lower, "queue", guess=guess)

    def set_compile_threads(self, threads: int) -> None:
        """Compile up to `threads` programs at once in the background (queued compiles keep their order)."""
        with self._lock:
            if threads != self._threads:
                self._pool.shutdown(wait=False)  # what it has queued still runs
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads,
                                                                   thread_name_prefix="scaling-compile")
                self._threads = threads

    def wait_idle(self) -> None:
        """Block until the background compiles queued so far have finished."""
        with self._lock:
            pending = list(self._futures.values())
        concurrent.futures.wait(pending)

    def has(self, kind: str, spec: BucketSpec, cap: int, mesh: Mesh | None) -> bool:
        with self._lock:
            return (kind, spec, cap, mesh) in self._futures

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
        return {"compiles": self.compiles, "compile_s": self.compile_s, "compile_wait_s": self.wait_s}


PROGRAMS = Programs()


def population_slots(bucket: Bucket, mesh: Mesh | None) -> int:
    """The bucket's population size, rounded up to a multiple of the mesh's devices."""
    multiple = 1 if mesh is None else mesh.devices.size
    return -(-bucket.slots // multiple) * multiple
