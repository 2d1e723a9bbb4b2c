"""Learning parities from samples (the online and fixed data modes): a member's data depend on its key alone,
the hidden bits are drawn from the run seed and stored, a member trains the same alone or inside any
population, and the sample path agrees with the truth table's where the data are the same."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.engine import steps, train
from scaling.engine.population import make_bucket
from scaling.engine.tasks import hidden_subset, parity_table, subset_text
from scaling.engine.train import train_bucket
from scaling.errors import UserError
from scaling.experiment import config

SPARSE = """
[experiment]
name = "sp"
[task]
kind = "sparse_parity"
n = {values = [12, 64]}
k = [2, 3]
data = "online"
eval_samples = 512
[model]
depths = [1]
widths = [32]
[train]
optimizer = "sgd"
lrs = [0.1]
loss = "hinge"
weight_decay = 0.01
batch_size = 16
steps = 200
eval_every = 50
[search]
seeds = 3
min_depth_widths = []
lr_extend = 0
"""


def sample_member(member_factory, **fields):
    base = dict(task="sparse_parity", n=12, k=3, depth=1, width=16, optimizer="sgd", loss="hinge", lr=0.1,
                weight_decay=0.01, data="online", batch_size=16, eval_samples=256, steps=300, seed=1)
    return member_factory(**{**base, **fields})


def test_a_sparse_parity_config_plans_one_task_per_k_with_n_up_to_64():
    cfg = config.parse(SPARSE)
    assert cfg.tasks() == [(12, 2), (12, 3), (64, 2), (64, 3)]
    from scaling.planning.search import grid_members

    members = grid_members(cfg)
    assert len(members) == 4 * 3 and {(m.n, m.k) for m in members} == set(cfg.tasks())
    assert {(m.data, m.batch_size, m.eval_samples, m.samples) for m in members} == {("online", 16, 512, 0)}
    assert config.parse(SPARSE.replace("k = [2, 3]", "k = [2, 4]")).hash() != cfg.hash()


@pytest.mark.parametrize("edit, key", [
    (("data = \"online\"", "data = \"table\""), "[task] data"),
    (("k = [2, 3]", "k = [2, 13]"), "[task] k"),
    (("k = [2, 3]", ""), "[task] k"),
    (("data = \"online\"", "data = \"fixed\""), "[task] samples"),
    (("data = \"online\"", "data = \"online\"\nsamples = 100"), "[task] samples"),
    (("[12, 64]", "[12, 257]"), "[task] n"),
    (("batch_size = 16", "batch_size = 0"), "[train] batch_size"),
])
def test_bad_sample_settings_are_refused_naming_the_key(edit, key):
    with pytest.raises(UserError) as e:
        config.parse(SPARSE.replace(*edit), "sp.toml")
    assert f"sp.toml: {key}" in str(e.value)


def test_table_mode_refuses_sample_keys_and_keeps_its_hash():
    table = "[experiment]\nname = \"t\"\n[task]\nn = [2, 4]\n"
    with pytest.raises(UserError, match=r"\[train\] batch_size: applies to the sample modes only"):
        config.parse(table + "[train]\nbatch_size = 8\n")
    with pytest.raises(UserError, match=r"\[task\] k: names the hidden bits"):
        config.parse(table.replace("n = [2, 4]", "n = [2, 4]\nk = [2]"))
    explicit = config.parse(table.replace("n = [2, 4]", "n = [2, 4]\ndata = \"table\""))
    assert explicit.hash() == config.parse(table).hash()  # the new keys at their defaults leave hashes alone


def test_hidden_bits_come_from_the_run_seed_n_and_k_and_are_stored(member_factory):
    bits = hidden_subset(0, 40, 3)
    assert bits == hidden_subset(0, 40, 3) and len(set(bits)) == 3 and list(bits) == sorted(bits)
    assert all(0 <= b < 40 for b in bits)
    assert {hidden_subset(s, 40, 3) for s in range(6)} != {bits}  # another run seed draws other bits
    assert hidden_subset(0, 5, 0) == (0, 1, 2, 3, 4)  # k = 0: every bit (parity)
    member = sample_member(member_factory, n=10, k=2, steps=50)
    result = train_bucket(make_bucket([member], eval_every=50), run_seed=3)[0]
    assert result.subset == subset_text(hidden_subset(3, 10, 2))


def test_a_members_batches_depend_on_its_key_alone(member_factory):
    """Online: the batch at a step is a function of (key, step); fixed: sample i of the training set is the same
    whatever m, so a set of m samples is the first m of any larger one; labels are the subset's parity."""
    m = sample_member(member_factory, n=9, k=3)
    spec = make_bucket([m], eval_every=50).spec
    subset = jnp.zeros(9).at[jnp.array([1, 4, 8])].set(1.0)
    key = jnp.asarray(m.key_data(0))
    x1, y1 = steps.sample_batch(key, 7, subset, spec)
    x2, y2 = steps.sample_batch(key, 7, subset, spec)
    x3, _ = steps.sample_batch(key, 8, subset, spec)
    assert (x1 == x2).all() and (y1 == y2).all() and not (x1 == x3).all()
    bits = np.asarray(x1 > 0, int)
    assert (np.asarray(y1) == bits[:, [1, 4, 8]].sum(1) % 2).all()
    fixed = lambda samples: dataclasses.replace(spec, data="fixed", samples=samples)
    small = jax.vmap(lambda i: steps.sample_bits(jax.random.fold_in(jax.random.fold_in(
        jax.random.wrap_key_data(key), 3), i), 1, 9)[0])(jnp.arange(5))
    xs, _ = steps.sample_batch(key, 3, subset, fixed(5))
    assert all(any((row == 2 * small[j] - 1).all() for j in range(5)) for row in np.asarray(xs))
    xl, _ = steps.sample_batch(key, 3, subset, fixed(10**6))
    assert not (np.asarray(xl) == np.asarray(xs)).all()  # the indices range over the larger set


