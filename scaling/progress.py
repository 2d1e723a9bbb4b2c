"""A sweep's progress: a bar on a terminal; in a batch job (no terminal), one timestamped line per round."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tqdm.auto import tqdm

from scaling.engine.population import Bucket
from scaling.planning import rounds
from scaling.planning.rounds import RoundPlan

log = logging.getLogger(__name__)


class Progress:
    """Members trained, as a bar (updated from the training threads) or as a line at each round's start."""

    def __init__(self, show: bool, compiled: Callable[[], dict]):
        self.bar = tqdm(total=0, unit="member", disable=None if show else True, dynamic_ncols=True)
        self.batch = show and self.bar.disable  # asked for, but stderr is no terminal
        self.compiled, self.start, self.lock = compiled, time.perf_counter(), threading.Lock()

    def round(self, plan: RoundPlan, buckets: list[Bucket], trained: int, threads: int, known: set) -> None:
        """A round starts: `threads` training threads (all of a cluster's) take its buckets."""
        self.bar.total += sum(len(b.members) for b in buckets)
        if self.batch:
            log.info(rounds.round_line(plan, buckets, trained, time.perf_counter() - self.start,
                                       self.compiled()["compile_s"], threads, known))

    def chunk(self, count: int) -> None:
        """Members finished in a chunk (from any training thread)."""
        with self.lock:
            self.bar.update(count)

    def bucket(self, plan: RoundPlan, index: int, solved: int) -> None:
        c = self.compiled()
        with self.lock:
            self.bar.set_postfix_str(f"round {plan.round} bucket {index + 1}/{len(plan.buckets)} solved {solved} "
                                     f"compiled {c['compiles']} ({c['compile_s']:.0f} s) loaded {c['loads']}")

    def close(self) -> None:
        self.bar.close()
