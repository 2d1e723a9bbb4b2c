"""REPORT.md's answer: one plain paragraph, then every depth group's call, the claims' tests with their
intervals, and the power analysis (what design would decide what this one could not)."""

from __future__ import annotations

import math

from analysis.calls.claims import Claim
from analysis.calls.growth import RULE, UNDECIDED
from analysis.calls.laws import EXPONENTIAL, LAWS, MAX_DEGREE, POLYNOMIAL
from analysis.calls.verdict import AGREE_ALPHA, GroupVerdict, Verdict
from analysis.reporting.style import group_label as label

CLAIM = ("one hidden layer needs about 2^(n-1) hidden units for n-bit parity, while a network of depth about "
         "log2 n needs only O(n)")


def num(v, digits: int = 3) -> str:
    """A number for the report; never 'nan' (a missing value is shown as n/a)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a" if v is None or math.isnan(v) else ("inf" if v > 0 else "-inf")
    if float(v).is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.{digits}g}"


def _duration(seconds: float) -> str:
    return (f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else
            f"{seconds / 3600:.1f} h" if seconds < 72 * 3600 else f"{seconds / 86400:.0f} days")


def _fitted(g: GroupVerdict) -> str:
    call = g.w50_call
    best = call.best()
    law = LAWS[best]
    params = ", ".join(f"{k} = {num(v)}" for k, v in zip(law.names, call.params[best]))
    return (f"best law {law.formula} ({params}); {EXPONENTIAL} laws: Akaike weight "
            f"{call.class_weight[EXPONENTIAL]:.2f}, bootstrap wins {call.class_win_rate[EXPONENTIAL]:.0%}, best "
            f"fit p = {call.class_fits[EXPONENTIAL]:.2g}; {POLYNOMIAL}: {call.class_weight[POLYNOMIAL]:.2f}, "
            f"{call.class_win_rate[POLYNOMIAL]:.0%}, p = {call.class_fits[POLYNOMIAL]:.2g}")


def group_line(g: GroupVerdict) -> str:
    text = f"- **{label(g.group)}**: "
    if g.w50_call is None:
        return text + "not fitted: " + "; ".join(g.reasons) + "."
    text += f"W50 grows **{g.call}**" if g.call != UNDECIDED else "**undecided**"
    text += f" ({_fitted(g)})."
    if g.reasons:
        text += " Undecided because " + "; ".join(g.reasons) + "."
    if g.w_star_call is not None:
        text += f" w\\* alone: {g.w_star_call.call}."
    left = {**g.w50.left_out}
    if left:
        text += " Not fitted: " + "; ".join(f"n = {n}: {why}" for n, why in sorted(left.items())) + "."
    return text


def _interval(outcome, digits: int) -> str:
    return (f"{num(outcome.estimate, digits)} [{num(outcome.ci95[0], digits)}, {num(outcome.ci95[1], digits)}] at "
            f"{outcome.at}")


def _controls(c: Claim) -> str:
    return ", ".join(f"{k['network']}: {k['got']}" for k in c.controls)


def claim_line(c: Claim) -> str:
    """One claim: its test's reading with the interval, and the controls it passed; or why it is withheld."""
    if not c.reported:
        failed = "; ".join(f"it reads {k['network']} as \"{k['got']}\" where the answer is \"{k['expected']}\""
                           for k in c.failed_controls)
        return (f"- *{c.statement}*: **withheld**, its test ({c.quantity}) fails a hand-built control over this "
                f"range ({failed}).")
    return (f"- *{c.statement}*: **{c.expected_of.get(c.outcome.reading, c.outcome.reading)}**. {c.quantity}: "
            f"{_interval(c.outcome, 3)} (95 % seed bootstrap). Controls, read by the same test with this run's "
            f"noise: {_controls(c)}." + (f" {c.note}" if c.note else ""))


def per_n_line(c: Claim) -> str:
    cells = (f"n = {r['n']}: {num(r['value'], 3)} [{num(r['ci95'][0], 3)}, {num(r['ci95'][1], 3)}]" for r in c.per_n)
    return f"- {c.per_n_quantity or c.quantity}: " + "; ".join(cells) + "."


