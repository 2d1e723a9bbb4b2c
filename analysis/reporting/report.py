"""`scaling analyze DIR` (= `python -m analysis DIR`) and the notebook's object: a results directory read into a
Study (members, config, summary, verdict, fits and the figures' frames), drawn and written on request.

    study = analysis.study("results/default", power=False)
    study.summary, study.calls, study.claims, study.points        # public frames
    fig = study.figure("units_vs_bits")                             # a matplotlib Figure, to restyle or save
    study.write()                                                   # what `scaling analyze` writes
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from analysis.calls.compare import FitComparison
from analysis.calls.curves import depth_curves, steps_curves, steps_frame
from analysis.calls.laws import LAWS
from analysis.calls.recipe import recipe_effects, recipe_lines
from analysis.calls.verdict import REPS, Verdict, judge
from analysis.measurement.data import load, load_config, load_runs, store_warnings
from analysis.measurement.measure import w50_frame
from analysis.reporting import figures
from analysis.reporting.files import strict_json, write_study
from analysis.reporting.frames import figure_frames, fit_all
from analysis.reporting.markdown import render_report
from analysis.reporting.sample_report import SampleStudy, sample_study
from analysis.reporting.style import group_label
from analysis.simulation.power import power_analysis
from scaling.choices import Data
from scaling.engine.constructions import unit_counts
from scaling.errors import UserError
from scaling.experiment.config import Config
from scaling.planning.stats import crossfit_rates, latest_budget, min_width_by_budget, width_cells


@dataclasses.dataclass(frozen=True)
class Study:
    """One results directory, analysed: the frames every table, figure and file of the report is made from."""

    dir: Path
    config: Config
    members: pd.DataFrame  # one row per trained member (analysis.load)
    runs: pd.DataFrame  # the store's sweep runs (provenance)
    summary: pd.DataFrame  # one row per cell: w*, L*, W50 with intervals (summary.csv)
    verdict: Verdict  # the laws, the calls and the lecture's claims (REPORT's answer)
    fits: dict[str, FitComparison]  # the L* and steps-to-solve curves' fits, by curve name
    skipped: dict[str, str]  # curves too short to fit, with the reason
    points: pd.DataFrame  # measured points with intervals (analysis.reporting.figures, "points")
    fitted: pd.DataFrame  # fitted lines on a grid ("fitted")
    weights: pd.DataFrame  # Akaike weights and bootstrap win rates ("weights")
    theory: pd.DataFrame  # the hand-built networks' unit counts ("theory")
    rates: pd.DataFrame  # cross-fitted success rate per (n, depth, width) ("rates")
    by_budget: pd.DataFrame  # w* re-read at fractions of the budget
    steps: pd.DataFrame  # steps to solve per cell
    powers: dict[str, Any]  # the power analysis per depth group ({} when skipped)
    recipe: pd.DataFrame | None  # W50 by init and budget, where they were searched
    reps: int

    @property
    def stars(self) -> pd.DataFrame:
        return self.summary[self.summary["kind"] == "min_width"]

    @property
    def bases(self) -> dict[str, float]:
        """The fitted exponential base of each steps-to-solve curve."""
        return {name: comp.fits["exponential"].params["b"] for name, comp in self.fits.items()
                if name.startswith("steps/") and "exponential" in comp.fits}

    @property
    def calls(self) -> pd.DataFrame:
        """The verdict per depth group: the call, the best W50 law, each class's Akaike weight, and why."""
        rows = []
        for group, g in self.verdict.groups.items():
            call = g.w50_call
            rows.append({"group": group_label(group), "call": g.call,
                         "best_law": None if call is None else LAWS[call.best()].formula,
                         **({} if call is None else {f"weight_{c}": w for c, w in call.class_weight.items()}),
                         "reasons": "; ".join(g.reasons)})
        return pd.DataFrame(rows)

    @property
    def claims(self) -> pd.DataFrame:
        """The lecture's claims as tested: the reading, its estimate and 95 % interval, and whether every
        hand-built control passed (a claim is reported only then)."""
        return pd.DataFrame([{"claim": c.statement, "reading": c.outcome.reading, "estimate": c.outcome.estimate,
                              "lo": c.outcome.ci95[0], "hi": c.outcome.ci95[1], "at": c.outcome.at,
                              "controls_pass": c.reported} for c in self.verdict.claims])

    @property
    def figure_names(self) -> list[str]:
        """The figures of this study (every one of FIGURES)."""
        return list(FIGURES)

    def figure(self, name: str) -> Figure:
        """One of FIGURES, drawn from this study's frames."""
        if name not in FIGURES:
            raise KeyError(f"no figure {name!r}; one of {', '.join(FIGURES)}")
        return FIGURES[name](self)

    def fits_json(self) -> str:
        """fits.json: every fit, the verdict and the power analysis, as strict JSON (null where a value is
        undefined)."""
        data = {name: comp.as_dict() for name, comp in self.fits.items()}
        data.update({name: {"skipped": why} for name, why in self.skipped.items()})
        data["verdict"] = self.verdict.as_dict() | {"power": self.powers}
        if self.recipe is not None:
            data["recipe"] = self.recipe.to_dict("records")
        return strict_json(data)

    def report(self) -> str:
        """REPORT.md's text."""
        recipe = recipe_lines(self.recipe, self.config) if self.recipe is not None else []
        return render_report(self.config, self.members, self.runs, self.summary, self.verdict, self.powers,
                             self.fits, self.skipped, self.theory, list(FIGURES),
                             store_warnings(self.config, self.members, self.runs), self.by_budget, self.steps,
                             recipe)

    def write(self) -> list[Path]:
        """Write summary.csv, fits.json, the figures and REPORT.md, all or nothing; returns their paths."""
        return write_study(self.dir, self.summary, self.fits_json(),
                           {name: self.figure(name) for name in self.figure_names}, self.report())


