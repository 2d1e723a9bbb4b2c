"""The figures of a run that learns parities from samples, in the style of Barak et al. (2022): t_c against n
on log-log axes, one curve per k with its fitted exponent, and t_c against width at fixed (n, k).

Frames: `members` (the store's rows), `points` (analysis.calls.sample_scaling.tc_points) and the slopes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, ScalarFormatter

from analysis.calls.sample_scaling import CURVE, Slope, rows_at, solve_steps
from analysis.reporting.style import DOUBLE_COLUMN, SINGLE_COLUMN, colour, paper


def _curves(points: pd.DataFrame, fixed: list[str]) -> list[tuple[dict, pd.DataFrame]]:
    return [(dict(zip(fixed, key)), part) for key, part in points.groupby(fixed, sort=True)]


def _label(at: dict, varying: set[str]) -> str:
    """The curve's fixed fields that vary between curves, in words: "k = 3, width 100"."""
    words = {"k": lambda v: f"k = {v}", "n": lambda v: f"n = {v}", "width": lambda v: f"width {v}",
             "depth": lambda v: f"depth {v}", "init": lambda v: f"init {v}", "lr": lambda v: f"lr {v:g}"}
    return ", ".join(words[f](at[f]) for f in ("k", "n", "width", "depth", "init", "lr") if f in at and f in varying)


def _seeds(ax, members: pd.DataFrame, at: dict, along: str, c: str) -> None:
    """Each seed's t_c as a faint dot (slightly spread sideways), censored ones at the cap as faint triangles."""
    rows = rows_at(members, at)
    t = solve_steps(rows)
    rng = np.random.default_rng(0)
    x = rows[along].to_numpy(float) * np.exp(rng.uniform(-0.04, 0.04, len(rows)))
    ax.plot(x[np.isfinite(t)], t[np.isfinite(t)], ".", color=c, alpha=0.25, ms=2.5, mew=0)
    ax.plot(x[~np.isfinite(t)], rows["steps_budget"].to_numpy(float)[~np.isfinite(t)], "^", color=c, alpha=0.25,
            ms=2.5, mew=0)


def _medians(ax, part: pd.DataFrame, along: str, c: str, label: str) -> None:
    reached = part[np.isfinite(part["tc_median"])]
    hi = reached["tc_hi"].where(np.isfinite(reached["tc_hi"]), reached["cap"])
    err = np.vstack([reached["tc_median"] - reached["tc_lo"], hi - reached["tc_median"]]).clip(0)
    ax.errorbar(reached[along], reached["tc_median"], yerr=err, fmt="o", color=c, capsize=1.5, label=label)
    missing = part[~np.isfinite(part["tc_median"])]
    ax.plot(missing[along], missing["cap"], "^", mfc="none", color=c)


