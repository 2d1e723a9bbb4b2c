"""The benchmark's baselines are fair: its one-model loops train the engine's networks (scaling.benchmarks.bench)."""

from scaling.engine.population import make_bucket
from scaling.engine.train import train_bucket


def test_the_benchmarks_step_loop_trains_the_engines_networks():
    """make bench's one-model step loop is a fair baseline: alone and unpadded, the same members solve."""
    from scaling.benchmarks import bench

    members = [m for m in bench.workload() if m.width == 32 and m.seed < 2]
    loop = bench._step_loop(members)
    engine = train_bucket(make_bucket(members, eval_every=bench.EVAL_EVERY))
    assert loop["members"] == 2 and loop["compiles"] == 3  # init, step and check, for one width
    assert loop["solved"] == sum(r.solved for r in engine) > 0
