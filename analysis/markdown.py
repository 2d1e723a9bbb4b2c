"""REPORT.md: the definitions, the tables, the fits and a verdict on the lecture's claim, as Markdown text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.compare import FitComparison
from scaling.config import Config

CLAIM = ("one hidden layer needs about 2^(n-1) hidden units for n-bit parity, while a network of depth about "
         "log2 n needs only O(n)")


def num(v, digits: int = 3) -> str:
    """A number for the report; never 'nan' (a missing value is shown as n/a)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a" if v is None or math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, np.integer)) or float(v).is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.{digits}g}"


def _ended(timestamp) -> str:
    """A run's end time, or "unfinished" where it never ended."""
    return timestamp if isinstance(timestamp, str) and timestamp else "unfinished"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _one_seed_decides(row, star: str) -> bool:
    """Whether one more or one fewer solved seed per tested value would move the star (NaN: censored)."""
    if "one_seed_lo" not in row:
        return False
    same = lambda v: (pd.isna(v) and row["censored"]) or (pd.notna(v) and v == row[star])
    return not (same(row["one_seed_lo"]) and same(row["one_seed_hi"]))


def _one_seed(row, star: str) -> str:
    """'; one seed: LO to HI' where one seed decides the cell, else nothing."""
    if not _one_seed_decides(row, star):
        return ""
    show = lambda v: f"> {row['bound']}" if pd.isna(v) else num(v)
    return f"; one seed: {show(row['one_seed_lo'])} to {show(row['one_seed_hi'])}"


def one_seed_cells(stars: pd.DataFrame, star: str) -> int:
    """How many cells one seed decides."""
    return sum(_one_seed_decides(row, star) for _, row in stars.iterrows())


def _star_cell(row, star: str) -> str:
    if row["censored"]:
        return f"> {row['bound']}" + _one_seed(row, star)
    return f"{num(row[star])} ({row['rate']:.2f} [{row['rate_lo']:.2f}, {row['rate_hi']:.2f}])" + _one_seed(row, star)


def _width_cell(row) -> str:
    text = _star_cell(row, "w_star")
    if "w50" in row and pd.notna(row["w50"]):
        text += f"; W50 {num(row['w50'])} [{num(row['w50_lo'])}, {num(row['w50_hi'])}]"
    if "budget_converged" in row and row["budget_converged"] is False and not row["censored"]:
        text += "; *budget-limited*"
    return text


def _edge_note(stars: pd.DataFrame, cfg: Config) -> str:
    at_edge = stars[stars["lr_at_edge"].fillna(False).astype(bool)] if "lr_at_edge" in stars else stars.iloc[:0]
    rule = (f"The search extends the learning rates beyond the grid's edge at transition widths, up to "
            f"{cfg.lr_extend} factor(s) of 3 (search.lr_extend).")
    if at_edge.empty:
        return rule + " No cell's best learning rate at w* stayed at the edge of the rates tested there."
    cells = ", ".join(f"(n = {int(r.n)}, depth {int(r.depth)}, lr {num(r.best_lr)})" for r in at_edge.itertuples())
    return rule + f" Cells whose best learning rate at w* stayed at an edge of the rates tested there: {cells}."