def _log_axes(ax, xs) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted(set(xs)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def tc_vs_n(members: pd.DataFrame, points: pd.DataFrame, alphas: list[Slope], eval_every: int = 0) -> Figure:
    """Median t_c (seed-bootstrap 95 % bars) against n on log-log axes, one curve per k, one panel per width
    (and per depth or learning rate where those vary), with the fitted t_c ∝ n^alpha over the medians reached
    (drawn + eval_every / 2: the fit places each t_c within its evaluation interval, the markers at its end)."""
    panels = _curves(points, CURVE)
    varying = {f for f in CURVE if points[f].nunique() > 1}
    with paper():
        fig = Figure(figsize=(SINGLE_COLUMN if len(panels) == 1 else DOUBLE_COLUMN, 3.8))
        axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
        for ax, (panel, rows) in zip(axes, panels):
            for i, (at, part) in enumerate(_curves(rows, ["k", *CURVE])):
                c = colour(i)
                _seeds(ax, members, at, "n", c)
                fit = next((a for a in alphas if a.at == at), None)
                label = f"k = {at['k']}"
                if fit is not None and np.isfinite(fit.slope):
                    label += f": α = {fit.slope:.2f} [{fit.lo:.2f}, {fit.hi:.2f}]"
                    grid = np.geomspace(min(fit.x), max(fit.x), 50)
                    ax.plot(grid, np.exp(fit.intercept) * grid**fit.slope + eval_every / 2, "-", color=c, lw=0.9)
                _medians(ax, part, "n", c, label)
                first = part[part["tc_median"] <= eval_every]
                ax.plot(first["n"], first["tc_median"], "v", mfc="none", color=c)
            _log_axes(ax, rows["n"])
            ax.set_xlabel("input bits $n$")
            ax.set_title(_label(panel, varying) or "t_c against n")
            ax.legend(loc="upper left")
        axes[0].set_ylabel("steps to learn the parity, $t_c$")
        fig.suptitle("SGD's time to learn a $k$-sparse parity: median over seeds, 95 % bootstrap bars", fontsize=8)
        handles = [Line2D([], [], color="0.2", marker="^", mfc="none", ls=""),
                   Line2D([], [], color="0.2", marker="v", mfc="none", ls=""),
                   Line2D([], [], color="0.2", marker=".", alpha=0.4, ls=""), Line2D([], [], color="0.2", ls="-")]
        fig.legend(handles, ["median not reached (at the cap)", "median at the first evaluation (not fitted)",
                             "one seed", "fit $t_c \\propto n^{\\alpha}$"], loc="upper center", ncol=2,
                   bbox_to_anchor=(0.5, 0.0))
    return fig


def tc_vs_width(members: pd.DataFrame, points: pd.DataFrame, width_slopes: list[Slope]) -> Figure:
    """At each (n, k) trained at two or more widths: the median t_c and the seeds' quartiles (shaded)
    against width, one panel per k; a proportional speed-up would fall as 1/width (the grey guide)."""
    across = ["k", "n", "depth", "init", "lr"]  # a width curve fixes all of POINT but width
    shown = points.groupby(across)["width"].transform("nunique") > 1
    points = points[shown]
    ks = sorted(points["k"].unique()) or [None]
    with paper():
        fig = Figure(figsize=(min(DOUBLE_COLUMN, SINGLE_COLUMN * len(ks)), 2.8))
        axes = np.atleast_1d(fig.subplots(1, len(ks), sharey=True))
        for ax, k in zip(axes, ks):
            mine = points[points["k"] == k] if k is not None else points
            varying = {f for f in ("n", "depth", "init", "lr") if mine[f].nunique() > 1} | {"n"}
            for i, (at, part) in enumerate(_curves(mine, across)):
                c = colour(i)
                part = part.sort_values("width")
                q75 = part["tc_q75"].where(np.isfinite(part["tc_q75"]), part["cap"])
                ax.fill_between(part["width"], part["tc_q25"], q75, color=c, alpha=0.15, lw=0)
                fit = next((s for s in width_slopes if s.at == at), None)
                label = _label(at, varying)
                if fit is not None and np.isfinite(fit.slope):
                    label += f": slope {fit.slope:.2f} [{fit.lo:.2f}, {fit.hi:.2f}]"
                _medians(ax, part, "width", c, label)
                first = part[np.isfinite(part["tc_median"])].head(1)
                if len(first) and at["n"] == mine["n"].max():  # one guide per panel, at the largest n
                    ax.plot(part["width"], first["tc_median"].iloc[0] * first["width"].iloc[0] / part["width"],
                            ":", color="0.5", lw=0.8)
            _log_axes(ax, mine["width"])
            ax.set_xlabel("width (hidden units)")
            ax.set_title(f"k = {k}" if k is not None else "no point has two widths")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1)
        axes[0].set_ylabel("$t_c$: median and quartiles")
        fig.suptitle("Width against time to learn (dotted: a proportional speed-up at the largest n)", fontsize=8,
                     y=1.03)
    return fig
