"""The population engine's pure programs: the state of a population, and the functions that XLA compiles.

Three programs, each jit-compiled once per (spec, population size) by scaling.engine.programs: the initialisation of
a population, a training chunk (eval_every steps of jit(vmap(step)) under lax.scan, on a CPU group by group
of members where the population outgrows the cache, then one evaluation on all rows), and the gather that compacts
a population. On one CPU device a population starts from the host
instead (host_population, with scaling.engine.host_init's one draw program for every shape).
"""

from __future__ import annotations

import functools
import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scaling.choices import Loss, Optimizer
from scaling.engine import host_init
from scaling.engine.model import forward, param_mask
from scaling.engine.population import BucketSpec
from scaling.engine.tasks import MAX_BITS, decode, encode

OPTIMIZERS = {
    Optimizer.ADAM: optax.adam,
    Optimizer.SGD: optax.sgd,
    Optimizer.MOMENTUM: lambda learning_rate: optax.sgd(learning_rate, momentum=0.9),
}
# Per-row losses on a logit: binary cross-entropy, the squared error against a +-1 target, or the hinge
# max(0, 1 - t * logit) with t = +-1 (the sparse-parity studies' loss, Barak et al. 2022).
LOSSES = {
    Loss.BCE: optax.sigmoid_binary_cross_entropy,
    Loss.MSE: lambda logits_R, y_R: (logits_R - (2.0 * y_R - 1.0)) ** 2,
    Loss.HINGE: lambda logits_R, y_R: jnp.maximum(0.0, 1.0 - (2.0 * y_R - 1.0) * logits_R),
}


class PopState(NamedTuple):
    """Everything that evolves, stacked on a leading population axis P."""

    params: dict
    opt_state: optax.OptState
    masks: dict
    key_data_Px2: jax.Array
    rows_P: jax.Array  # int32: the member's own rows, 2^n (a prefix of the bucket's table; read in the table mode only)
    active_P: jax.Array
    first_solved_P: jax.Array  # int32: the first step whose full-batch forward got every row right, or -1
    subset_PxN: jax.Array  # float32 0/1: the bits whose parity the member learns (sample modes; zeros in the table's)


def table_rows(n_P, xp):
    """2^n per member (int32): its truth table's rows. The sample modes' n (up to 256) has no table; capped so
    that the int32 does not overflow."""
    return xp.left_shift(1, xp.minimum(n_P, MAX_BITS)).astype(xp.int32)


def compiler_options() -> dict | None:
    """XLA options for every program of the engine. On a CPU, LLVM runs at O1 instead of XLA's default O2: a
    CPU sweep is compile-bound, and on the 2-core CPU O1 cut the compiler's seconds to about 0.74x at the
    same training speed (make profile compares them). Other backends keep their defaults."""
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None


def _factory(name: str, weight_decay: float):
    """optax's factory of the optimizer; weight decay adds weight_decay x params to the gradient first (L2, as
    PyTorch's SGD weight_decay does)."""
    if not weight_decay:
        return OPTIMIZERS[name]
    return lambda learning_rate: optax.chain(optax.add_decayed_weights(weight_decay), OPTIMIZERS[name](learning_rate))