def claims_section(verdict: Verdict) -> list[str]:
    if not verdict.claims:
        return ["No claim can be tested: depth 1 and depth ⌈log2 n⌉ each need W50 at 3 or more n."]
    lines = [claim_line(c) for c in verdict.claims]
    per_n = [per_n_line(c) for c in verdict.claims if c.per_n and c.reported]
    return lines + (["", "Per n (95 % seed bootstrap):", *per_n] if per_n else [])


def power_line(group: str, result: dict | None, cfg) -> str:
    if result is None:
        return f"- {label(group)}: no fitted W50 curve to simulate from."
    if not result["truths"]:
        return f"- {label(group)}: nothing is promised: {result['reason']}."
    found = result["decides"]
    truths = "; ".join(f"{LAWS[t['law']].formula} ({', '.join(num(v) for v in t['params'])}, {t['growth']})"
                       for t in result["truths"].values())
    if found is None:
        last = result["tried"][-1]
        return (f"- {label(group)}: no design up to n = {last['n_max']} with {last['seeds']} seeds calls every law "
                f"that fits this run ({truths}) for its class in 80 % of simulated runs, confirmed by "
                f"{result['confirm_repeats']} fresh ones: nothing within reach decides it.")
    cost = f": about {_duration(found['cost_s'])} on this machine" if "cost_s" in found else ""
    current = found["n_max"] == max(cfg.task.ns) and found["seeds"] == cfg.search.seeds
    return (f"- {label(group)}: " + ("this design decides it" if current else
            f"to decide it, measure up to n = {found['n_max']} with {found['seeds']} seeds{cost}")
            + f" (every law that fits this run called for its class in at least "
            f"{min(found['right'].values()):.0%} of {result['confirm_repeats']} fresh simulated runs, Wilson lower "
            f"bound {found['wilson_lower']:.0%}; truths {truths}).")


def _rejections(g: GroupVerdict) -> str:
    """Which classes the measured noise rejects outright, in words (a clause that ends the sentence)."""
    call = g.w50_call
    p = call.class_fits
    rejected = [c for c in (EXPONENTIAL, POLYNOMIAL) if p[c] < RULE.alpha]
    if len(rejected) == 2:
        better = max(call.class_weight, key=call.class_weight.get)
        return (f": no law of either class fits W50 within its measured noise (best exponential "
                f"p = {p[EXPONENTIAL]:.2g}, "
                f"best polynomial p = {p[POLYNOMIAL]:.2g}). The {better} laws describe it far better (Akaike weight "
                f"{call.class_weight[better]:.2f}), but the data have structure that none of the laws captures.")
    if rejected:
        other = POLYNOMIAL if rejected[0] == EXPONENTIAL else EXPONENTIAL
        return (f": {rejected[0]} growth is rejected (no {rejected[0]} law fits W50 within its measured noise, "
                f"p = {p[rejected[0]]:.2g}), but the {other} call fails another test (see the verdict).")
    return ": both classes fit within the measured noise."


