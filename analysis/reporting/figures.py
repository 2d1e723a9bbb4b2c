"""Paper figures. One function per figure: each takes frames and returns a matplotlib Figure.

Frames (built by analysis.reporting.report, or by hand for tests):
- points: curve, quantity, group, n, y, censored, lo, hi  (measured statistic with bootstrap 95 % interval;
  a censored y is the lower bound)
- fitted: curve, family, rank, n, y  (every fitted family evaluated on a grid; rank 1 = best by AICc)
- theory: kind, n, units  (scaling.engine.constructions.unit_counts)
- rates: n, depth, width, rate  (best-lr success rate per point)
- weights: curve, family, weight, boot_win_rate
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.reporting.style import (
    DOUBLE_COLUMN,
    SINGLE_COLUMN,
    THEORY_STYLE,
    colour,
    curve_label,
    family_label,
    group_label,
    paper,
)

THEORY_LABEL = {"dnf": "DNF $2^{n-1}$", "one_layer": "one layer ($n$)", "xor_tree": "XOR tree",
                "sawtooth": "sawtooth"}


def _measured(ax, points: pd.DataFrame, fitted: pd.DataFrame, label_of, family: str | None = None) -> None:
    """Markers with bootstrap error bars, open triangles for censored lower bounds, and fits: the best (solid)
    and the runner-up (dashed) by AICc, or, when `family` is named, that family's fit (dashed unless best)."""
    for i, (curve, pts) in enumerate(points.groupby("curve", sort=True)):
        c = colour(i)
        mine = fitted[fitted["curve"] == curve]
        lines = [mine[mine["rank"] == r] for r in (1, 2)] if family is None else [mine[mine["family"] == family]]
        lines = [line for line in lines if len(line)]
        names = ", ".join(family_label(line["family"].iloc[0]) for line in lines)
        label = label_of(pts.iloc[0]) + (f" (fit{'s' if len(lines) > 1 else ''}: {names})" if names else "")
        limited = pts["limited"] if "limited" in pts else pd.Series(False, index=pts.index)
        ok = pts[~pts["censored"] & ~limited]
        err = np.vstack([ok["y"] - ok["lo"].fillna(ok["y"]), ok["hi"].fillna(ok["y"]) - ok["y"]]).clip(0)
        ax.errorbar(ok["n"], ok["y"], yerr=err, fmt="o", color=c, capsize=1.5, label=label)
        cen = pts[pts["censored"]]
        if len(cen):
            ax.plot(cen["n"], cen["y"], "^", mfc="none", color=c)
        if limited.any():
            ax.plot(pts[limited]["n"], pts[limited]["y"], "v", mfc="none", color=c)
        for line in lines:
            best = int(line["rank"].iloc[0]) == 1
            ax.plot(line["n"], line["y"], "-" if best else "--", color=c, lw=1.0 if best else 0.7)


def _legend_below(ax, dashed: str = "best of the other class") -> None:
    """The legend under the axes, with what solid, dashed and open markers mean."""
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.2", ls="-"), Line2D([], [], color="0.2", ls="--"),
                Line2D([], [], color="0.2", marker="^", mfc="none", ls=""),
                Line2D([], [], color="0.2", marker="v", mfc="none", ls="")]
    labels += ["solid: best fit (AICc)", f"dashed: {dashed}", "censored (lower bound)",
               "budget-limited (not fitted)"]
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)


def _theory(ax, theory: pd.DataFrame, kinds) -> None:
    for kind in kinds:
        t = theory[theory["kind"] == kind].sort_values("n")
        if len(t):
            ax.plot(t["n"], t["units"], linestyle=THEORY_STYLE[kind], color="0.45", lw=0.9, label=THEORY_LABEL[kind])


def _finish(ax, xlabel: str, ylabel: str, log: bool = True) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log", base=2)
    ax.xaxis.get_major_locator().set_params(integer=True)


def units_vs_bits(points: pd.DataFrame, fitted: pd.DataFrame, theory: pd.DataFrame) -> Figure:
    """Measured W50 per depth group vs n, with fits and the hand-built theory lines: the lecture's claim tested."""
    with paper():
        fig = Figure(figsize=(SINGLE_COLUMN, 3.4))
        ax = fig.subplots()
        _measured(ax, points[points["quantity"] == "w50"], fitted, lambda p: group_label(p["group"]))
        _theory(ax, theory, ["dnf", "one_layer"])
        _finish(ax, "input bits $n$", "width at 50 % success, W50 (units per layer)")
        ax.set_title("Width gradient training needs for $n$-bit parity")
        _legend_below(ax)
    return fig


def total_units(points: pd.DataFrame, fitted: pd.DataFrame, theory: pd.DataFrame) -> Figure:
    """Shallow against deep in total hidden units at W50, with fits and every construction."""
    with paper():
        fig = Figure(figsize=(SINGLE_COLUMN, 3.4))
        ax = fig.subplots()
        _measured(ax, points[points["quantity"] == "units"], fitted, lambda p: group_label(p["group"]))
        _theory(ax, theory, list(THEORY_STYLE))
        _finish(ax, "input bits $n$", "total hidden units at W50")
        ax.set_title("Shallow vs deep: total hidden units")
        _legend_below(ax)
    return fig


