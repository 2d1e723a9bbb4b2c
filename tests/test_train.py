"""The population trainer (scaling.engine.train): a member trains the same alone or padded in any bucket, solved and
diverged members freeze, and members of different n, widths and depths share one program."""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.engine.population import make_bucket, padding_waste
from scaling.engine.programs import Programs
from scaling.engine.steps import init_population, train_chunk
from scaling.engine.tasks import parity_table
from scaling.engine.train import train_bucket


def test_padding_invariance(member_factory):
    """A member alone and padded inside a bucket of larger widths and depths follows the same trajectory."""
    target = member_factory(n=4, depth=2, width=5, lr=1e-2, seed=7, steps=400)
    others = [member_factory(n=4, depth=4, width=24, seed=1, steps=400),
              member_factory(n=4, depth=1, width=3, seed=2, lr=3e-2, steps=400)]
    alone = train_bucket(make_bucket([target], eval_every=100))[0]
    padded_bucket = make_bucket(others + [target], eval_every=100)
    assert (padded_bucket.spec.depth_max, padded_bucket.spec.width_max) == (4, 24)
    padded = train_bucket(padded_bucket)[2]
    assert abs(alone.final_loss - padded.final_loss) < 1e-5
    assert (alone.solved, alone.step_solved, alone.steps_run) == (padded.solved, padded.step_solved, padded.steps_run)


def test_a_halving_member_trains_the_same_alone_or_padded(member_factory):
    """The halving width profile (layers of 7, 4, 2 units) alone and padded among wider and deeper halving
    members; its units beyond each layer's width stay exactly zero."""
    target = member_factory(n=5, depth=3, width=7, lr=1e-2, seed=3, steps=300, profile="halving")
    others = [member_factory(n=5, depth=4, width=12, seed=1, steps=300, profile="halving"),
              member_factory(n=4, depth=1, width=3, seed=2, lr=3e-2, steps=300, profile="halving")]
    alone_bucket = make_bucket([target], eval_every=100)
    alone = train_bucket(alone_bucket)[0]
    padded = train_bucket(make_bucket(others + [target], eval_every=100))[2]
    assert abs(alone.final_loss - padded.final_loss) < 1e-5
    assert (alone.solved, alone.step_solved, alone.steps_run) == (padded.solved, padded.step_solved, padded.steps_run)
    spec = alone_bucket.spec
    state = init_population(jnp.asarray(target.key_data(0)[None]), jnp.asarray([5]), jnp.asarray([3]),
                            jnp.asarray([7]), jnp.asarray([1e-2], jnp.float32), spec=spec)
    table = parity_table(5)
    state, _ = train_chunk(state, jnp.asarray(table.x_RxN), jnp.asarray(table.y_R), jnp.asarray(0), jnp.asarray(50),
                           spec=spec)
    p = jax.device_get(state.params)
    assert np.all(p["hidden_kernel"][0][0][:, 4:] == 0) and np.all(p["hidden_bias"][0][0][4:] == 0)
    assert np.all(p["hidden_kernel"][0][1][:, 2:] == 0) and np.all(p["hidden_kernel"][0][1][4:] == 0)
    assert np.all(p["out_kernel"][0][2:] == 0) and np.any(p["out_kernel"][0][:2] != 0)


def test_padded_parameters_stay_exactly_zero(member_factory):
    bucket = make_bucket([member_factory(n=3, depth=1, width=3, lr=0.1),
                          member_factory(n=3, depth=3, width=8, lr=0.1)], eval_every=50)
    spec = bucket.spec
    state = init_population(
        jnp.asarray(np.stack([m.key_data(0) for m in bucket.members])),
        jnp.asarray([3, 3]), jnp.asarray([1, 3]), jnp.asarray([3, 8]), jnp.asarray([0.1, 0.1], jnp.float32), spec=spec)
    table = parity_table(3)
    state, _ = train_chunk(state, jnp.asarray(table.x_RxN), jnp.asarray(table.y_R), jnp.asarray(0), jnp.asarray(50),
                            spec=spec)
    p = jax.device_get(state.params)
    assert np.all(p["in_kernel"][0][:, 3:] == 0) and np.all(p["in_bias"][0][3:] == 0)
    assert np.all(p["hidden_kernel"][0] == 0) and np.all(p["hidden_bias"][0] == 0)  # both layers gated off
    assert np.all(p["out_kernel"][0][3:] == 0)
    assert np.any(p["in_kernel"][0][:, :3] != 0) and np.any(p["hidden_kernel"][1] != 0)


