"""A small cost model of the population engine on this backend: what a bucket costs to compile and to train.

    time(bucket) = steps x (latency + the per-step work of the padded population, priced per unit)
    time(new bucket shape) = compile_s + compile_s_per_layer x depth_max

The per-step work has four parts, each priced by a fitted coefficient (seconds per unit):
    member-layers  population slots x (depth + 1): per-member, per-layer overheads of small batched matmuls
    hidden rows    slots x rows x (depth - 1): the hidden layers' matmuls, whose cost barely shrinks with width
    activations    slots x rows x depth x width: the elementwise passes of forward and backward
    FLOPs          padded training FLOPs: what a large width costs
On the 2-core CPU the four-part model predicts sweep-like shapes within 0.57-1.7x of their measured steps
(`make profile`); an earlier FLOPs-and-activations model was off by up to 5x at widths 2-6,
where most of a default sweep's members are.

It is calibrated once per machine by a short probe (scaling.planning.probes; about 30 s on a laptop CPU: small
buckets, compiled with the persistent compile cache off) and cached as JSON under the cache directory, keyed by
the backend, the device kind and the jax version. The planner uses it to choose bucket shapes, and `scaling plan` to
forecast a sweep's wall time. Its predictions assume every member runs its whole budget (no early stops), so
they are upper bounds on training time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from scaling.engine.population import TRAIN_FLOPS_PER_MADD, Bucket, BucketSpec, forward_madds

log = logging.getLogger(__name__)

# Used before any probe has run on this backend (or when probing is switched off): the calibration of the
# 2-core laptop CPU (jax 0.10.2) that the CPU default is tuned for, rounded; the tests plan with it.
_CPU_DEFAULT = {"compile_s": 0.75, "compile_s_per_layer": 0.25, "step_latency_s": 2e-5,
                "unit_s": (6e-7, 0.0, 2.6e-9, 1.3e-11)}
_ACCELERATOR_DEFAULT = {"compile_s": 2.0, "compile_s_per_layer": 0.2, "step_latency_s": 4e-5,
                        "unit_s": (1e-9, 1e-12, 1e-12, 2e-14)}
UNITS = ("member_layers", "hidden_rows", "activations", "flops")
# Part of the cached calibration's name: raise it when a change to the engine changes what steps cost, so that
# no machine plans with a calibration of the old engine (2: rows as the minor axis of narrow networks; 3: LLVM
# at O1 on a CPU, scaling.engine.steps.compiler_options; 4: populations start from the host on one CPU device,
# scaling.engine.host_init, so a bucket shape compiles no init program). Not raised for populations that train
# in groups (scaling.engine.steps.member_group): no probe is large enough to, so the fit would not change; the
# model overprices those steps (by up to 1.6x), which keeps its forecasts upper bounds.
ENGINE_REVISION = 4


def cache_dir() -> Path:
    """The per-user cache of compiled programs and cost models (SCALING_CACHE overrides it)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scaling"
    return Path(os.environ.get("SCALING_CACHE", default))


@dataclasses.dataclass(frozen=True)
class CostModel:
    backend: str
    device: str
    compile_s: float  # one bucket shape's programs (its chunk program, and its init program where one is) at depth 0
    compile_s_per_layer: float  # hidden layers are unrolled in the program, so compile time grows with depth
    step_latency_s: float  # one training step of a tiny population: dispatch and per-op overheads
    unit_s: tuple[float, float, float, float]  # seconds per unit of work, in the order of UNITS
    calibrated: bool

    def program_s(self, spec: BucketSpec) -> float:
        return self.compile_s + self.compile_s_per_layer * spec.depth_max

    def step_s(self, spec: BucketSpec, slots: int) -> float:
        """Seconds of one training step of a population of `slots` members of this spec."""
        return self.step_latency_s + float(np.dot(self.unit_s, work(spec, slots)))

    def train_s(self, bucket: Bucket) -> float:
        """Seconds to train a bucket for its whole budget (an upper bound: early stops only shorten it)."""
        return bucket.steps * self.step_s(bucket.spec, bucket.slots)

    def forecast(self, buckets: list[Bucket], known: set | None = None) -> dict[str, float]:
        """Programs to compile (those not in `known`), their seconds, and the training seconds of `buckets`."""
        programs = {(b.spec, b.slots) for b in buckets} - (known or set())
        compile_s = sum(self.program_s(spec) for spec, _ in programs)
        train_s = sum(self.train_s(b) for b in buckets)
        return {"programs": len(programs), "compile_s": compile_s, "train_s": train_s, "total_s": compile_s + train_s}