def _budget_cell(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "n/a"
    rows = rows.sort_values("fraction")
    values = [f"> {b}" if c else num(w) for w, c, b in zip(rows["w_star"], rows["censored"], rows["bound"])]
    converged = values[-2] == values[-1] if len(values) >= 2 else True
    return " → ".join(values) + (" ✓" if converged else "")


def _fit_section(name: str, comp: FitComparison, centring: dict | None = None) -> str:
    rows = []
    for _, r in comp.table.iterrows():
        fit = comp.fits[r["family"]]
        params = ", ".join(f"{k} = {num(v)} [{num(fit.ci[k][0])}, {num(fit.ci[k][1])}]" for k, v in fit.params.items())
        boot = (comp.boot_ci or {}).get(r["family"], {})
        boot_s = ", ".join(f"{k} [{num(lo)}, {num(hi)}]" for k, (lo, hi) in boot.items()) or "n/a"
        win = (comp.win_rate or {}).get(r["family"])
        rows.append([r["family"], num(r["aicc"]), num(r["delta_aicc"]), f"{r['weight']:.2f}", params, boot_s,
                     num(r["extrap_error"]), "n/a" if win is None else f"{win:.2f}"])
    text = f"### {name}\n\n" + _table(
        ["family", fit.criterion, "Δ", "Akaike weight", "params [95 % CI]", "bootstrap 95 % CI",
         "extrap. error", "bootstrap win rate"], rows)
    notes = list(comp.notes)
    if centring:
        notes.append(f"bootstrap centring {centring['centring']:.2f} (0.5 = centred): {centring['p_above']:.0%} of "
                     f"replicates above their point, {centring['p_below']:.0%} below, the rest equal")
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text


def _claim_verdict(group: str, judged: dict, comp: FitComparison | None, stars: pd.DataFrame, cfg: Config) -> str:
    value = group.split("=", 1)[1]
    label = ("shallow (depth 1)" if value == "1" else f"depth ⌈log2 n⌉ + {value[5:]}" if value.startswith("log2+")
             else f"depth {value}")
    if comp is None:
        return f"- **{label}**: not fitted ({judged['not_fitted']})."
    text = (f"- **{label}**: growth of w* is **{judged['growth']}**. By AICc the best family is {judged['best']} "
            f"(Akaike weight {judged['weight']:.2f}")
    win = judged["bootstrap_win_rate"]
    text += f", bootstrap win rate {win:.0%})." if win is not None else ", no bootstrap)."
    text += " This is robust." if judged["robust"] else (" This is not robust (robust needs both an Akaike weight "
                                                         "and a bootstrap win rate of at least 0.8).")
    if judged["exponential_base"] is not None:
        b, (lo, hi) = judged["exponential_base"], judged["exponential_base_ci95"]
        relation = "slower than" if hi < 2 else "faster than" if lo > 2 else "consistent with"
        text += (f" The exponential fit's base is b = {num(b)} [{num(lo)}, {num(hi)}]: growth {relation} the "
                 f"claim's 2^(n-1) (base 2).")
    ok = stars[(stars["depth"] == stars["n"].map(lambda n: cfg.group_depth(group, n))) & ~stars["censored"]]
    if len(ok):
        last = ok.sort_values("n").iloc[-1]
        n = int(last["n"])
        text += (f" At n = {n} (depth {int(last['depth'])}) training needed w* = {num(last['w_star'])} units per "
                 f"layer, against 2^(n-1) = "
                 f"{2 ** (n - 1)} for the DNF circuit and n = {n} for the one-layer construction.")
    text += (f" Of {judged['cells']} cells, {judged['censored_cells']} were censored and "
             f"{judged['budget_limited_cells']} budget-limited; both enter the fits as bounds.")
    return text


def _deep_half(verdicts: dict) -> str:
    last = verdicts["at_largest_n"]
    if last is None:
        return "The deep half of the claim cannot be judged: no n has an uncensored w* at every depth."
    row = verdicts["deep_vs_shallow"][-1]
    units = " / ".join(str(u) for u in row["units"].values())
    params = " / ".join(f"{p}" for p in row["parameters"].values())
    depths = " / ".join(str(d) for d in row["units"])
    fewer = last["deep_uses_fewer_units"]
    return (f"**The deep half of the claim** (depth ≈ log2 n needs only O(n) units): at n = {last['n']}, the "
            f"networks that training found use {units} hidden units ({params} parameters) at depths {depths}. "
            + ("Depth reduced the total units here." if fewer else
               "Depth did **not** reduce the total units that gradient training needed here, although the "
               "constructions show that deep networks can do with fewer (sawtooth: 2⌈log2 n⌉)."))


def verdict(cfg: Config, stars: pd.DataFrame, fits: dict[str, FitComparison], verdicts: dict) -> str:
    fixed = [d for d in cfg.depths if d > 0]  # depth 0 has no width to compare
    groups = [f"depth={d}" for d in dict.fromkeys([min(fixed), max(fixed)])] if fixed else []
    groups += [g for g in cfg.depth_groups if "log2" in g]
    lines = [f"The claim under test: {CLAIM}.", ""]
    for group in groups:
        lines.append(_claim_verdict(group, verdicts["depths"][group.split("=", 1)[1]],
                                    fits.get(f"w_star/{group}"), stars, cfg))
    shallow = groups[0].split("=", 1)[1] if groups else None
    judged = verdicts["depths"].get(shallow) or {"growth": "undecided", "exponential_base_ci95": None}
    lines.append("")
    summary = "**What this says about the claim's first half**: "
    if judged["growth"] == "exponential":
        summary += "over this range of n, the width that gradient training needs at one hidden layer grows exponentially."
    elif judged["growth"] == "polynomial":
        summary += "over this range of n, the width that gradient training needs at one hidden layer grows polynomially."
    else:
        summary += ("over this range of n, the data do not single out a growth family for the width that gradient "
                    "training needs at one hidden layer (the verdict is undecided).")
    base_ci = judged["exponential_base_ci95"]
    if base_ci is not None and base_ci[1] < 2:
        summary += " Either way it grows far more slowly than 2^(n-1): the exponential base is significantly below 2."
    summary += (" The claim's 2^(n-1) is exact for AND/OR (DNF) circuits, not for ReLU networks: n ReLU units express "
                "parity at depth 1 (one_layer), and O(log n) layers of width 2 in depth (sawtooth). What is measured "
                "here is what gradient training finds within the budget, bounded by the range of n and by censoring.")
    lines += [summary, "", _deep_half(verdicts)]
    return "\n".join(lines)


DEFINITIONS = """- **Solved**: every one of the 2^n rows is classified correctly (sign of the logit) at some step within
  the budget. With full batches the step is exact (the training forward pass sees every row); with mini-batches
  it is read at evaluations every `eval_every` steps. A run that hits the budget is *censored*, not impossible.
- **Diverged**: the full-table loss is non-finite or above 10^4 (the weights blew up); the member is frozen.
- **Success rate** p(n, depth, width) = solved seeds / seeds at a learning rate chosen on the other half of the
  seeds (cross-fitted, both ways), with a Wilson 95 % interval.
- **w\\*(n, depth)**: the smallest width whose success rate reaches the threshold and stays there for every
  larger width tested. If none up to the bound does, the cell is censored (> bound): it enters the fits as a
  lower bound (a censored likelihood), and the fit notes say so.
- **Budget-converged**: w\\* re-read at half the step budget (from the stored solve steps) equals w\\* at the whole
  budget. A cell that is not is *budget-limited*: more steps could lower its w\\*, so it enters the fits as an
  upper bound.
- **W50**: the width at which a logistic fit of success against log2(width) (binomial likelihood, the cell's
  learning rate with the most solves, half a pseudo-success and half a pseudo-failure per width) crosses the
  threshold, with a 95 % Wald interval on log2 W50. Unlike w\\*, one noisy width does not censor it. W50 curves
  over n are fitted by least squares weighted with each point's interval.
- **L\\*(n, width)**: the smallest depth that reaches the threshold (and stays) at a fixed width.
- **One seed**: w\\* (or L\\*) re-read as if every tested width (depth) had solved one more, and one fewer,
  held-out seed. Where that range is more than w\\* itself, one seed decides the cell, and a change of float
  rounding alone (another bucket shape, kernel or machine) can move it within the range.
- **Units** = depth × width (hidden units in total).
- **Fits**: exponential a·b^n, power a·n^k, linear a + b·n, logarithmic a + b·log2 n, all fitted to log(y), ranked
  by AICc with Akaike weights, on at least 5 exact points; where bounds exist, by maximum likelihood with the
  bounds as censored terms (Tobit), CIs from the inverse Hessian. Otherwise parameter CIs: t intervals from the
  Jacobian, and
  bootstrap percentile intervals (whole seeds resampled jointly across widths and learning rates per (n, depth),
  since a seed's runs share their initial weights; w\\* recomputed). Centring: the share of replicates above
  their point estimate. Extrapolation error: mean |log(prediction / measurement)| at the two largest n when
  fitted on the rest. A family is called **robustly** only with Akaike weight >= 0.8 and bootstrap win rate
  >= 0.8; growth is "exponential", "polynomial" (power, linear or logarithmic) or "undecided"."""

KNOWN = """- One hidden layer of threshold or ReLU units: n units suffice (Rumelhart, Hinton & Williams 1986).
- Sigmoid units, one hidden layer: about ⌈(n+1)/2⌉ suffice (Sontag; Setiono 1997).
- Depth: Telgarsky 2016 ("Benefits of depth"): k composed triangle maps give 2^k pieces, so O(log n) layers of
  width 2 compute parity after a sum unit (the sawtooth construction).
- AND/OR circuits: depth-2 DNF needs 2^(n-1) terms; Håstad's switching lemma gives exp(Ω(n^(1/(d-1)))) at depth d.
- Training: Tesauro & Janssens 1988 found training time growing about 4^n for N-2N-1 networks (n = 2..8)."""


def render_report(cfg: Config, df: pd.DataFrame, runs: pd.DataFrame, summary: pd.DataFrame,
                  fits: dict[str, FitComparison], skipped: dict[str, str], theory: pd.DataFrame,
                  figure_names: list[str], warnings: list[str], by_budget: pd.DataFrame, verdicts: dict,
                  centring: dict[str, dict]) -> str:
    stars = summary[summary["kind"] == "min_width"]
    last = runs.iloc[-1]
    commit = last["git_commit"] if isinstance(last["git_commit"], str) and last["git_commit"] else "unknown"
    source = (f"Generated from the store's {len(runs)} run(s) (run id {int(runs['run_id'].iloc[0])}"
              f"{'' if len(runs) == 1 else f' .. {int(last.run_id)}'}, config hash {last['config_hash']}, "
              f"latest started {last['started_at']}, commit {commit[:10]}).")
    setup = _table(["setting", "value"], [
        ["task", f"{cfg.task}, n = {', '.join(map(str, cfg.ns))}, encoding {cfg.encoding}"],
        ["model", f"depths {list(cfg.depths)}"
                  + "".join(f", ⌈log2 n⌉ + {k}" for k in cfg.depth_log2) + ", widths "
                  + (f"{cfg.width_per_n}n" if cfg.width_per_n else
                  f"{cfg.width_search} up to {cfg.max_width}") + ", "
                  f"{cfg.activation}, init {cfg.init}"],
        ["training", f"{cfg.optimizer}, lrs {list(cfg.lrs)}, loss {cfg.loss}, budget {cfg.steps} steps"
                     + (f" (budget-limited cells rerun at 2x up to {cfg.max_steps})" if cfg.max_steps > cfg.steps
                        else "") + ", "
                     f"evaluated every {cfg.eval_every}"],
        ["search", f"{cfg.seeds} seeds per point, threshold {cfg.success_threshold}, "
                   f"L* at {', '.join(cfg.min_depth_groups) or 'no width'} up to depth "
                   + (str(cfg.min_depth_max) if cfg.min_depth_max is not None else
                      "⌈log2 n⌉ + 2" if cfg.min_depth_times_n else "the largest depth")],
        ["members trained", f"{len(df)} ({int(df['solved'].sum())} solved, {int(df['diverged'].sum())} diverged)"],
        ["provenance", f"jax {last['jax_version']}, flax {last['flax_version']}, optax {last['optax_version']}, "
                       f"{last['backend']} ({last['device_kind']} x{last['device_count']}), commit "
                       f"{commit[:10]}, {runs['started_at'].iloc[0]} .. {_ended(last['ended_at'])}"],
    ])
    depths = sorted(stars["depth"].unique())
    w_rows = [[n] + [_width_cell(stars[(stars["n"] == n) & (stars["depth"] == d)].iloc[0])
                     if len(stars[(stars["n"] == n) & (stars["depth"] == d)]) else "n/a" for d in depths]
              for n in sorted(stars["n"].unique())]
    b_rows = [[n] + [_budget_cell(by_budget[(by_budget["n"] == n) & (by_budget["depth"] == d)]) for d in depths]
              for n in sorted(stars["n"].unique())]
    limited = sum(v["budget_limited_cells"] for v in verdicts["depths"].values())
    kinds = list(dict.fromkeys(theory["kind"])) if len(theory) else []
    u_rows = []
    for n in sorted(stars["n"].unique()):
        row = [n]
        for d in depths:
            cell = stars[(stars["n"] == n) & (stars["depth"] == d)]
            row.append("n/a" if cell.empty else (f"> {d * cell['bound'].iloc[0]}" if cell["censored"].iloc[0]
                                                  else num(cell["units"].iloc[0])))
        for k in kinds:
            t = theory[(theory["kind"] == k) & (theory["n"] == n)]
            row.append(num(t["units"].iloc[0]) if len(t) else "n/a")
        u_rows.append(row)
    depth_rows = summary[summary["kind"] == "min_depth"]
    d_groups = list(dict.fromkeys(depth_rows["group"])) if len(depth_rows) else []
    l_rows = []
    for n in (sorted(depth_rows["n"].unique()) if d_groups else []):
        cells = [depth_rows[(depth_rows["n"] == n) & (depth_rows["group"] == g)] for g in d_groups]
        l_rows.append([n] + [f"{_star_cell(c.iloc[0], 'L_star')} at width {int(c['width'].iloc[0])}" if len(c)
                             else "n/a" for c in cells])
    steps_text = []
    for name, comp in fits.items():
        if name.startswith("steps/") and "exponential" in comp.fits:
            b = comp.fits["exponential"].params["b"]
            lo, hi = comp.fits["exponential"].ci["b"]
            versus = "below" if hi < 4 else "above" if lo > 4 else "consistent with"
            steps_text.append(f"- {name}: median steps to solve grow as b^n with b = {num(b)} [{num(lo)}, {num(hi)}], "
                              f"{versus} the base of about 4 that Tesauro & Janssens (1988) found with hand-tuned "
                              f"gradient descent (best family here: {comp.best}).")
    steps_text += [f"- {name}: not fitted ({why})" for name, why in skipped.items() if name.startswith("steps/")]
    parts = [
        f"# {cfg.name}: hidden units that gradient training needs for n-bit parity",
        *[f"> **Warning:** {w}" for w in warnings],
        source,
        cfg.description.strip(),
        "## Verdict", verdict(cfg, stars, fits, verdicts),
        "## Setup", setup,
        "## Definitions", DEFINITIONS,
        "## Minimum width w* per depth",
        "Each cell: w* (its cross-fitted success rate [Wilson 95 %]); `> B`: censored at bound B; "
        "then W50 [95 %] from the logistic fit (`> B` / `< B`: beyond the widths tested); *budget-limited* where w* "
        "at half the budget differs; *one seed: A to B* where one more or one fewer solved seed per width would move "
        f"w* there ({one_seed_cells(stars, 'w_star')} of {len(stars)} cells).",
        _table(["n"] + [f"depth {d}" for d in depths], w_rows),
        _edge_note(stars, cfg),
        "## w* against the step budget",
        f"w* re-read from the stored solve steps at 1/8, 1/4, 1/2 and all of each cell's budget ({cfg.steps} steps); "
        f"✓: budget-converged (w* at half the budget equals w* at the whole budget). {limited} of {len(stars)} "
        f"cells are budget-limited; they enter the fits only as bounds.",
        _table(["n"] + [f"depth {d}" for d in depths], b_rows),
        "## Total hidden units against the constructions",
        "Trained: depth × w*. Constructions: hidden units really used by the hand-built networks "
        "(`scaling construct KIND --n N`), computed by code.",
        _table(["n"] + [f"trained depth {d}" for d in depths] + kinds, u_rows),
    ]
    if l_rows:
        parts += ["## Minimum depth L* at fixed width",
                  f"Searched over depths 1..⌈log2 n⌉ + 2 where the width grows with n (the XOR tree and the "
                  f"sawtooth have depth ⌈log2 n⌉)." if cfg.min_depth_times_n else "",
                  _table(["n"] + [g.replace("=", " ") for g in d_groups], l_rows)]
    parts += ["## Steps to solve",
              "Median steps to solve at the first tested width >= 2n of each cell (Tesauro & Janssens' N-2N-1, or the "
              "next width tested) and its best learning rate. Steps are exact with full batches, read every "
              f"{cfg.eval_every} steps with mini-batches.",
              "\n".join(steps_text) or "No steps-to-solve curve had 5 uncensored points."]
    parts += ["## Fits"] + [_fit_section(name, comp, centring.get(name)) for name, comp in fits.items()]
    if skipped:
        parts.append("Not fitted:\n" + "\n".join(f"- {name}: {why}" for name, why in skipped.items()))
    parts += ["## Figures"] + [f"![{name}](figures/{name}.png)  \n[{name}.pdf](figures/{name}.pdf)"
                               for name in figure_names]
    parts += ["## What is known", KNOWN]
    return "\n\n".join(parts) + "\n"
