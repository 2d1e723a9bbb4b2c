"""REPORT.md as Markdown text: this module assembles the document (its sections, tables and fits);
analysis.reporting.answer writes the verdict's prose in it (the answer, each group's call, the claims, the
power analysis), which the command line's `plan --power` prints too."""

from __future__ import annotations

import pandas as pd

from analysis.calls.compare import FitComparison
from analysis.calls.laws import LAWS
from analysis.calls.verdict import Verdict
from analysis.reporting.answer import label, num, plain_answer, verdict_section
from scaling.engine.population import hidden_units
from scaling.experiment.config import Config
from scaling.planning.stats import w_star_fell


def run_end(timestamp) -> str:
    """A run's end time, or "unfinished" where it never ended."""
    return timestamp if isinstance(timestamp, str) and timestamp else "unfinished"


def md_table(header: list[str], rows: list[list]) -> str:
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
            f"{cfg.search.lr_extend} factor(s) of 3 (search.lr_extend).")
    if at_edge.empty:
        return rule + " No cell's best learning rate at w* stayed at the edge of the rates tested there."
    init = lambda r: f" with {r.best_init}" if len(cfg.model.inits) > 1 else ""
    cells = ", ".join(f"(n = {int(r.n)}, depth {int(r.depth)}, lr {num(r.best_lr)}{init(r)})"
                      for r in at_edge.itertuples())
    return rule + f" Cells whose best learning rate at w* stayed at an edge of the rates tested there: {cells}."


def _budget_cell(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "n/a"
    rows = rows.sort_values("fraction")
    values = [f"> {b}" if c else num(w) for w, c, b in zip(rows["w_star"], rows["censored"], rows["bound"])]
    half, whole = rows[rows["fraction"] == 0.5], rows[rows["fraction"] == 1.0]
    fell = len(half) and len(whole) and bool(w_star_fell(half.reset_index(drop=True),
                                                         whole.reset_index(drop=True)).iloc[0])
    return " → ".join(values) + ("" if fell else " ✓")


def _fit_section(name: str, comp: FitComparison) -> str:
    rows = []
    for _, r in comp.table.iterrows():
        fit = comp.fits[r["family"]]
        params = ", ".join(f"{k} = {num(v)} [{num(fit.ci[k][0])}, {num(fit.ci[k][1])}]" for k, v in fit.params.items())
        boot = (comp.boot_ci or {}).get(r["family"], {})
        boot_s = ", ".join(f"{k} [{num(lo)}, {num(hi)}]" for k, (lo, hi) in boot.items()) or "n/a"
        win = (comp.win_rate or {}).get(r["family"])
        rows.append([r["family"], num(r["aicc"]), num(r["delta_aicc"]), f"{r['weight']:.2f}", params, boot_s,
                     num(r["extrap_error"]), "n/a" if win is None else f"{win:.2f}"])
    text = f"### {name}\n\n" + md_table(
        ["family", fit.criterion, "Δ", "Akaike weight", "params [95 % CI]", "bootstrap 95 % CI",
         "extrap. error", "bootstrap win rate"], rows)
    if comp.notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in comp.notes)
    return text


def _laws_section(name: str, call) -> str:
    """One measured curve's laws: chi^2 against the measured noise, AICc weights, bootstrap wins, the held-out
    prediction, and parameters with seed-bootstrap intervals."""
    rows = []
    for r in call.table.itertuples():
        law = LAWS[r.law]
        params = ", ".join(f"{k} = {num(v)} [{num(lo)}, {num(hi)}]" for k, v, (lo, hi) in
                           zip(law.names, call.params[r.law], (call.ci(r.law, k) for k in law.names)))
        rows.append([law.formula, r.growth, f"{num(r.chi2)} / {r.dof}", f"{r.p_fit:.2g}", num(r.delta),
                     f"{r.weight:.2f}", f"{r.win_rate:.2f}", num(r.oos), params])
    return f"### {name}\n\n" + md_table(["law", "class", "χ² / dof", "fit p", "ΔAICc", "Akaike weight",
                                        "bootstrap wins", "held-out z²", "params [95 % seed bootstrap]"], rows)


