import dataclasses
import json

import pytest
from configs import TINY

from scaling.engine.population import padding_waste
from scaling.engine.population import rung as width_rung
from scaling.errors import UserError
from scaling.experiment import config
from scaling.planning.cost import CostModel
from scaling.planning.forecast import parse_oracle, simulate, total, upper_bound
from scaling.planning.plan import _bytes_per_member, plan_buckets
from scaling.planning.search import grid_members

CFG = config.parse('[experiment]\nname = "p"\n[task]\nn = [3, 4]\n[model]\ndepths = [0, 1, 3]\n'
                   'widths = {max = 16, search = "grid"}\n[search]\nseeds = 2\nmin_depth_widths = []\n')


FLOPS_BOUND = CostModel("cpu", "test", compile_s=0.0, compile_s_per_layer=0.0, step_latency_s=0.0,
                        unit_s=(1e-6, 1e-9, 1e-9, 1e-9), calibrated=True)
COMPILE_BOUND = dataclasses.replace(FLOPS_BOUND, compile_s=100.0, unit_s=(1e-18,) * 4)


def test_the_cost_model_chooses_between_tight_buckets_and_few_programs():
    members = grid_members(CFG)
    for model in (FLOPS_BOUND, COMPILE_BOUND):
        buckets = plan_buckets(members, CFG, model)
        assert sorted(m for b in buckets for m in b.members) == sorted(members)  # every member exactly once
        for b in buckets:
            assert b.spec.width_max == width_rung(b.spec.width_max)  # bucket widths come from the ladder
            assert (b.spec.depth_max == 0) == all(m.depth == 0 for m in b.members)  # depth 0 stands alone
    tight, few = plan_buckets(members, CFG, FLOPS_BOUND), plan_buckets(members, CFG, COMPILE_BOUND)
    # Free compiles: no bucket pads a width to another rung, an n to another table or a depth to another.
    assert all(len({width_rung(m.width) for m in b.members}) == 1 and len({m.n for m in b.members}) == 1
               and len({m.depth for m in b.members}) == 1 for b in tight)
    # Costly compiles: one program per family: depth 0 at each n, and every hidden depth, width and n together.
    hidden = [b for b in few if b.spec.depth_max > 0]
    assert len(few) == 3 and len(hidden) == 1 and {m.n for m in hidden[0].members} == {3, 4}
    assert {m.depth for m in hidden[0].members} == {1, 3}
    assert padding_waste(tight) < padding_waste(few) and len(tight) > len(few)
    depth0 = [m for m in members if m.depth == 0]
    assert {m.width for m in depth0} == {0} and len(depth0) == 2 * len(CFG.train.lrs) * CFG.search.seeds  # once per n
    # Without pad_depth, depths never share a program, however costly the compiles.
    by_depth = plan_buckets(members, CFG.replace(pad_depth=False), COMPILE_BOUND)
    assert all(len({m.depth for m in b.members}) == 1 for b in by_depth) and len(by_depth) == len(few) + 1
    assert padding_waste(by_depth) < padding_waste(few)


def test_width_ladder():
    assert [width_rung(w) for w in (0, 1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 1000)] == [
        0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 1024]


def test_memory_budget_splits_large_groups():
    wide = CFG.replace(ns=(10,), widths=(32, 64))  # about 2-4 MiB per member at 1024 rows
    members = grid_members(wide)
    roomy, tight = plan_buckets(members, wide), plan_buckets(members, wide.replace(bucket_mib=8))
    assert len(tight) > len(roomy)
    assert all(len(b.members) == 1 or len(b.members) * _bytes_per_member(b.spec) <= 8 * 2**20 for b in tight)
    assert sorted(m for b in tight for m in b.members) == sorted(members)


def _snapshot(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


def test_scaling_plan_forecasts_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from scaling.cli import main
    from scaling.planning.cost import _path

    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SCALING_JAX_CACHE", str(tmp_path / "cache" / "jax"))
    model = _path("cpu", "cpu")  # a cached model, so that the plan needs no probe
    model.parent.mkdir(parents=True)
    model.write_text(json.dumps(dataclasses.asdict(dataclasses.replace(FLOPS_BOUND, device="cpu"))))
    experiment = tmp_path / "e.toml"
    experiment.write_text(TINY)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["plan", str(experiment), "--assume-wstar", "n + d"]) == 0
    assert _snapshot(tmp_path) == before  # no results directory, no store, no cache entry
    text = capsys.readouterr().out
    assert "round 0:" in text and "whole search, bound:" in text and "with w* = n + d:" in text
    assert main(["plan", str(experiment), "--assume-wstar", "__import__('os')"]) == 2
    assert "--assume-wstar" in capsys.readouterr().err and _snapshot(tmp_path) == before


