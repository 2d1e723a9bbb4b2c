"""A cluster's rounds: process 0 deals each round's buckets whole to the processes (scaling.distributed.cluster)
and gathers their rows; the others train what they are dealt.

Why whole buckets, and not one population sharded over a global mesh: a bucket's host loop reads every
member's loss after each chunk, and over a global mesh each read becomes a cross-process gather, in lockstep
on every process, as does every compile. On the 2-core CPU one multihost_utils.process_allgather of 64 floats
between two processes took 1.28 ms (gloo), about what a 100-step chunk of a small population costs (the cost
model's step latency is 2e-5 s); a key-value set or get of a 2 kB result took 0.2 ms, once per bucket. Dealt
whole, a bucket needs no traffic while it trains, and each process compiles only its own programs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator

from scaling.distributed.cluster import POLL_S, Cluster
from scaling.engine.population import Bucket, BucketSpec, MemberResult
from scaling.planning.rounds import RoundPlan


def _encode_results(results: list[MemberResult]) -> str:
    return json.dumps([dataclasses.astuple(r) for r in results])  # floats as repr: exact; NaN allowed


def _decode_results(text: str) -> list[MemberResult]:
    return [MemberResult(*row) for row in json.loads(text)]


Train = Callable[[Bucket, threading.Event], list[MemberResult]]


def lead_round(cluster: Cluster, seq: int, plan: RoundPlan, pending: list[tuple[int, Bucket]], owners: list[int],
               free_shapes: set, train: Train, threads: int
               ) -> Iterator[tuple[int, Bucket, list[MemberResult], bool]]:
    """Process 0's part of one round: hand the round and its deal (`owners`, from deal) to the others, train its
    own buckets on `threads` training threads, and yield (index, bucket, results, trained elsewhere) of every pending
    bucket as they arrive."""
    cluster.put(f"round/{seq}", json.dumps({
        "plan": plan.to_json(), "pending": [i for i, _ in pending], "owners": owners,
        "free": [[dataclasses.asdict(spec), size] for spec, size in sorted(free_shapes, key=repr)]}))
    remote = {i: b for (i, b), owner in zip(pending, owners) if owner != 0}
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="scaling-train") as pool:
        futures = {pool.submit(train, b, stop): (i, b) for (i, b), owner in zip(pending, owners) if owner == 0}
        try:
            last_check = time.monotonic()
            while futures or remote:
                idle = not futures
                done, _ = concurrent.futures.wait(futures, timeout=POLL_S, return_when="FIRST_COMPLETED")
                for future in done:
                    i, bucket = futures.pop(future)
                    yield i, bucket, future.result(), False
                if remote:
                    for i, text in cluster.results(seq):
                        if i in remote:
                            yield i, remote.pop(i), _decode_results(text), True
                if time.monotonic() - last_check >= 1.0:  # every process, working or not, must stay alive
                    cluster.check(list(range(1, cluster.processes)))
                    last_check = time.monotonic()
                if idle and remote:
                    time.sleep(POLL_S)
                    cluster.waited_s += POLL_S
        finally:
            for future in futures:
                future.cancel()
            stop.set()


def finish(cluster: Cluster, seq: int) -> None:
    """Process 0 tells the others that the sweep is done (as round `seq`), and waits until every one has heard."""
    cluster.put(f"round/{seq}", json.dumps({"done": True}))
    cluster.leave()


def follow(cluster: Cluster, make_train: Callable[[RoundPlan, set], Train], prefetch: Callable[[Bucket], None],
           threads: int) -> int:
    """A process other than 0: train what process 0 deals, round after round, until it says done; returns the
    number of buckets trained here. Its buckets after the first compile in the background meanwhile
    (`prefetch`). (Its heartbeat thread ends the process when process 0 is lost.)"""
    seq = trained = 0
    stop = threading.Event()
    try:
        while True:
            message = json.loads(cluster.take(f"round/{seq}"))
            if message.get("done"):
                cluster.leave()
                return trained
            plan = RoundPlan.from_json(message["plan"])
            free = {(BucketSpec(**spec), size) for spec, size in message["free"]}
            mine = [(i, plan.buckets[i]) for i, owner in zip(message["pending"], message["owners"])
                    if owner == cluster.process_id]
            for _, bucket in mine[threads:]:
                prefetch(bucket)
            train = make_train(plan, free)
            with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="scaling-train") as pool:
                futures = {pool.submit(train, b, stop): i for i, b in mine}
                try:
                    for future in concurrent.futures.as_completed(futures):
                        cluster.put(f"result/{seq}/{futures[future]}", _encode_results(future.result()))
                        trained += 1
                except BaseException:  # the others stop at their next chunk, and nothing queued starts
                    stop.set()
                    for future in futures:
                        future.cancel()
                    raise
            seq += 1
    finally:
        stop.set()