def success_heatmaps(rates: pd.DataFrame, stars: pd.DataFrame) -> Figure:
    """P(success) at the best learning rate over (n, width), one panel per depth >= 1, with w* as a step line."""
    depths = sorted(d for d in rates["depth"].unique() if d > 0)  # depth 0 has no width axis
    with paper():
        fig = Figure(figsize=(DOUBLE_COLUMN, 2.2))
        axes = np.atleast_1d(fig.subplots(1, max(len(depths), 1), sharey=True))
        for ax, depth in zip(axes, depths):
            r = rates[rates["depth"] == depth]
            im = ax.scatter(r["n"], r["width"], c=r["rate"], cmap="viridis", vmin=0, vmax=1, marker="s", s=22)
            s = stars[(stars["depth"] == depth) & ~stars["censored"]].sort_values("n")
            ax.step(s["n"], s["w_star"], where="mid", color="#D55E00", lw=1.0, label="$w^*$")
            ax.set_yscale("log", base=2)
            ax.set_title(f"depth {depth}")
            ax.set_xlabel("input bits $n$")
            ax.xaxis.get_major_locator().set_params(integer=True)
        axes[0].set_ylabel("width (units per layer)")
        if not depths:  # only depth 0 (logistic regression): no width axis to draw
            axes[0].text(0.5, 0.5, "no hidden layer searched", ha="center", va="center", transform=axes[0].transAxes)
            return fig
        axes[0].legend(loc="upper left")
        fig.colorbar(im, ax=list(axes), label="P(solved), cross-fitted lr", fraction=0.03)
    return fig


def min_depth(points: pd.DataFrame, fitted: pd.DataFrame) -> Figure:
    """L*(n) at fixed widths, with the logarithmic fit (dashed where another family ranks first)."""
    with paper():
        fig = Figure(figsize=(SINGLE_COLUMN, 3.2))
        ax = fig.subplots()
        _measured(ax, points[points["quantity"] == "L_star"], fitted, lambda p: group_label(p["group"]),
                  "logarithmic")
        _finish(ax, "input bits $n$", "minimum depth $L^*$ (hidden layers)", log=False)
        ax.set_title("Depth gradient training needs at fixed width")
        _legend_below(ax, "the named family, where another ranks first")
    return fig


def steps_to_solve(points: pd.DataFrame, fitted: pd.DataFrame, bases: dict[str, float] | None = None) -> Figure:
    """Median steps to solve vs n at a generous width, with the exponential fit; `bases` labels its base per curve."""
    bases = bases or {}
    with paper():
        fig = Figure(figsize=(SINGLE_COLUMN, 3.2))
        ax = fig.subplots()
        label = lambda p: (group_label(p["group"])
                           + (f", base {bases[p['curve']]:.2f}" if p["curve"] in bases else ""))
        _measured(ax, points[points["quantity"] == "steps"], fitted, label, "exponential")
        _finish(ax, "input bits $n$", "median steps to solve")
        ax.set_title("Training time (Tesauro & Janssens 1988: ~$4^n$)")
        _legend_below(ax, "the named family, where another ranks first")
    return fig


def fit_comparison(weights: pd.DataFrame) -> Figure:
    """Akaike weight (bars) and bootstrap win rate (dots) of each family, per curve."""
    curves = list(dict.fromkeys(weights["curve"]))
    families = list(dict.fromkeys(weights["family"]))
    with paper():
        fig = Figure(figsize=(DOUBLE_COLUMN, 2.4))
        ax = fig.subplots()
        bar = 0.8 / max(len(families), 1)
        for j, fam in enumerate(families):
            w = weights[weights["family"] == fam].set_index("curve").reindex(curves)
            xs = np.arange(len(curves)) + (j - (len(families) - 1) / 2) * bar
            ax.bar(xs, w["weight"].fillna(0), width=bar, color=colour(j), label=family_label(fam))
            if "boot_win_rate" in w and w["boot_win_rate"].notna().any():
                ax.plot(xs, w["boot_win_rate"], "o", color="black", ms=2.5,
                        label="bootstrap win rate" if j == 0 else None)
        ax.set_xticks(np.arange(len(curves)), [curve_label(c) for c in curves], rotation=30, ha="right")
        ax.set_ylabel("Akaike weight")
        ax.set_ylim(0, 1.02)
        ax.set_title("Which curve family describes each measurement")
        if families:  # a sweep too small for any fit has nothing to label
            ax.legend(ncol=len(families) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    return fig


def w_star_vs_budget(by_budget: pd.DataFrame) -> Figure:
    """w* re-read at fractions of the step budget, one panel per depth and one line per n: a cell whose line
    still falls between half and the whole budget is budget-limited."""
    depths = sorted(d for d in by_budget["depth"].unique() if d > 0)
    with paper():
        fig = Figure(figsize=(DOUBLE_COLUMN, 2.4))
        axes = np.atleast_1d(fig.subplots(1, max(len(depths), 1), sharey=True))
        for ax, depth in zip(axes, depths):
            rows = by_budget[by_budget["depth"] == depth]
            for i, (n, line) in enumerate(rows.groupby("n")):
                line = line.sort_values("budget")
                ok = line[~line["censored"]]
                ax.plot(ok["budget"], ok["w_star"], "o-", color=colour(i), ms=2.5, label=f"n = {n}")
                cen = line[line["censored"]]
                ax.plot(cen["budget"], cen["bound"], "^", mfc="none", color=colour(i))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_title(f"depth {depth}")
            ax.set_xlabel("step budget")
        axes[0].set_ylabel("$w^*$ at that budget")
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig
