"""Learning a (sparse) parity from samples: t_c, the steps SGD takes to find it, and how it scales.

Per member, t_c is the first evaluation step at which every evaluation sample is right (its step_solved),
censored at the step cap. Per point (k, n, depth, width, init, lr): the median t_c over seeds with its 95 %
seed-bootstrap interval, the quartiles, and the fraction of seeds that succeed within the cap. Along n (or
width) at the rest fixed: the exponent of t_c ∝ n^alpha (width^slope), the least-squares slope of log median t_c
on log n, with the seed-bootstrap interval of the slope. And the claim the paper makes (Barak et al. 2022),
that alpha grows with k, tested on the bootstrap replicates of each difference alpha(k') - alpha(k).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.measurement.intervals import interval95

POINT = ["k", "n", "depth", "width", "init", "lr"]  # what a point of t_c fixes; seeds vary within it
CURVE = ["depth", "width", "init", "lr"]  # what the curves of alpha over k share: the network and its recipe
REPS = 400
MIN_CURVE_POINTS = 2  # a slope needs two points with a median reached; REPORT says how many each used


def solve_steps(rows: pd.DataFrame) -> np.ndarray:
    """t_c of each member: its solve step, or inf where it did not solve within its cap (censored)."""
    return np.where(rows["solved"].to_numpy(bool), rows["step_solved"].to_numpy(float), np.inf)


def rows_at(frame: pd.DataFrame, at: dict) -> pd.DataFrame:
    """The rows of `frame` whose fields equal `at`'s values (a point, a curve)."""
    return frame[(frame[list(at)] == pd.Series(at)).all(axis=1)]


def latest_budget(df: pd.DataFrame) -> pd.DataFrame:
    """Each point's rows at its largest step cap (a point rerun at a larger cap is read there)."""
    return df[df["steps_budget"] == df.groupby(POINT)["steps_budget"].transform("max")]


def _boot_medians(t_S: np.ndarray, reps: int, rng: np.random.Generator, spacing: int = 0) -> np.ndarray:
    """Medians of `reps` seed resamples (inf where more than half of a resample is censored). With the evaluation
    `spacing`, each drawn t_c is redrawn uniformly within (t - spacing, t], where the evaluations place it."""
    draws_RxS = rng.choice(t_S, size=(reps, len(t_S)))
    if spacing:
        draws_RxS = draws_RxS - rng.uniform(0, spacing, draws_RxS.shape)  # inf stays inf
    return np.median(draws_RxS, axis=1)


def _log_median(t_S: np.ndarray, spacing: int, rng: np.random.Generator, draws: int = 200) -> float:
    """log of the seeds' median t_c, each t_c uniform within (t - spacing, t]: averaged over `draws` of those
    positions (the replicates' smoothing without the resampling), so that the point sits within its interval."""
    if not spacing:
        return float(np.log(np.median(t_S)))
    return float(np.mean(np.log(np.median(t_S - rng.uniform(0, spacing, (draws, len(t_S))), axis=1))))


def _order_interval(draws_R: np.ndarray) -> tuple[float, float]:
    """A 95 % percentile interval that keeps inf (censored medians) as the largest value, never interpolating."""
    ordered = np.sort(draws_R)
    return float(ordered[int(0.025 * len(ordered))]), float(ordered[int(np.ceil(0.975 * len(ordered))) - 1])