def optimizer(name: str, lr, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """The optimizer with its learning rate as a hyperparameter of its state (one per member)."""
    return optax.inject_hyperparams(_factory(name, weight_decay))(learning_rate=lr)


def hyperparameter_defaults(name: str, weight_decay: float = 0.0) -> dict:
    """The factory's arguments with their defaults, among them the values that the optimizer's state starts its
    hyperparameters from (Adam's b1, b2, eps), read from its signature as optax.inject_hyperparams reads them.
    (Running optax's init to read them compiled four tiny programs; with the weight scales' three, 0.1 s of each
    process's first bucket.)"""
    bound = inspect.signature(_factory(name, weight_decay)).bind(learning_rate=0.0)
    bound.apply_defaults()
    return dict(bound.arguments)


def loss(logits_R: jax.Array, y_R: jax.Array, valid_R: jax.Array, kind: str) -> jax.Array:
    """The mean loss over the member's own rows (valid_R): rows of a larger n's table are left out."""
    per_row_R = LOSSES[kind](logits_R, y_R)
    return jnp.sum(jnp.where(valid_R, per_row_R, 0.0)) / jnp.sum(valid_R)


@functools.partial(jax.jit, static_argnames=("spec",))
def init_population(key_data_Px2, n_P, depth_P, width_P, lr_P, spec: BucketSpec) -> PopState:
    from scaling.engine.network import init_member  # flax, only where a network is traced (not in a warm sweep)

    def one(key_data, n, depth, width, lr):
        key = jax.random.wrap_key_data(key_data)
        params, masks = init_member(
            spec.n, depth, width, jax.random.fold_in(key, 0), n_real=n,
            depth_max=spec.depth_max, width_max=spec.width_max, activation=spec.activation, init=spec.init,
            profile=spec.profile,
        )
        return params, optimizer(spec.optimizer, lr, spec.weight_decay).init(params), masks

    params, opt_state, masks = jax.vmap(one)(key_data_Px2, n_P, depth_P, width_P, lr_P)
    return PopState(params, opt_state, masks, key_data_Px2, table_rows(n_P, jnp),
                    jnp.ones(depth_P.shape, bool), jnp.full(depth_P.shape, -1, jnp.int32),
                    jnp.zeros((*depth_P.shape, spec.n), jnp.float32))


def sample_bits(key: jax.Array, count: int, n: int) -> jax.Array:
    """count uniform random inputs of n bits (int32 0/1), count x n, drawn column by column (bit j from
    fold_in(key, j)): a member's own bits are the same whatever the n of the bucket it is padded into."""
    column = lambda j: jax.random.bernoulli(jax.random.fold_in(key, j), 0.5, (count,))
    return jax.vmap(column, out_axes=1)(jnp.arange(n)).astype(jnp.int32)


def parity_labels(bits_BxN: jax.Array, subset_N: jax.Array) -> jax.Array:
    """The parity of the subset's bits of each row (float32 0/1)."""
    return ((bits_BxN @ subset_N.astype(jnp.int32)) % 2).astype(jnp.float32)


def sample_batch(key_data: jax.Array, step, subset_N: jax.Array, spec: BucketSpec):
    """The sample modes' batch at `step` (x_BxN, y_B), from the member's key alone. Online: fresh inputs from
    the stream (key, 2, step). Fixed: sample i of the training set is drawn from (key, 3, i), and the batch's
    indices from (key, 1, step), so a set of m samples is the first m of every larger set."""
    key = jax.random.wrap_key_data(key_data)
    if spec.data == "online":
        bits_BxN = sample_bits(jax.random.fold_in(jax.random.fold_in(key, 2), step), spec.batch_rows, spec.n)
    else:
        idx_B = jax.random.randint(jax.random.fold_in(jax.random.fold_in(key, 1), step), (spec.batch_rows,), 0,
                                   spec.samples)
        train_set = jax.random.fold_in(key, 3)
        bits_BxN = jax.vmap(lambda i: sample_bits(jax.random.fold_in(train_set, i), 1, spec.n)[0])(idx_B)
    return encode(bits_BxN.astype(jnp.float32), spec.encoding), parity_labels(bits_BxN, subset_N)


# On a CPU, a step of a large population is bound by its elementwise passes over members x rows x units, each
# reading and writing arrays that outgrow the core's cache (16 MB at n = 10, width 32, 64 members). A population
# whose step activations pass WHOLE_POPULATION_BYTES trains in groups of members instead, each group's eval_every
# steps one after another, its activations (at most GROUP_BYTES, or one member's) in cache: on the 2-core CPU
# (1 MB of L2 per core) chunks took 0.59-0.94x as long at n = 8-12 and widths 12-128 (docs/ENGINE.md), and the
# same below 4 MB, where populations stay whole. Each member's arithmetic is the same either way; only the
# batched kernels' rounding may differ.
WHOLE_POPULATION_BYTES = 4 << 20
GROUP_BYTES = 1 << 20


def member_group(spec: BucketSpec, slots: int, mesh: Mesh | None) -> int:
    """Members per group of a chunk program (slots: the population trains whole; see above)."""
    if mesh is not None or jax.default_backend() != "cpu":
        return slots
    member_bytes = 4 * spec.batch_rows * spec.width_max * max(spec.depth_max, 1)
    if slots * member_bytes <= WHOLE_POPULATION_BYTES:
        return slots
    group = slots & -slots  # the largest power of two that divides the population (2^k or 3 x 2^k)
    while group > 1 and group * member_bytes > GROUP_BYTES:
        group //= 2
    return group


@functools.partial(jax.jit, static_argnames=("spec", "group"), donate_argnames=("state",))
def train_chunk(state: PopState, x_RxN, y_R, step0, budget, groups=None, *, spec: BucketSpec,
                group: int | None = None):
    """eval_every steps for every member, then one evaluation on all rows: (state, (loss_P, acc_P, solved_P)).

    With full batches, each step's forward pass already sees every row, so the first step at which every
    row is right is recorded exactly (state.first_solved_P), at no extra cost; mini-batch buckets rely on the
    chunk-end evaluation alone. In the sample modes x_RxN holds the evaluation's inputs (shared), each member's
    labels are the parity of its own subset, and y_R is not read. group: members trained together (a divisor
    of the population; member_group), None for the whole population at once; groups (int32, where group is
    set): only the first `groups` groups train, the others are left as they are (their members are done: a
    population compacts by moving its live members to the front, compiling nothing).
    """
    tx = optimizer(spec.optimizer, 0.0, spec.weight_decay)  # the real learning rate lives in each member's opt_state
    rows = x_RxN.shape[0]
    samples = spec.data != "table"
    full_batch = not samples and spec.batch_rows >= rows

    def member_step(params, opt_state, masks, key_data, own_rows, active, subset_N, step):
        if samples:
            x_BxN, y_B = sample_batch(key_data, step, subset_N, spec)
            valid_B = jnp.ones((spec.batch_rows,), bool)
        elif spec.batch_rows < rows:  # mini-batches: never mixed with other n, so every row is the member's own
            key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key_data), 1), step)
            idx_B = jax.random.randint(key, (spec.batch_rows,), 0, rows)
            x_BxN, y_B, valid_B = x_RxN[idx_B], y_R[idx_B], jnp.ones((spec.batch_rows,), bool)
        else:  # the table's first 2^n rows are the n-bit table (the extra bits are 0 there, and masked anyway)
            x_BxN, y_B, valid_B = x_RxN, y_R, jnp.arange(rows) < own_rows

        def loss_and_logits(p):
            logits_B = forward(p, masks, x_BxN, spec.activation)
            return loss(logits_B, y_B, valid_B, spec.loss), logits_B

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

    step_all = jax.vmap(member_step, in_axes=(0, 0, 0, 0, 0, 0, 0, None))

    def train(carry, fixed):
        """eval_every steps of the members in carry (params, opt_state, first_P) and fixed (their masks, keys,
        rows, active flags and subsets)."""
        def body(carry, i):
            params, opt_state, first_P = carry
            step = step0 + i
            params, opt_state, right_P = step_all(*carry[:2], *fixed, step)
            if full_batch:
                first_P = jnp.where((first_P < 0) & right_P, step, first_P)
            return (params, opt_state, first_P), None

        return jax.lax.scan(body, carry, jnp.arange(spec.eval_every))[0]

    carry = (state.params, state.opt_state, state.first_solved_P)
    fixed = (state.masks, state.key_data_Px2, state.rows_P, state.active_P, state.subset_PxN)
    population = state.rows_P.shape[0]
    if group is not None and population % group:
        raise ValueError(f"a group of {group} members does not divide a population of {population}")
    if group is None or group >= population:
        params, opt_state, first_P = train(carry, fixed)
    else:  # group by group, each updated in place (a loop of dynamic slices compiles faster than lax.map)
        part = lambda tree, g: jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, g * group, group), tree)

        def one_group(g, carry):
            trained = train(part(carry, g), part(fixed, g))
            return jax.tree.map(lambda a, t: jax.lax.dynamic_update_slice_in_dim(a, t, g * group, 0), carry, trained)

        upto = population // group if groups is None else jnp.minimum(groups, population // group)
        params, opt_state, first_P = jax.lax.fori_loop(0, upto, one_group, carry)

    def evaluate(p, masks, own_rows, subset_N):
        logits_R = forward(p, masks, x_RxN, spec.activation)
        if samples:  # every evaluation sample is the member's own; its labels from its own subset
            labels_R = parity_labels(decode(x_RxN, spec.encoding).astype(jnp.int32), subset_N)
            valid_R, count = jnp.ones((rows,), bool), rows
        else:
            labels_R, valid_R, count = y_R, jnp.arange(rows) < own_rows, own_rows
        correct_R = (logits_R > 0) == (labels_R > 0.5)
        accuracy = jnp.sum(correct_R & valid_R) / count
        return loss(logits_R, labels_R, valid_R, spec.loss), accuracy, jnp.all(correct_R | ~valid_R)

    metrics = jax.vmap(evaluate)(params, state.masks, state.rows_P, state.subset_PxN)
    return state._replace(params=params, opt_state=opt_state, first_solved_P=first_P), metrics


