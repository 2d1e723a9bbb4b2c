"""A small cost model of the population engine on this backend: what a bucket costs to compile and to train.

    time(bucket) = steps x (step_latency_s + padded FLOPs per step / flops_per_s
                            + padded hidden activations per step / activations_per_s)
    time(new program) = compile_s + compile_s_per_layer x depth_max

It is calibrated once per machine by a short probe (about 30 s on a laptop CPU: small buckets, compiled
with the persistent compile cache off) and cached as JSON under the cache directory, keyed by the backend,
the device kind and the jax version. The planner uses it to choose bucket shapes, and `scaling plan` to
forecast a sweep's wall time. Its predictions assume every member runs its whole budget (no early stops), so
they are upper bounds on training time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import scipy.optimize

from scaling.population import Bucket, BucketSpec, capacity

# Used before any probe has run on this backend (or when probing is switched off): measured on a 2-core
# laptop CPU (jax 0.10), the machine the CPU default is tuned for.
_CPU_DEFAULT = {"compile_s": 2.4, "compile_s_per_layer": 0.2, "step_latency_s": 1e-5, "flops_per_s": 3e10,
                "activations_per_s": 1e8}
_ACCELERATOR_DEFAULT = {"compile_s": 2.0, "compile_s_per_layer": 0.2, "step_latency_s": 4e-5, "flops_per_s": 5e13,
                        "activations_per_s": 1e12}


def cache_dir() -> Path:
    """The per-user cache of compiled programs and cost models (SCALING_CACHE overrides it)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scaling"
    return Path(os.environ.get("SCALING_CACHE", default))


@dataclasses.dataclass(frozen=True)
class CostModel:
    backend: str
    device: str
    compile_s: float  # one program (the init and chunk programs of a bucket shape) at depth 0
    compile_s_per_layer: float  # hidden layers are unrolled in the program, so compile time grows with depth
    step_latency_s: float  # one training step of a tiny population: dispatch and per-op overheads
    flops_per_s: float  # sustained training FLOP/s of a large population
    activations_per_s: float  # hidden activations per second (the elementwise passes of forward and backward)
    calibrated: bool

    def program_s(self, spec: BucketSpec) -> float:
        return self.compile_s + self.compile_s_per_layer * spec.depth_max

    def train_s(self, bucket: Bucket) -> float:
        """Seconds to train a bucket for its whole budget (an upper bound: early stops only shorten it)."""
        padded, _ = bucket.flops()
        return bucket.steps * (self.step_latency_s + padded / self.flops_per_s
                               + bucket.activations() / self.activations_per_s)

    def forecast(self, buckets: list[Bucket], known: set | None = None) -> dict[str, float]:
        """Programs to compile (those not in `known`), their seconds, and the training seconds of `buckets`."""
        programs = {(b.spec, capacity(len(b.members))) for b in buckets} - (known or set())
        compile_s = sum(self.program_s(spec) for spec, _ in programs)
        train_s = sum(self.train_s(b) for b in buckets)
        return {"programs": len(programs), "compile_s": compile_s, "train_s": train_s, "total_s": compile_s + train_s}


def _path(backend: str, device: str) -> Path:
    import jax

    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{backend}-{device}-jax{jax.__version__}")
    return cache_dir() / f"cost-{tag}.json"


def default_model(backend: str, device: str) -> CostModel:
    values = _CPU_DEFAULT if backend == "cpu" else _ACCELERATOR_DEFAULT
    return CostModel(backend=backend, device=device, calibrated=False, **values)


def _probe_bucket(n: int, depth: int, width: int, population: int, steps: int) -> Bucket:
    from scaling.population import Member, make_bucket

    base = Member(task="parity", n=n, encoding="pm1", depth=depth, width=width, activation="relu", init="he",
                  optimizer="adam", loss="bce", lr=1e-9, seed=0, steps=steps)  # lr 1e-9: nobody stops early
    return make_bucket([dataclasses.replace(base, seed=s) for s in range(population)], eval_every=steps // 2)


def calibrate(progress=print) -> CostModel:
    """Measure this backend (about 5-20 s) and cache the result."""
    import jax

    from scaling.train import Programs, train_bucket

    progress(f"calibrating the cost model of this {jax.default_backend()} backend (once per machine)")
    cache_was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)  # compile times as a cold run pays them
    try:
        times = {}
        for name, (n, depth, width, population, steps) in {
                "warm-up": (3, 1, 4, 4, 400),  # the first compile in a process pays one-time set-up
                "shallow": (4, 1, 4, 4, 400), "deep": (4, 4, 4, 4, 400),
                "small": (4, 1, 4, 4, 4000), "large": (8, 2, 32, 64, 400), "narrow": (8, 3, 1, 256, 400),
                "wide": (8, 2, 128, 16, 200)}.items():
            bucket, programs = _probe_bucket(n, depth, width, population, steps), Programs()
            start = time.perf_counter()
            train_bucket(bucket, programs=programs)
            total = time.perf_counter() - start
            times[name] = (bucket, programs.compile_s, total - programs.compile_s)
    finally:
        jax.config.update("jax_enable_compilation_cache", cache_was)
    shallow, deep = times["shallow"][1], times["deep"][1]
    per_layer = max(0.0, (deep - shallow) / 3)
    small_bucket, _, small_s = times["small"]
    latency = small_s / small_bucket.steps  # a tiny population: all overhead
    # Three probes, from activation-heavy (width 1) to matmul-heavy (width 128), give the two rates by
    # non-negative least squares on the relative error of each probe:
    # seconds per step - latency = FLOPs x (1 / flops_per_s) + activations x (1 / activations_per_s).
    a_matrix, b_vector = [], []
    for name in ("narrow", "large", "wide"):
        bucket, _, seconds = times[name]
        per_step = max(seconds / bucket.steps - latency, 1e-9)
        a_matrix.append([bucket.flops()[0] / per_step, bucket.activations() / per_step])
        b_vector.append(1.0)
    inv_flops, inv_acts = (max(float(x), 1e-15) for x in scipy.optimize.nnls(np.array(a_matrix), np.array(b_vector))[0])
    model = CostModel(backend=jax.default_backend(), device=jax.devices()[0].device_kind,
                      compile_s=max(shallow - per_layer, 0.0), compile_s_per_layer=per_layer, step_latency_s=latency,
                      flops_per_s=1 / inv_flops, activations_per_s=1 / inv_acts, calibrated=True)
    path = _path(model.backend, model.device)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(model), indent=2))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the next run another probe
    return model


def load(probe: bool = False, progress=print) -> CostModel:
    """This backend's cached model; without one, a fresh probe (probe=True) or the built-in default."""
    import jax

    backend, device = jax.default_backend(), jax.devices()[0].device_kind
    try:
        values = json.loads(_path(backend, device).read_text())
        return CostModel(**values)
    except (OSError, ValueError, TypeError):
        pass
    return calibrate(progress) if probe else default_model(backend, device)
