"""The sweep: ask the search for members, plan them into buckets, store the plan, train (several buckets at once
on a CPU), store the rows, repeat. A resume first finishes the stored plan of the round that was stopped."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import pandas as pd
from jax.sharding import Mesh

from scaling.distributed.cluster import Cluster
from scaling.distributed.dealer import finish, follow, lead_round
from scaling.engine.devices import cores, make_mesh, training_threads
from scaling.engine.population import Bucket, Member, MemberResult, padding_waste
from scaling.engine.programs import Programs, population_slots
from scaling.engine.train import train_bucket
from scaling.errors import UserError
from scaling.experiment.config import Config
from scaling.planning import guesses, probes, rounds, search
from scaling.planning.cost import deal
from scaling.planning.plan import plan_buckets
from scaling.planning.rounds import Calibration, RoundPlan
from scaling.planning.stats import summarize
from scaling.progress import Progress
from scaling.storage.results import stored_keys
from scaling.storage.store import Store

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SweepOutcome:
    trained: int  # members trained by this call (resumed ones excluded)
    skipped: int  # members found already in the store
    rounds: int
    buckets: int
    wall_s: float
    padding_waste: float  # padded FLOPs / useful FLOPs over the buckets trained (1.0 = none)
    summary: pd.DataFrame
    compiles: int = 0  # XLA programs compiled by this call
    compile_s: float = 0.0  # the compiler's seconds, summed over its threads (mostly while buckets trained)
    compile_wait_s: float = 0.0  # seconds that training waited for a compile, summed over the threads
    loads: int = 0  # programs read from the program store instead of compiled
    threads: int = 1  # training threads of this process


def _calibration(plans: list[RoundPlan], threads: int) -> Calibration:
    """The calibration of the store's latest plan when it was measured on this kind of device (so that a resume
    plans as the stopped run would have), else this machine's cost model (probed once per machine)."""
    if plans and plans[-1].calibration.matches(jax.default_backend(), jax.devices()[0].device_kind):
        return plans[-1].calibration
    return Calibration(probes.load_or_calibrate(), threads)


def _next_plan(cfg: Config, df: pd.DataFrame, plans: list[RoundPlan], calibration: Calibration,
               slots) -> tuple[RoundPlan, list[tuple[int, Bucket]]] | None:
    """(plan, its buckets to train): the latest stored plan while it has buckets without stored rows (a stopped
    round), else a new plan of the members the search wants and the store lacks (None: the sweep is done)."""
    stored = stored_keys(df)
    if plans and (pending := plans[-1].unfinished(stored)):
        return plans[-1], pending
    todo = sorted(set(search.next_round(cfg, df)))
    if not todo:
        return None
    buckets = plan_buckets(todo, cfg, calibration.model, known=rounds.program_shapes(plans, slots),
                           threads=calibration.threads)
    plan = RoundPlan(plans[-1].round + 1 if plans else 0, tuple(buckets), calibration)
    return plan, list(enumerate(plan.buckets))


class _Stopped(Exception):
    """Raised inside a training thread's bucket when the sweep stops (an error or an interrupt elsewhere)."""


def train_concurrently(buckets: list[Bucket], threads: int,
                        train: Callable[[Bucket, threading.Event], list[MemberResult]]
                        ) -> Iterator[list[MemberResult]]:
    """Train buckets on `threads` training threads (XLA releases the GIL while a program runs), yielding each bucket's
    results in the buckets' order, so the store fills in plan order whatever finishes first. When the caller
    stops early, the threads stop at their next chunk and nothing of their buckets is returned."""
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="scaling-train") as pool:
        futures = [pool.submit(train, bucket, stop) for bucket in buckets]
        try:
            for future in futures:
                yield future.result()
        finally:  # cancel what has not started before the running threads stop, so none picks up another
            for future in futures:
                future.cancel()
            stop.set()


def trainer(cfg: Config, plan: RoundPlan, free_shapes: set, mesh: Mesh | None, programs: Programs,
            finished: Callable[[int], None] = lambda count: None,
            done: Callable[[Bucket, list[MemberResult]], None] = lambda bucket, results: None
            ) -> Callable[[Bucket, threading.Event], list]:
    """train(bucket, stop) of one round: as the plan says (its cost model, and the program shapes counted as
    compiled), stopping at the next chunk once `stop` is set; finished(count) after every chunk, done(bucket,
    results) on the training thread when a bucket is trained."""
    def train(bucket: Bucket, stop: threading.Event) -> list[MemberResult]:
        def on_chunk(done: int, live: int) -> None:
            if stop.is_set():
                raise _Stopped
            finished(done)
        results = train_bucket(bucket, run_seed=cfg.run.seed, mesh=mesh, programs=programs,
                               model=plan.calibration.model, on_chunk=on_chunk, free_shapes=free_shapes)
        done(bucket, results)
        return results
    return train


