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
    profile: str = "constant"  # the later layers' widths (layer_widths); last, so that stored plans still read
    weight_decay: float = 0.0  # L2 weight decay added to the gradient (PyTorch SGD's weight_decay); likewise last
    # Learning from samples (fields added after the truth-table ones; their defaults are the table's):
    k: int = 0  # the hidden bits of a sparse parity (0: every one of the n bits)
    data: str = "table"  # choices.Data: the truth table, fresh samples every step, or a fixed training set
    samples: int = 0  # the fixed training set's size m (data = "fixed")
    batch_size: int = 0  # samples per step in the sample modes
    eval_samples: int = 0  # fresh samples every evaluation checks in the sample modes

    def key_data(self, run_seed: int) -> np.ndarray:
        """Raw threefry key (uint32[2]) derived from the identity alone, never from a place in a population.

        The optimizer, learning rate, loss and budget are left out on purpose: the members of one
        (network, seed) start from the same weights and see the same mini-batches at every learning
        rate, so learning rates are compared on common random numbers. So is the width profile: a halving
        network draws the weights of the constant one at the positions it keeps.
        """
        ident = (run_seed, *(getattr(self, f) for f in MEMBER_FIELDS if f not in _NOT_IN_KEY))
        digest = hashlib.blake2b(repr(ident).encode(), digest_size=8).digest()
        return np.frombuffer(digest, dtype=np.uint32).copy()


MEMBER_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Member))
# Left out of the initialisation key (see Member.key_data), so learning rates share initial weights.
# So are the sample modes' fields: the members of one (n, seed) see the same inputs whatever k, m or batch.
_NOT_IN_KEY = frozenset({"optimizer", "loss", "lr", "steps", "profile", "weight_decay", "k", "data", "samples",
                         "batch_size", "eval_samples"})
# What may differ between the members of one bucket; every other field is shared by its compiled program.
# Members of different n share a program through padded inputs (BucketSpec.n is the largest n).
PER_MEMBER_FIELDS = ("n", "depth", "width", "lr", "seed", "steps", "k")
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
    subset: str = ""  # the hidden bits it was trained on ("0,7,12"; "" for the truth table): added later


@dataclasses.dataclass(frozen=True)
class BucketSpec:
    """What one compiled program is specialised on (hashable: it is a static jit argument)."""

    task: str
    n: int  # input bits of the table: the largest n among the members
    encoding: str
    activation: str
    init: str
    optimizer: str
    loss: str
    depth_max: int
    width_max: int
    eval_every: int
    batch_rows: int  # rows per step; 2^n (the whole table) when it fits
    profile: str = "constant"  # last, so that stored plans still read
    weight_decay: float = 0.0  # likewise
    data: str = "table"  # the sample modes: batch_rows is then the batch size, eval_samples the evaluation's rows
    samples: int = 0
    eval_samples: int = 0

    @property
    def eval_rows(self) -> int:
        """Rows of one evaluation: the whole table, or the sample modes' fresh evaluation samples."""
        return 2**self.n if self.data == "table" else self.eval_samples


def layer_widths(width: int, depth: int, profile: str = "constant") -> tuple[int, ...]:
    """The width of each hidden layer of a member whose first layer has `width` units. "halving": each layer
    half the one before, rounded up, and at least 2 (or the first width, if below 2): the shape of the XOR tree,
    whose layers hold n, ceil(n/2), ..., 2 units."""
    return tuple(int(w) for w in padded_layer_widths(width, depth, depth, profile))


def padded_layer_widths(width, depth, depth_max: int, profile: str, xp=np):
    """layer_widths over the depth_max layers of a padded bucket, for arrays of widths and depths (numpy, or
    jax.numpy for traced values): shape (*width.shape, depth_max). A gated layer beyond a member's depth repeats
    its last real layer (the layer it passes through)."""
    width, depth = xp.asarray(width)[..., None], xp.asarray(depth)[..., None]
    if profile == "constant":
        return xp.broadcast_to(width, (*width.shape[:-1], depth_max)).astype(xp.int32)
    layer = xp.minimum(xp.arange(depth_max), xp.maximum(depth - 1, 0))
    halved = (width + xp.left_shift(1, layer) - 1) // xp.left_shift(1, layer)
    return xp.maximum(xp.minimum(width, 2), halved).astype(xp.int32)


def hidden_units(width: float, depth: int, profile: str = "constant") -> float:
    """Hidden units in total at a first-layer width; a fractional width (W50) interpolates linearly between
    the integer widths around it (NaN stays NaN)."""
    if profile == "constant" or not np.isfinite(width):
        return float(width) * depth
    lo = int(np.floor(width))
    at = lambda w: sum(layer_widths(w, depth, profile))
    return float(at(lo) + (width - lo) * (at(lo + 1) - at(lo)))


def units_at(width, depth, profile: str = "constant") -> np.ndarray:
    """hidden_units over arrays of first-layer widths and depths (broadcast together)."""
    return np.vectorize(lambda w, d: hidden_units(w, int(d), profile), otypes=[float])(width, depth)


def layer_sizes(n: int, depth: int, width: int, profile: str = "constant") -> tuple[int, ...]:
    """Units of each layer of an unpadded member, inputs to output: (n, hidden widths..., 1); (n, 1) at depth 0."""
    return (n, *(layer_widths(width, depth, profile) if depth else ()), 1)


def padded_shapes(n: int, depth: int, width: int) -> dict[str, tuple[int, ...]]:
    """Every parameter array of one member padded to n inputs and `depth` hidden layers of `width` units: the
    layout engine.network.MLP builds and engine.host_init fills (tested against each other)."""
    if depth == 0:
        return {"out_kernel": (n, 1), "out_bias": (1,)}
    return {"in_kernel": (n, width), "in_bias": (width,), "hidden_kernel": (depth - 1, width, width),
            "hidden_bias": (depth - 1, width), "out_kernel": (width, 1), "out_bias": (1,)}