# Every figure of the report, drawn from a Study's frames (analysis.reporting.figures has one function per figure).
FIGURES = {
    "units_vs_bits": lambda s: figures.units_vs_bits(s.points, s.fitted, s.theory),
    "total_units": lambda s: figures.total_units(s.points, s.fitted, s.theory),
    "success_heatmaps": lambda s: figures.success_heatmaps(s.rates, s.stars),
    "min_depth": lambda s: figures.min_depth(s.points, s.fitted),
    "steps_to_solve": lambda s: figures.steps_to_solve(s.points, s.fitted, s.bases),
    "fit_comparison": lambda s: figures.fit_comparison(s.weights),
    "w_star_vs_budget": lambda s: figures.w_star_vs_budget(s.by_budget),
}


def study(dir: str | Path, reps: int | None = None, power: bool = True, workers: int = 1) -> Study | SampleStudy:
    """Read and analyse a results directory, writing nothing. `power` runs the power analysis (most of the
    time of a default analysis) on up to `workers` processes (analysis.simulation.workers). A store of the sample
    modes gives a SampleStudy (analysis.reporting.sample_report).
    `reps`: seed-bootstrap replicates (default: each analysis's own, REPS for the verdict)."""
    dir = Path(dir)
    df, cfg, runs = load(dir), load_config(dir), load_runs(dir)
    if df.empty:
        raise UserError(str(dir), "the store has no trained members yet")
    if cfg.task.data != Data.TABLE:  # learned from samples: t_c and its scaling, not widths on the table
        return sample_study(dir, df, cfg, runs) if reps is None else sample_study(dir, df, cfg, runs, reps)
    reps = REPS if reps is None else reps
    verdict = judge(df, cfg, reps)
    shaped = latest_budget(width_cells(df, cfg))  # w* at each cell's largest budget
    base = df[df["steps_budget"] == cfg.train.steps]  # L* compares depths at one budget
    w50 = w50_frame(verdict.cells)
    summary = verdict.summary.merge(w50[["n", "depth", "w50", "w50_lo", "w50_hi"]], on=["n", "depth"], how="left")
    other = depth_curves(base, cfg) + steps_curves(shaped, sorted(set(shaped["depth"])))
    fits, skipped = fit_all(other, reps)
    points, fitted, weights = figure_frames(verdict, cfg, other, fits, reps)
    recipe = None
    if len(cfg.model.inits) > 1 or cfg.search.max_steps > cfg.train.steps:  # recipes or budgets were searched
        recipe = recipe_effects(df, cfg, reps)
    theory = unit_counts(cfg.task.ns)  # counted as the measurements are: in the run's width profile
    theory = theory.assign(units=theory[f"units_{cfg.model.profile}"]) if len(theory) else theory
    return Study(dir=dir, config=cfg, members=df, runs=runs, summary=summary, verdict=verdict, fits=fits,
                 skipped=skipped, points=points, fitted=fitted, weights=weights, theory=theory,
                 rates=crossfit_rates(shaped, ["n", "depth", "width"]),
                 by_budget=min_width_by_budget(shaped, cfg.search.success_threshold),
                 steps=steps_frame(shaped, sorted(set(shaped["depth"]))),
                 powers=power_analysis(verdict, cfg, workers=workers) if power else {}, recipe=recipe, reps=reps)


def analyze(dir: str | Path, reps: int | None = None, power: bool = True, write: bool = True, workers: int = 1
            ) -> list[Path] | Study | SampleStudy:
    """Everything `scaling analyze` writes; returns the paths written (write=False: the Study, nothing written)."""
    result = study(dir, reps, power, workers)
    return result.write() if write else result
