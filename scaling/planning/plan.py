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
from scaling.planning.cost import CostModel, makespan

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
                 known: set | None = None, threads: int = 1) -> list[Bucket]:
    """Group members into buckets (one spec each, under the memory budget), the shapes chosen by the cost model.

    Bucket widths come from the ladder (population.rung). The plans costed pack full-batch members of 1
    (each n apart), 2 or 4 consecutive n, or every n, into shared programs, each with one program per
    hidden depth or (cfg.run.pad_depth) with every depth padded to the deepest; the one with the smallest
    predicted wall time (compiles included) wins: on a GPU, few fat buckets; on a CPU, tighter ones.
    `known`: (spec, population size) of programs already compiled, which cost nothing more. Then buckets train
    in compiled programs that hold them where that is cheaper (_reuse_programs), the longest is split while the
    round on `threads` training threads ends sooner (_spread), and new programs are compiled wider while that costs at
    most half a compile (_pad_up), for later rounds to reuse.
    """
    model = model or cost.default_model("cpu", "unknown")
    known = known or set()
    plans = []
    for band, share_depths in itertools.product(N_BANDS, (False, True) if cfg.run.pad_depth else (False,)):
        buckets = [b for rungs in _families(members, cfg, band, share_depths).values()
                   for b in _pack(rungs, cfg, model, known)]
        plans.append((model.forecast(buckets, known)["total_s"], buckets))
    buckets = _reuse_programs(min(plans, key=lambda p: p[0])[1], model, known, cfg)
    # Halves of a split bucket may fit a compiled program that the whole did not.
    buckets = _pad_up(_reuse_programs(_spread(buckets, threads, model, known), model, known, cfg), model, known,
                      cfg)
    # The training order (buckets train on several threads, programs compile in the background): first the
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


# A new program is compiled wider than its bucket needs while the padding costs at most this share of a compile
# (by the cost model): a search's later rounds at narrower or nearby widths then reuse it (a width ladder 1, 2,
# 4, 8 is one program, not four), and a program that no later round reuses costs at most half a compile more.
PAD_UP = 0.5


def _pad_up(buckets: list[Bucket], model: CostModel, known: set, cfg: Config) -> list[Bucket]:
    """Widen each new program (a (spec, slots) neither compiled nor planned before) to the widest rung, up to
    the experiment's widest width, whose extra training over all its buckets costs at most PAD_UP of a
    compile and whose members fit the memory budget."""
    new: dict[tuple, list[int]] = defaultdict(list)
    for i, b in enumerate(buckets):
        if (b.spec, b.slots) not in known and b.spec.depth_max > 0:
            new[(b.spec, b.slots)].append(i)
    out, top = list(buckets), rung(cfg.max_width)
    for (spec, _), at in new.items():
        width, base = spec.width_max, sum(model.train_s(buckets[i]) for i in at)
        while width < top:
            wider = dataclasses.replace(spec, width_max=rung(width + 1))
            padded = [dataclasses.replace(buckets[i], spec=wider) for i in at]
            if (sum(map(model.train_s, padded)) - base > PAD_UP * model.program_s(spec)
                    or max(len(b.members) for b in padded) * _bytes_per_member(wider) > cfg.run.bucket_mib * 2**20):
                break
            width = wider.width_max
        for i in at:
            out[i] = dataclasses.replace(buckets[i], spec=dataclasses.replace(spec, width_max=width))
    return out


def _spread(buckets: list[Bucket], threads: int, model: CostModel, known: set) -> list[Bucket]:
    """Split the round's longest bucket into two halves of one population size (one program for both) while
    the model predicts that the round ends sooner: its buckets trained longest first on `threads` training threads (a
    cluster's threads of every process), a compile counted where the halves need a new program, or no later
    while threads would idle. A round of fewer buckets than threads leaves cores idle, and one of a few uneven
    buckets ends on its longest."""
    new_programs = lambda bs: len({(b.spec, b.slots) for b in bs} - known)
    ends = lambda bs: makespan(sorted(map(model.train_s, bs), reverse=True), threads)
    buckets = list(buckets)
    while buckets:
        longest = max(buckets, key=model.train_s)
        if len(longest.members) < 2:
            break
        half = -(-len(longest.members) // 2)
        halves = [dataclasses.replace(longest, members=longest.members[i:i + half], slots_min=capacity(half))
                  for i in (0, half)]
        at = buckets.index(longest)
        split = buckets[:at] + halves + buckets[at + 1:]
        compile_s = (new_programs(split) - new_programs(buckets)) * model.program_s(longest.spec)
        sooner = ends(split) + compile_s - ends(buckets)
        if sooner > 0 or (sooner == 0 and len(buckets) >= threads):  # ties: one of two equal longest buckets
            break
        buckets = split
    return buckets
