import dataclasses
import math

import pytest

from scaling.cli import main
from scaling.engine.constructions import BUILDERS, build, check, unit_counts

MAX_N = {"dnf": 14, "one_layer": 16, "xor_tree": 16, "sawtooth": 16}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_every_construction_is_exact_on_every_row(kind):
    for n in range(1, MAX_N[kind] + 1):
        for encoding in ("pm1", "01") if n <= 6 else ("pm1",):
            first_wrong, max_err = check(build(kind, n, encoding))
            assert first_wrong is None, (kind, n, encoding, first_wrong)
            assert max_err < 1e-4  # logits are exactly parity - 1/2, up to float32 rounding


def test_unit_counts_are_counted_not_typed():
    counts = unit_counts(range(2, 11)).set_index(["kind", "n"])
    for n in range(2, 11):
        k = math.ceil(math.log2(n))
        assert counts.loc[("dnf", n), "units"] == 2 ** (n - 1)
        assert counts.loc[("one_layer", n), ["depth", "units"]].tolist() == [1, n]
        assert counts.loc[("sawtooth", n), ["depth", "width", "units"]].tolist() == [k, 2, 2 * k]
        xor = counts.loc[("xor_tree", n)]
        assert xor["depth"] == k and xor["width"] <= n
        assert 2 * (n - 1) <= xor["units"] <= 2 * (n - 1) + k  # merges, plus odd ones passed through


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_the_trained_family_holds_every_construction_and_counts_it_in_its_own_units(kind):
    """Each construction, masked to the smallest network of each width profile that holds it, is still exact:
    the units that the measurements count are units the family really has. The XOR tree's own shape is the
    halving profile at first width n (about 2n units); with one width for every layer it costs n x ceil(log2 n)."""
    for n in range(2, 12):
        c = build(kind, n)
        for profile in ("constant", "halving"):
            first_wrong, _ = check(c.in_family(profile))
            assert first_wrong is None, (kind, n, profile)
        if kind == "xor_tree":
            k = math.ceil(math.log2(n))
            assert (c.family_width("halving"), c.family_units("halving")) == (n, c.units)
            assert (c.family_width("constant"), c.family_units("constant")) == (n, n * k)
        if kind == "sawtooth":
            assert c.family_units("halving") == c.family_units("constant") == c.units
    narrow = build("xor_tree", 8)
    cut = dataclasses.replace(narrow, layer_units=(7, 4, 2))  # one unit short of the first layer
    assert check(cut.in_family("halving"))[0] is not None


def test_a_broken_network_is_caught():
    c = build("sawtooth", 5)
    c.params["out_bias"] = c.params["out_bias"] + 1.0  # every logit now positive
    first_wrong, _ = check(c)
    assert first_wrong == 0


def test_construct_cli(capsys):
    assert main(["construct", "xor_tree", "--n", "6"]) == 0
    out = capsys.readouterr().out
    assert "depth 3" in out and "exact on all 2^6 = 64 rows" in out
    assert main(["construct", "triangle", "--n", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown kind 'triangle'" in err
    assert main(["construct", "dnf", "--n", "0"]) == 2
    assert main(["construct", "dnf", "--n", "18"]) == 2
    assert "GiB" in capsys.readouterr().err