def tc_points(df: pd.DataFrame, reps: int = REPS, seed: int = 0) -> pd.DataFrame:
    """One row per point: seeds, solved, success (fraction solved within the cap), cap, tc_median (inf: not
    reached), tc_lo and tc_hi (95 % seed bootstrap of the median), tc_q25 and tc_q75 (the seeds' quartiles)."""
    rng = np.random.default_rng(seed)
    rows = []
    for key, part in latest_budget(df).groupby(POINT, sort=True):
        t_S = solve_steps(part)
        lo, hi = _order_interval(_boot_medians(t_S, reps, rng))
        q25, q75 = np.quantile(t_S, [0.25, 0.75], method="inverted_cdf")
        rows.append({**dict(zip(POINT, key)), "seeds": len(t_S), "solved": int(np.isfinite(t_S).sum()),
                     "success": float(np.isfinite(t_S).mean()), "cap": int(part["steps_budget"].max()),
                     "tc_median": float(np.median(t_S)), "tc_lo": lo, "tc_hi": hi, "tc_q25": float(q25),
                     "tc_q75": float(q75)})
    return pd.DataFrame(rows, columns=[*POINT, "seeds", "solved", "success", "cap", "tc_median", "tc_lo", "tc_hi",
                                       "tc_q25", "tc_q75"])


@dataclasses.dataclass
class Slope:
    """t_c ∝ x^slope along x = n or width, the other point fields fixed (`at`)."""

    along: str
    at: dict  # the fixed fields of POINT: all but n (along n) or all but width (along width)
    slope: float  # NaN with fewer than MIN_CURVE_POINTS reached medians
    lo: float
    hi: float
    intercept: float  # log t_c at x = 1 (of the midpoints between evaluations)
    x: list[int]  # the x whose median was reached after the first evaluation, fitted
    left_out: list[int]  # the x whose median was not reached within the cap (lower bounds; not fitted)
    first_eval: list[int]  # the x whose median is the first evaluation step (upper bounds; not fitted)
    capped: int  # bootstrap replicates in which a fitted median was not reached (taken at the cap: see slopes)
    draws: np.ndarray = dataclasses.field(repr=False)  # the replicates' slopes (R',)

    def as_dict(self) -> dict:
        return {"along": self.along, **self.at, "slope": self.slope, "ci95": [self.lo, self.hi],
                "intercept": self.intercept, "fitted": self.x, "not_reached": self.left_out,
                "at_first_evaluation": self.first_eval,
                "replicates_at_the_cap": self.capped}


def _slope_of(logx_M: np.ndarray, logy_RxM: np.ndarray) -> np.ndarray:
    """Least-squares slopes of each row of logy on logx."""
    xc = logx_M - logx_M.mean()
    return ((logy_RxM - logy_RxM.mean(axis=-1, keepdims=True)) * xc).sum(axis=-1) / (xc * xc).sum()


def slopes(df: pd.DataFrame, along: str = "n", eval_every: int = 0, reps: int = REPS, seed: int = 0) -> list[Slope]:
    """The log-log slope of the median t_c along `along` ("n" or "width") in every curve of the other point fields,
    with its seed-bootstrap interval (seeds resampled within each point, every point of a replicate redrawn).

    An evaluation every `eval_every` steps only says that t_c lies in (t - eval_every, t]: the fit and each
    bootstrap draw take a uniform point of that interval (without this, medians on the evaluation grid give
    degenerate intervals). A median not reached within the cap is only a lower bound, and one
    at the first evaluation only an upper bound: neither is fitted; both are listed. A replicate whose median at a
    fitted x is not reached takes the cap there (its lower bound): dropping those replicates would drop the
    steepest ones; capping them keeps them, so that the interval's upper end errs low only by what the cap hides
    (REPORT counts them)."""
    rng = np.random.default_rng(seed)
    fixed = [c for c in POINT if c != along]
    out = []
    for key, curve in latest_budget(df).groupby(fixed, sort=True):
        xs = sorted(int(x) for x in curve[along].unique())
        t_of = {x: solve_steps(curve[curve[along] == x]) for x in xs}
        medians = {x: float(np.median(t_of[x])) for x in xs}
        not_reached = [x for x in xs if not np.isfinite(medians[x])]
        at_first = [x for x in xs if medians[x] <= eval_every]
        reached = [x for x in xs if x not in not_reached and x not in at_first]
        at = dict(zip(fixed, (v.item() if hasattr(v, "item") else v for v in key)))
        if len(reached) < MIN_CURVE_POINTS:
            if len(xs) >= MIN_CURVE_POINTS:
                out.append(Slope(along, at, np.nan, np.nan, np.nan, np.nan, reached, not_reached, at_first, 0,
                                 np.empty(0)))
            continue
        logx = np.log(np.array(reached, float))
        logy = np.array([_log_median(t_of[x], eval_every, rng) for x in reached])
        slope = float(_slope_of(logx, logy[None])[0])
        boot_RxM = np.stack([_boot_medians(t_of[x], reps, rng, eval_every) for x in reached], axis=1)
        cap_M = np.array([curve.loc[curve[along] == x, "steps_budget"].max() for x in reached], float)
        capped = ~np.all(np.isfinite(boot_RxM), axis=1)
        draws = _slope_of(logx, np.log(np.where(np.isfinite(boot_RxM), boot_RxM, cap_M)))
        lo, hi = interval95(draws)
        out.append(Slope(along, at, slope, float(lo), float(hi), float(logy.mean() - slope * logx.mean()),
                         reached, not_reached, at_first, int(capped.sum()), draws))
    return out


