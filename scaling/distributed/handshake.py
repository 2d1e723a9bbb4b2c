"""A cluster's handshake: before a sweep starts, every process shows process 0 what it was launched with, and
process 0 refuses a cluster whose processes differ (scaling.distributed.cluster joins them)."""

from __future__ import annotations

import hashlib
import json
import platform

from scaling.distributed.cluster import Cluster
from scaling.errors import ClusterError


def fingerprint(cfg_source: str, out: str, local_devices: int, threads: int) -> dict:
    """What every process must agree on before a sweep starts (all but its host and its training threads)."""
    import jax

    from scaling import about
    from scaling.engine import program_store

    return {"config": hashlib.sha256(cfg_source.encode()).hexdigest()[:16], "out": out,
            "version": f"scaling {about.version()} (sources {about.source_hash()[:12]}), jax {jax.__version__}",
            "devices per process": f"{local_devices} x {jax.local_devices()[0].device_kind}",
            "host": platform.node(), "threads": threads, "programs": program_store.identity()}


def handshake(cluster: Cluster, mine: dict) -> None:
    """Every process shows process 0 its fingerprint; process 0 refuses a cluster whose processes differ, and
    learns which of them read its program store."""
    if not cluster.leader:
        cluster.set(f"hello/{cluster.process_id}", json.dumps(mine))
        verdict = json.loads(cluster.wait("verdict", [0]))
        cluster.hosts = verdict["hosts"]
        if verdict["problem"]:
            raise ClusterError("process 0", verdict["problem"])
        return
    problem = None
    cluster.threads[0] = int(mine["threads"])
    for peer in range(1, cluster.processes):
        theirs = json.loads(cluster.wait(f"hello/{peer}", [peer]))
        cluster.hosts[peer], cluster.threads[peer] = theirs["host"], int(theirs["threads"])
        cluster.shares_programs[peer] = mine["programs"] is not None and theirs.get("programs") == mine["programs"]
        for field in mine:
            if field not in ("host", "threads", "programs") and theirs.get(field) != mine[field] and problem is None:
                problem = (f"process {peer} ({theirs['host']}) was launched with another {field} "
                           f"({theirs.get(field)!r}, process 0 has {mine[field]!r}); launch every process with the "
                           "same command and version")
    cluster.set("verdict", json.dumps({"problem": problem, "hosts": cluster.hosts}))
    if problem:
        raise ClusterError("scaling sweep", problem)
