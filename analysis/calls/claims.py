"""The lecture's claims, each tested in a quantity that a short range of n can decide, and each test first run
on the hand-built networks (scaling.engine.constructions), whose answer is known: a test that a control fails is
withheld from the answer, with the reason.

A curve is a count over n (W50, or the hidden units at W50) with seed-bootstrap replicates. The claims:
- shallow level: W50 at depth 1 against 2^(n-1), at every n; read at the largest n ("about" = within 2x);
- shallow growth: W50's growth factor per bit over the top TOP_POINTS n, against the 2 of 2^(n-1);
- shallow against n: W50 at depth 1 against the n units of the one-layer construction;
- deep O(n): units at depth ceil(log2 n) at the largest n over those at about half of it, against what O(n)
  allows: (n_top / n_half) for the n, times 2 for a constant that may drift (the XOR tree's units per n drift
  from 1 to 2), and units per n at every n;
- deep against shallow: units at depth ceil(log2 n) minus units at depth 1, at every n; read at the largest n.
Controls are counts whose answer is known, given each point's measured noise (log-normal replicates with the
measured spread): the constructions' units in the trained family (the smallest network of the run's width profile
that holds each one), and for the O(n) test the units the XOR tree and the sawtooth really use, and 2^(n-1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from analysis.measurement.intervals import interval95

TOP_POINTS = 4  # the local growth factor is fitted over the largest this many n
ABOUT = 2.0  # "about 2^(n-1)": within this factor
CONTROL_REPS = 200


@dataclasses.dataclass
class Curve:
    """A count over n: point values and (R, M) bootstrap replicates (NaN: a replicate without the quantity, a
    failure that enters no interval, never the point in its place)."""

    n: np.ndarray
    y: np.ndarray
    reps: np.ndarray

    def __post_init__(self):
        self.n, self.y = np.asarray(self.n, int), np.asarray(self.y, float)
        self.reps = np.where(np.isfinite(self.reps) & (self.reps > 0), self.reps, np.nan)

    def log_sd(self) -> np.ndarray:
        if not len(self.reps):
            return np.zeros(len(self.n))
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(np.nanstd(np.log(self.reps), axis=0))

    def at(self, ns) -> Curve:
        keep = np.isin(self.n, list(ns))
        return Curve(self.n[keep], self.y[keep], self.reps[:, keep])


def control_curve(ns, exact, log_sd, seed: int) -> Curve:
    """An exact count given the measured noise: log-normal replicates with the measured spread at each n."""
    rng = np.random.default_rng(seed)
    exact = np.asarray(exact, float)
    return Curve(ns, exact, exact * np.exp(np.asarray(log_sd) * rng.standard_normal((CONTROL_REPS, len(exact)))))


@dataclasses.dataclass
class Outcome:
    """One test's result: its reading, the estimate it was read from, and its 95 % interval."""

    reading: str
    estimate: float
    ci95: tuple[float, float]
    at: str  # where it was read ("n = 9", "n = 5..9")


def _between(lo: float, hi: float, low: float, high: float, below: str, inside: str, above: str) -> str:
    """below / above when the whole interval lies beyond [low, high], inside when within it, else not decided."""
    return below if hi < low else above if lo > high else inside if low <= lo and hi <= high else "not decided"


def _ratio(curve: Curve, reference: Callable, n: int) -> tuple[float, tuple[float, float]]:
    i = int(np.flatnonzero(curve.n == n)[0])
    return float(curve.y[i] / reference(n)), tuple(map(float, interval95(curve.reps[:, i] / reference(n))))


def level_test(curve: Curve, reference: Callable, low: float, high: float, words: tuple[str, str, str]) -> Outcome:
    """The curve over reference(n) at its largest n, read against [low, high]."""
    n = int(curve.n.max())
    value, (lo, hi) = _ratio(curve, reference, n)
    return Outcome(_between(lo, hi, low, high, *words), value, (lo, hi), f"n = {n}")


def growth_factor(curve: Curve) -> tuple[float, np.ndarray]:
    """exp of the weighted least-squares slope of log y on n over the top TOP_POINTS n: the point and each
    replicate's."""
    top = np.argsort(curve.n)[-TOP_POINTS:]
    x, w = curve.n[top].astype(float), 1.0 / np.maximum(curve.log_sd()[top], 1e-3) ** 2
    xc = x - np.sum(w * x) / np.sum(w)
    slope = lambda logy: np.sum(w * xc * logy, axis=-1) / np.sum(w * xc * xc)
    return float(np.exp(slope(np.log(curve.y[top])))), np.exp(slope(np.log(curve.reps[:, top])))


