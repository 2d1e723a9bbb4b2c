"""Controls for "alpha grows with k": synthetic runs of the measured design, where the answer is known.

A synthetic member's t_c is a * n^alpha_k * exp(sigma * z), rounded up to the next evaluation and censored at the
cap, at the run's own n, k, seeds, cap and evaluation spacing, with sigma the seeds' measured spread. Under the
null every k has the same alpha (the mean of the fitted ones, each curve keeping its level): the test must rarely
say "grows" there. Under the measured alphas it should say so often (its power). The report states the claim
only when the null's false-positive rate is at most MAX_FALSE_POSITIVES.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.calls.sample_scaling import GROWS, POINT, Slope, alpha_grows, latest_budget, slopes, solve_steps

SIMULATIONS = 100
MAX_FALSE_POSITIVES = 0.1


def synthetic_members(ns, curves: dict[int, tuple[float, float]], seeds: int, cap: int, eval_every: int,
                      sigma: float, rng: np.random.Generator, width: int = 1, lr: float = 0.1,
                      init: str = "he") -> pd.DataFrame:
    """Rows as a store holds them: for each k, log t_c = intercept + alpha * log n + sigma * z (curves: k ->
    (intercept, alpha)), solved at the next evaluation at or after t_c, unsolved past the cap."""
    rows = []
    for k, (intercept, alpha) in curves.items():
        for n in ns:
            t = np.exp(intercept + alpha * np.log(n) + sigma * rng.standard_normal(seeds))
            step = np.maximum(np.ceil(t / eval_every), 1) * eval_every
            solved = step <= cap
            rows += [{"k": k, "n": n, "depth": 1, "width": width, "init": init, "lr": lr, "seed": s,
                      "steps_budget": cap,
                      "solved": bool(solved[s]), "step_solved": float(step[s]) if solved[s] else np.nan}
                     for s in range(seeds)]
    return pd.DataFrame(rows)


def seed_spread(members: pd.DataFrame) -> float:
    """sigma: the median over points of the standard deviation of log t_c among the seeds that solved."""
    sds = [np.std(np.log(t[np.isfinite(t)]), ddof=1) for _, part in members.groupby(POINT)
           if np.isfinite(t := solve_steps(part)).sum() >= 3]
    return float(np.median(sds)) if sds else 0.5


@dataclasses.dataclass
class ClaimControl:
    false_positive: float  # share of null runs (alpha equal across k) in which the test said "grows"
    power: float  # share of runs at the measured alphas in which it said "grows"
    simulations: int
    sigma: float

    @property
    def passes(self) -> bool:
        return self.false_positive <= MAX_FALSE_POSITIVES

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"passes": self.passes}


def control(alphas: list[Slope], members: pd.DataFrame, eval_every: int,
            simulations: int = SIMULATIONS, seed: int = 0, reps: int = 200) -> ClaimControl | None:
    """The test's false-positive rate and power at this design, for the slopes along n of one curve (`members`:
    that curve's rows; each point read at its largest cap, as the slopes are). None when fewer than two k have a
    fitted alpha."""
    fitted = [a for a in alphas if np.isfinite(a.slope)]
    if len(fitted) < 2:
        return None
    members = latest_budget(members)
    ns = sorted(set(members["n"]))
    seeds = int(members.groupby(["k", "n"]).size().median())
    cap = int(members["steps_budget"].max())
    sigma = seed_spread(members)
    mean_alpha = float(np.mean([a.slope for a in fitted]))
    centre = {a.at["k"]: float(np.mean(np.log(a.x))) for a in fitted}
    measured = {a.at["k"]: (a.intercept, a.slope) for a in fitted}
    null = {k: (b + (a - mean_alpha) * centre[k], mean_alpha) for k, (b, a) in measured.items()}
    rng = np.random.default_rng(seed)
    said = {"null": 0, "measured": 0}
    for _ in range(simulations):
        for name, curves in (("null", null), ("measured", measured)):
            rows = synthetic_members(ns, curves, seeds, cap, eval_every, sigma, rng)
            result = alpha_grows(slopes(rows, "n", eval_every, reps, seed=int(rng.integers(2**31))))
            said[name] += result is not None and result.call == GROWS
    return ClaimControl(said["null"] / simulations, said["measured"] / simulations, simulations, sigma)
