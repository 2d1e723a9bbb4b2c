"""The planner: members into buckets (what is compiled and trained together), priced by the cost model. Which
members a sweep wants is the search's (scaling.planning.search)."""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict

from scaling.engine.population import (
    SHARED_FIELDS,
    Bucket,
    BucketSpec,
    Member,
    capacity,
    make_bucket,
    member_bytes,
    rung,
)
from scaling.experiment.config import Config
from scaling.planning import cost
from scaling.planning.cost import CostModel

# How many consecutive n may share a program, in the plans the cost model chooses between (0: every n).
N_BANDS = (1, 2, 4, 0)


def _bytes_per_member(spec: BucketSpec) -> int:
    return member_bytes(spec.n, spec.depth_max, spec.width_max, spec.batch_rows, spec.eval_rows)


def _make(members: list[Member], cfg: Config) -> Bucket:
    return make_bucket(members, eval_every=cfg.train.eval_every, max_batch_rows=cfg.train.max_batch_rows,
                       width_max=rung(max(m.width for m in members)))  # widths from the ladder


def _split_for_memory(members: list[Member], cfg: Config) -> list[Bucket]:
    whole = _make(members, cfg)
    per_bucket = max(1, cfg.run.bucket_mib * 2**20 // _bytes_per_member(whole.spec))
    return [whole] if len(members) <= per_bucket else [
        _make(members[i:i + per_bucket], cfg) for i in range(0, len(members), per_bucket)]


def _families(members: list[Member], cfg: Config, band: int, share_depths: bool
              ) -> dict[tuple, dict[int, list[Member]]]:
    """Members that may share a program (one spec family), split by width rung.

    Hidden depths share a family (padded with gated identity layers) when `share_depths`; depth 0 always
    stands alone since it has no hidden layer to pad. Full-batch members of `band` consecutive n share a
    family (inputs padded, rows masked per member); band 0 packs every full-batch n together, band 1 none.
    """
    low = min(m.n for m in members)
    families: dict[tuple, dict[int, list[Member]]] = defaultdict(lambda: defaultdict(list))
    for m in sorted(members):
        depth_key = -1 if share_depths and m.depth > 0 else m.depth
        mixable = m.depth > 0 and (m.data != "table" or 2**m.n <= cfg.train.max_batch_rows)
        n_key = ("n", m.n) if not mixable else ("band", -1 if band == 0 else (m.n - low) // band)
        families[(*(getattr(m, f) for f in SHARED_FIELDS), m.steps, depth_key, n_key)][rung(m.width)].append(m)
    return families


def _pack(rungs: dict[int, list[Member]], cfg: Config, model: CostModel, known: set) -> list[Bucket]:
    """Greedy, narrow to wide: a rung joins the bucket below it when the model predicts that one padded
    bucket (one program fewer) trains faster than two."""
    cost = lambda ms: model.forecast(_split_for_memory(ms, cfg), known)["total_s"]
    groups: list[list[Member]] = []
    for size in sorted(rungs):
        here = rungs[size]
        if groups and cost(groups[-1] + here) <= cost(groups[-1]) + cost(here):
            groups[-1] = groups[-1] + here
        else:
            groups.append(list(here))
    return [b for g in groups for b in _split_for_memory(g, cfg)]


def plan_buckets(members: list[Member], cfg: Config, model: CostModel | None = None,
                 known: set | None = None, workers: int = 1) -> list[Bucket]:
    """Group members into buckets (one spec each, under the memory budget), the shapes chosen by the cost model.

    Bucket widths come from the ladder (population.rung). The plans costed pack full-batch members of 1
    (each n apart), 2 or 4 consecutive n, or every n, into shared programs, each with one program per
    hidden depth or (cfg.run.pad_depth) with every depth padded to the deepest; the one with the smallest
    predicted wall time (compiles included) wins: on a GPU, few fat buckets; on a CPU, tighter ones.
    `known`: (spec, population size) of programs already compiled, which cost nothing more. With fewer
    buckets than `workers` (training threads), the longest are split so that every worker trains (_spread).
    """
    model = model or cost.default_model("cpu", "unknown")
    known = known or set()
    plans = []
    for band, share_depths in itertools.product(N_BANDS, (False, True) if cfg.run.pad_depth else (False,)):
        buckets = [b for rungs in _families(members, cfg, band, share_depths).values()
                   for b in _pack(rungs, cfg, model, known)]
        plans.append((model.forecast(buckets, known)["total_s"], buckets))
    buckets = _spread(_reuse_programs(min(plans, key=lambda p: p[0])[1], model, known, cfg), workers, model, known)
    # The training order (buckets train on several workers, programs compile in the background): first the
    # buckets whose programs are compiled, which start at once while the others compile, then the longest
    # first, so that the round does not end on one long bucket.
    return sorted(buckets, key=lambda b: ((b.spec, b.slots) not in known, -model.train_s(b)))


def _holds(big: BucketSpec, small: BucketSpec, pad_depth: bool) -> bool:
    """Whether the members of a bucket of spec `small` can train padded in a program of spec `big`: the same
    n, table and training, a width at least as large, and the same depth or (pad_depth) a larger one."""
    return (small.depth_max > 0 and big.width_max >= small.width_max
            and (big.depth_max == small.depth_max or (pad_depth and big.depth_max > small.depth_max))
            and dataclasses.replace(big, width_max=small.width_max, depth_max=small.depth_max) == small)


def _reuse_programs(buckets: list[Bucket], model: CostModel, known: set, cfg: Config) -> list[Bucket]:
    """Train a bucket in a program already compiled (or planned) for a larger population, width or depth
    when the model predicts that the padding costs less training time than compiling its own program, and
    its members fit the memory budget there. Programs repeat across rounds this way: a bisection below a
    compiled width needs no new program."""
    have, out = set(known), []
    for b in buckets:
        if (b.spec, b.slots) not in have:
            train_s = lambda spec, slots: b.steps * model.step_s(spec, slots)
            fits = [(spec, slots) for spec, slots in have if slots >= b.slots and
                    (spec == b.spec or _holds(spec, b.spec, cfg.run.pad_depth)) and
                    len(b.members) * _bytes_per_member(spec)
                    <= cfg.run.bucket_mib * 2**20]
            if fits:
                spec, slots = min(fits, key=lambda shape: (train_s(*shape), shape[1]))
                if train_s(spec, slots) - train_s(b.spec, b.slots) < model.program_s(b.spec):
                    b = dataclasses.replace(b, spec=spec, slots_min=slots)
        have.add((b.spec, b.slots))
        out.append(b)
    return out


def _spread(buckets: list[Bucket], workers: int, model: CostModel, known: set) -> list[Bucket]:
    """While a round has fewer buckets than workers, split its longest bucket into two halves of one
    population size (one program for both), when the model predicts that the round ends sooner: an idle
    worker's core is free compute. A bucket that would train in a compiled program and whose halves would
    need a new one pays that compile."""
    buckets = list(buckets)
    while len(buckets) < workers:
        longest = max(buckets, key=model.train_s, default=None)
        if longest is None or len(longest.members) < 2:
            break
        half = -(-len(longest.members) // 2)
        halves = [dataclasses.replace(longest, members=longest.members[i:i + half], slots_min=capacity(half))
                  for i in (0, half)]
        new_program = ((longest.spec, longest.slots) in known) and ((longest.spec, halves[0].slots) not in known)
        if model.train_s(halves[0]) + (model.program_s(longest.spec) if new_program else 0.0) >= model.train_s(longest):
            break
        at = buckets.index(longest)
        buckets[at:at + 1] = halves
    return buckets