def plain_answer(verdict: Verdict, powers: dict) -> str:
    """The one paragraph that opens REPORT.md."""
    shallow = verdict.groups.get("depth=1")
    text = "**Answer.** "
    if shallow is None or shallow.w50_call is None:
        text += ("This run cannot say how the width needed at one hidden layer grows: depth 1 has no fitted curve "
                 "(too few measured points; the claims need fewer). ")
    elif shallow.call == UNDECIDED:
        text += "Over this range of n, no growth class is called for the width that gradient training needs at one " \
                "hidden layer" + _rejections(shallow) + " "
    else:
        text += (f"Over this range of n, the width that gradient training needs at one hidden layer grows "
                 f"{shallow.call}ly. ")
    reported = [c for c in verdict.claims if c.reported]
    if reported:
        text += "Tested claim by claim, each test first checked on the hand-built networks: " + "; ".join(
            f"{c.statement}: {c.expected_of.get(c.outcome.reading, c.outcome.reading)} ({c.quantity} "
            f"{_interval(c.outcome, 3)})" for c in reported) + ". "
    withheld = [c.key for c in verdict.claims if not c.reported]
    if withheld:
        text += f"{len(withheld)} claim test(s) failed a control over this range and are withheld. "
    decided = [label(g) for g, v in verdict.groups.items() if v.call != UNDECIDED]
    undecided = [g for g, v in verdict.groups.items() if v.call == UNDECIDED and v.own]
    if decided:
        text += f"Growth is called at {', '.join(decided)}. "
    needs = [(g, powers[g]["decides"]) for g in undecided if powers.get(g) and powers[g]["decides"]]
    silent = [g for g in undecided if powers.get(g) and not powers[g]["truths"]]
    if silent:
        text += (f"No law fits {', '.join(label(g) for g in silent)} within its noise, so no design can be "
                 "promised for it. ")
    if needs:
        text += "To decide the rest: " + "; ".join(f"{label(g)} needs n up to {d['n_max']} with {d['seeds']} seeds"
                                                   for g, d in needs) + " (power analysis below). "
    beyond = [(g, powers[g]["tried"][-1]) for g in undecided
              if powers.get(g) and powers[g]["truths"] and not powers[g]["decides"]]
    if beyond:
        text += " ".join(f"No design up to n = {t['n_max']} with {t['seeds']} seeds decides {label(g)}."
                         for g, t in beyond)
    return text


def verdict_section(verdict: Verdict, powers: dict, cfg) -> str:
    lines = [f"The claim under test: {CLAIM}.", "",
             f"Each depth group's W50 curve is called at the level of the claim, exponential against polynomial "
             f"(laws: {', '.join(law.formula for law in LAWS.values())}; polynomial degrees up to {num(MAX_DEGREE)}). "
             f"A class is called when its laws hold Akaike weight >= {RULE.weight} and win >= {RULE.win_rate:.0%} "
             f"of seed-bootstrap replicates, its best law fits within the measured noise and no law of the other "
             f"class does (chi^2 p >= {RULE.alpha}), it predicts the {RULE.held_out} largest n best out of sample, "
             f"and w* agrees (not called the other way, and W50's class not rejected at p < {AGREE_ALPHA:.2g}).", ""]
    lines += [group_line(g) for g in verdict.groups.values()]
    lines += ["", "### The lecture's claims, tested", *claims_section(verdict), "",
              "The claim's 2^(n-1) is exact for AND/OR (DNF) circuits, not for ReLU networks: n ReLU units express "
              "parity at depth 1 (one_layer), and O(log n) layers of width 2 in depth (sawtooth). What is measured "
              "here is what gradient training finds within the budget, bounded by the range of n and by censoring.",
              "", "### How far to trust the call",
              "The rule was chosen on synthetic stores from seven known truths and is scored on ten more that it "
              "never saw (mixtures such as n·1.2^n, staircases such as 1.5·2^⌈log2 n⌉, offsets, slow "
              "exponentials), drawn through the project's own search or a geometric width grid and run through "
              "this same analysis: `python -m analysis.simulation.calibration --set held-out` prints the table of "
              "false and true calls per design, and docs/VERDICT.md holds it.",
              "", "### What would decide it (power analysis)",
              "Simulated from this run's own fitted curves and noise: for each group, every law that fits within "
              "the measured noise is taken as a truth (none: nothing is promised); designs are screened with a few "
              "simulated runs, and a design is named only when 100 fresh runs per truth call each for its class "
              "with a Wilson 95 % lower bound of at least 80 %. Costs are the cost model's forecast for the whole "
              "experiment file at that design (`scaling plan --power DIR`). It is a post-hoc estimate, conditional "
              "on this run's fitted curves and noise: a run that was lucky (a steep noise curve, an easy law "
              "fitted best) names too small a design (README, \"How far to trust the verdict\")."]
    if not powers and any(v.own for v in verdict.groups.values()):  # analysed with --no-power
        lines.append("- not run by this analysis (`scaling analyze DIR --no-power`); `scaling plan --power DIR` "
                     "runs it.")
    else:
        lines += [power_line(g, powers.get(g), cfg) for g, v in verdict.groups.items() if v.own] or [
            "- no group to simulate."]
    return "\n".join(lines)
