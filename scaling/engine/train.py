"""The population trainer: a bucket's host loop around its compiled programs (scaling.engine.programs).

Between chunks of eval_every steps the host reads one small vector per member (loss, accuracy, solved),
freezes members that are solved or diverged, and compacts the population when the cost model says that a
smaller one pays for its compiles, so compute follows the live members (on one CPU device the live members
are gathered on the host, which compiles nothing; elsewhere by a compiled gather program). Population sizes
come from the ladder of population.rung, so buckets of the same shapes share compiled programs. A population that
trains in groups of members (steps.member_group) compacts in place instead: its live members move to the front,
and its program trains their groups only.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from scaling.engine.population import Bucket, MemberResult, capacity
from scaling.engine.programs import Programs, population_slots
from scaling.engine.steps import host_init_applies, member_group, shardings
from scaling.engine.tasks import SUBSETS, eval_inputs, make_table, subset_text

# A member whose full-table loss is non-finite, or above this, has diverged and is frozen. Both losses start
# near 1; a loss of 10^4 means the weights blew up (Adam at lr = 1e6 kills every ReLU and leaves a finite
# but enormous bias-only loss), and no such member was seen to recover.
DIVERGENCE_LOSS = 1e4
# Without a cost model, compact only when the live members fit a population a quarter of the size or less:
# every new population size costs compiles (seconds on a laptop CPU), so halving alone rarely pays.
_COMPACT_FACTOR = 4


# A program compiles this much slower during a sweep than alone (the other cores train): 1.9 s against the
# cost model's 1.2 s for a default sweep's chunk programs on the 2-core CPU.
_COMPILE_CONTENTION = 1.5


def _lead_chunks(model, spec, slots: int) -> int:
    """Chunks that a population trains on after a compaction is decided, while the smaller population's program
    compiles in the background: about the compile's time, from the plan's cost model (so the chunk of the
    compaction, and every row, depends on the plan alone, never on how fast a compile happened to be)."""
    if model is None:
        return 1
    chunk_s = spec.eval_every * model.step_s(spec, slots)
    return max(1, math.ceil(_COMPILE_CONTENTION * model.program_s(spec) / max(chunk_s, 1e-9)))


def _place(tree, mesh: Mesh | None, whole: bool = False):
    """Arrays onto the default device, or onto the mesh: split on the population axis, or whole on each device."""
    if mesh is None:
        return jax.device_put(tree)
    return jax.device_put(tree, shardings(mesh)[1 if whole else 0])


def _take_on_host(state, slots_Q: np.ndarray):
    """The population's slots slots_Q, indexed on the host (one CPU device, whose memory is the host's: no program)."""
    return jax.device_put(jax.tree.map(lambda a: np.asarray(a)[slots_Q], state))


def train_bucket(
    bucket: Bucket,
    *,
    run_seed: int = 0,
    mesh: Mesh | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    programs: Programs | None = None,
    stop_early: bool = True,
    model=None,
    free_shapes: set | None = None,
) -> list[MemberResult]:
    """Train every member of a bucket; results come back in the bucket's member order.

    With a cost model (scaling.planning.cost.CostModel), the population is compacted when the model predicts that the
    steps saved on the remaining budget outweigh compiling the smaller population's programs; without one,
    when a population a quarter of the size or less holds the live members. A smaller population's program costs
    no compile when its (spec, size) is in `free_shapes` (default: when `programs` has it now; a sweep passes
    the shapes known when it planned the round, so that its rows never depend on timing).

    on_chunk(finished_now, live) is called after every chunk, for progress bars. stop_early = False trains
    every member for the whole budget (no freezing, no compaction): the naive baseline of `make bench`.
    Without `programs`, the bucket compiles in a compile cache of its own, closed when it is done.
    """
    if programs is None:
        with Programs() as own:
            return train_bucket(bucket, run_seed=run_seed, mesh=mesh, on_chunk=on_chunk, programs=own,
                                stop_early=stop_early, model=model, free_shapes=free_shapes)
    spec, members = bucket.spec, bucket.members
    start = time.perf_counter()
    if spec.data == "table":
        table = make_table(spec.task, spec.n, spec.encoding)
        x_RxN, y_R = table.x_RxN, table.y_R
    else:  # the evaluation's fresh samples; each member's labels come from its own hidden bits
        x_RxN = eval_inputs(run_seed, spec.n, spec.eval_samples, spec.encoding)
        y_R = np.zeros(len(x_RxN), np.float32)
    x_RxN, y_R = _place((x_RxN, y_R), mesh, whole=True)
    subsets = [SUBSETS[spec.task](run_seed, m.n, m.k) if spec.data != "table" else () for m in members]
    multiple = 1 if mesh is None else mesh.devices.size
    slots = population_slots(bucket, mesh)
    slot_member = np.array(list(range(len(members))) + [0] * (slots - len(members)))
    slot_live = np.arange(slots) < len(members)
    column = lambda field, dtype: np.array([getattr(m, field) for m in members], dtype)[slot_member]
    keys_Px2 = np.stack([m.key_data(run_seed) for m in members])[slot_member]
    programs.chunk_soon(spec, slots, mesh)
    state = programs.init(spec, slots, mesh)(*_place((keys_Px2, column("n", np.int32), column("depth", np.int32),
                                                    column("width", np.int32), column("lr", np.float32)), mesh))
    subset_PxN = np.zeros((slots, spec.n), np.float32)
    for slot, member in enumerate(slot_member):
        subset_PxN[slot, list(subsets[member])] = 1.0
    state = _place(state._replace(active_P=slot_live, subset_PxN=subset_PxN), mesh)
    budget = _place(np.int32(bucket.steps), mesh, whole=True)
    outcome: dict[int, MemberResult] = {}  # member index -> result (wall_s filled in at the end)
    n_chunks = -(-bucket.steps // spec.eval_every)
    chunk_program = programs.chunk(spec, slots, mesh)
    group = member_group(spec, slots, mesh)  # a grouped population compacts in place (steps.train_chunk)
    groups = -(-len(members) // group)  # the padding's slots come last: groups of padding alone never train
    if free_shapes is None:
        compiled = lambda size: programs.has("chunk", spec, size, mesh)
    else:
        compiled = lambda size: (spec, size) in free_shapes
    compact_to, compact_at = None, 0  # a compaction decided: its population size, and the chunk that makes it
    for chunk in range(n_chunks):
        step0 = chunk * spec.eval_every
        step0_D, groups_D = _place((np.int32(step0), np.int32(groups)), mesh, whole=True)
        state, metrics = chunk_program(state, x_RxN, y_R, step0_D, budget, groups_D)
        (loss_P, acc_P, solved_end_P), first_P = jax.device_get((metrics, state.first_solved_P))
        step_end = min(step0 + spec.eval_every, bucket.steps)
        # Solved within the chunk (exact step, full batch) or at its end (the chunk-end evaluation).
        solved_P = (first_P >= 0) | (solved_end_P & (np.abs(loss_P) <= DIVERGENCE_LOSS))
        diverged_P = ~solved_P & ~(np.abs(loss_P) <= DIVERGENCE_LOSS)  # NaN counts as diverged
        done_P = slot_live & ((solved_P | diverged_P) & stop_early | (step_end >= bucket.steps))
        for slot in np.flatnonzero(done_P):
            solved = bool(solved_P[slot])
            step_solved = (int(first_P[slot]) if first_P[slot] >= 0 else step_end) if solved else None
            outcome[int(slot_member[slot])] = MemberResult(
                steps_run=step_end, solved=solved, step_solved=step_solved,
                final_loss=float(loss_P[slot]), final_accuracy=float(acc_P[slot]), diverged=bool(diverged_P[slot]),
                wall_s=0.0, subset=subset_text(subsets[slot_member[slot]]))
        slot_live = slot_live & ~done_P
        live = int(slot_live.sum())
        if on_chunk is not None:
            on_chunk(int(done_P.sum()), live)
        if live == 0:
            break
        if group < slots:
            if -(-live // group) < groups:  # the live members to the front; the program trains their groups only
                order = np.argsort(~slot_live, kind="stable")
                state = _take_on_host(state, order)
                slot_member, slot_live, groups = slot_member[order], slot_live[order], -(-live // group)
        elif compact_to is None:
            new_slots = capacity(live, multiple)
            lead = 0 if compiled(new_slots) else _lead_chunks(model, spec, slots)
            if chunk + lead + 2 < n_chunks and new_slots < slots and (
                    new_slots * _COMPACT_FACTOR <= slots if model is None else
                    (bucket.steps - step_end - lead * spec.eval_every)
                    * (model.step_s(spec, slots) - model.step_s(spec, new_slots))
                    > (0.0 if compiled(new_slots) else model.program_s(spec))):
                compact_to, compact_at = new_slots, chunk + lead
                if lead:  # compiled in the background while this population trains `lead` more chunks
                    programs.chunk_soon(spec, new_slots, mesh)
        if compact_to is not None and chunk >= compact_at:
            # gather the live members into the smaller population (members finished meanwhile stay out)
            new_slots, compact_to = compact_to, None
            keep = np.flatnonzero(slot_live)
            take = np.concatenate([keep, np.full(new_slots - live, keep[0])]).astype(np.int32)
            if host_init_applies(mesh):  # the device's memory is the host's: index it there, compiling nothing
                state = _take_on_host(state, take)
            else:
                state = programs.gather(spec, slots, new_slots, mesh)(state, _place(take, mesh))
            slot_member, slot_live, slots = slot_member[take], np.arange(new_slots) < live, new_slots
            chunk_program = programs.chunk(spec, slots, mesh)
        state = state._replace(active_P=_place(slot_live, mesh))
    wall_s = time.perf_counter() - start  # the bucket's wall time, recorded on each of its members
    return [dataclasses.replace(outcome[i], wall_s=wall_s) for i in range(len(members))]