def work(spec: BucketSpec, slots: int) -> tuple[float, float, float, float]:
    """One step's units of work over a padded population of `slots` members, in the order of UNITS. In the sample
    modes a step also carries its share of the evaluation (eval_samples rows, forward only, every eval_every
    steps: a third of a training row each), which there can cost as much as the training itself."""
    depth, width, rows = spec.depth_max, spec.width_max, spec.batch_rows
    if spec.data != "table":
        rows += spec.eval_rows / (3 * spec.eval_every)
    return (slots * (depth + 1), slots * rows * max(depth - 1, 0), slots * rows * max(depth * width, 1),
            TRAIN_FLOPS_PER_MADD * forward_madds(spec.n, depth, width) * rows * slots)


def _path(backend: str, device: str) -> Path:
    import jax

    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{backend}-{device}-jax{jax.__version__}-engine{ENGINE_REVISION}")
    return cache_dir() / f"cost-{tag}.json"


def default_model(backend: str, device: str) -> CostModel:
    values = _CPU_DEFAULT if backend == "cpu" else _ACCELERATOR_DEFAULT
    return CostModel(backend=backend, device=device, calibrated=False, **values)


def save(model: CostModel) -> None:
    """Cache a calibrated model for this backend (a read-only cache only costs the next run another probe)."""
    path = _path(model.backend, model.device)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(model), indent=2))
        os.replace(tmp, path)
    except OSError:
        pass


def cached() -> CostModel | None:
    """This backend's cached model; None where none is cached yet (or one written by another version)."""
    import jax

    try:
        values = json.loads(_path(jax.default_backend(), jax.devices()[0].device_kind).read_text())
        return CostModel(**{**values, "unit_s": tuple(values["unit_s"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def load() -> CostModel:
    """This backend's cached model, or the built-in default where none is cached (probes.py measures one)."""
    import jax

    return cached() or default_model(jax.default_backend(), jax.devices()[0].device_kind)


def deal(buckets: list[Bucket], model: CostModel, threads: list[int], shapes: list[set] | None = None) -> list[int]:
    """The process of each bucket, in plan order: the one that would finish it first (process p trains threads[p]
    buckets at once), by the plan's own cost model, counting a compile where the process has not compiled the
    bucket's shape yet (`shapes[p]`, updated here; processes that share a program store pool theirs after the
    deal, scaling.distributed.cluster)."""
    free = [[0.0] * count for count in threads]
    shapes = shapes if shapes is not None else [set() for _ in threads]
    owners = []
    for bucket in buckets:
        shape = (bucket.spec, bucket.slots)
        cost = [model.train_s(bucket) + (0.0 if shape in shapes[p] else model.program_s(bucket.spec))
                for p in range(len(threads))]
        process = min(range(len(threads)), key=lambda p: (min(free[p]) + cost[p], p))
        finish = free[process]
        finish[finish.index(min(finish))] += cost[process]
        shapes[process].add(shape)
        owners.append(process)
    return owners


def makespan(durations, threads: int) -> float:
    """When the last of `durations` ends, each started in order on the first of `threads` to be free (the
    sweep's thread pool)."""
    finish = [0.0] * max(threads, 1)
    for seconds in durations:
        finish[finish.index(min(finish))] += seconds
    return max(finish)
