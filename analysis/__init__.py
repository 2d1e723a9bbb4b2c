"""Importable analysis of a results directory (no side effects on import).

    analysis.load(dir) -> DataFrame                    members, long format
    analysis.min_width(df, threshold) / min_depth(df, width, threshold)
    analysis.fit_curve(x, y, family) -> Fit
    analysis.compare_fits(x, y, families=None, bootstrap=None, censored=None) -> FitComparison
    analysis.compare_laws(x, y, LAWS, sigma=..., replicates_RxM=...) -> LawComparison
                                                       the one comparison of growth laws every curve goes through
                                                       (measured or estimated noise, bounds, replicates)
    analysis.figures.<name>(frames...) -> Figure       (analysis.reporting.figures)
    analysis.judge(df, cfg) -> Verdict                 the verdict REPORT.md reports (analysis.calls.verdict)
    analysis.study(dir, power=True) -> Study           one results directory analysed, for a notebook: members,
                                                       summary, calls, claims, frames, .figure(name) -> Figure
                                                       (a store of the sample modes: a SampleStudy, with t_c per
                                                       point, alpha per k and the growth test); workers=N runs
                                                       the power analysis on N processes (same numbers)
    analysis.analyze(dir, write=True)                  fits.json, figures, REPORT.md (write=False: the Study)
    analysis.compare_runs(dir_a, dir_b) -> RunComparison  two stores of one config, member by member and cell by cell

Names load on first use, so `python -m analysis` can take a Ctrl-C cleanly before pandas and matplotlib
are imported.
"""

import importlib

_EXPORTS = {
    **dict.fromkeys(["Bootstrap", "FitComparison", "compare_fits"], "analysis.calls.compare"),
    **dict.fromkeys(["LawComparison", "compare_laws"], "analysis.calls.comparison"),
    "LAWS": "analysis.calls.laws",
    **dict.fromkeys(["load", "load_config", "load_runs"], "analysis.measurement.data"),
    **dict.fromkeys(["FAMILIES", "Fit", "FitError", "fit_curve"], "analysis.calls.fits"),
    **dict.fromkeys(["analyze", "study", "Study", "FIGURES"], "analysis.reporting.report"),
    **dict.fromkeys(["judge", "Verdict"], "analysis.calls.verdict"),
    "SampleStudy": "analysis.reporting.sample_report",
    **dict.fromkeys(["RunComparison", "compare_runs"], "analysis.measurement.runs"),
    **dict.fromkeys(["min_depth", "min_width", "success_rates", "wilson"], "scaling.planning.stats"),
}
__all__ = sorted([*_EXPORTS, "figures"])


def __getattr__(name: str):
    if name == "figures":
        return importlib.import_module("analysis.reporting.figures")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
