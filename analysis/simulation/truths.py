"""Synthetic truths for the calibration: curves W50(n) whose growth class is known.

Two sets. TUNING chose the rule (the laws, their bounds, the thresholds: analysis.calls.laws and analysis.calls.growth
say which truth decided what). HELD_OUT was never used to choose anything: it scores the rule on the kinds of
curve that sit between the classes over a short range, mixtures of a polynomial and an exponential, depth-like
staircases, offsets and slow exponentials. The rule is reported on both (docs/VERDICT.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from analysis.calls.laws import EXPONENTIAL, POLYNOMIAL


@dataclasses.dataclass(frozen=True)
class Truth:
    name: str
    growth: str
    curve: Callable[[np.ndarray], np.ndarray]


_staircase = lambda n: 2.0 ** np.ceil(np.log2(n))  # 2^ceil(log2 n): Θ(n), in steps like the deep group's depth

TUNING = {t.name: t for t in (
    Truth("0.75*2^n", EXPONENTIAL, lambda n: 0.75 * 2.0**n),
    Truth("1.75*1.3^n", EXPONENTIAL, lambda n: 1.75 * 1.3**n),
    Truth("2.2*1.17^n", EXPONENTIAL, lambda n: 2.2 * 1.17**n),
    Truth("max(3,n+1)", POLYNOMIAL, lambda n: np.maximum(3.0, n + 1.0)),
    Truth("0.75*n^1.5", POLYNOMIAL, lambda n: 0.75 * n**1.5),
    # Offset-and-curvature truths that chose the laws (analysis.calls.laws): a floor with polynomial growth, and one
    # with exponential growth.
    Truth("3+0.1*n^2", POLYNOMIAL, lambda n: 3.0 + 0.1 * n**2),
    Truth("2+0.25*1.5^n", EXPONENTIAL, lambda n: 2.0 + 0.25 * 1.5**n),
)}

HELD_OUT = {t.name: t for t in (
    Truth("n*1.2^n", EXPONENTIAL, lambda n: n * 1.2**n),
    Truth("0.5*n^2*1.15^n", EXPONENTIAL, lambda n: 0.5 * n**2 * 1.15**n),
    Truth("2+n+0.05*1.6^n", EXPONENTIAL, lambda n: 2.0 + n + 0.05 * 1.6**n),
    Truth("n+0.02*2^n", EXPONENTIAL, lambda n: n + 0.02 * 2.0**n),
    Truth("1.5*1.12^n", EXPONENTIAL, lambda n: 1.5 * 1.12**n),
    Truth("1.5*2^ceil(log2 n)", POLYNOMIAL, lambda n: 1.5 * _staircase(n)),
    Truth("2+2^ceil(log2 n)", POLYNOMIAL, lambda n: 2.0 + _staircase(n)),
    Truth("4+0.5*n", POLYNOMIAL, lambda n: 4.0 + 0.5 * n),
    Truth("1+2*n^1.2", POLYNOMIAL, lambda n: 1.0 + 2.0 * n**1.2),
    Truth("2+n*log2(n)", POLYNOMIAL, lambda n: 2.0 + n * np.log2(n)),
)}

SETS = {"tuning": TUNING, "held-out": HELD_OUT}
TRUTHS = {**TUNING, **HELD_OUT}
