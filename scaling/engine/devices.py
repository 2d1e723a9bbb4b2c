"""This process's share of the machine: the mesh of its devices, and how many buckets it trains at once."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh

from scaling.errors import UserError


def make_mesh(devices: int | None) -> Mesh | None:
    """A 1-D mesh over the population axis, or None for a single device."""
    available = jax.local_devices()  # this process's (all of them, without a cluster)
    count = len(available) if devices is None else devices
    if count < 1:
        raise UserError("--devices", f"must be at least 1, got {count}")
    if count > len(available):
        raise UserError("--devices", f"asked for {count} devices but only {len(available)} are visible "
                                     f"({available[0].platform})")
    return None if count == 1 else Mesh(np.array(available[:count]), ("pop",))


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def training_threads(mesh: Mesh | None, bucket_mib: int = 0) -> int:
    """How many buckets train at once (SCALING_THREADS overrides it). On one CPU device, one per core: XLA runs
    a bucket's small matmuls on one thread, so on this 2-core machine two buckets trained at once in 1.15 s
    instead of 2.14 s, with the same rows bit for bit (scaling.benchmarks.profile.threads_check). No more than half the
    memory holds buckets of `bucket_mib` each. An accelerator or a mesh is kept busy by one bucket."""
    name = next((n for n in ("SCALING_THREADS", "SCALING_WORKERS") if os.environ.get(n, "").strip()), None)
    if name:  # SCALING_WORKERS: the variable's earlier name, still read
        value = os.environ[name].strip()
        if not value.isdigit() or int(value) < 1:
            raise UserError(name, f"must be a whole number of at least 1, got {value!r}")
        return int(value)
    if mesh is not None or jax.default_backend() != "cpu":
        return 1
    cores_here = cores()
    if bucket_mib:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        cores_here = min(cores_here, max(1, memory // 2 // (bucket_mib * 2**20)))
    return cores_here