def count_parameters(depth: int, width: float, n_in: int, profile: str = "constant") -> float:
    """Trainable parameters of an unpadded member (a fractional width interpolates, as hidden_units)."""
    def at(w: int) -> int:
        sizes = layer_sizes(n_in, depth, w, profile)
        return sum(a * b + b for a, b in zip(sizes, sizes[1:]))

    lo = int(np.floor(width))
    return at(lo) if width == lo else float(at(lo) + (width - lo) * (at(lo + 1) - at(lo)))


def forward_madds(n: int, depth: int, width: int, profile: str = "constant") -> int:
    """Multiply-adds of one forward pass over one row, for an unpadded member."""
    sizes = layer_sizes(n, depth, width, profile)
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


# A training step costs about three forward passes (forward, and backward through activations and weights),
# at 2 FLOPs per multiply-add.
TRAIN_FLOPS_PER_MADD = 6


def rung(size: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (2^k and 3 x 2^k) at or above size (0 stays 0).

    Bucket widths and population sizes come from this ladder: they repeat across cells, n and rounds, so
    their compiled programs do, and a size pads by at most a third."""
    if size <= 2:
        return size
    k = (size - 1).bit_length()  # 2^k is the smallest power of two >= size
    return 3 << (k - 2) if 3 << (k - 2) >= size else 1 << k


def capacity(live: int, multiple: int = 1) -> int:
    """Population slots for `live` members: the next rung of the ladder, a multiple of the device count."""
    return -(-rung(max(live, 1)) // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class Bucket:
    """Members that share a BucketSpec and a step budget; trained as one population."""

    spec: BucketSpec
    steps: int
    members: tuple[Member, ...]
    slots_min: int = 0  # at least this many population slots: a size whose programs are already compiled

    @property
    def slots(self) -> int:
        """Population slots the bucket trains in: the ladder's size for its members, or slots_min if larger."""
        return max(capacity(len(self.members)), self.slots_min)

    def flops(self) -> tuple[int, int]:
        """(padded, useful) training FLOPs of one step over all members. Padded counts what the program computes:
        every slot of the population (capacity), at the bucket's depth, width and batch; useful counts each
        member's own network on its own rows."""
        spec = self.spec
        padded = forward_madds(spec.n, spec.depth_max, spec.width_max) * spec.batch_rows * self.slots
        useful = sum(forward_madds(m.n, m.depth, m.width, m.profile) * min(2**m.n, spec.batch_rows)
                     for m in self.members)
        return TRAIN_FLOPS_PER_MADD * padded, TRAIN_FLOPS_PER_MADD * useful


def member_bytes(n: int, depth: int, width: int, batch_rows: int, eval_rows: int | None = None) -> int:
    """An estimate of one member's device memory in a bucket padded to (depth, width): the larger of a training
    step (activations, pre-activations and their gradients for every layer of a batch) and an evaluation (two
    live layers over all 2^n rows, or eval_rows), plus parameters, gradients and two Adam moments."""
    train = 4 * batch_rows * width * (depth + 1)
    evaluate = 2 * (2**n if eval_rows is None else eval_rows) * width
    params = sum(int(np.prod(shape)) for shape in padded_shapes(n, depth, width).values())
    return 4 * (max(train, evaluate) + 4 * params)


def padding_waste(buckets) -> float:
    """Padded FLOPs / useful FLOPs over buckets (1.0 = no waste): what padding costs the planner's choice."""
    padded, useful = (sum(x) for x in zip(*(b.flops() for b in buckets)))
    return padded / max(useful, 1)


def spec_for(members: list[Member], *, eval_every: int, max_batch_rows: int, width_max: int = 0) -> BucketSpec:
    """The smallest spec that holds every member (they must agree on everything but n, depth, width, lr, seed),
    padded to at least `width_max` (the planner's width ladder)."""
    first = members[0]
    shared = {f: getattr(first, f) for f in SHARED_FIELDS}
    for m in members:
        for f, v in shared.items():
            if getattr(m, f) != v:
                raise ValueError(f"members disagree on {f}: {v!r} vs {getattr(m, f)!r}")
    depth_max, width_max = max(m.depth for m in members), max(width_max, *(m.width for m in members))
    if depth_max > 0 and any(m.depth == 0 for m in members):
        raise ValueError("depth-0 members (no hidden layer) cannot be padded into deeper buckets")
    n_max = max(m.n for m in members)
    table = first.data == "table"
    if len({m.n for m in members}) > 1 and (depth_max == 0 or table and 2**n_max > max_batch_rows):
        raise ValueError("members of different n share a bucket only with hidden layers, and with full batches "
                         "of the table")
    if depth_max == 0:
        width_max = 0
    return BucketSpec(
        **{f: v for f, v in shared.items() if f != "batch_size"},  # the spec's batch_rows
        n=n_max,
        depth_max=depth_max,
        width_max=width_max,
        eval_every=eval_every,
        batch_rows=min(2**n_max, max_batch_rows) if table else first.batch_size,
    )


def make_bucket(members: list[Member], *, eval_every: int, max_batch_rows: int = 2**16, width_max: int = 0) -> Bucket:
    """A bucket of members that share a step budget, padded to the largest n, depth and width among them (and
    to at least width_max)."""
    steps = {m.steps for m in members}
    if len(steps) != 1:
        raise ValueError(f"members of one bucket must share a step budget, got {sorted(steps)}")
    spec = spec_for(members, eval_every=eval_every, max_batch_rows=max_batch_rows, width_max=width_max)
    return Bucket(spec=spec, steps=steps.pop(), members=tuple(members))