def test_the_forecast_replays_the_search_and_stays_under_its_bound():
    cfg = config.parse(TINY)
    rounds = simulate(cfg, lambda n, d: n + d, FLOPS_BOUND)
    searched, bound = total(rounds), upper_bound(cfg, FLOPS_BOUND)
    assert len(rounds) >= 3 and searched.members <= bound.members
    assert searched.padded_flops <= bound.padded_flops and searched.useful_flops <= searched.padded_flops
    assert searched.train_wall_s == pytest.approx(searched.train_s)  # one training thread: buckets one after another
    two = total(simulate(cfg, lambda n, d: n + d, FLOPS_BOUND, threads=2))
    assert two.members == searched.members and two.train_s == pytest.approx(searched.train_s)
    assert searched.train_s / 2 <= two.train_wall_s < searched.train_s  # rounds of several buckets share threads
    with pytest.raises(UserError, match="names 'x'"):
        parse_oracle("2*x")
    assert parse_oracle("2**(n-1)/d")(5, 2) == 8.0


def test_calibration_measures_this_backend_and_caches_the_model(tmp_path, monkeypatch):
    from scaling.planning import cost, probes

    monkeypatch.setenv("SCALING_CACHE", str(tmp_path))
    tiny = {"warm-up": (3, 1, 2, 2, 20), "latency": (3, 1, 2, 2, 400), "deep": (3, 3, 2, 2, 20),
            "narrow": (6, 2, 1, 32, 20), "large": (6, 2, 16, 8, 20), "wide": (6, 2, 32, 4, 20)}
    assert not cost.load().calibrated  # nothing cached yet: the built-in default
    model = probes.calibrate(tiny)
    assert model.calibrated and model.compile_s + model.compile_s_per_layer > 0 and model.step_latency_s > 0
    assert len(model.unit_s) == 4 and all(0 <= p < float("inf") for p in model.unit_s) and any(model.unit_s)
    assert cost.load() == model  # read back from the cache: the next sweep needs no probe


def test_a_round_of_fewer_buckets_than_threads_splits_its_longest_bucket():
    members = [m for m in grid_members(CFG) if m.depth == 1 and m.n == 3 and m.width == 8]  # 6 members
    one = plan_buckets(members, CFG, FLOPS_BOUND)
    two = plan_buckets(members, CFG, FLOPS_BOUND, threads=2)
    assert len(one) == 1 and len(two) == 2 and two[0].spec == two[1].spec == one[0].spec
    assert two[0].slots == two[1].slots == 3 and sorted(two[0].members + two[1].members) == sorted(members)
    assert len(plan_buckets(members, CFG, FLOPS_BOUND, threads=4)) == 4  # halves split again: 2 + 1 + 2 + 1
    assert len(plan_buckets(members[:1], CFG, FLOPS_BOUND, threads=2)) == 1  # one member cannot be split
    # A compiled program for the whole bucket, none for its halves: a 100 s compile outweighs the halved steps.
    slow_compiles = dataclasses.replace(COMPILE_BOUND, unit_s=(1e-6,) * 4)
    assert len(plan_buckets(members, CFG, slow_compiles, threads=2)) == 2  # one program either way
    assert len(plan_buckets(members, CFG, slow_compiles, {(one[0].spec, one[0].slots)}, 2)) == 1


def test_a_bucket_reuses_a_compiled_population_size_when_that_is_cheaper():
    members = [m for m in grid_members(CFG) if m.depth == 1 and m.n == 3][:5]
    alone = plan_buckets(members, CFG, COMPILE_BOUND)
    assert len(alone) == 1 and alone[0].slots == 6  # the ladder's size for 5 members
    known = {(alone[0].spec, 16)}
    assert plan_buckets(members, CFG, COMPILE_BOUND, known=known)[0].slots == 16  # a compile costs 100 s
    assert plan_buckets(members, CFG, FLOPS_BOUND, known=known)[0].slots == 6  # compiles are free


