"""Members (one network to train each), their identity-derived keys, their results, and buckets (members
compiled together). Everything else that spells out a member (the store's columns, its UNIQUE key, the
planner's grouping) is derived from the fields here, so a new hyperparameter is one new field."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np


@dataclasses.dataclass(frozen=True, order=True)
class Member:
    """One network to train. Everything that changes its result is part of its identity."""

    task: str
    n: int
    encoding: str
    depth: int
    width: int
    activation: str
    init: str
    optimizer: str
    loss: str
    lr: float
    seed: int
    steps: int

    def key_data(self, run_seed: int) -> np.ndarray:
        """Raw threefry key (uint32[2]) derived from the identity alone, never from a place in a population.

        The optimizer, learning rate, loss and budget are left out on purpose: the members of one
        (network, seed) start from the same weights and see the same mini-batches at every learning
        rate, so learning rates are compared on common random numbers.
        """
        ident = (run_seed, *(getattr(self, f) for f in MEMBER_FIELDS if f not in _NOT_IN_KEY))
        digest = hashlib.blake2b(repr(ident).encode(), digest_size=8).digest()
        return np.frombuffer(digest, dtype=np.uint32).copy()


MEMBER_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Member))
# Left out of the initialisation key (see Member.key_data), so learning rates share initial weights.
_NOT_IN_KEY = frozenset({"optimizer", "loss", "lr", "steps"})
# What may differ between the members of one bucket; every other field is shared by its compiled program.
PER_MEMBER_FIELDS = ("depth", "width", "lr", "seed", "steps")
SHARED_FIELDS: tuple[str, ...] = tuple(f for f in MEMBER_FIELDS if f not in PER_MEMBER_FIELDS)


@dataclasses.dataclass(frozen=True)
class MemberResult:
    """What training one member produced (the store's result columns)."""

    steps_run: int
    solved: bool
    step_solved: int | None
    final_loss: float
    final_accuracy: float
    diverged: bool
    wall_s: float


@dataclasses.dataclass(frozen=True)
class BucketSpec:
    """What one compiled program is specialised on (hashable: it is a static jit argument)."""

    task: str
    n: int
    encoding: str
    activation: str
    init: str
    optimizer: str
    loss: str
    depth_max: int
    width_max: int
    eval_every: int
    batch_rows: int  # rows per step; 2^n (the whole table) when it fits

    def useful_flops(self, depth: int, width: int) -> int:
        """Multiply-adds of one forward pass per row for an unpadded member."""
        if depth == 0:
            return self.n
        return self.n * width + (depth - 1) * width * width + width


@dataclasses.dataclass(frozen=True)
class Bucket:
    """Members that share a BucketSpec and a step budget; trained as one population."""

    spec: BucketSpec
    steps: int
    members: tuple[Member, ...]

    def flops(self) -> tuple[int, int]:
        """(padded, useful) multiply-adds per row of one forward pass over all members."""
        spec = self.spec
        padded = spec.useful_flops(spec.depth_max, spec.width_max) * len(self.members)
        return padded, sum(spec.useful_flops(m.depth, m.width) for m in self.members)


def count_parameters(depth: int, width: int, n_in: int) -> int:
    """Trainable parameters of an unpadded member."""
    if depth == 0:
        return n_in + 1
    return n_in * width + width + (depth - 1) * (width * width + width) + width + 1


def member_bytes(n: int, depth: int, width: int, batch_rows: int) -> int:
    """An estimate of one member's device memory in a bucket padded to (depth, width): the larger of a training
    step (activations, pre-activations and their gradients for every layer of a batch) and an evaluation (two
    live layers over all 2^n rows), plus parameters, gradients and two Adam moments."""
    train = 4 * batch_rows * width * (depth + 1)
    evaluate = 2 * 2**n * width
    params = n * width + depth * width**2 + 2 * width + 1
    return 4 * (max(train, evaluate) + 4 * params)


def padding_waste(buckets) -> float:
    """Padded FLOPs / useful FLOPs over buckets (1.0 = no waste): what padding costs the planner's choice."""
    padded, useful = (sum(x) for x in zip(*(b.flops() for b in buckets)))
    return padded / max(useful, 1)


def spec_for(members: list[Member], *, eval_every: int, max_batch_rows: int) -> BucketSpec:
    """The smallest spec that holds every member (they must agree on everything but depth, width, lr, seed)."""
    first = members[0]
    shared = {f: getattr(first, f) for f in SHARED_FIELDS}
    for m in members:
        for f, v in shared.items():
            if getattr(m, f) != v:
                raise ValueError(f"members disagree on {f}: {v!r} vs {getattr(m, f)!r}")
    depth_max, width_max = max(m.depth for m in members), max(m.width for m in members)
    if depth_max > 0 and any(m.depth == 0 for m in members):
        raise ValueError("depth-0 members (no hidden layer) cannot be padded into deeper buckets")
    return BucketSpec(
        **shared,
        depth_max=depth_max,
        width_max=width_max,
        eval_every=eval_every,
        batch_rows=min(2**first.n, max_batch_rows),
    )


def make_bucket(members: list[Member], *, eval_every: int, max_batch_rows: int = 2**16) -> Bucket:
    """A bucket of members that share a step budget, padded to the largest depth and width among them."""
    steps = {m.steps for m in members}
    if len(steps) != 1:
        raise ValueError(f"members of one bucket must share a step budget, got {sorted(steps)}")
    spec = spec_for(members, eval_every=eval_every, max_batch_rows=max_batch_rows)
    return Bucket(spec=spec, steps=steps.pop(), members=tuple(members))
