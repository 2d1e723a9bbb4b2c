"""Guesses of the next round's programs, compiled by threads that would otherwise idle. A guess never enters a
plan (scaling.engine.programs keeps guesses out of the shapes a plan counts as compiled), so rows never depend
on one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pandas as pd
from jax.sharding import Mesh

from scaling.engine.population import Bucket, Member, MemberResult
from scaling.engine.programs import Programs
from scaling.experiment.config import Config
from scaling.planning import cost, search
from scaling.planning.plan import plan_buckets
from scaling.planning.rounds import Calibration

log = logging.getLogger(__name__)


# How many rounds ahead a guess may reach (a search climbing a width ladder one cell at a time: every round
# needs a new program and trains for less time than it takes to compile, so it waits unless compiled ahead).
LOOKAHEAD = 4


def queue_next_round(cfg: Config, df: pd.DataFrame, todo: list[Member], calibration: Calibration, known: set,
                     programs: Programs, mesh: Mesh | None) -> None:
    """Queue next_round_buckets' programs as guesses (compiled in the background, in order)."""
    for bucket in next_round_buckets(cfg, df, todo, calibration, known):
        programs.prefetch(bucket, mesh, guess=True)


def next_round_buckets(cfg: Config, df: pd.DataFrame, todo: list[Member], calibration: Calibration, known: set,
                       results: dict | None = None) -> list[Bucket]:
    """The buckets whose programs the coming rounds will likely need: the next round's if every member of
    this round (todo) without results yet fails, then if every one solves; then the round after the next if all
    of it fails too, and so on (up to LOOKAHEAD rounds), while each guessed round trains for less time (by the
    cost model) than the programs of the round after it take to compile. Asked for only where a core is idle
    (the sweep decides): on a core that trains, a right guess only moves a compile earlier, and a wrong one costs
    a whole compile. What has not started by the next round is dropped (and guessed again from what it knows)."""
    model, queued = calibration.model, []
    for solves in (True, False):  # queued below in the order next-fails, next-solves, then further fails
        guess, assumed, shapes, before_s = df, todo, set(known), 0.0
        for ahead in range(LOOKAHEAD if not solves else 1):
            guess = search.with_assumed_rows(guess, assumed, lambda m: solves, results=results if ahead == 0 else None)
            assumed = sorted(set(search.next_round(cfg, guess)))
            buckets = plan_buckets(assumed, cfg, model, shapes, threads=calibration.threads) if assumed else []
            if not buckets or before_s >= model.forecast(buckets, shapes)["compile_s"]:
                break  # nothing new to compile, or it compiles in time when that round asks for it
            queued.insert(0 if ahead == 0 and not solves else len(queued), buckets)
            shapes |= {(b.spec, b.slots) for b in buckets}
            before_s = cost.makespan([model.train_s(b) for b in buckets], calibration.threads)
    return [bucket for buckets in queued for bucket in buckets]


class RoundTail:
    """When a round has fewer buckets left than training threads, a thread is idle: it plans the next round's
    buckets from this round's results so far (plan(results) -> buckets, next_round_buckets) and queues their
    programs (queue(bucket)), so that they compile while the last buckets train. Guesses never enter a plan, so
    rows do not depend on them. Once the round is over (close), a plan that finishes late queues nothing: in a
    cold bench sweep one did, after the next round had started, and a wrong guess took a training core."""

    def __init__(self, plan: Callable[[dict], list[Bucket]], queue: Callable[[Bucket], None], buckets: int,
                 threads: int):
        self._plan, self._queue, self._left, self._threads = plan, queue, buckets, threads
        self._results: dict[Member, MemberResult] = {}
        self._lock, self._queued, self._closed = threading.Lock(), False, False

    def done(self, bucket: Bucket, results: list[MemberResult]) -> None:
        with self._lock:
            self._results.update(zip(bucket.members, results))
            self._left -= 1
            start = 0 < self._left < self._threads and not self._queued and not self._closed
            self._queued |= start
            known = dict(self._results) if start else None  # a copy, once: later buckets keep adding
        if start:  # on a thread of its own: this bucket's results go to the store first
            threading.Thread(target=self._safe_guess, args=(known,), name="scaling-guess", daemon=True).start()

    def close(self) -> None:
        """The round is over: its guess, if still being planned, queues nothing."""
        with self._lock:
            self._closed = True

    def _safe_guess(self, known: dict) -> None:
        try:
            buckets = self._plan(known)
            with self._lock:  # close() and the next round's cancel_pending come after, never between
                for bucket in buckets if not self._closed else ():
                    self._queue(bucket)
        except Exception:  # a guess only saves time: it never stops a sweep
            log.debug("no guess of the next round's programs", exc_info=True)