def follow_sweep(cfg: Config, cluster: Cluster, devices: int | None = None) -> int:
    """A cluster's process other than 0: train the buckets process 0 deals until it says done (nothing is
    written here: process 0 stores every row). Returns the number of buckets trained."""
    mesh = make_mesh(devices if devices is not None else cfg.run.devices)
    threads = training_threads(mesh, cfg.run.bucket_mib)
    with Programs() as programs:
        programs.set_compile_threads(max(1, cores() - threads))
        return follow(cluster, lambda plan, free: trainer(cfg, plan, free, mesh, programs),
                      lambda bucket: programs.prefetch(bucket, mesh), threads)


def _load_plan(text: str, store: Store) -> RoundPlan:
    try:
        return RoundPlan.from_json(text)
    except ValueError as e:
        raise UserError(str(store.path), f"holds a round plan this version cannot read ({e}); finish the run with "
                                         "the version that started it, or start over with --fresh") from None


def run_sweep(
    cfg: Config,
    out_dir: str | Path,
    *,
    fresh: bool = False,
    devices: int | None = None,
    progress: bool = True,
    on_bucket: Callable[[Bucket], None] | None = None,
    programs: Programs | None = None,
    threads: int | None = None,
    cluster: Cluster | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep into out_dir with `threads` training threads (default: training_threads). Rows are
    committed bucket by bucket in plan order (on a cluster, as they arrive), so a stop loses only the buckets in
    training and those that finished while an earlier one still trained; a resume trains those again as the
    stored plan has them.
    `programs`: a compile cache to use (and keep open; a guess may still compile in it when the sweep returns:
    wait_idle() before timing another sweep with it); by default the sweep makes its own and closes it.
    `cluster`: this process is process 0 of a cluster, and deals each round's buckets (scaling.distributed)."""
    if programs is None:
        with Programs() as own:
            return run_sweep(cfg, out_dir, fresh=fresh, devices=devices, progress=progress, on_bucket=on_bucket,
                             programs=own, threads=threads, cluster=cluster)
    start = time.perf_counter()
    mesh = make_mesh(devices if devices is not None else cfg.run.devices)
    sweep = _Sweep(cfg, mesh, programs, threads or training_threads(mesh, cfg.run.bucket_mib), cluster, on_bucket)
    store = Store.open(out_dir, fresh=fresh)
    try:
        run_id = store.start_run(cfg, hosts=cluster.hosts) if cluster else store.start_run(cfg)
    except BaseException:
        store.close()
        raise
    bar = Progress(progress, sweep.compiled)
    try:
        plans = [_load_plan(text, store) for text in store.plans()]
        # A cluster's plans spread buckets over the training threads of all its processes.
        calibration = _calibration(plans, sum(cluster.threads) if cluster else sweep.threads)
        df = store.frame()
        skipped = len(df)  # the store holds this config's members only (Store.start_run checks the hash)
        while (planned := _next_plan(cfg, df, plans, calibration, sweep.slots)) is not None:
            plan, pending = planned
            sweep.check_new(pending, store.path)
            if not plans or plan is not plans[-1]:
                store.save_plan(run_id, plan.round, plan.to_json())  # before it trains: a resume finishes it
                plans.append(plan)
                log.debug("round %d: %d members in %d buckets", plan.round, sum(len(b.members) for _, b in pending),
                          len(pending))
            else:
                log.info("resuming round %d as planned: %d of its %d buckets left", plan.round, len(pending),
                         len(plan.buckets))
            sweep.train_round(plans, pending, df, calibration, bar, lambda i, bucket, results: store.insert(
                run_id, plan.label(i), bucket.members, results))
            df = store.frame()  # the round's rows, read once: what the search asks next
        if cluster is not None:
            finish(cluster, sweep.rounds)
            log.info("cluster of %d processes: %d rounds; process 0 waited %.1f s for the others at the rounds' ends; "
                     "key-value traffic %.2f s", cluster.processes, sweep.rounds, cluster.waited_s, cluster.kv_s)
        summary = summarize(df, cfg)
        # Guesses that never started are dropped, and one still compiling is not waited for: at a cold bench
        # sweep's end, the last round's guess of a round that never came held it 0.45-0.5 s. Others finish first.
        programs.cancel_pending()
        programs.wait_idle(guesses=False)
        counts = sweep.compiled()
        store.end_run(run_id, compiles=counts["compiles"], compile_s=round(counts["compile_s"], 3))
    finally:
        programs.cancel_pending()
        bar.close()
        store.close()
    trained = sum(len(b.members) for b in sweep.buckets)
    waste = padding_waste(sweep.buckets) if sweep.buckets else 1.0
    return SweepOutcome(trained, skipped, sweep.rounds, len(sweep.buckets), time.perf_counter() - start, waste,
                        summary, compiles=counts["compiles"], compile_s=counts["compile_s"],
                        compile_wait_s=counts["compile_wait_s"], loads=counts["loads"], threads=sweep.threads)


class _Sweep:
    """What one sweep's rounds share: the device mesh, the compile cache, the training threads (and a
    cluster's processes), and the buckets and members trained so far."""

    def __init__(self, cfg: Config, mesh: Mesh | None, programs: Programs, threads: int, cluster: Cluster | None,
                 on_bucket: Callable[[Bucket], None] | None):
        self.cfg, self.mesh, self.programs, self.threads, self.cluster = cfg, mesh, programs, threads, cluster
        self.on_bucket, self.spare = on_bucket, cores()
        programs.set_compile_threads(max(1, self.spare - threads))  # an accelerator's host compiles on spare cores
        self.before = programs.counters()
        self.buckets: list[Bucket] = []
        self.members: set[Member] = set()
        self.rounds = 0

    def compiled(self) -> dict:
        """The compile cache's counters since the sweep began."""
        return {k: v - self.before[k] for k, v in self.programs.counters().items()}

    def slots(self, bucket: Bucket) -> int:
        return population_slots(bucket, self.mesh)

    def check_new(self, pending: list[tuple[int, Bucket]], store_path: Path) -> None:
        """Never loop for ever on members that do not stay stored."""
        again = self.members.intersection(m for _, b in pending for m in b.members)
        if again:
            raise UserError(str(store_path), f"{len(again)} members that this sweep trained and stored are still "
                                             "missing from the store (edited while the sweep ran?); the sweep stops "
                                             "with them missing: rerun to resume")

    def train_round(self, plans: list[RoundPlan], pending: list[tuple[int, Bucket]], df: pd.DataFrame,
                    calibration: Calibration, bar: Progress, insert: Callable) -> None:
        """Train the latest plan's pending buckets (here, or dealt to a cluster) and insert their rows in plan
        order, compiling ahead: each own bucket's programs, and the next round's guessed ones on idle cores."""
        cfg, programs, mesh, cluster, plan = self.cfg, self.programs, self.mesh, self.cluster, plans[-1]
        members = [m for _, b in pending for m in b.members]
        # What compaction may count as compiled: the programs of this and the earlier plans, so that no bucket's
        # rows depend on what this process happened to compile (or on when it was stopped).
        free_shapes = rounds.program_shapes(plans, self.slots)
        bar.round(plan, [b for _, b in pending], len(self.members),
                  sum(cluster.threads) if cluster else self.threads, rounds.program_shapes(plans[:-1], self.slots))
        programs.cancel_pending()  # guesses for this round that never started
        # A cluster deals the round first (each process compiles and trains only its own buckets).
        owners = None
        if cluster is not None:
            owners = deal([b for _, b in pending], plan.calibration.model, cluster.threads, cluster.shapes)
            cluster.pool_shapes()
        own = [b for k, (_, b) in enumerate(pending) if owners is None or owners[k] == 0]
        for bucket in own[1:]:  # compiled in the background, in order, while earlier buckets train
            programs.prefetch(bucket, mesh)
        # The next rounds' programs, compiled meanwhile on a core that this process's buckets leave idle. Where
        # every core trains, guesses wait for the round's tail (RoundTail): compiled on a training core, a right
        # guess only moves a compile earlier and a wrong one costs a whole compile (a warm 2-process search
        # compiled an unneeded program on each run: 8.6-8.9 s, and 5.5-5.7 s without).
        if min(self.threads, len(own)) < self.spare:
            guesses.queue_next_round(cfg, df, members, calibration, free_shapes, programs, mesh)
        tail = guesses.RoundTail(
            lambda known: guesses.next_round_buckets(cfg, df, members, calibration, free_shapes, known),
            lambda bucket: programs.prefetch(bucket, mesh, guess=True), len(pending), self.threads)
        train = trainer(cfg, plan, free_shapes, mesh, programs, bar.chunk,
                        tail.done if cluster is None else lambda bucket, results: None)
        if cluster is None:
            arrivals = ((i, b, r, False) for (i, b), r in zip(pending, train_concurrently(
                [b for _, b in pending], self.threads, train)))
        else:
            arrivals = lead_round(cluster, self.rounds, plan, pending, owners, free_shapes, train, self.threads)
        solved = int(df["solved"].sum()) if len(df) else 0
        try:
            for i, bucket, results, remote in arrivals:
                insert(i, bucket, results)
                self.buckets.append(bucket)
                self.members.update(bucket.members)
                solved += sum(r.solved for r in results)
                if remote:
                    bar.chunk(len(results))
                bar.bucket(plan, i, solved)
                if self.on_bucket is not None:
                    self.on_bucket(bucket)
        finally:
            arrivals.close()  # stops the threads now, not whenever the generator is collected
            tail.close()
        self.rounds += 1