def test_a_bucket_trains_in_a_compiled_wider_or_deeper_program_when_that_is_cheaper():
    members = [m for m in grid_members(CFG) if m.depth == 1 and m.n == 3 and m.width == 8]
    own = plan_buckets(members, CFG, FLOPS_BOUND)  # compiles are free: the bucket's own width
    assert len(own) == 1 and (own[0].spec.width_max, own[0].spec.depth_max) == (8, 1)
    # A compile costs 100 s and training nothing: a new program is compiled as wide as the experiment's widest
    # width, for later rounds at other widths to reuse.
    padded = dataclasses.replace(own[0].spec, width_max=width_rung(CFG.max_width))
    assert [b.spec for b in plan_buckets(members, CFG, COMPILE_BOUND)] == [padded]
    wider = dataclasses.replace(own[0].spec, width_max=16, depth_max=3)
    other_n = dataclasses.replace(wider, n=4, batch_rows=16)
    known = {(wider, own[0].slots), (other_n, own[0].slots)}
    reused = plan_buckets(members, CFG, COMPILE_BOUND, known=known)  # a compile costs 100 s
    assert len(reused) == 1 and reused[0].spec == wider and reused[0].members == own[0].members
    assert plan_buckets(members, CFG, FLOPS_BOUND, known=known)[0].spec == own[0].spec  # compiles are free
    assert plan_buckets(members, CFG, COMPILE_BOUND, known={(other_n, own[0].slots)})[0].spec == padded
    no_depth_padding = CFG.replace(pad_depth=False)
    assert plan_buckets(members, no_depth_padding, COMPILE_BOUND, known=known)[0].spec == padded
    huge = {(dataclasses.replace(wider, width_max=256), own[0].slots)}  # about 3 MiB per member
    assert plan_buckets(members, CFG, COMPILE_BOUND, known=huge)[0].spec.width_max == 256
    tight_memory = CFG.replace(bucket_mib=1)
    assert plan_buckets(members, tight_memory, COMPILE_BOUND, known=huge)[0].spec == padded


def test_a_new_program_is_compiled_wider_while_the_padding_costs_at_most_half_a_compile():
    from scaling.planning import plan

    members = [m for m in grid_members(CFG) if m.depth == 1 and m.n == 3 and m.width == 2]
    step_flops = dataclasses.replace(FLOPS_BOUND, unit_s=(0.0, 0.0, 0.0, 1e-9))
    own = plan_buckets(members, CFG, step_flops)[0]  # compiles free: no padding
    assert own.spec.width_max == 2
    extra = lambda width: (step_flops.train_s(dataclasses.replace(own, spec=dataclasses.replace(
        own.spec, width_max=width))) - step_flops.train_s(own))
    for compile_s in (extra(4) / plan.PAD_UP * 1.01, extra(8) / plan.PAD_UP * 1.01, 1e6):
        model = dataclasses.replace(step_flops, compile_s=compile_s)
        width = plan_buckets(members, CFG, model)[0].spec.width_max
        allowed = [w for w in (2, 3, 4, 6, 8, 12, 16) if extra(w) <= plan.PAD_UP * compile_s]
        assert width == max(allowed)  # the widest rung within the bound, and never past the widest width (16)
    assert plan_buckets(members, CFG, model, known={(own.spec, own.slots)})[0].spec == own.spec  # compiled: kept
    depth0 = [m for m in grid_members(CFG) if m.depth == 0 and m.n == 3]
    assert all(b.spec.width_max == 0 for b in plan_buckets(depth0, CFG, model))  # no hidden layer to widen


def test_a_round_of_uneven_buckets_splits_its_longest_while_the_round_ends_sooner():
    from scaling.planning.cost import makespan

    wide = [m for m in grid_members(CFG) if m.depth == 1 and m.n == 4 and m.width == 16]
    narrow = [m for m in grid_members(CFG) if m.depth == 1 and m.n == 4 and m.width == 2]
    model = dataclasses.replace(FLOPS_BOUND, compile_s=1e-9)
    alone = plan_buckets(wide + narrow, CFG, model, threads=1)
    spread = plan_buckets(wide + narrow, CFG, model, threads=2)
    assert len(alone) == 2 and len(spread) == 3  # as many buckets as threads, yet the wide one is split
    ends = lambda buckets: makespan(sorted(map(model.train_s, buckets), reverse=True), 2)
    assert ends(spread) < ends(alone)
    assert sorted(m for b in spread for m in b.members) == sorted(wide + narrow)


def test_halves_of_a_split_bucket_train_in_a_compiled_program_that_holds_them():
    members = [m for m in grid_members(CFG) if m.depth == 1 and m.n == 3 and m.width == 8]  # 6 members
    halves = plan_buckets(members, CFG, FLOPS_BOUND, threads=2)
    assert [b.slots for b in halves] == [3, 3]
    wider = dataclasses.replace(halves[0].spec, width_max=16)
    reused = plan_buckets(members, CFG, dataclasses.replace(COMPILE_BOUND, unit_s=(1e-6,) * 4),
                          known={(wider, 4)}, threads=2)
    assert [(b.spec, b.slots) for b in reused] == [(wider, 4), (wider, 4)]


def test_a_round_plan_round_trips_and_reads_the_training_threads_under_their_earlier_key():
    from scaling.planning.rounds import Calibration, RoundPlan

    plan = RoundPlan(0, tuple(plan_buckets(grid_members(CFG), CFG, FLOPS_BOUND)), Calibration(FLOPS_BOUND, 2))
    assert RoundPlan.from_json(plan.to_json()) == plan
    doc = json.loads(plan.to_json())
    doc["workers"] = doc.pop("threads")  # a store written before the field was renamed
    assert RoundPlan.from_json(json.dumps(doc)) == plan
