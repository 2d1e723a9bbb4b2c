"""A run that learns parities from samples, analysed (`scaling analyze DIR` on such a store, or
analysis.study): t_c per point, alpha(k) in t_c ∝ n^alpha with its interval, whether alpha grows with k, the
effect of width, the width search's w* per (n, k), and the hidden bits of each task.

    study = analysis.study("results/sparse_parity")
    study.points, study.alphas, study.growth          # t_c per point, alpha per k, the claim tested
    study.figure("tc_vs_n")                           # a matplotlib Figure
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.calls.sample_scaling import (
    CURVE,
    GROWS,
    REPS,
    GrowthInK,
    Slope,
    growth_by_curve,
    latest_budget,
    rows_at,
    slopes,
    tc_points,
)
from analysis.measurement.data import store_warnings
from analysis.reporting import sample_figures
from analysis.reporting.files import strict_json, write_study
from analysis.reporting.markdown import md_table, run_end
from analysis.simulation.sample_controls import MAX_FALSE_POSITIVES, ClaimControl, control
from scaling.experiment.config import Config
from scaling.planning.stats import min_width

FIGURES = {
    "tc_vs_n": lambda s: sample_figures.tc_vs_n(s.members, s.points, s.alphas, s.config.train.eval_every),
    "tc_vs_width": lambda s: sample_figures.tc_vs_width(s.members, s.points, s.width_slopes),
}


def _steps(value: float) -> str:
    return "not reached" if not np.isfinite(value) else f"{value:,.0f}"


def _interval(lo: float, hi: float, cap: float | None = None) -> str:
    if np.isnan(lo) or np.isnan(hi):
        return "-"
    show = lambda v: f"> {cap:,.0f}" if cap is not None and not np.isfinite(v) else f"{v:.2f}" if cap is None \
        else f"{v:,.0f}"
    return f"[{show(lo)}, {show(hi)}]"


@dataclasses.dataclass(frozen=True)
class SampleStudy:
    """One results directory of the sample modes, analysed: the frames of its tables, figures and files."""

    dir: Path
    config: Config
    members: pd.DataFrame
    runs: pd.DataFrame
    points: pd.DataFrame  # t_c per (k, n, depth, width, init, lr): median, interval, quartiles, success (summary.csv)
    alphas: list[Slope]  # t_c ∝ n^alpha per (k, depth, width, init, lr)
    width_slopes: list[Slope]  # t_c ∝ width^slope per (k, n, depth, init, lr) trained at two or more widths
    growth: dict[tuple, GrowthInK]  # CURVE values (depth, width, init, lr) -> does alpha grow with k?
    controls: dict[tuple, ClaimControl]  # CURVE values -> the test on synthetic runs of this design
    stars: pd.DataFrame  # the width search's w* per (n, k, depth): half the seeds solve within the cap
    reps: int

    @property
    def summary(self) -> pd.DataFrame:
        return self.points

    @property
    def figure_names(self) -> list[str]:
        """The figures this run has data for: t_c against width needs a point trained at two or more widths."""
        return [name for name in FIGURES if name != "tc_vs_width" or self.width_slopes]

    def figure(self, name: str) -> Figure:
        if name not in self.figure_names:
            raise KeyError(f"no figure {name!r}; one of {', '.join(self.figure_names)}")
        return FIGURES[name](self)

    def subsets(self) -> pd.DataFrame:
        """The hidden bits of each (n, k), as the engine stored them with every member."""
        return (self.members.groupby(["n", "k"])["subset"].agg(lambda s: sorted(set(s)))
                .reset_index().sort_values(["k", "n"], ignore_index=True))

    def fits_json(self) -> str:
        return strict_json({"alpha": [a.as_dict() for a in self.alphas],
                            "width_slope": [s.as_dict() for s in self.width_slopes],
                            "alpha_grows_with_k": [{**dict(zip(CURVE, key)), **g.as_dict(),
                                                    "controls": self.controls[key].as_dict()
                                                    if key in self.controls else None}
                                                   for key, g in self.growth.items()]})

    def report(self) -> str:
        return render(self)

    def write(self) -> list[Path]:
        return write_study(self.dir, self.points, self.fits_json(),
                           {name: self.figure(name) for name in self.figure_names}, self.report())


def sample_study(dir: Path, df: pd.DataFrame, cfg: Config, runs: pd.DataFrame, reps: int = REPS) -> SampleStudy:
    points = tc_points(df, reps)
    alphas = slopes(df, "n", cfg.train.eval_every, reps)
    stars = pd.concat([min_width(latest_budget(part), cfg.search.success_threshold).assign(k=k)
                       for k, part in df.groupby("k")], ignore_index=True)
    growth = growth_by_curve(alphas)
    controls = {}
    for key in growth:
        mine = [a for a in alphas if tuple(a.at[f] for f in CURVE) == key]
        if (result := control(mine, rows_at(df, dict(zip(CURVE, key))), cfg.train.eval_every)) is not None:
            controls[key] = result
    return SampleStudy(dir=dir, config=cfg, members=df, runs=runs, points=points, alphas=alphas,
                       width_slopes=slopes(df, "width", cfg.train.eval_every, reps), growth=growth,
                       controls=controls, stars=stars, reps=reps)


def _setup(s: SampleStudy) -> str:
    cfg, last = s.config, s.runs.iloc[-1]
    task, train = cfg.task, cfg.train
    data = (f"online: a fresh batch of {train.batch_size} every step" if task.data == "online" else
            f"fixed: mini-batches of {train.batch_size} from {task.samples:,} training samples")
    return md_table(["setting", "value"], [
        ["task", f"{task.kind}, n = {', '.join(map(str, task.ns))}"
         + (f", k = {', '.join(map(str, task.ks))}" if task.ks else " (every bit)") + f", inputs {task.encoding}"],
        ["data", f"{data}; success = every one of {task.eval_samples:,} fresh samples right"],
        ["model", f"depths {list(cfg.model.depths)}, widths {list(cfg.model.widths)}, {cfg.model.activation}, "
                  f"init {' or '.join(cfg.model.inits)}"],
        ["training", f"{train.optimizer}, lrs {list(train.lrs)}, weight decay {train.weight_decay:g}, loss "
                     f"{train.loss}, cap {train.steps:,} steps, evaluated every {train.eval_every}"],
        ["seeds", f"{cfg.search.seeds} per point"],
        ["members trained", f"{len(s.members)} ({int(s.members['solved'].sum())} solved within the cap)"],
        ["provenance", f"jax {last['jax_version']}, {last['backend']} ({last['device_kind']} x{last['device_count']}),"
                       f" {s.runs['started_at'].iloc[0]} .. {run_end(last['ended_at'])}"],
    ])


def _growth_lines(s: SampleStudy) -> list[str]:
    lines = []
    recipes = {f for f in ("init", "lr") if s.points[f].nunique() > 1}
    for key, g in s.growth.items():
        at = dict(zip(CURVE, key))
        where = f"depth {at['depth']}, width {at['width']}" + "".join(
            f", {f} {at[f]:g}" if f == "lr" else f", {f} {at[f]}" for f in ("init", "lr") if f in recipes)
        steps = "; ".join(f"α({st['k_to']}) − α({st['k_from']}) = {st['difference']:.2f} "
                          f"[{st['lo']:.2f}, {st['hi']:.2f}]: {st['call']}" for st in g.steps)
        c = s.controls.get(key)
        verdict = ("**holds**" if g.call == GROWS else "**is refuted**" if g.call == "does not grow"
                   else "**is not shown**")
        if c is not None and not c.passes and g.call == GROWS:
            verdict = "is **not reported** (the test's controls failed)"
        checked = ("" if c is None else f" Controls: on {c.simulations} synthetic runs of this design (seed spread "
                   f"σ = {c.sigma:.2f} in log t_c) the test said \"grows\" in {c.false_positive:.0%} with α equal "
                   f"across k (at most {MAX_FALSE_POSITIVES:.0%} allowed) and in {c.power:.0%} at the measured α.")
        left = (f" No α at k = {', '.join(map(str, g.unfitted))} (too few medians reached): it is not in the test."
                if g.unfitted else "")
        lines.append(f"- {where}: \"α grows with k\" {verdict} ({steps}).{checked}{left}")
    if lines:
        lines.append("A step grows when the 95 % seed-bootstrap interval of α(k') − α(k) lies above 0; the claim "
                     "holds when every step between consecutive k grows.")
    return lines or ["- Not tested: it needs fitted exponents at two or more k."]


def _spreads(points: pd.DataFrame, at: dict) -> tuple[float, float]:
    """The seeds' q75 / q25 of t_c at the narrowest and the widest width of one width curve (inf: q75 censored)."""
    rows = rows_at(points, at).sort_values("width")
    return tuple(float(r["tc_q75"] / r["tc_q25"]) for _, r in rows.iloc[[0, -1]].iterrows())


