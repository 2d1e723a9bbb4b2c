"""The lecture's claims (analysis.calls.claims): each test reads counts whose answer is known as that answer, the
hand-built networks are its controls, a test that a control fails is withheld, and on synthetic stores whose
truth is a construction every reported claim says what the construction is."""

import numpy as np
import pytest

from analysis.calls import claims
from analysis.calls.claims import Curve, control_curve
from analysis.calls.verdict import judge
from analysis.reporting.answer import claim_line, plain_answer
from analysis.simulation.synthetic import Design, draw_store, synthetic_config
from scaling.engine.constructions import build

NS = np.arange(2, 10)


def _exact(values, sd=0.03, seed=0) -> Curve:
    return control_curve(NS, np.asarray(values, float), np.full(len(NS), sd), seed)


def _own(kind):
    return np.array([build(kind, int(n)).units for n in NS], float)


@pytest.mark.parametrize("values, reading", [
    (2.0 ** (NS - 1), "contradicted"),  # the DNF's 2^(n-1)
    (_own("xor_tree"), "consistent"),  # about 2n, with its depth staircase
    (_own("sawtooth"), "consistent"),
    (2.0 * NS - 2, "consistent"),  # the log-log slope of this exactly linear count is 1.36 over n = 2..9
    (0.3 * NS**3, "contradicted"),
])
def test_the_linear_test_reads_known_counts_as_their_class(values, reading):
    assert claims.linear_test(_exact(values)).reading == reading


def test_the_growth_and_level_tests_read_known_counts():
    dnf, line = _exact(2.0 ** (NS - 1)), _exact(NS.astype(float))
    assert claims.growth_test(dnf, 2.0).reading == "consistent"
    assert claims.growth_test(line, 2.0).reading == "below"
    words = ("far fewer", "about", "far more")
    assert claims.level_test(dnf, lambda n: 2.0 ** (n - 1), 0.5, 2, words).reading == "about"
    assert claims.level_test(line, lambda n: 2.0 ** (n - 1), 0.5, 2, words).reading == "far fewer"
    assert claims.difference_test(_exact(_own("xor_tree")), dnf).reading == "fewer"
    assert claims.difference_test(_exact(_own("xor_tree")), line).reading == "more"


def test_a_claim_whose_test_fails_a_control_is_withheld_and_says_why():
    """Over n = 2..4, 2^(n-1) is at most twice n: the level test cannot tell the one-layer construction from
    the DNF, so the shallow level claim is withheld whatever the measurement says."""
    short = np.arange(2, 5)
    w50 = Curve(short, 2.0 ** (short - 1), np.tile(2.0 ** (short - 1), (50, 1)))
    theory = {"dnf": 2.0 ** (short - 1), "one_layer": short.astype(float)}
    level = next(c for c in claims.shallow_claims(w50, theory.__getitem__) if c.key == "shallow_level")
    assert not level.reported and level.failed_controls[0]["network"] == "one_layer"
    line = claim_line(level)
    assert "withheld" in line and "one_layer" in line


def _judged(shallow, deep, profile, seed):
    cfg = synthetic_config(Design(9, 24), 1024, deep=True, profile=profile)
    verdict = judge(draw_store(cfg, shallow, np.random.default_rng(seed), deep_truth=deep), cfg, reps=60)
    return verdict, {c.key: c for c in verdict.claims}


@pytest.mark.parametrize("shallow, deep, profile, expected", [
    # The lecture's own networks: the DNF at depth 1, the XOR tree (first width n, halving) at depth ceil(log2 n).
    (lambda n: 2.0 ** (n - 1), lambda n: n + 0.0, "halving",
     {"shallow_level": "about 2^(n-1)", "shallow_growth": "consistent", "shallow_vs_n": "more than n",
      "deep_linear": "consistent", "deep_vs_shallow": "fewer"}),
    # The one-layer construction at depth 1, and a deep count that grows like 2^n.
    (lambda n: n + 0.0, lambda n: 0.5 * 2.0**n, "halving",
     {"shallow_level": "far fewer", "shallow_growth": "below", "shallow_vs_n": "about n",
      "deep_linear": "contradicted", "deep_vs_shallow": "more"}),
])
def test_every_claim_holds_on_stores_whose_truth_is_a_construction(shallow, deep, profile, expected):
    verdict, found = _judged(shallow, deep, profile, seed=11)
    assert {k: c.outcome.reading for k, c in found.items()} == expected
    assert all(c.reported for c in found.values()), [c.failed_controls for c in found.values()]
    answer = plain_answer(verdict, {})
    assert all(c.statement in answer for c in found.values())


def test_the_constant_profile_says_what_its_family_costs_the_xor_tree():
    _, found = _judged(lambda n: n + 0.0, lambda n: n + 0.0, "constant", seed=12)
    assert "36 units at n = 9" in found["deep_linear"].note and "19" in found["deep_linear"].note


def test_the_answer_of_a_store_with_a_decided_call_is_rendered_from_its_claims():
    """0.75 * 2^n at n = 2..10 with 16 seeds is called exponential (docs/VERDICT.md); the answer names the call
    and every reported claim with its interval, and the verdict section lists each claim's controls."""
    from analysis.reporting.answer import verdict_section

    cfg = synthetic_config(Design(10, 16), 2048)
    verdict = judge(draw_store(cfg, lambda n: 0.75 * 2.0**n, np.random.default_rng(1)), cfg, reps=60)
    assert verdict.groups["depth=1"].call == "exponential"
    answer, section = plain_answer(verdict, {}), verdict_section(verdict, {}, cfg)
    assert "Growth is called at depth 1 (shallow)" in answer and "grows exponentially" in answer
    for c in verdict.claims:
        assert c.reported and c.statement in answer and f"{c.outcome.estimate:.3g}" in answer
        assert all(f"{k['network']}: {k['got']}" in section for k in c.controls)
