import dataclasses
import json
import os
import tempfile

# The suite assumes the CPU (simulated devices, backend == "cpu", float tolerances): force it, for the
# subprocesses the tests start too, so that it passes unchanged on a machine with a GPU.
# SCALING_TEST_PLATFORMS=cuda runs it on a GPU on purpose.
os.environ["JAX_PLATFORMS"] = os.environ.get("SCALING_TEST_PLATFORMS", "cpu")
# Plans must not depend on how fast the test machine happens to be: the suite (and the sweeps it starts in
# subprocesses) plans with the built-in CPU cost model, written into a cache of its own, so no probe runs.
# Compiled programs still go to the user's persistent compile cache.
from scaling.planning.cost import cache_dir  # noqa: E402  (jax-free)

os.environ.setdefault("SCALING_JAX_CACHE", str(cache_dir() / "jax"))  # before SCALING_CACHE moves
os.environ["SCALING_CACHE"] = tempfile.mkdtemp(prefix="scaling-test-cache-")

import jax  # noqa: E402  (after JAX_PLATFORMS)
import pytest  # noqa: E402
from configs import TINY  # noqa: E402

from scaling.engine.population import Member  # noqa: E402

# Silent broadcasting hides shape bugs; the engine must be explicit about every rank change.
jax.config.update("jax_numpy_rank_promotion", "raise")


def _write_fixed_cost_model() -> None:
    from scaling.planning import cost

    model = cost.default_model(jax.default_backend(), jax.devices()[0].device_kind)
    path = cost._path(model.backend, model.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(model)))


_write_fixed_cost_model()


DEFAULT_MEMBER = Member(task="parity", n=2, encoding="pm1", depth=1, width=4, activation="relu", init="he",
                        optimizer="adam", loss="bce", lr=1e-2, seed=0, steps=300)


@pytest.fixture(autouse=True)
def _jax_cache_as_it_was():
    """A test that runs the command line in this process (cli.main) points jax's compile cache, and with it
    scaling.engine.program_store, at a directory: put both back, so that no later test loads programs it should
    compile (the suite counts compiles)."""
    names = ("jax_compilation_cache_dir", "jax_enable_compilation_cache", "jax_persistent_cache_min_compile_time_secs")
    was = [getattr(jax.config, name) for name in names]
    yield
    for name, value in zip(names, was):
        jax.config.update(name, value)


@pytest.fixture
def member_factory():
    """DEFAULT_MEMBER with any fields replaced, e.g. member_factory(n=3, width=8)."""
    return lambda **fields: dataclasses.replace(DEFAULT_MEMBER, **fields)




@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """One small real sweep shared by the sweep, resume and report tests: (out_dir, SweepOutcome). Two buckets
    train at once, whatever this machine's core count (test_sweep compares it with one at a time)."""
    from scaling.experiment import config
    from scaling.sweep import run_sweep

    out = tmp_path_factory.mktemp("tiny")
    return out, run_sweep(config.parse(TINY), out, progress=False, threads=2)
