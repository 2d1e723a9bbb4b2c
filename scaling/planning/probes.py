"""The cost model's calibration: a short probe of this backend (about 30 s on a 2-core CPU), run once per
machine and cached (scaling.planning.cost). It trains small buckets shaped like a default sweep's, with the persistent
compile cache off, and fits the model's prices to what they took.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from scaling.engine.population import Bucket
from scaling.planning.cost import CostModel, cached, save, work

log = logging.getLogger(__name__)


def _probe_bucket(n: int, depth: int, width: int, population: int, steps: int) -> Bucket:
    from scaling.engine.population import Member, make_bucket

    base = Member(task="parity", n=n, encoding="pm1", depth=depth, width=width, activation="relu", init="he",
                  optimizer="adam", loss="bce", lr=1e-9, seed=0, steps=steps)  # lr 1e-9: nobody stops early
    return make_bucket([dataclasses.replace(base, seed=s) for s in range(population)], eval_every=steps // 2)


# name -> (n, depth, width, population, steps) of each probe bucket: shapes like a default sweep's buckets,
# and one wide one for the FLOPs.
PROBES = {
    "warm-up": (3, 1, 4, 4, 100),  # the first compile in a process pays one-time set-up; not fitted
    "latency": (3, 1, 2, 2, 2000),  # a tiny population is all overhead
    "narrow-deep": (8, 4, 2, 512, 100), "narrow": (8, 3, 2, 384, 100), "mid": (6, 3, 6, 192, 200),
    "few-rows": (4, 3, 4, 256, 200), "shallow": (8, 1, 1, 256, 200), "large": (8, 2, 16, 48, 200),
    "wide": (8, 2, 128, 16, 100),
}


def calibrate(probes: dict = PROBES) -> CostModel:
    """Measure this backend (about 30 s on a 2-core CPU) and cache the result."""
    import jax

    from scaling.engine.programs import Programs
    from scaling.engine.train import train_bucket

    log.info("calibrating the cost model of this %s backend (once per machine, about 30 s)", jax.default_backend())
    cache_was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)  # compile times as a cold run pays them
    try:
        measured = {}
        for name, (n, depth, width, population, steps) in probes.items():
            bucket = _probe_bucket(n, depth, width, population, steps)
            with Programs() as programs:
                programs.prefetch(bucket)  # compiled one after another, apart from the training timed below
                programs.wait_idle()
                start = time.perf_counter()
                train_bucket(bucket, programs=programs)  # lr 1e-9: no member stops, so nothing compacts
                measured[name] = (bucket, programs.compile_s, time.perf_counter() - start)
    finally:
        jax.config.update("jax_enable_compilation_cache", cache_was)
    fitted = {k: v for k, v in measured.items() if k != "warm-up"}
    # Compile seconds against depth (one line through every fitted probe).
    depths = np.array([b.spec.depth_max for b, _, _ in fitted.values()], float)
    per_layer, at_zero = np.polyfit(depths, [c for _, c, _ in fitted.values()], 1)
    latency_bucket, _, latency_s = measured["latency"]
    latency = latency_s / latency_bucket.steps
    # The unit prices by non-negative least squares on each probe's relative error.
    rows = [(b, max(seconds / b.steps - latency, 1e-9))
            for name, (b, _, seconds) in fitted.items() if name != "latency"]
    rows = [(np.array(work(b.spec, b.slots), float), t) for b, t in rows]
    import scipy.optimize  # here, not at the top: it adds a quarter second to every sweep's start

    prices = scipy.optimize.nnls(np.array([w / t for w, t in rows]), np.ones(len(rows)))[0]
    model = CostModel(backend=jax.default_backend(), device=jax.devices()[0].device_kind,
                      compile_s=max(float(at_zero), 0.0), compile_s_per_layer=max(float(per_layer), 0.0),
                      step_latency_s=latency, unit_s=tuple(float(p) for p in prices), calibrated=True)
    save(model)
    return model


def load_or_calibrate() -> CostModel:
    """This backend's cached cost model, measured now when none is cached yet."""
    return cached() or calibrate()