def test_results_do_not_depend_on_bucket_mates_or_order(member_factory):
    members = [member_factory(n=3, depth=d, width=w, seed=s, lr=lr, steps=300)
               for d, w, s, lr in [(1, 4, 0, 1e-2), (2, 3, 1, 3e-2), (2, 6, 2, 1e-2), (1, 8, 3, 3e-3)]]
    base = train_bucket(make_bucket(members[:2], eval_every=100))
    shuffled = train_bucket(make_bucket([members[3], members[1], members[2], members[0]], eval_every=100))
    roomy = train_bucket(dataclasses.replace(make_bucket(members[:2], eval_every=100), slots_min=8))  # 6 empty slots
    for mine, theirs in [(base[0], shuffled[3]), (base[1], shuffled[1]), (base[0], roomy[0]), (base[1], roomy[1])]:
        assert abs(mine.final_loss - theirs.final_loss) < 1e-5
        assert (mine.solved, mine.steps_run) == (theirs.solved, theirs.steps_run)


def test_xor_is_solved_at_width_four_or_more(member_factory):
    members = [member_factory(n=2, depth=1, width=w, seed=s, lr=3e-2, steps=1000) for w in (4, 8) for s in range(8)]
    results = train_bucket(make_bucket(members, eval_every=100))
    assert sum(r.solved for r in results) >= 12
    for r in results:
        assert r.solved == (r.final_accuracy == 1.0)
        if r.solved:  # exact step (full batch); training stops at the end of that chunk
            assert r.step_solved <= r.steps_run < r.step_solved + 100 and r.steps_run <= 1000


def test_step_solved_is_the_first_step_with_every_row_right(member_factory):
    """Recomputed by hand: one update at a time, the full table checked with the saved parameters."""
    from scaling.engine.model import forward

    table = parity_table(3)
    x, y = jnp.asarray(table.x_RxN), jnp.asarray(table.y_R)
    candidates = [member_factory(n=3, depth=1, width=6, seed=s, lr=3e-2, steps=600) for s in range(8)]
    results = train_bucket(make_bucket(candidates, eval_every=100))
    member, result = next((m, r) for m, r in zip(candidates, results) if r.solved and r.step_solved % 100)
    bucket = make_bucket([member], eval_every=1)
    state = init_population(jnp.asarray(member.key_data(0)[None]), jnp.asarray([member.n]),
                             jnp.asarray([member.depth]),
                             jnp.asarray([member.width]), jnp.asarray([member.lr], jnp.float32), spec=bucket.spec)
    first_right = None
    for step in range(member.steps):
        params = jax.tree.map(lambda a: a[0], state.params)
        masks = jax.tree.map(lambda a: a[0], state.masks)
        if bool(jnp.all((forward(params, masks, x, "relu") > 0) == (y > 0.5))):
            first_right = step
            break
        state, _ = train_chunk(state, x, y, jnp.asarray(step), jnp.asarray(member.steps), spec=bucket.spec)
    assert first_right == result.step_solved, (first_right, result.step_solved)


def test_depth_zero_never_solves_parity(member_factory):
    results = []
    for n in (2, 3):
        members = [member_factory(n=n, depth=0, width=1, seed=s, lr=lr, steps=500)
                   for s in range(4) for lr in (1e-2, 1e-1)]
        results += train_bucket(make_bucket(members, eval_every=100))
    assert not any(r.solved for r in results)
    assert all(r.steps_run == 500 and r.final_accuracy <= 0.75 for r in results)


def test_huge_learning_rate_is_diverged_not_a_crash(member_factory):
    members = [member_factory(n=5, depth=2, width=8, seed=s, lr=1e6, steps=500) for s in range(4)]
    members += [member_factory(n=5, depth=2, width=8, seed=s, lr=1e6, steps=500, optimizer="sgd") for s in range(4)]
    results = (train_bucket(make_bucket(members[:4], eval_every=100))
               + train_bucket(make_bucket(members[4:], eval_every=100)))
    assert all(r.diverged and not r.solved for r in results)
    assert all(r.steps_run < 500 for r in results)  # frozen as soon as it was seen


def test_large_mixed_population_trains_in_one_call(member_factory):
    members = [member_factory(n=3, depth=d, width=w, seed=s, lr=1e-2, steps=200)
               for d in (1, 2, 3) for w in range(1, 11) for s in range(17)]
    assert len(members) >= 500
    bucket = make_bucket(members, eval_every=100)
    start = time.perf_counter()
    results = train_bucket(bucket)
    print(f"\n{len(members)} members, waste {padding_waste([bucket]):.2f}x: {time.perf_counter() - start:.2f} s")
    assert len(results) == len(members)
    rate = lambda w: np.mean([r.solved for m, r in zip(members, results) if m.width == w])
    assert rate(10) > rate(1)  # wider nets solve 3-bit parity more often


def test_members_of_different_n_packed_in_one_program_train_as_alone(member_factory):
    """Padding invariance extended to n: a 3-bit member inside a 5-bit bucket (inputs padded, rows masked)."""
    targets = [member_factory(n=3, depth=2, width=w, lr=3e-2, seed=s, steps=400) for w in (2, 5) for s in range(2)]
    others = [member_factory(n=5, depth=1, width=8, seed=1, steps=400),
              member_factory(n=4, depth=3, width=6, steps=400)]
    alone = train_bucket(make_bucket(targets, eval_every=100))
    mixed_bucket = make_bucket(others + targets, eval_every=100)
    assert mixed_bucket.spec.n == 5 and mixed_bucket.spec.batch_rows == 32
    mixed = train_bucket(mixed_bucket)[2:]
    assert any(r.solved for r in alone) and not all(r.solved for r in alone)  # both outcomes are compared
    for a, m in zip(alone, mixed):
        assert abs(a.final_loss - m.final_loss) < 1e-5 and abs(a.final_accuracy - m.final_accuracy) < 1e-6
        assert (a.solved, a.step_solved, a.steps_run) == (m.solved, m.step_solved, m.steps_run)
    # The 5-bit member in the mixed bucket sees its whole table: accuracy counts 32 rows.
    assert train_bucket(make_bucket(others[:1], eval_every=100))[0].final_loss == pytest.approx(
        train_bucket(mixed_bucket)[0].final_loss, abs=1e-5)




def test_compaction_on_the_host_trains_as_the_compiled_gather_does(member_factory, monkeypatch):
    """On one CPU device a compacted population is gathered on the host (no program to compile); the members
    then train exactly as after the compiled gather program."""
    import scaling.engine.train

    members = [member_factory(n=3, depth=1, width=8, seed=s, lr=3e-2, steps=600) for s in range(12)]
    members += [member_factory(n=3, depth=1, width=8, seed=s, lr=1e-9, steps=600) for s in range(2)]
    bucket = make_bucket(members, eval_every=20)
    with Programs() as programs:
        host = train_bucket(bucket, programs=programs)
        assert not any(key[0] == "gather" for key in programs._futures)
        assert any(key[0] == "chunk" and key[2] < bucket.slots for key in programs._futures)  # it did compact
    monkeypatch.setattr(scaling.engine.train, "host_init_applies", lambda mesh: False)
    with Programs() as programs:
        compiled = train_bucket(bucket, programs=programs)
        assert any(key[0] == "gather" for key in programs._futures)  # it did compact
    strip = lambda rows: [dataclasses.replace(r, wall_s=0.0) for r in rows]
    assert strip(host) == strip(compiled) and sum(r.solved for r in host) >= 9


def test_the_hinge_loss_trains_parity_and_is_zero_beyond_the_margin(member_factory):
    from scaling.engine.steps import LOSSES

    hinge = LOSSES["hinge"](jnp.array([2.0, 0.5, -0.5, -3.0]), jnp.array([1.0, 1.0, 1.0, 0.0]))
    np.testing.assert_allclose(np.asarray(hinge), [0.0, 0.5, 1.5, 0.0])
    members = [member_factory(n=2, depth=1, width=8, seed=s, lr=3e-2, steps=1000, loss="hinge") for s in range(8)]
    results = train_bucket(make_bucket(members, eval_every=100))
    assert sum(r.solved for r in results) >= 6 and all(r.solved == (r.final_accuracy == 1.0) for r in results)