DEFINITIONS = """- **Solved**: every one of the 2^n rows is classified correctly (sign of the logit) at some step within
  the budget. With full batches the step is exact (the training forward pass sees every row); with mini-batches
  it is read at evaluations every `eval_every` steps. A run that hits the budget is *censored*, not impossible.
- **Diverged**: the full-table loss is non-finite or above 10^4 (the weights blew up); the member is frozen.
- **Success rate** p(n, depth, width) = solved seeds / seeds at a learning rate chosen on the other half of the
  seeds (cross-fitted, both ways), with a Wilson 95 % interval.
- **w\\*(n, depth)**: the smallest width whose success rate reaches the threshold and stays there for every
  larger width tested (the search trains one confirming width above it). If none up to the bound does, the
  cell is censored (> bound) and left out of the fits.
- **W50**: the width at which a logistic fit of the cross-fitted success counts against log2(width) crosses the
  threshold (binomial likelihood, one pseudo-trial in all). It uses every tested width, so it is the primary
  estimate; a W50 beyond the widths tested is left out of the fits.
- **Seed bootstrap**: whole seeds redrawn within each seed half, jointly for every width and learning rate of a
  cell (a seed's runs share their initial weights), W50 and w\\* recomputed; 95 % percentile intervals. The
  spread of log W50 over the replicates (half the 16-84 % range) is each point's measured noise.
- **Budget-limited**: w\\* fell between half the step budget and the whole (re-read from the stored solve
  steps): more steps might lower it further, so the cell is left out of the fits.
- **L\\*(n, width)**: the smallest depth that reaches the threshold (and stays) at a fixed width.
- **One seed**: w\\* (or L\\*) re-read as if every tested width (depth) had solved one more, and one fewer,
  held-out seed. Where that range is more than w\\* itself, one seed decides the cell, and a change of float
  rounding alone (another bucket shape, kernel or machine) can move it within the range.
- **Width profile**: the later layers' widths follow the first layer's width w, the width searched: "constant"
  (every layer w, so units = depth × w) or "halving" (w, ⌈w/2⌉, ⌈w/4⌉, ... at least 2: the XOR tree's shape).
- **Units**: hidden units in total of a network at first-layer width w in the run's width profile (at a
  fractional W50, interpolated between the integer widths around it). A construction counts the units of the
  smallest network of that profile that holds it, so that both are counted alike.
- **Growth laws** (W50 and w\\* curves): """ + ", ".join(law.formula for law in LAWS.values()) + """; offsets are
  floors (a >= 0), shifted exponentials have base >= 1.1 and powers degree <= 3. Each is fitted to log y by least
  squares weighted with each point's measured noise; chi^2 tests its fit, AICc (chi^2 + 2K + correction) ranks
  the laws, their Akaike weights and bootstrap wins are summed per class (exponential, polynomial), and each
  is refitted without the two largest n to predict them (held-out z²: mean squared standardized error).
- **Other fits** (L\\*, steps): exponential a·b^n, power a·n^k, linear a + b·n, logarithmic a + b·log2 n, fitted
  to log(y), ranked by AICc with Akaike weights; censored points enter by maximum likelihood (Tobit)."""

KNOWN = """- One hidden layer of threshold or ReLU units: n units suffice (Rumelhart, Hinton & Williams 1986).
- Sigmoid units, one hidden layer: about ⌈(n+1)/2⌉ suffice (Sontag; Setiono 1997).
- Depth: Telgarsky 2016 ("Benefits of depth"): k composed triangle maps give 2^k pieces, so O(log n) layers of
  width 2 compute parity after a sum unit (the sawtooth construction).
- AND/OR circuits: depth-2 DNF needs 2^(n-1) terms; Håstad's switching lemma gives exp(Ω(n^(1/(d-1)))) at depth d.
- Training: Tesauro & Janssens 1988 found training time growing about 4^n for N-2N-1 networks (n = 2..8)."""