def host_init_applies(mesh: Mesh | None) -> bool:
    """Whether populations start from the host (scaling.engine.host_init) rather than a compiled init program: on one
    CPU device, where host memory is the device's and init programs were half of a sweep's compiles."""
    return mesh is None and jax.default_backend() == "cpu"


def host_population(draw, spec: BucketSpec, key_data_Px2, n_P, depth_P, width_P, lr_P) -> PopState:
    """What init_population returns, with the weights drawn by the shape-generic `draw` program and laid out
    on the host (the same values, tested). The optimizer's state starts at zero but for its hyperparameters:
    each member's learning rate, and the optimizer's defaults (Adam's b1, b2, eps)."""
    keys, n, depth, width, lr = (np.asarray(a) for a in (key_data_Px2, n_P, depth_P, width_P, lr_P))
    params, masks = host_init.initial_params(spec, keys, n, depth, width, draw)
    # optax's own init, traced for shapes only (no program to compile per bucket shape), then filled: zeros,
    # and the hyperparameters from optax's defaults (Adam's b1, b2, eps) with each member's learning rate.
    tx = lambda rate: optimizer(spec.optimizer, rate, spec.weight_decay)
    opt_shapes = jax.eval_shape(jax.vmap(lambda p, rate: tx(rate).init(p)), params, lr)
    defaults = {**hyperparameter_defaults(spec.optimizer, spec.weight_decay), "learning_rate": lr}
    hyperparams = {name: np.broadcast_to(defaults[name], leaf.shape).astype(leaf.dtype)
                   for name, leaf in optax.tree_utils.tree_get(opt_shapes, "hyperparams").items()}
    opt_state = optax.tree_utils.tree_set(jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), opt_shapes),
                                          hyperparams=hyperparams)
    state = PopState(params, opt_state, masks, keys, table_rows(n, np), np.ones(len(n), bool),
                     np.full(len(n), -1, np.int32), np.zeros((len(n), spec.n), np.float32))
    return jax.device_put(state)


@jax.jit
def gather(state: PopState, take_Q: jax.Array) -> PopState:
    """The members at slots take_Q, as a population of Q slots (compaction)."""
    return jax.tree.map(lambda a: a[take_Q], state)


def shardings(mesh: Mesh | None):
    """(population axis split over the mesh, whole on every device), or (None, None) without a mesh."""
    if mesh is None:
        return None, None
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0])), NamedSharding(mesh, PartitionSpec())
