"""The population trainer: jit(vmap(step)) with lax.scan over chunks of eval_every steps.

Between chunks the host reads one small vector per member (loss, accuracy, solved), freezes members
that are solved or diverged, and compacts the population when at most half of it is still live, so
compute follows the live members. Population sizes come from a power-of-two ladder, so buckets of
the same shapes share compiled programs.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scaling import names
from scaling.model import forward, init_member, param_mask
from scaling.population import Bucket, BucketSpec, MemberResult
from scaling.tasks import make_table

OPTIMIZERS = {
    "adam": optax.adam,
    "sgd": optax.sgd,
    "momentum": lambda learning_rate: optax.sgd(learning_rate, momentum=0.9),
}
assert tuple(OPTIMIZERS) == names.OPTIMIZERS, "scaling.names.OPTIMIZERS must list exactly these"
# A member whose full-table loss is non-finite, or above this, has diverged and is frozen. Both losses start
# near 1; a loss of 10^4 means the weights blew up (Adam at lr = 1e6 kills every ReLU and leaves a finite
# but enormous bias-only loss), and no such member was seen to recover.
DIVERGENCE_LOSS = 1e4
# Compact only when the live members fit a population a quarter of the size or less: every new population
# size costs one compile (about 2 s on a laptop CPU), so halving alone rarely pays.
_COMPACT_FACTOR = 4

# Traces of the chunk program per static signature: a guard against silent recompiles (tests read it).
_TRACES: collections.Counter = collections.Counter()


class PopState(NamedTuple):
    """Everything that evolves, stacked on a leading population axis P."""

    params: dict
    opt_state: optax.OptState
    masks: dict
    key_data_Px2: jax.Array
    active_P: jax.Array
    first_solved_P: jax.Array  # int32: the first step whose full-batch forward got every row right, or -1


def trace_count(spec: BucketSpec | None = None) -> int:
    """How many times the chunk program was traced (for one spec, or in total)."""
    if spec is None:
        return sum(_TRACES.values())
    return sum(v for (s, _), v in _TRACES.items() if s == spec)


def _optimizer(name: str, lr) -> optax.GradientTransformation:
    return optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=lr)


def _loss(logits_R: jax.Array, y_R: jax.Array, kind: str) -> jax.Array:
    if kind == "bce":
        return optax.sigmoid_binary_cross_entropy(logits_R, y_R).mean()
    return jnp.mean((logits_R - (2.0 * y_R - 1.0)) ** 2)  # mse on the logit against a +-1 target


@functools.partial(jax.jit, static_argnames=("spec",))
def _init_population(key_data_Px2, depth_P, width_P, lr_P, spec: BucketSpec) -> PopState:
    def one(key_data, depth, width, lr):
        key = jax.random.wrap_key_data(key_data)
        params, masks = init_member(
            spec.n, depth, width, jax.random.fold_in(key, 0),
            depth_max=spec.depth_max, width_max=spec.width_max, activation=spec.activation, init=spec.init,
        )
        return params, _optimizer(spec.optimizer, lr).init(params), masks

    params, opt_state, masks = jax.vmap(one)(key_data_Px2, depth_P, width_P, lr_P)
    return PopState(params, opt_state, masks, key_data_Px2, jnp.ones(depth_P.shape, bool),
                    jnp.full(depth_P.shape, -1, jnp.int32))


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

    def member_step(params, opt_state, masks, key_data, active, step):
        if spec.batch_rows < rows:
            key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key_data), 1), step)
            idx_B = jax.random.randint(key, (spec.batch_rows,), 0, rows)
            x_BxN, y_B = x_RxN[idx_B], y_R[idx_B]
        else:
            x_BxN, y_B = x_RxN, y_R
        def loss_and_logits(p):
            logits_B = forward(p, masks, x_BxN, spec.activation)
            return _loss(logits_B, y_B, spec.loss), logits_B

        (_, logits_B), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(params)
        all_right = jnp.all((logits_B > 0) == (y_B > 0.5))  # of the parameters after `step` updates
        updates, new_opt_state = tx.update(grads, opt_state, params)
        # Padded parameters get exactly zero updates, whatever the optimizer does with a zero gradient.
        updates = jax.tree.map(jnp.multiply, updates, param_mask(params, masks))
        new_params = optax.apply_updates(params, updates)
        live = active & (step < budget)
        keep = lambda new, old: jnp.where(live, new, old)
        return jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_opt_state, opt_state), live & all_right

    step_all = jax.vmap(member_step, in_axes=(0, 0, 0, 0, 0, None))

    def body(carry, i):
        params, opt_state, first_P = carry
        step = step0 + i
        params, opt_state, right_P = step_all(params, opt_state, state.masks, state.key_data_Px2, state.active_P, step)
        if full_batch:
            first_P = jnp.where((first_P < 0) & right_P, step, first_P)
        return (params, opt_state, first_P), None

    carry = (state.params, state.opt_state, state.first_solved_P)
    (params, opt_state, first_P), _ = jax.lax.scan(body, carry, jnp.arange(spec.eval_every))

    def evaluate(p, masks):
        logits_R = forward(p, masks, x_RxN, spec.activation)
        correct_R = (logits_R > 0) == (y_R > 0.5)
        return _loss(logits_R, y_R, spec.loss), correct_R.mean(), correct_R.all()

    metrics = jax.vmap(evaluate)(params, state.masks)
    return state._replace(params=params, opt_state=opt_state, first_solved_P=first_P), metrics


def _ladder(live: int, multiple: int) -> int:
    """Population capacity for `live` members: the next power of two, a multiple of the device count."""
    cap = max(1, 1 << (live - 1).bit_length())
    return -(-cap // multiple) * multiple


def _place(tree, mesh: Mesh | None):
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(mesh.axis_names[0])))


def train_bucket(
    bucket: Bucket,
    *,
    run_seed: int = 0,
    mesh: Mesh | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> list[MemberResult]:
    """Train every member of a bucket; results come back in the bucket's member order.

    on_chunk(finished_now, live) is called after every chunk, for progress bars.
    """
    spec, members = bucket.spec, bucket.members
    start = time.perf_counter()
    table = make_table(spec.task, spec.n, spec.encoding)
    x_RxN, y_R = jnp.asarray(table.x_RxN), jnp.asarray(table.y_R)
    multiple = 1 if mesh is None else mesh.devices.size
    cap = _ladder(len(members), multiple)
    slot_member = np.array(list(range(len(members))) + [0] * (cap - len(members)))
    slot_live = np.arange(cap) < len(members)
    state = _init_population(
        jnp.asarray(np.stack([m.key_data(run_seed) for m in members])[slot_member]),
        jnp.asarray(np.array([m.depth for m in members])[slot_member]),
        jnp.asarray(np.array([m.width for m in members])[slot_member]),
        jnp.asarray(np.array([m.lr for m in members], np.float32)[slot_member]),
        spec=spec,
    )
    state = _place(state._replace(active_P=jnp.asarray(slot_live)), mesh)
    budget = jnp.asarray(bucket.steps, jnp.int32)
    outcome: dict[int, MemberResult] = {}  # member index -> result (wall_s filled in at the end)
    n_chunks = -(-bucket.steps // spec.eval_every)
    for chunk in range(n_chunks):
        step0 = chunk * spec.eval_every
        state, metrics = _train_chunk(state, x_RxN, y_R, jnp.asarray(step0, jnp.int32), budget, spec=spec)
        (loss_P, acc_P, solved_end_P), first_P = jax.device_get((metrics, state.first_solved_P))
        step_end = min(step0 + spec.eval_every, bucket.steps)
        # Solved within the chunk (exact step, full batch) or at its end (the chunk-end evaluation).
        solved_P = (first_P >= 0) | (solved_end_P & (np.abs(loss_P) <= DIVERGENCE_LOSS))
        diverged_P = ~solved_P & ~(np.abs(loss_P) <= DIVERGENCE_LOSS)  # NaN counts as diverged
        done_P = slot_live & (solved_P | diverged_P | (step_end >= bucket.steps))
        for slot in np.flatnonzero(done_P):
            solved = bool(solved_P[slot])
            step_solved = (int(first_P[slot]) if first_P[slot] >= 0 else step_end) if solved else None
            outcome[int(slot_member[slot])] = MemberResult(
                steps_run=step_end, solved=solved, step_solved=step_solved,
                final_loss=float(loss_P[slot]), final_accuracy=float(acc_P[slot]), diverged=bool(diverged_P[slot]),
                wall_s=0.0)
        slot_live = slot_live & ~done_P
        live = int(slot_live.sum())
        if on_chunk is not None:
            on_chunk(int(done_P.sum()), live)
        if live == 0:
            break
        new_cap = _ladder(live, multiple)
        if new_cap * _COMPACT_FACTOR <= cap and chunk + 2 < n_chunks:  # gather the live members into a smaller population
            keep = np.flatnonzero(slot_live)
            take = np.concatenate([keep, np.full(new_cap - live, keep[0])])
            state = _place(jax.tree.map(lambda a: a[take], state), mesh)
            slot_member, slot_live, cap = slot_member[take], np.arange(new_cap) < live, new_cap
        state = state._replace(active_P=_place(jnp.asarray(slot_live), mesh))
    wall_s = time.perf_counter() - start  # the bucket's wall time, recorded on each of its members
    return [dataclasses.replace(outcome[i], wall_s=wall_s) for i in range(len(members))]
