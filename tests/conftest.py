import dataclasses
import os

# The suite assumes the CPU (simulated devices, backend == "cpu", float tolerances): force it, for the
# subprocesses the tests start too, so that it passes unchanged on a machine with a GPU.
# SCALING_TEST_PLATFORMS=cuda runs it on a GPU on purpose.
os.environ["JAX_PLATFORMS"] = os.environ.get("SCALING_TEST_PLATFORMS", "cpu")

import jax  # noqa: E402  (after JAX_PLATFORMS)
import pytest  # noqa: E402

from scaling.population import Member  # noqa: E402

# Silent broadcasting hides shape bugs; the engine must be explicit about every rank change.
jax.config.update("jax_numpy_rank_promotion", "raise")


DEFAULT_MEMBER = Member(task="parity", n=2, encoding="pm1", depth=1, width=4, activation="relu", init="he",
                        optimizer="adam", loss="bce", lr=1e-2, seed=0, steps=300)


@pytest.fixture
def member_factory():
    """DEFAULT_MEMBER with any fields replaced, e.g. member_factory(n=3, width=8)."""
    return lambda **fields: dataclasses.replace(DEFAULT_MEMBER, **fields)


TINY = """
[experiment]
name = "tiny"
description = "A seconds-long sweep for the tests."
[task]
n = [2, 4]
[model]
depths = {fixed = [1, 2], log2 = [1]}
widths = {max = 8}
[train]
lrs = [3e-2]
steps = 400
eval_every = 100
[search]
seeds = 3
min_depth_widths = [2, 4]
"""


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """One small real sweep shared by the sweep, resume and report tests: (out_dir, SweepOutcome)."""
    from scaling import config
    from scaling.sweep import run_sweep

    out = tmp_path_factory.mktemp("tiny")
    return out, run_sweep(config.parse(TINY), out, progress=False)
