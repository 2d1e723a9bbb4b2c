"""W50: a continuous estimate of the width at the success threshold, beside the discrete, monotone w*.

Per (n, depth) cell, success against log2(width) is fitted with a logistic curve by maximum likelihood
(binomial: seeds are the trials) at the cell's learning rate, the one that solved the most members over all
widths. Half a success and half a failure are added at every width (Haldane's correction), so that a clean
step from 0/8 to 8/8 still gives a finite slope. W50 = the width where the curve crosses the threshold; its
95 % interval comes from the observed information (a Wald interval on log2 W50). One noisy width no longer
censors a cell: it only widens the interval.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from scaling.stats import Z95

_PSEUDO = 0.5
_NEWTON_STEPS = 50


@dataclasses.dataclass(frozen=True)
class LogisticFit:
    intercept: float
    slope: float  # per doubling of width
    cov: np.ndarray  # 2 x 2, of (intercept, slope)

    def crossing(self, threshold: float) -> tuple[float, float, float]:
        """(W50, lo, hi): the width at which success = threshold, with its 95 % interval."""
        if self.slope <= 0:
            return np.nan, np.nan, np.nan
        g = (logit(threshold) - self.intercept) / self.slope  # log2 of the crossing width
        grad = np.array([-1.0 / self.slope, -g / self.slope])
        sd = float(np.sqrt(max(grad @ self.cov @ grad, 0.0)))
        log2_w = np.clip([g, g - Z95 * sd, g + Z95 * sd], -1000.0, 1000.0)  # a flat fit: a huge but finite interval
        return tuple(float(v) for v in np.exp2(log2_w))


def fit_logistic(log2_width, solved, trials) -> LogisticFit:
    """Maximum-likelihood logistic regression of solved/trials on log2 width (Newton's method)."""
    x = np.asarray(log2_width, float)
    k = np.asarray(solved, float) + _PSEUDO
    t = np.asarray(trials, float) + 2 * _PSEUDO
    design = np.column_stack([np.ones_like(x), x])
    theta = np.zeros(2)
    for _ in range(_NEWTON_STEPS):
        p = expit(design @ theta)
        grad = design.T @ (k - t * p)
        info = design.T @ (design * (t * p * (1 - p))[:, None])
        step = np.linalg.solve(info + 1e-12 * np.eye(2), grad)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = expit(design @ theta)
    info = design.T @ (design * (t * p * (1 - p))[:, None])
    return LogisticFit(float(theta[0]), float(theta[1]), np.linalg.inv(info + 1e-12 * np.eye(2)))


def w50_frame(df: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """One row per (n, depth): the cell's learning rate, W50 with its interval, and whether W50 lies beyond
    the widths tested (then it is a bound, not an estimate)."""
    rows = []
    for (n, depth), cell in df[df["depth"] > 0].groupby(["n", "depth"]):
        by_lr = cell.groupby("lr")["solved"].sum()
        lr = float(by_lr.index[by_lr.to_numpy().argmax()])  # most solved; ties to the smaller rate
        counts = cell[cell["lr"] == lr].groupby("width")["solved"].agg(["sum", "size"])
        widths = counts.index.to_numpy(float)
        row = {"n": n, "depth": depth, "lr": lr, "widths": len(widths), "bound": widths.max(), "w50": np.nan,
               "w50_lo": np.nan, "w50_hi": np.nan, "beyond": ""}
        if len(widths) < 2:
            row["beyond"] = "no rise"  # one width: nothing to fit
        else:
            fit = fit_logistic(np.log2(widths), counts["sum"], counts["size"])
            w50, lo, hi = fit.crossing(threshold)
            row.update(w50=w50, w50_lo=lo, w50_hi=hi)
            if not np.isfinite(w50):
                row["beyond"] = "no rise"  # success does not grow with width here
            elif w50 > widths.max():
                row["beyond"] = "above"
            elif w50 < widths.min():
                row["beyond"] = "below"
        rows.append(row)
    return pd.DataFrame(rows, columns=["n", "depth", "lr", "widths", "bound", "w50", "w50_lo", "w50_hi", "beyond"])