def _capped_note(alphas: list[Slope]) -> str:
    capped = [a for a in alphas if a.capped]
    if not capped:
        return ""
    worst = max(capped, key=lambda a: a.capped)
    return (f"\n\nIn {len(capped)} fit(s) some bootstrap replicates did not reach a fitted median within the cap "
            f"(at most {worst.capped} of {len(worst.draws)}, k = {worst.at['k']}, width {worst.at['width']}); they "
            "take the cap there, so those intervals' upper ends are lower bounds.")


def render(s: SampleStudy) -> str:
    cfg, eval_every = s.config, s.config.train.eval_every
    p = s.points
    alpha_rows = [[a.at["k"], a.at["depth"], a.at["width"], a.at["init"], f"{a.at['lr']:g}",
                   "-" if not np.isfinite(a.slope) else f"{a.slope:.2f}", _interval(a.lo, a.hi),
                   ", ".join(map(str, a.x)) or "-", ", ".join(map(str, a.left_out)) or "-",
                   ", ".join(map(str, a.first_eval)) or "-"] for a in s.alphas]
    point_rows = [[r.k, r.n, r.depth, r.width, r.init, f"{r.lr:g}", f"{r.solved}/{r.seeds}", _steps(r.tc_median),
                   _interval(r.tc_lo, r.tc_hi, r.cap), f"{_steps(r.tc_q25)} .. {_steps(r.tc_q75)}"]
                  for r in p.itertuples()]
    spreads = [_spreads(p, w.at) for w in s.width_slopes]
    ratio = lambda v: f"{v:.2f}" if np.isfinite(v) else "-"
    width_rows = [[w.at["k"], w.at["n"], f"{w.slope:.2f}" if np.isfinite(w.slope) else "-", _interval(w.lo, w.hi),
                   ", ".join(map(str, w.x)) or "-", ratio(narrow), ratio(wide)]
                  for w, (narrow, wide) in zip(s.width_slopes, spreads)]
    narrower = sum(wide < narrow for narrow, wide in spreads)
    ties = sum(wide == narrow for narrow, wide in spreads)
    subsets = [[r.k, r.n, "; ".join(r.subset)] for r in s.subsets().itertuples()]
    star_rows = [[r.k, r.n, r.depth, "> " + str(int(r.bound)) if r.censored else int(r.w_star)]
                 for r in s.stars.sort_values(["k", "n", "depth"]).itertuples()]
    warnings = store_warnings(cfg, s.members, s.runs)
    return "\n\n".join([
        f"# {cfg.experiment.name}: how long SGD takes to learn a parity from samples",
        cfg.experiment.description.strip() or "(no description)",
        *(["## Before you read\n\n" + "\n".join(f"- {w}" for w in warnings)] if warnings else []),
        "## Setup\n\n" + _setup(s),
        "## α: t_c ∝ n^α\n\n"
        f"t_c is a member's first evaluation step (every {eval_every}) at which every evaluation sample is right. "
        "α is the least-squares slope of log median t_c on log n; its interval resamples seeds within every point "
        "(95 % percentile). Medians not reached within the cap (lower bounds) and medians at the first evaluation "
        "(upper bounds) are listed, not fitted.\n\n"
        + md_table(["k", "depth", "width", "init", "lr", "α", "95 % interval", "n fitted", "not reached",
                    "at the first evaluation"], alpha_rows) + _capped_note(s.alphas)
        + "\n\n" + "\n".join(_growth_lines(s)) + "\n\n![t_c against n](figures/tc_vs_n.png)",
        *(["## Width\n\nThe slope of log median t_c on log width at fixed (n, k): −1 would be a proportional "
           "speed-up, 0 none. The spread is the seeds' q75 / q25 of t_c at the narrowest and the widest width.\n\n"
           + md_table(["k", "n", "slope", "95 % interval", "widths fitted", "spread, narrowest",
                       "spread, widest"], width_rows)
           + f"\n\nThe spread is narrower at the widest width in {narrower} of {len(spreads)} curves ({ties} equal)."
           + "\n\n![t_c against width](figures/tc_vs_width.png)"] if width_rows else []),
        "## t_c per point\n\n" + md_table(["k", "n", "depth", "width", "init", "lr", "solved", "median t_c",
                                           "95 % interval", "quartiles"], point_rows),
        "## w*: the narrowest width at which half the seeds learn within the cap\n\n"
        + md_table(["k", "n", "depth", "w*"], star_rows),
        "## Hidden bits\n\nDrawn from the run seed, n and k (scaling.engine.tasks.hidden_subset), stored with every "
        "member.\n\n" + md_table(["k", "n", "bits"], subsets),
    ]) + "\n"