def _setup(cfg: Config, df: pd.DataFrame, runs: pd.DataFrame) -> str:
    last, task, model, train, search = runs.iloc[-1], cfg.task, cfg.model, cfg.train, cfg.search
    commit = last["git_commit"] if isinstance(last["git_commit"], str) and last["git_commit"] else "unknown"
    l_star_max = (str(cfg.search.min_depth_max) if cfg.search.min_depth_max is not None else
                  "⌈log2 n⌉ + 2" if cfg.search.min_depth_times_n else "the largest depth")
    return md_table(["setting", "value"], [
        ["task", f"{task.kind}, n = {', '.join(map(str, task.ns))}, encoding {task.encoding}"],
        ["model", f"depths {list(model.depths)}" + "".join(f", ⌈log2 n⌉ + {k}" for k in model.depth_log2) + ", widths "
         + (f"{model.times_n}n" if model.times_n else f"{model.width_search} up to {cfg.max_width}")
         + f", {model.activation}, init {' or '.join(model.inits)}"],
        ["training", f"{train.optimizer}, lrs {list(train.lrs)}, loss {train.loss}, budget {train.steps} steps"
         + (f" (budget-limited cells rerun at 2x up to {search.max_steps})" if search.max_steps > train.steps else "")
         + f", evaluated every {train.eval_every}"],
        ["search", f"{cfg.search.seeds} seeds per point, threshold {cfg.search.success_threshold}, L* at "
         + f"{', '.join(cfg.min_depth_groups) or 'no width'} up to depth {l_star_max}"],
        ["members trained", f"{len(df)} ({int(df['solved'].sum())} solved, {int(df['diverged'].sum())} diverged)"],
        ["provenance", f"jax {last['jax_version']}, flax {last['flax_version']}, optax {last['optax_version']}, "
                       f"{last['backend']} ({last['device_kind']} x{last['device_count']}), commit "
                       f"{commit[:10]}, {runs['started_at'].iloc[0]} .. {run_end(last['ended_at'])}"],
    ])


def _cell_rows(stars: pd.DataFrame, depths, cell) -> list[list]:
    rows = []
    for n in sorted(stars["n"].unique()):
        at = [stars[(stars["n"] == n) & (stars["depth"] == d)] for d in depths]
        rows.append([n] + [cell(c.iloc[0], d) if len(c) else "n/a" for c, d in zip(at, depths)])
    return rows


def _steps_text(fits: dict[str, FitComparison], skipped: dict[str, str], steps: pd.DataFrame) -> list[str]:
    """Steps to solve per depth: the best family, and Tesauro's 4^n only where every width was exactly 2n."""
    text = []
    for name, comp in fits.items():
        if not name.startswith("steps/"):
            continue
        depth = int(name.split("=")[1])
        rows = steps[steps["depth"] == depth]
        n_2n = bool(len(rows)) and bool((rows["width"] == 2 * rows["n"]).all())
        line = f"- {name}: best family {comp.best} (Akaike weight {comp.table['weight'].iloc[0]:.2f})"
        if comp.best == "exponential":
            b, (lo, hi) = comp.fits["exponential"].params["b"], comp.fits["exponential"].ci["b"]
            line += f", median steps grow as b^n with b = {num(b)} [{num(lo)}, {num(hi)}]"
            if n_2n:
                versus = "below" if hi < 4 else "above" if lo > 4 else "consistent with"
                line += f", {versus} the base of about 4 that Tesauro & Janssens (1988) found for N-2N-1 networks"
        if not n_2n:
            line += "; widths were not 2n at every n, so Tesauro & Janssens' N-2N-1 figure does not apply"
        text.append(line + ".")
    return text + [f"- {name}: not fitted ({why})" for name, why in skipped.items() if name.startswith("steps/")]


