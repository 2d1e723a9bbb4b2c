"""Round plans as data: what a round trains, stored before it trains, so that a resume trains it as planned.

A round's plan is one JSON document: its buckets (spec, budget, population floor and members, in training
order) and the calibration it was planned with (the cost model, and the training threads it planned for).
A resumed sweep first trains the latest plan's buckets that have no stored rows, with the same compositions,
and plans every later round with the stored calibration and the program shapes of the stored plans. So the
rows of a resumed sweep are the rows of an uninterrupted one, bit for bit on one machine: no plan depends on
what a process happened to compile, or on when it was stopped. The same document is what one process can
hand the others in a multi-process sweep.
"""

from __future__ import annotations

import dataclasses
import json
import time

from scaling.engine.population import Bucket, BucketSpec, Member
from scaling.planning.cost import CostModel, makespan
from scaling.storage.results import store_key

PLAN_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What a plan was made with: the cost model and the number of training threads it spread buckets over."""

    model: CostModel
    threads: int

    def matches(self, backend: str, device: str) -> bool:
        """Whether this calibration was measured on this kind of device (so a resume may plan with it)."""
        return (self.model.backend, self.model.device) == (backend, device)


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    """One round of a sweep: its index in the store, its buckets in training order, and its calibration."""

    round: int
    buckets: tuple[Bucket, ...]
    calibration: Calibration

    def label(self, index: int) -> str:
        """The members table's `bucket` value of the plan's bucket at `index`."""
        return f"r{self.round}b{index}"

    def unfinished(self, stored: set[tuple]) -> list[tuple[int, Bucket]]:
        """(index, bucket) of the buckets with no stored member (`stored`: results.stored_keys). A bucket is
        committed whole, so one with some members stored was committed (and rows deleted by hand since are the
        search's to ask for again)."""
        return [(i, b) for i, b in enumerate(self.buckets) if not any(store_key(m) in stored for m in b.members)]

    def to_json(self) -> str:
        buckets = [{"spec": dataclasses.asdict(b.spec), "steps": b.steps, "slots_min": b.slots_min,
                    "members": [dataclasses.astuple(m) for m in b.members]} for b in self.buckets]
        return json.dumps({"version": PLAN_VERSION, "round": self.round, "buckets": buckets,
                           "model": dataclasses.asdict(self.calibration.model),
                           "threads": self.calibration.threads}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RoundPlan:
        """The plan stored as `text`; ValueError when it is not a plan of this version."""
        try:
            doc = json.loads(text)
            if doc.get("version") != PLAN_VERSION:
                raise ValueError(f"plan version {doc.get('version')!r}, expected {PLAN_VERSION}")
            buckets = tuple(Bucket(spec=BucketSpec(**b["spec"]), steps=int(b["steps"]), slots_min=int(b["slots_min"]),
                                   members=tuple(Member(*m) for m in b["members"])) for b in doc["buckets"])
            model = CostModel(**{**doc["model"], "unit_s": tuple(doc["model"]["unit_s"])})
            return cls(int(doc["round"]), buckets, Calibration(model, int(doc.get("threads", doc.get("workers")))))
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"not a round plan ({e})") from None


def program_shapes(plans: list[RoundPlan], slots) -> set[tuple[BucketSpec, int]]:
    """(spec, population size) of every bucket of `plans`: the programs a sweep counts as compiled when it
    plans the next round. `slots(bucket)` is the population size it trains in (rounded to the mesh)."""
    return {(b.spec, slots(b)) for plan in plans for b in plan.buckets}


def round_line(plan: RoundPlan, buckets: list[Bucket], done: int, elapsed_s: float, compile_s: float,
               threads: int, known: set) -> str:
    """A batch job's progress, one timestamped line at each round's start: members done and to train, the
    compile and training time so far, and the round's bound from its cost model: every new program compiled
    one after another, then every member trained to its budget, the buckets taken in order by the first of
    `threads` (all of a cluster's) to be free."""
    model = plan.calibration.model
    cost = model.forecast(buckets, known)
    members = sum(len(b.members) for b in buckets)
    eta = cost["compile_s"] + makespan([model.train_s(b) for b in buckets], threads)
    plural = "s" if len(buckets) != 1 else ""
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S')} round {plan.round}: {members:,} members to train in "
            f"{len(buckets)} bucket{plural} ({done:,} trained so far); {elapsed_s:.0f} s elapsed, {compile_s:.0f} s of "
            f"compiler time (all threads); this round at most {eta:.0f} s by the cost model "
            f"({cost['programs']} new programs)")
