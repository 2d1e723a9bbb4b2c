"""Importable analysis of a results directory (no side effects on import).

    analysis.load(dir) -> DataFrame                    members, long format
    analysis.min_width(df, threshold) / min_depth(df, width, threshold)
    analysis.fit_curve(x, y, family) -> Fit
    analysis.compare_fits(x, y, families=None, bootstrap=None, censored=None) -> FitComparison
    analysis.figures.<name>(frames...) -> Figure
    analysis.analyze(dir)                              fits.json, figures, REPORT.md
"""

from analysis import figures
from analysis.compare import Bootstrap, FitComparison, compare_fits
from analysis.data import load, load_config, load_runs
from analysis.fits import FAMILIES, Fit, FitError, fit_curve
from analysis.report import analyze
from scaling.stats import min_depth, min_width, success_rates, wilson

__all__ = ["Bootstrap", "FAMILIES", "Fit", "FitComparison", "FitError", "analyze", "compare_fits", "figures",
           "fit_curve", "load", "load_config", "load_runs", "min_depth", "min_width", "success_rates", "wilson"]
