"""The growth call of one curve: exponential against polynomial, with each point's measured noise.

The claim is stated at the level of a class (2^(n-1) against O(n)), so the call is made there too: each class
has prior weight 1/2 shared by its laws (four polynomial laws do not outvote two exponential ones), the laws'
Akaike weights are summed per class, and a bootstrap replicate is won by the class with the larger
prior-weighted evidence. A class is called only when every test agrees:
- its summed Akaike weight and its bootstrap win rate both reach RULE.weight and RULE.win_rate;
- its best law fits within the measured noise (chi^2 goodness of fit, p >= RULE.alpha);
- no law of the other class does: when both classes fit within the noise the data cannot tell them apart,
  however small one's residuals are;
- it also predicts the largest n best when fitted without them (out-of-sample, as BNSL scores its fits).
Anything else is "undecided", with the reasons. The rule's thresholds are fixed by the calibration on
synthetic truths (analysis.simulation.calibration; tests/test_calibration.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis.calls.comparison import LawComparison, compare_laws, held_out_residuals
from analysis.calls.laws import EXPONENTIAL, LAWS, POLYNOMIAL, Law

UNDECIDED = "undecided"
MIN_POINTS = 5  # below this, three-parameter laws leave no degrees of freedom to test their fit


@dataclasses.dataclass(frozen=True)
class Rule:
    weight: float = 0.8
    win_rate: float = 0.8
    alpha: float = 0.05
    held_out: int = 2  # largest n predicted out of sample


RULE = Rule()


@dataclasses.dataclass
class GrowthCall(LawComparison):
    """The comparison of the laws (table: law, growth, k, chi2, dof, p_fit, aicc, prior, oos, delta, weight,
    win_rate, best first) and the call made from it."""

    call: str = UNDECIDED  # EXPONENTIAL, POLYNOMIAL or UNDECIDED
    class_weight: dict[str, float] = dataclasses.field(default_factory=dict)
    class_win_rate: dict[str, float] = dataclasses.field(default_factory=dict)
    class_fits: dict[str, float] = dataclasses.field(default_factory=dict)  # best goodness-of-fit p per class
    predicts_best: str | None = None  # the class of the law that predicts the held-out largest n best
    reasons: list[str] = dataclasses.field(default_factory=list)  # why the call is undecided (empty when decided)
    tau: float = 0.0  # the between-cell noise of log y added to every point's (between_cell_sd)

    def as_dict(self) -> dict:
        return {"call": self.call, "between_cell_sd": self.tau, "class_weight": self.class_weight,
                "class_win_rate": self.class_win_rate,
                "class_fit_p": self.class_fits, "predicts_best": self.predicts_best, "reasons": self.reasons,
                "laws": [{**{k: v for k, v in row.items() if k != "params"},
                          "formula": self.laws[row["law"]].formula,
                          "params": dict(zip(self.laws[row["law"]].names, map(float, self.params[row["law"]]))),
                          "ci95": {name: self.ci(row["law"], name) for name in self.laws[row["law"]].names}}
                         for row in self.table.to_dict("records")]}


def between_cell_sd(x, logy, sigma) -> float:
    """tau: the scatter of log y between cells beyond their seed noise, which more seeds do not shrink (a coarse
    learning-rate grid, edge extensions in some cells only, budgets, odd against even n). Estimated from the
    data, not from any law: the second differences of log y over equally spaced n, less their seed variance
    (method of moments). Every law is smooth in log space (an exponential is a line there), so curvature adds
    little; what it adds widens every point's noise, which makes the other class's fit test pass more often
    (more "undecided"), and the leading class's too (the calibration scores both)."""
    x, logy, sigma = (np.asarray(v, float) for v in (x, logy, sigma))
    i = np.array([j for j in range(1, len(x) - 1) if np.isclose(x[j] - x[j - 1], x[j + 1] - x[j])], int)
    if not len(i):
        return 0.0
    d = logy[i - 1] - 2 * logy[i] + logy[i + 1]
    seed_var = sigma[i - 1] ** 2 + 4 * sigma[i] ** 2 + sigma[i + 1] ** 2
    return float(np.sqrt(max(0.0, float(np.mean(d * d - seed_var)) / 6.0)))


def _class_priors(laws: dict[str, Law]) -> dict[str, float]:
    """Each class gets half the prior weight, shared equally by its laws, however many laws it has."""
    count = {g: sum(law.growth == g for law in laws.values()) for g in (EXPONENTIAL, POLYNOMIAL)}
    present = sum(c > 0 for c in count.values())
    return {n: 1.0 / (present * count[law.growth]) for n, law in laws.items()}


