"""The one summary of every bootstrap in the analysis: a 95 % percentile interval of the replicates."""

from __future__ import annotations

import warnings

import numpy as np


def interval95(draws, axis: int = 0) -> tuple:
    """(lo, hi): the 2.5th and 97.5th percentiles of the finite draws along `axis` (scalars for 1-D draws);
    NaN where no draw is finite (a replicate without the quantity, such as a cell with no rise)."""
    a = np.asarray(draws, float)
    a = np.where(np.isfinite(a), a, np.nan)
    if a.size == 0:
        shape = a.shape[:axis] + a.shape[axis + 1:]
        return np.full(shape, np.nan)[()], np.full(shape, np.nan)[()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice is NaN, which is the answer
        lo, hi = np.nanpercentile(a, [2.5, 97.5], axis=axis)
    return lo, hi