def render_report(cfg: Config, df: pd.DataFrame, runs: pd.DataFrame, summary: pd.DataFrame, verdict: Verdict,
                  powers: dict, fits: dict[str, FitComparison], skipped: dict[str, str], theory: pd.DataFrame,
                  figure_names: list[str], warnings: list[str], by_budget: pd.DataFrame,
                  steps: pd.DataFrame, recipe: list[str] | None = None) -> str:
    stars = summary[summary["kind"] == "min_width"]
    last = runs.iloc[-1]
    source = (f"Generated from the store's {len(runs)} run(s) (run id {int(runs['run_id'].iloc[0])}"
              f"{'' if len(runs) == 1 else f' .. {int(last.run_id)}'}, config hash {last['config_hash']}, "
              f"latest started {last['started_at']}).")
    depths = sorted(stars["depth"].unique())
    limited = int((~stars["budget_converged"].fillna(True).astype(bool) & ~stars["censored"].astype(bool)).sum())
    kinds = list(dict.fromkeys(theory["kind"])) if len(theory) else []

    def units_cell(row, d):
        return (f"> {num(hidden_units(row['bound'], d, str(cfg.model.profile)))}" if row["censored"]
                else num(row["units"]))

    u_rows = _cell_rows(stars, depths, units_cell)
    for row in u_rows:
        row += [num(theory[(theory["kind"] == k) & (theory["n"] == row[0])]["units"].iloc[0])
                if len(theory[(theory["kind"] == k) & (theory["n"] == row[0])]) else "n/a" for k in kinds]
    depth_rows = summary[summary["kind"] == "min_depth"]
    d_groups = list(dict.fromkeys(depth_rows["group"])) if len(depth_rows) else []
    l_rows = []
    for n in (sorted(depth_rows["n"].unique()) if d_groups else []):
        cells = [depth_rows[(depth_rows["n"] == n) & (depth_rows["group"] == g)] for g in d_groups]
        l_rows.append([n] + [f"{_star_cell(c.iloc[0], 'L_star')} at width {int(c['width'].iloc[0])}" if len(c)
                             else "n/a" for c in cells])
    l_star_max = (str(cfg.search.min_depth_max) if cfg.search.min_depth_max is not None else
                  "⌈log2 n⌉ + 2" if cfg.search.min_depth_times_n else "the largest depth at n")
    parts = [
        f"# {cfg.experiment.name}: hidden units that gradient training needs for n-bit parity",
        *[f"> **Warning:** {w}" for w in warnings],
        plain_answer(verdict, powers),
        source,
        cfg.experiment.description.strip(),
        "## Verdict", verdict_section(verdict, powers, cfg),
        "## Setup", _setup(cfg, df, runs),
        "## Definitions", DEFINITIONS,
        "## Minimum width w* per depth",
        "Each cell: w* (its cross-fitted success rate [Wilson 95 %]); `> B`: censored at bound B; "
        "then W50 [95 % seed bootstrap]; *budget-limited* where w* fell between half the budget and the whole; "
        "*one seed: A to B* where one more or one fewer solved seed per width would move "
        f"w* there ({one_seed_cells(stars, 'w_star')} of {len(stars)} cells).",
        md_table(["n"] + [f"depth {d}" for d in depths], _cell_rows(stars, depths, lambda r, d: _width_cell(r))),
        _edge_note(stars, cfg),
        "## w* against the step budget",
        f"w* re-read from the stored solve steps at 1/8, 1/4, 1/2 and all of each cell's budget "
        f"({cfg.train.steps} steps); "
        f"✓: budget-converged (w* did not fall between half the budget and the whole). {limited} of {len(stars)} "
        f"cells are budget-limited; they are left out of the fits.",
        md_table(["n"] + [f"depth {d}" for d in depths],
               [[n] + [_budget_cell(by_budget[(by_budget["n"] == n) & (by_budget["depth"] == d)]) for d in depths]
                for n in sorted(stars["n"].unique())]),
        *(["## Does W50 fall with the recipe or the budget?",
            "Each cell at its largest budget: W50 [95 % seed bootstrap] under each initialisation alone (its "
            "learning rates cross-fitted) and under the recipe searched over every init and learning rate "
            "(chosen on one seed half, counted on the other), and the searched recipe re-read at half the budget. "
            "Falls or rises: the intervals do not overlap.", *recipe] if recipe else []),
        "## Total hidden units against the constructions",
        f"Trained: hidden units at w* ({cfg.model.profile} width profile). Constructions: hidden units of the "
        f"smallest {cfg.model.profile}-profile network that holds each hand-built network (`scaling construct "
        f"KIND --n N`), computed by code.",
        md_table(["n"] + [f"trained depth {d}" for d in depths] + kinds, u_rows),
    ]
    if l_rows:
        parts += ["## Minimum depth L* at fixed width", f"Searched over depths 1..{l_star_max}.",
                  md_table(["n"] + [label(g) for g in d_groups], l_rows)]
    parts += ["## Steps to solve",
              "Median steps to solve at the first tested width >= 2n of each cell and its best learning rate. Steps "
              f"are exact with full batches, read every {cfg.train.eval_every} steps with mini-batches.",
              "\n".join(_steps_text(fits, skipped, steps)) or "No steps-to-solve curve had 5 uncensored points."]
    parts += ["## Fits"]
    for g in verdict.groups.values():
        for quantity, call in (("W50", g.w50_call), ("w*", g.w_star_call)):
            if call is not None:
                parts.append(_laws_section(f"{quantity}, {label(g.group)}", call))
    parts += [_fit_section(name, comp) for name, comp in fits.items()]
    if skipped:
        parts.append("Not fitted:\n" + "\n".join(f"- {name}: {why}" for name, why in skipped.items()))
    parts += ["## Figures"] + [f"![{name}](figures/{name}.png)  \n[{name}.pdf](figures/{name}.pdf)"
                               for name in figure_names]
    parts += ["## What is known", KNOWN]
    return "\n\n".join(parts) + "\n"
