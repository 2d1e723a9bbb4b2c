import jax
import pytest

# Silent broadcasting hides shape bugs; the engine must be explicit about every rank change.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def member_factory():
    from scaling.population import Member

    def make(n=2, depth=1, width=4, lr=1e-2, seed=0, steps=300, activation="relu", init="he", optimizer="adam",
             loss="bce", encoding="pm1"):
        return Member("parity", n, encoding, depth, width, activation, init, optimizer, loss, lr, seed, steps)

    return make


TINY = """
[experiment]
name = "tiny"
description = "A seconds-long sweep for the tests."
[task]
n = [2, 4]
[model]
depths = [1, 2]
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
