"""One sweep over every process of a jax.distributed cluster: process 0 plans, stores and deals whole buckets;
every process trains the buckets it is dealt on its own devices and hands their rows back.

Process 0 is the only one that touches the results directory (lock, store, outputs, progress bar). The others
may share no filesystem with it: they get each round's plan from process 0, and give back their results, through
the key-value store of JAX's distributed runtime (the coordination service that jax.distributed.initialize
starts on process 0). Nothing else travels between processes: a bucket's rows depend only on its plan (its
members, the cost model it was planned with, and the program shapes counted as compiled), never on where it
trained, so a cluster stores the rows of a single process that trains the same plans.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import platform
import threading
import time
import zlib
from collections.abc import Callable

from scaling.distributed import jax_key_value
from scaling.errors import ClusterError, UserError

PREFIX = "scaling/"
PART_CHARS = 2**20  # characters per part of a large value (scaling.distributed.cluster.Cluster.put)
POLL_S = 0.05  # how often process 0 looks for the others' results (a key-value call takes 0.2-0.7 ms)
DEFAULT_HEARTBEAT_S = 30  # a process silent for this long has left the cluster
ENVIRONMENT = {"coordinator": "SCALING_COORDINATOR", "processes": "SCALING_NUM_PROCESSES",
               "process_id": "SCALING_PROCESS_ID", "heartbeat_s": "SCALING_HEARTBEAT_S"}


@dataclasses.dataclass(frozen=True)
class Join:
    """How this process joins a cluster; None fields are left to jax.distributed's auto-detection (TPU pods,
    SLURM, Open MPI)."""

    coordinator: str | None = None
    processes: int | None = None
    process_id: int | None = None
    heartbeat_s: int = DEFAULT_HEARTBEAT_S


def join_from(flags: dict, environ=os.environ) -> Join | None:
    """The Join of the command line's flags (None where not given) over the SCALING_* environment variables, or
    None for a single process: neither flags, nor variables, nor `distributed` (auto-detection)."""
    values = {}
    for field, variable in ENVIRONMENT.items():
        value = flags.get(field)
        if value is None and environ.get(variable, "").strip():
            raw = environ[variable].strip()
            if field != "coordinator":
                if not raw.isdigit():
                    raise UserError(variable, f"must be a whole number, got {raw!r}")
                raw = int(raw)
            value = raw
        if value is not None:
            values[field] = value
    if not set(values) - {"heartbeat_s"} and not flags.get("distributed"):
        return None  # a heartbeat alone (or a leftover SCALING_HEARTBEAT_S) makes no cluster
    join = Join(**values)
    if join.heartbeat_s < 1:
        raise UserError("--heartbeat", f"must be at least 1 second, got {join.heartbeat_s}")
    if join.processes is not None and join.processes < 1:
        raise UserError("--num-processes", f"must be at least 1, got {join.processes}")
    if join.process_id is not None and join.processes is not None and not 0 <= join.process_id < join.processes:
        raise UserError("--process-id", f"must lie in 0..{join.processes - 1}, got {join.process_id}")
    return join


class Cluster:
    """This process's view of the cluster: its id, the others, and the runtime's key-value store."""

    def __init__(self, client, process_id: int, processes: int, heartbeat_s: int,
                 on_lost: Callable[[ClusterError], None] | None = None):
        """on_lost(error): how a process other than 0 leaves when process 0 is lost (the command line prints one
        line and exits at once); without it, the heartbeat thread just stops."""
        self.on_lost = on_lost
        self.client, self.process_id, self.processes, self.heartbeat_s = client, process_id, processes, heartbeat_s
        self.hosts: list[str] = [platform.node()] * processes  # process 0 learns the others' in the handshake
        self.threads: list[int] = [1] * processes  # buckets each process trains at once (from the handshake)
        self.shapes: list[set] = [set() for _ in range(processes)]  # bucket shapes dealt to each process so far
        # Processes that read process 0's program store (from the handshake): each loads what any of them compiled.
        self.shares_programs: list[bool] = [process_id == 0] + [False] * (processes - 1)
        self.waited_s = 0.0  # process 0: seconds it waited for the others once its own buckets of a round were done
        self.kv_s = 0.0  # seconds spent in the key-value store's calls
        self._beats: dict[int, tuple[str | None, float]] = {}  # peer -> (its last beat seen, when it changed)
        self._stop_beating = threading.Event()
        threading.Thread(target=self._beat, name="scaling-heartbeat", daemon=True).start()

    def pool_shapes(self) -> None:
        """After a round's deal: the programs dealt to any process that shares process 0's program store are
        compiled by the next round, and every such process loads them instead of compiling."""
        pooled = set().union(*(shapes for shapes, shared in zip(self.shapes, self.shares_programs) if shared))
        for shapes, shared in zip(self.shapes, self.shares_programs):
            if shared:
                shapes |= pooled

    def _beat(self) -> None:
        """Count up under alive/<id> several times per heartbeat: the others' sign that this process lives. (The
        runtime's own liveness query, get_live_nodes, blocks until every process asks, so it cannot serve.) A
        process other than 0 also watches process 0 here, from the moment it joins: when process 0 aborts or
        falls silent it leaves at once, with one line, before the runtime notices and aborts it with a C++ trace."""
        count = 0
        while not self._stop_beating.wait(min(1.0, self.heartbeat_s / 5)):
            count += 1
            try:
                self.client.key_value_set(f"{PREFIX}alive/{self.process_id}", str(count), True)
            except Exception:  # noqa: BLE001 (the coordinator is gone: the check below says so)
                pass
            if self.leader:
                continue
            try:
                self.check([0])
            except ClusterError as e:
                if self._stop_beating.is_set() or self.on_lost is None:  # done: process 0 may leave now
                    return
                self.bye()
                self.on_lost(e)

    @property
    def leader(self) -> bool:
        return self.process_id == 0

    def set(self, key: str, text: str) -> None:
        self._call(self.client.key_value_set, PREFIX + key, text)

    def try_get(self, key: str) -> str | None:
        return self._call(self.client.key_value_try_get, PREFIX + key, expected="not_found")

    def wait(self, key: str, peers: list[int] = ()) -> str:
        """The value of `key` as soon as some process sets it, checking every second that `peers` are alive."""
        while (value := self._call(self.client.blocking_key_value_get, PREFIX + key, 1000,
                                   expected="deadline_exceeded")) is None:
            self.check(list(peers))
        return value

    def put(self, key: str, text: str) -> None:
        """Set a value of any size: compressed, in parts well under the RPC limit (gRPC's default is 4 MiB; round 0
        of paper.toml plans 84,480 members, 5.4 MB of JSON, 0.22 MB compressed), the count of parts last."""
        data = base64.b64encode(zlib.compress(text.encode(), 6)).decode()
        parts = [data[i:i + PART_CHARS] for i in range(0, len(data), PART_CHARS)] or [""]
        for k, part in enumerate(parts):
            self.set(f"parts/{key}/{k}", part)
        self.set(key, str(len(parts)))

    def _assemble(self, key: str, count: str, once: bool = False) -> str:
        """The value put() under `key` in `count` parts; `once`: its only reader deletes it (a result)."""
        data = "".join(self.try_get(f"parts/{key}/{k}") or "" for k in range(int(count)))
        for k in range(int(count)) if once else ():
            self._call(self.client.key_value_delete, f"{PREFIX}parts/{key}/{k}")
        return zlib.decompress(base64.b64decode(data)).decode()

    def take(self, key: str, peers: list[int] = ()) -> str:
        """The value that some process put() under `key`, once it is there (checking `peers` meanwhile)."""
        return self._assemble(key, self.wait(key, peers))

    def results(self, seq: int) -> list[tuple[int, str]]:
        """(bucket index, results) of the buckets of round `seq` that other processes handed in since the last
        call (each is read once, then deleted)."""
        entries = self._call(self.client.key_value_dir_get, f"{PREFIX}result/{seq}/")
        found = []
        for key, count in entries:
            name = key[len(PREFIX):]
            found.append((int(name.rsplit("/", 1)[1]), self._assemble(name, count, once=True)))
            self._call(self.client.key_value_delete, key)
        return found

    def check(self, peers: list[int]) -> None:
        """Raise ClusterError when process 0 has aborted, or one of `peers` has left the cluster."""
        if not self.leader and (reason := self.try_get("abort")) is not None:
            raise ClusterError("process 0", reason)
        now = time.monotonic()
        for peer in peers:
            if peer and (reason := self.try_get(f"failed/{peer}")) is not None:
                raise ClusterError(f"process {peer} ({self.hosts[peer]})", f"stopped: {reason}")
            beat = self.try_get(f"alive/{peer}")
            last, since = self._beats.get(peer, (None, now))
            if beat != last or peer not in self._beats:
                self._beats[peer] = (beat, now)
            elif now - since > self.heartbeat_s:
                raise self._lost(peer)

    def leave(self) -> None:
        """Wait until every process is done, so that process 0 (which serves the key-value store) leaves last."""
        self._stop_beating.set()  # from here on, process 0 may end at any moment
        self._call(self.client.wait_at_barrier, PREFIX + "end", 1000 * (2 * self.heartbeat_s + 60))

    def abort(self, reason: str, lost: int | None = None) -> None:
        """Process 0 stops: tell the others (they exit with `reason`) and give them a moment to leave first, since
        the runtime aborts a process whose coordinator is gone, with a C++ stack trace. Never raises."""
        try:
            self.client.key_value_set(PREFIX + "abort", reason, True)
            deadline = time.monotonic() + min(self.heartbeat_s, 5)
            while time.monotonic() < deadline and any(self.try_get(f"bye/{peer}") is None
                                                      for peer in range(1, self.processes) if peer != lost):
                time.sleep(0.05)
        except Exception:  # noqa: BLE001 (the others find out from the coordinator's loss instead)
            pass

    def bye(self, reason: str | None = None) -> None:
        """A process other than 0 leaves after an error (process 0 waits for this before it stops; with a reason,
        process 0 stops with it); never raises."""
        try:
            if reason is not None:
                self.client.key_value_set(f"{PREFIX}failed/{self.process_id}", reason, True)
            self.client.key_value_set(f"{PREFIX}bye/{self.process_id}", "bye", True)
        except Exception:  # noqa: BLE001
            pass

    def _call(self, method, *args, expected: str = ""):
        """One timed call of the key-value store. A failure whose status is `expected` (NOT_FOUND, or a wait's
        DEADLINE_EXCEEDED) returns None; any other means the coordination service (process 0) is gone."""
        start = time.perf_counter()
        try:
            return method(*args)
        except Exception as e:  # noqa: BLE001 (the runtime raises its own error type for every status)
            status = str(e).lower().replace(" ", "_")
            if expected and expected in status:
                return None
            raise self._lost(0, e) from None
        finally:
            self.kv_s += time.perf_counter() - start

    def _lost(self, peer: int, error: Exception | None = None) -> ClusterError:
        where = f"process {peer} ({self.hosts[peer]})"
        detail = f" ({str(error).splitlines()[0][:120]})" if error is not None else ""
        error = ClusterError(where, f"left the cluster (no heartbeat within {self.heartbeat_s} s){detail}; the "
                                    "stored buckets are whole: relaunch the same command to resume")
        error.peer = peer
        return error


def join(j: Join, on_lost: Callable[[ClusterError], None] | None = None) -> Cluster:
    """jax.distributed.initialize, with gloo collectives on a CPU and the heartbeat of `j`; before any jax work."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # ignored by other backends
    jax.config.update("jax_enable_preemption_service", False)  # unused; it logs errors when a process is lost
    if j.process_id and j.coordinator:
        _await_coordinator(j.coordinator, max(60, 2 * j.heartbeat_s))
    try:
        jax.distributed.initialize(coordinator_address=j.coordinator, num_processes=j.processes,
                                   process_id=j.process_id,
                                   # The runtime's own heartbeat, which aborts every process with a C++ trace,
                                   # waits longer than ours, which reports a lost process in one line first.
                                   heartbeat_timeout_seconds=2 * j.heartbeat_s + 10,
                                   initialization_timeout=max(60, 2 * j.heartbeat_s))
    except (RuntimeError, ValueError) as e:
        raise ClusterError("jax.distributed.initialize", str(e).splitlines()[0]) from None
    return Cluster(jax_key_value.client(), jax.process_index(), jax.process_count(), j.heartbeat_s, on_lost)


def _await_coordinator(address: str, timeout_s: float) -> None:
    """Until process 0's coordination service listens (or timeout_s): the runtime retries a process that asks
    earlier a second later (processes launched together joined in 1.0 s in 3 of 5 tries, else in 0.01 s)."""
    import socket

    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
            return
        except (OSError, ValueError):
            time.sleep(0.01)