def test_weight_decay_trains_the_same_alone_or_padded_and_changes_the_trajectory(member_factory):
    """L2 weight decay (the sparse-parity recipe's): padded parameters stay zero under it, so a member trains the
    same alone or padded; and it is applied (another loss than without it), while the starting weights are the
    same (weight decay is not part of the key)."""
    target = member_factory(n=3, depth=2, width=5, lr=3e-2, seed=3, steps=300, optimizer="sgd", weight_decay=0.01)
    other = member_factory(n=3, depth=3, width=16, lr=3e-2, seed=1, steps=300, optimizer="sgd", weight_decay=0.01)
    alone = train_bucket(make_bucket([target], eval_every=100))[0]
    padded = train_bucket(make_bucket([other, target], eval_every=100))[1]
    assert abs(alone.final_loss - padded.final_loss) < 1e-5 and alone.steps_run == padded.steps_run
    plain = dataclasses.replace(target, weight_decay=0.0)
    assert (target.key_data(0) == plain.key_data(0)).all()
    assert train_bucket(make_bucket([plain], eval_every=100))[0].final_loss != pytest.approx(alone.final_loss)


def test_a_population_trained_in_groups_trains_as_one(member_factory, monkeypatch):
    """A large population on a CPU trains group by group (steps.member_group); the members follow the same
    trajectories as in one batch, finished members' groups are skipped, and it compacts in place (the live members
    moved to the front) without compiling another program."""
    from scaling.engine import steps

    members = [member_factory(n=4, depth=d, width=w, seed=s, lr=lr, steps=600)
               for d, w, lr in [(1, 3, 1e-2), (2, 6, 3e-2), (2, 8, 1e-2)] for s in range(4)]
    members += [member_factory(n=4, depth=2, width=8, seed=9, lr=1e6, steps=600)]  # diverges at once
    bucket = make_bucket(members, eval_every=100)
    whole = train_bucket(bucket)
    monkeypatch.setattr(steps, "WHOLE_POPULATION_BYTES", 0)
    monkeypatch.setattr(steps, "GROUP_BYTES", 2 * 4 * 16 * 8 * 2)  # two members a group
    assert steps.member_group(bucket.spec, bucket.slots, None) == 2 < bucket.slots
    asked = []  # the groups that each chunk trained
    with Programs() as programs:
        chunk = programs.chunk

        def spied(*args):
            program = chunk(*args)
            return lambda *inputs: asked.append(int(inputs[-1])) or program(*inputs)

        monkeypatch.setattr(programs, "chunk", spied)
        grouped = train_bucket(bucket, programs=programs)
        assert programs.compiles + programs.loads == 2  # the draw and one chunk program: no compaction program
    assert asked[0] == 7 < bucket.slots // 2 and asked == sorted(asked, reverse=True) and asked[-1] < asked[0]
    assert sum(r.solved for r in whole) >= 4 and sum(r.steps_run for r in whole) < 600 * len(members)
    for mine, theirs in zip(whole, grouped):
        assert (mine.solved, mine.step_solved, mine.steps_run, mine.diverged) == \
            (theirs.solved, theirs.step_solved, theirs.steps_run, theirs.diverged)
        assert abs(mine.final_loss - theirs.final_loss) < 1e-5 or mine.diverged


def test_a_grouped_chunk_leaves_the_groups_past_its_count_as_they_were(member_factory):
    bucket = make_bucket([member_factory(n=3, depth=1, width=4, seed=s, lr=1e-2) for s in range(4)], eval_every=20)
    spec, table = bucket.spec, parity_table(3)
    args = (jnp.asarray(np.stack([m.key_data(0) for m in bucket.members])), jnp.full(4, 3), jnp.full(4, 1),
            jnp.full(4, 4), jnp.full(4, 1e-2, jnp.float32))
    x, y, step0, budget = jnp.asarray(table.x_RxN), jnp.asarray(table.y_R), jnp.asarray(0), jnp.asarray(100)
    whole, _ = train_chunk(init_population(*args, spec=spec), x, y, step0, budget, spec=spec)
    start = jax.device_get(init_population(*args, spec=spec).params)
    half, _ = train_chunk(init_population(*args, spec=spec), x, y, step0, budget, jnp.asarray(1), spec=spec, group=2)
    whole, half = jax.device_get((whole.params, half.params))
    for name in whole:
        np.testing.assert_allclose(half[name][:2], whole[name][:2], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(half[name][2:], start[name][2:])
        assert whole[name].size == 0 or not np.array_equal(whole[name][2:], start[name][2:])  # (depth 1: no hidden)