def decide(x, y, sigma, reps_RxM, rule: Rule = RULE, laws: dict[str, Law] | None = None,
           refine: bool = True) -> GrowthCall:
    """The growth call of y(x) (ascending x, y > 0) with per-point noise sigma (standard error of log y) and
    bootstrap replicates of y (R x M). A replicate with a non-finite entry failed: it wins for no class and
    enters no interval. `refine` polishes the point fits' shapes beyond their grids (simulations skip it: the
    grid decides the same calls).

    Each point's noise is its seed noise and the between-cell term tau (between_cell_sd); each class has prior
    weight 1/2; a parameter held at its bound is not counted as fitted (laws.free_parameters). `laws`: the laws
    to choose from (default LAWS; the calibration tries variants)."""
    x, y, sigma = (np.asarray(v, float) for v in (x, y, sigma))
    laws = LAWS if laws is None else laws
    if len(x) < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} measured points to call a growth law, got {len(x)}")
    tau = between_cell_sd(x, np.log(y), sigma)
    sigma = np.hypot(sigma, tau)
    prior = _class_priors(laws)
    comparison = compare_laws(x, y, laws, sigma=sigma, replicates_RxM=reps_RxM, priors=prior, refine=refine)
    table = comparison.table.assign(oos=[_held_out_score(x, np.log(y), sigma, laws[name], rule.held_out)
                                         for name in comparison.table["law"]])
    table = table[["law", "growth", "k", "chi2", "dof", "p_fit", "aicc", "prior", "oos", "delta", "weight",
                   "win_rate"]]
    ok = np.isfinite(comparison.reps_aicc).any(axis=0)
    names, aicc_LxR = np.array(list(laws)), np.where(ok, comparison.reps_aicc, 0.0)
    classes = (EXPONENTIAL, POLYNOMIAL)
    with np.errstate(invalid="ignore", over="ignore"):
        rel = np.exp(-0.5 * (aicc_LxR - np.nanmin(np.where(np.isfinite(aicc_LxR), aicc_LxR, np.nan), axis=0)))
    evidence = {c: np.nansum([prior[n] * rel[i] for i, n in enumerate(names) if laws[n].growth == c], axis=0)
                for c in classes}
    class_winner = np.where(evidence[EXPONENTIAL] > evidence[POLYNOMIAL], EXPONENTIAL, POLYNOMIAL)
    class_weight = {c: float(table.loc[table["growth"] == c, "weight"].sum()) for c in classes}
    class_win = {c: float(np.mean(ok & (class_winner == c))) for c in classes}
    class_fits = {c: float(table.loc[table["growth"] == c, "p_fit"].max()) for c in classes}
    oos = table[np.isfinite(table["oos"])]
    predicts = str(oos.sort_values("oos")["growth"].iloc[0]) if len(oos) else None
    lead = max(classes, key=class_weight.get)
    other = POLYNOMIAL if lead == EXPONENTIAL else EXPONENTIAL
    reasons = []
    if class_weight[lead] < rule.weight:
        reasons.append(f"the {lead} laws hold Akaike weight {class_weight[lead]:.2f} (< {rule.weight})")
    if class_win[lead] < rule.win_rate:
        reasons.append(f"they win {class_win[lead]:.0%} of seed-bootstrap replicates (< {rule.win_rate:.0%})")
    if class_fits[lead] < rule.alpha:
        reasons.append(f"no {lead} law fits within the measured noise (p = {class_fits[lead]:.2g})")
    if class_fits[other] >= rule.alpha:
        reasons.append(f"a {other} law also fits within the measured noise (p = {class_fits[other]:.2g})")
    if predicts is not None and predicts != lead:
        reasons.append(f"a {other} law predicts the {rule.held_out} largest n best out of sample")
    return GrowthCall(**{**vars(comparison), "table": table}, call=UNDECIDED if reasons else lead,
                      class_weight=class_weight, class_win_rate=class_win, class_fits=class_fits,
                      predicts_best=predicts, reasons=reasons, tau=tau)


def _held_out_score(x, logy, sigma, law: Law, held_out: int) -> float:
    """Mean squared standardized error of log y at the `held_out` largest x, fitted on the rest."""
    residuals = held_out_residuals(law, x, logy, sigma, held_out)
    return float("nan") if residuals is None else float(np.mean(residuals**2))
