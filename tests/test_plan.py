import dataclasses

from scaling import config
from scaling.plan import _bytes_per_member, grid_members, plan_buckets
from scaling.population import padding_waste

CFG = config.parse('[experiment]\nname = "p"\n[task]\nn = [3, 4]\n[model]\ndepths = [0, 1, 3]\nwidths = {max = 16}\n'
                   '[search]\nseeds = 2\nmin_depth_widths = []\n')


def test_buckets_share_a_spec_and_keep_widths_within_a_factor_of_two():
    members = grid_members(CFG)
    buckets = plan_buckets(members, CFG)
    assert sorted(m for b in buckets for m in b.members) == sorted(members)  # every member exactly once
    for b in buckets:
        widths = [m.width for m in b.members]
        assert max(widths) <= 2 * min(widths) and len({m.n for m in b.members}) == 1
        assert (b.spec.depth_max == 0) == all(m.depth == 0 for m in b.members)  # depth 0 stands alone
    depth0 = [m for m in members if m.depth == 0]
    assert {m.width for m in depth0} == {0} and len(depth0) == 2 * len(CFG.lrs) * CFG.seeds  # once per n
    by_depth = plan_buckets(members, dataclasses.replace(CFG, pad_depth=False))
    assert all(len({m.depth for m in b.members}) == 1 for b in by_depth) and len(by_depth) > len(buckets)
    assert padding_waste(by_depth) < padding_waste(buckets)


def test_memory_budget_splits_large_groups():
    wide = dataclasses.replace(CFG, ns=(10,), widths=(32, 64))  # about 2-4 MiB per member at 1024 rows
    members = grid_members(wide)
    roomy, tight = plan_buckets(members, wide), plan_buckets(members, dataclasses.replace(wide, bucket_mib=8))
    assert len(tight) > len(roomy)
    assert all(len(b.members) == 1 or len(b.members) * _bytes_per_member(b) <= 8 * 2**20 for b in tight)
    assert sorted(m for b in tight for m in b.members) == sorted(members)