@pytest.mark.parametrize("data", ["online", "fixed"])
def test_a_sample_member_trains_the_same_alone_or_padded(member_factory, data):
    """Alone, and padded among wider members of other n, k and seeds (one program), it trains to the same loss
    and solve step: its batches and evaluation do not depend on its place in the population or the bucket's n."""
    kw = dict(data=data, samples=64 if data == "fixed" else 0)
    target = sample_member(member_factory, n=10, k=2, width=6, **kw)
    others = [sample_member(member_factory, n=14, k=3, width=24, seed=5, **kw),
              sample_member(member_factory, n=10, k=1, width=9, seed=6, **kw)]
    alone = train_bucket(make_bucket([target], eval_every=50), run_seed=2)[0]
    bucket = make_bucket(others + [target], eval_every=50)
    assert (bucket.spec.n, bucket.spec.width_max) == (14, 24)
    padded = train_bucket(bucket, run_seed=2)[2]
    assert abs(alone.final_loss - padded.final_loss) < 1e-5
    assert (alone.solved, alone.step_solved, alone.subset) == (padded.solved, padded.step_solved, padded.subset)


def test_the_sample_path_on_the_whole_table_agrees_with_the_table_mode(member_factory, monkeypatch):
    """Where the data are the same (every step's batch is the whole 2^n table, and the evaluation is the table),
    a member of the online mode solves at the same step, with the same loss, as the table mode's."""
    n, every = 6, 1
    table = parity_table(n)
    tabled = member_factory(n=n, depth=1, width=8, lr=3e-2, seed=4, steps=400)
    online = dataclasses.replace(tabled, data="online", batch_size=2**n, eval_samples=2**n)
    as_table = lambda key_data, step, subset_N, spec: (jnp.asarray(table.x_RxN),
                                                        steps.parity_labels(jnp.asarray(table.x_RxN > 0), subset_N))
    reference = train_bucket(make_bucket([tabled], eval_every=every))[0]
    monkeypatch.setattr(steps, "sample_batch", as_table)
    monkeypatch.setattr(train, "eval_inputs", lambda run_seed, n, count, encoding: table.x_RxN)
    sampled = train_bucket(make_bucket([online], eval_every=every))[0]
    assert reference.solved and reference.step_solved == sampled.step_solved
    assert sampled.final_loss == pytest.approx(reference.final_loss, rel=1e-5)


def test_a_resume_that_would_draw_other_hidden_bits_is_refused(tmp_path):
    """The stored bits are checked against the draw: a store whose bits differ (another numpy, or an edit) is
    refused in one line before anything is written, and the store is left as it was."""
    import sqlite3

    from scaling.sweep import run_sweep

    cfg = config.parse(SPARSE.replace("{values = [12, 64]}", "{values = [6, 8]}").replace("seeds = 3", "seeds = 1")
                       .replace("k = [2, 3]", "k = 2"))
    run_sweep(cfg, tmp_path, progress=False, threads=1)
    again = run_sweep(cfg, tmp_path, progress=False, threads=1)
    assert again.trained == 0  # a plain resume finds every member
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        conn.execute("UPDATE members SET subset = '0,1' WHERE n = 8")
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    with pytest.raises(UserError, match=r"\(n = 8, k = 2\) trained on the bits 0,1"):
        run_sweep(cfg, tmp_path, progress=False, threads=1)
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == runs
