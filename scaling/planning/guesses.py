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
from scaling.planning import search
from scaling.planning.plan import plan_buckets
from scaling.planning.rounds import Calibration

log = logging.getLogger(__name__)


def queue_next_round(cfg: Config, df: pd.DataFrame, todo: list[Member], calibration: Calibration, known: set,
                      programs: Programs, mesh: Mesh | None, results: dict | None = None) -> None:
    """Queue the programs that the next round will likely need, for compile threads that would otherwise idle:
    the next round's buckets if every member of this round (todo) without results yet fails, then if every one
    solves. A wrong guess costs a compile on a spare core; what has not started by the next round is dropped."""
    for solves in (False, True):
        guess = search.with_assumed_rows(df, todo, lambda m: solves, results=results)
        following = sorted(set(search.next_round(cfg, guess)))
        for bucket in (plan_buckets(following, cfg, calibration.model, known, workers=calibration.workers)
                       if following else []):
            programs.prefetch(bucket, mesh, guess=True)


class RoundTail:
    """When a round has fewer buckets left than training threads, a thread is idle: it queues the programs of
    the next round, guessed from this round's results so far (queue_next_round), so that they
    compile while the last buckets train. Guesses never enter a plan, so rows do not depend on them."""

    def __init__(self, guess: Callable[[dict], None], buckets: int, workers: int):
        self._guess, self._left, self._workers = guess, buckets, workers
        self._results: dict[Member, MemberResult] = {}
        self._lock, self._queued = threading.Lock(), False

    def done(self, bucket: Bucket, results: list[MemberResult]) -> None:
        with self._lock:
            self._results.update(zip(bucket.members, results))
            self._left -= 1
            start = 0 < self._left < self._workers and not self._queued
            self._queued |= start
            known = dict(self._results) if start else None  # a copy, once: later buckets keep adding
        if start:  # on a thread of its own: this bucket's results go to the store first
            threading.Thread(target=self._safe_guess, args=(known,), name="scaling-guess", daemon=True).start()

    def _safe_guess(self, known: dict) -> None:
        try:
            self._guess(known)
        except Exception:  # a guess only saves time: it never stops a sweep
            log.debug("no guess of the next round's programs", exc_info=True)