def growth_test(curve: Curve, factor: float) -> Outcome:
    """The local growth factor per bit at the top of the range, against `factor`."""
    value, reps = growth_factor(curve)
    lo, hi = map(float, interval95(reps))
    top = np.sort(curve.n)[-TOP_POINTS:]
    reading = "below" if hi < factor else "above" if lo > factor else "consistent"
    return Outcome(reading, value, (lo, hi), f"n = {top[0]}..{top[-1]}")


def half_point(ns) -> int:
    """The measured n nearest to half the largest (the smaller one on a tie)."""
    ns = np.sort(np.asarray(ns))
    return int(ns[np.argmin(np.abs(ns - ns[-1] / 2))])


def linear_test(curve: Curve) -> Outcome:
    """O(n): units at the largest n over units at about half of it, against 2 x (n_top / n_half)."""
    top, half = int(curve.n.max()), half_point(curve.n)
    i, j = int(np.flatnonzero(curve.n == top)[0]), int(np.flatnonzero(curve.n == half)[0])
    allowed = 2.0 * top / half
    value = float(curve.y[i] / curve.y[j])
    lo, hi = map(float, interval95(curve.reps[:, i] / curve.reps[:, j]))
    reading = "contradicted" if lo > allowed else "consistent" if hi <= allowed else "not decided"
    return Outcome(reading, value, (lo, hi), f"n = {half} to {top} (O(n) allows up to {allowed:.3g})")


def difference_test(deep: Curve, shallow: Curve) -> Outcome:
    """Deep minus shallow units at the largest n they share."""
    n = int(np.intersect1d(deep.n, shallow.n).max())
    i, j = int(np.flatnonzero(deep.n == n)[0]), int(np.flatnonzero(shallow.n == n)[0])
    value = float(deep.y[i] - shallow.y[j])
    lo, hi = map(float, interval95(deep.reps[:, i] - shallow.reps[:, j]))
    reading = "fewer" if hi < 0 else "more" if lo > 0 else "no difference"
    return Outcome(reading, value, (lo, hi), f"n = {n}")


@dataclasses.dataclass
class Claim:
    key: str
    statement: str  # the claim under test, in words
    quantity: str  # what is measured
    outcome: Outcome
    expected_of: dict[str, str]  # the outcome the lecture's claim predicts -> what that reading means
    per_n: list[dict]  # the quantity at every n, with intervals
    controls: list[dict]  # {"network", "expected", "got"}; a control passes when got == expected
    note: str = ""
    per_n_quantity: str = ""  # what per_n holds, where it is not the quantity itself

    @property
    def reported(self) -> bool:
        return all(c["got"] == c["expected"] for c in self.controls)

    @property
    def failed_controls(self) -> list[dict]:
        return [c for c in self.controls if c["got"] != c["expected"]]

    def as_dict(self) -> dict:
        return {"key": self.key, "statement": self.statement, "quantity": self.quantity,
                "reading": self.outcome.reading, "estimate": self.outcome.estimate, "ci95": list(self.outcome.ci95),
                "at": self.outcome.at, "meaning": self.expected_of.get(self.outcome.reading, ""),
                "reported": self.reported, "controls": self.controls, "per_n": self.per_n,
                "per_n_quantity": self.per_n_quantity or self.quantity, "note": self.note}


def per_n_ratio(curve: Curve, reference: Callable) -> list[dict]:
    rows = []
    for n in curve.n:
        value, (lo, hi) = _ratio(curve, reference, int(n))
        rows.append({"n": int(n), "value": value, "ci95": [lo, hi]})
    return rows


def _controls(test: Callable[..., Outcome], cases: list[tuple[str, tuple, str]]) -> list[dict]:
    return [{"network": name, "expected": expected, "got": test(*curves).reading} for name, curves, expected in cases]