@dataclasses.dataclass
class GrowthInK:
    """Does alpha grow with k? Each step between consecutive k with a fitted alpha, at one CURVE."""

    call: str  # "grows", "does not grow" (some step falls), or "not shown" (some step's interval holds 0)
    steps: list[dict]  # k_from, k_to, difference, lo, hi, call
    unfitted: list[int]  # the k without a fitted alpha (left out of the steps)

    def as_dict(self) -> dict:
        return {"call": self.call, "steps": self.steps, "k_without_alpha": self.unfitted}


GROWS, FALLS, NOT_SHOWN = "grows", "does not grow", "not shown"


def alpha_grows(alphas: list[Slope]) -> GrowthInK | None:
    """Test "alpha grows with k" on the slopes along n of one CURVE: every consecutive pair of k (with a fitted
    alpha) whose 95 % bootstrap interval of alpha(k') - alpha(k) lies above 0 grows; one below 0 falls. The claim
    holds when every step grows, is refuted when any falls, and is not shown otherwise. None with fewer than two k.

    Members at one (n, seed) share their initial weights and inputs whatever k (k is not in the key), so the
    alphas of two k are not independent in principle; their replicates are paired by index as if they were.
    On the CPU experiment the correlation of log t_c across k at one (n, width, seed) was -0.04 to 0.03."""
    fitted = lambda a: bool(np.isfinite(a.slope) and len(a.draws))
    usable = sorted(filter(fitted, alphas), key=lambda a: a.at["k"])
    unfitted = sorted(a.at["k"] for a in alphas if not fitted(a))
    if len(usable) < 2:
        return None
    steps = []
    for a, b in zip(usable, usable[1:]):
        m = min(len(a.draws), len(b.draws))
        lo, hi = interval95(b.draws[:m] - a.draws[:m])
        call = GROWS if lo > 0 else FALLS if hi < 0 else NOT_SHOWN
        steps.append({"k_from": a.at["k"], "k_to": b.at["k"], "difference": b.slope - a.slope, "lo": float(lo),
                      "hi": float(hi), "call": call})
    calls = {s["call"] for s in steps}
    return GrowthInK(GROWS if calls == {GROWS} else FALLS if FALLS in calls else NOT_SHOWN, steps, unfitted)


def growth_by_curve(alphas: list[Slope]) -> dict[tuple, GrowthInK]:
    """alpha_grows for each CURVE (a tuple of its values) of the slopes along n."""
    groups: dict[tuple, list[Slope]] = {}
    for a in alphas:
        groups.setdefault(tuple(a.at[f] for f in CURVE), []).append(a)
    return {key: g for key, group in groups.items() if (g := alpha_grows(group)) is not None}
