"""From a config to members, and from members to buckets (what is compiled and trained together)."""

from __future__ import annotations

import itertools
from collections import defaultdict

from scaling.config import Config
from scaling.population import SHARED_FIELDS, Bucket, Member, make_bucket, member_bytes

# Widths that share a bucket lie within this factor of each other: hidden layers cost width^2, so a
# factor of 2 bounds the padding waste near 4x while keeping the number of compiled programs small.
WIDTH_SPREAD = 2


def members_at(cfg: Config, n: int, depth: int, width: int, steps: int | None = None,
               lrs: tuple[float, ...] | None = None) -> list[Member]:
    """Every (lr, seed) member of one (n, depth, width) point, at the config's budget or at `steps`. Depth 0
    (logistic regression) has no hidden layer, so its one point per n is stored with width 0 instead of once
    per grid width. `lrs` replaces the config's learning rates (the search's edge extensions)."""
    width = 0 if depth == 0 else width
    shared = {f: getattr(cfg, f) for f in SHARED_FIELDS if f != "n"}  # the config names them as Member does
    return [Member(**shared, n=n, depth=depth, width=width, lr=lr, seed=seed, steps=steps or cfg.steps)
            for lr, seed in itertools.product(lrs or cfg.lrs, range(cfg.seeds))]


def grid_members(cfg: Config) -> list[Member]:
    """The first round: the width grid at every (n, depth), and the depth grid at every min-depth width."""
    points = {(n, d, 0 if d == 0 else w) for n in cfg.ns for d in cfg.depths_at(n) for w in cfg.widths_at(n)}
    points |= {(n, d, w) for n in cfg.ns for w in cfg.min_depth_widths_at(n)
               for d in range(1, cfg.min_depth_max_at(n) + 1)}
    return [m for p in sorted(points) for m in members_at(cfg, *p)]


def _bytes_per_member(bucket: Bucket) -> int:
    s = bucket.spec
    return member_bytes(s.n, s.depth_max, s.width_max, s.batch_rows)


def _width_groups(members: list[Member]) -> list[list[Member]]:
    """Split members (of one spec) into runs of widths within WIDTH_SPREAD of each other."""
    groups: list[list[Member]] = []
    for m in sorted(members, key=lambda m: (m.width, m.depth, m.lr, m.seed)):
        if groups and m.width <= WIDTH_SPREAD * groups[-1][0].width:
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


def plan_buckets(members: list[Member], cfg: Config) -> list[Bucket]:
    """Group members into buckets: one spec each, widths within a factor of 2, and under the memory budget.

    Depths share a bucket (padded with gated identity layers) when cfg.pad_depth, else each depth gets its
    own; depth 0 always stands alone since it has no hidden layer to pad.
    """
    by_spec: dict[tuple, list[Member]] = defaultdict(list)
    for m in members:
        depth_key = m.depth if (not cfg.pad_depth or m.depth == 0) else -1
        by_spec[(*(getattr(m, f) for f in SHARED_FIELDS), m.steps, depth_key)].append(m)
    buckets = []
    for key in sorted(by_spec):
        for group in _width_groups(by_spec[key]):
            whole = make_bucket(group, eval_every=cfg.eval_every, max_batch_rows=cfg.max_batch_rows)
            per_bucket = max(1, cfg.bucket_mib * 2**20 // _bytes_per_member(whole))
            for i in range(0, len(group), per_bucket):
                buckets.append(make_bucket(group[i:i + per_bucket], eval_every=cfg.eval_every,
                                           max_batch_rows=cfg.max_batch_rows))
    return buckets