def shallow_claims(w50: Curve, theory: Callable[[str], np.ndarray]) -> list[Claim]:
    """The claims on W50 at depth 1. theory(kind) -> that construction's units at w50.n in the trained family."""
    sd = w50.log_sd()
    control = lambda kind, seed: control_curve(w50.n, theory(kind), sd, seed)
    dnf, one = control("dnf", 1), control("one_layer", 2)
    two = lambda n: 2.0 ** (n - 1)
    level = lambda c: level_test(c, two, 1 / ABOUT, ABOUT, ("far fewer", "about 2^(n-1)", "far more"))
    against_n = lambda c: level_test(c, float, 1 / ABOUT, ABOUT, ("fewer than n", "about n", "more than n"))
    doubling = lambda c: growth_test(c, 2.0)
    return [
        Claim("shallow_level", "one hidden layer needs about 2^(n-1) hidden units",
              "W50 at depth 1 / 2^(n-1)", level(w50),
              {"about 2^(n-1)": "consistent with the claim", "far fewer": "contradicted: far fewer units suffice",
               "far more": "contradicted: far more are needed"},
              per_n_ratio(w50, two), _controls(level, [("dnf", (dnf,), "about 2^(n-1)"),
                                                       ("one_layer", (one,), "far fewer")])),
        Claim("shallow_growth", "the units needed at one hidden layer double with every bit (2^(n-1))",
              "growth factor of W50 at depth 1 per bit, top of the range", doubling(w50),
              {"consistent": "consistent with doubling", "below": "contradicted: it grows more slowly",
               "above": "contradicted: it grows faster"}, [],
              _controls(doubling, [("dnf", (dnf,), "consistent"), ("one_layer", (one,), "below")])),
        Claim("shallow_vs_n", "n ReLU units suffice at one hidden layer (one_layer); does training find so few?",
              "W50 at depth 1 / n", against_n(w50),
              {"about n": "training finds about as few as the construction", "more than n": "training needs more",
               "fewer than n": "training needs fewer"},
              per_n_ratio(w50, float), _controls(against_n, [("one_layer", (one,), "about n"),
                                                             ("dnf", (dnf,), "more than n")])),
    ]


def deep_claims(units: Curve, shallow_units: Curve | None, theory: Callable[[str, np.ndarray], np.ndarray],
                own_units: Callable[[str, np.ndarray], np.ndarray], profile: str) -> list[Claim]:
    """The claims on the hidden units at depth ceil(log2 n) (and against depth 1). theory(kind, ns) -> that
    construction's units in the trained family (the run's profile); own_units(kind, ns) -> the units it really
    uses. The O(n) test's controls are counts whose class is known (the XOR tree's and the sawtooth's own units,
    and 2^(n-1)); the comparison's are the constructions as the trained family would hold them."""
    control = lambda kind, seed, curve=units, units_of=theory: control_curve(
        curve.n, units_of(kind, curve.n), curve.log_sd(), seed)
    xor, saw = control("xor_tree", 3, units_of=own_units), control("sawtooth", 4, units_of=own_units)
    dnf = control_curve(units.n, 2.0 ** (units.n - 1), units.log_sd(), 5)
    note = ""
    if profile == "constant" and len(units.n):
        top = units.n.max()
        note = (f"With one width for every layer the smallest network of this family that holds the XOR tree has "
                f"{int(theory('xor_tree', np.array([top]))[0])} units at n = {top}, where the tree itself uses "
                f"{int(own_units('xor_tree', np.array([top]))[0])}: the family, not depth, can cost more than O(n) "
                f"(the halving profile holds the tree as it is).")
    claims = [Claim(
        "deep_linear", "a network of depth about log2 n needs only O(n) hidden units",
        "units at depth ⌈log2 n⌉ at the largest n / units at about half of it", linear_test(units),
        {"consistent": "consistent with O(n)", "contradicted": "contradicted: the units grow faster than n",
         "not decided": "not decided"},
        per_n_ratio(units, float),
        _controls(linear_test, [("xor_tree", (xor,), "consistent"), ("sawtooth", (saw,), "consistent"),
                                ("2^(n-1)", (dnf,), "contradicted")]), note, "units per n at depth ⌈log2 n⌉")]
    if shallow_units is not None and len(np.intersect1d(units.n, shallow_units.n)):
        shared = np.intersect1d(units.n, shallow_units.n)
        deep, shallow = units.at(shared), shallow_units.at(shared)
        per_n = []
        for n in shared:
            i, j = int(np.flatnonzero(deep.n == n)[0]), int(np.flatnonzero(shallow.n == n)[0])
            diff = deep.reps[:, i] - shallow.reps[:, j]
            per_n.append({"n": int(n), "value": float(deep.y[i] - shallow.y[j]),
                          "ci95": list(map(float, interval95(diff)))})
        claims.append(Claim(
            "deep_vs_shallow", "depth buys units: the deep network needs fewer hidden units than one hidden layer",
            "units at depth ⌈log2 n⌉ minus units at depth 1", difference_test(deep, shallow),
            {"fewer": "consistent: depth needed fewer units", "more": "contradicted: depth needed more units",
             "no difference": "no difference within the noise"}, per_n,
            _controls(difference_test, [
                ("xor_tree against dnf", (control("xor_tree", 6, deep), control("dnf", 7, shallow)), "fewer"),
                ("xor_tree against one_layer", (control("xor_tree", 8, deep), control("one_layer", 9, shallow)),
                 "more")])))
    return claims
