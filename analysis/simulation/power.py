"""Power analysis: which design would decide each depth group, simulated from the run's own curves and noise.

For a depth group whose W50 curve was fitted, the candidate truths are every law of that fit that fits within
the measured noise (where none does, nothing is simulated and nothing is promised); the seed noise is the cells'
own logistic slope. A design (largest n, seeds per point) is simulated under each truth: the widths are those
the project's search tests when every member at or above the truth solves (a replay of scaling.planning.search), the
outcomes are drawn per seed, and each draw is judged by the same group rule as the report (analysis.calls.verdict).
Designs are screened with `repeats` draws per truth (each truth called for its class in at least POWER of
them); the smallest that passes is then simulated again with CONFIRM_REPEATS fresh draws per truth, and named
only where the Wilson 95 % lower bound of every truth's rate of right calls is at least POWER (else the next
design is tried). The cost of the named design comes from the cost model, as `scaling plan --assume-wstar`
forecasts it.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from analysis.calls.growth import RULE
from analysis.calls.laws import LAWS
from analysis.calls.verdict import REPS, GroupVerdict, Verdict, group_verdict
from analysis.measurement.measure import bootstrap_draws, measure_drawn
from analysis.simulation.synthetic import RATE_FACTOR, Design, solve_probability, synthetic_config, tested_widths
from analysis.simulation.workers import Workers
from scaling.experiment.config import Config
from scaling.experiment.schema import WidthSearch
from scaling.planning.stats import wilson

POWER = 0.8
CONFIRM_REPEATS = 100  # fresh draws per truth before a design is named; its Wilson lower bound must reach POWER
MAX_N = 20  # widths grow fast with n: past this a design is out of reach of any laptop or GPU week
MAX_WIDTH = 2**16  # nor is a design whose exponential truth needs wider layers than this at its largest n
N_STEPS = (0, 2, 4, 8, 12)
SEED_FACTORS = (1, 2, 4)
# A cap on worker processes, so that a many-core host does not start dozens (each imports numpy, scipy and
# pandas) for runs of a tenth of a second, all drawn by one parent.
MAX_WORKERS = 8


@dataclasses.dataclass
class DesignPower:
    design: Design
    right: dict[str, float]  # truth law -> share of repeats called for its class
    truths: int  # how many truths were simulated
    repeats: int = 0

    @property
    def decides(self) -> bool:
        return len(self.right) == self.truths and min(self.right.values()) >= POWER

    @property
    def lower(self) -> float:
        """The smallest Wilson 95 % lower bound of a truth's rate of right calls."""
        return float(min(wilson(round(r * self.repeats), self.repeats)[0] for r in self.right.values()))


def _truths(group: GroupVerdict) -> dict[str, tuple[str, np.ndarray]]:
    """law -> (law, params) for every law that fits the run within its measured noise (none where none does:
    a law the data reject is no truth to simulate)."""
    call, truths = group.w50_call, {}
    grid = np.linspace(call.x.min(), call.x.max() + N_STEPS[-1], 50)
    for law in call.table.loc[call.table["p_fit"] >= RULE.alpha, "law"]:  # best first; the same curve once
        curve = call.predict(law, grid)
        if not any(np.allclose(curve, call.predict(other, grid), rtol=1e-3) for other in truths):
            truths[law] = (law, call.params[law])
    return truths


def _curve(law: str, params: np.ndarray):
    """The truth's W50 at n, kept at least 2 (the smallest width searched) where a fit extrapolates below."""
    return lambda n: np.maximum(LAWS[law].predict(np.asarray(n, float), params), 2.0)


def _scale(group: GroupVerdict, cells: dict) -> float:
    """The relative width of the success curve: ln 2 / (logistic slope per doubling), median over the cells."""
    slopes = [cells[k].slope for k in group.cells if k in cells and np.isfinite(cells[k].slope) and cells[k].slope > 0]
    return float(np.clip(np.log(2) / np.median(slopes), 0.05, 1.0)) if slopes else 0.2


def _call(cfg: Config, run: list[tuple], threshold: float) -> str:
    """The group rule's call on one simulated run: its cells measured from what was drawn for them
    (measure_drawn's arguments after the threshold), then judged."""
    cells = {(n, 1): measure_drawn(n, 1, widths, solved, seeds, threshold, redrawn)
             for n, widths, solved, seeds, redrawn in run}
    return group_verdict("depth=1", cfg, cells, set(), set(), refine=False).call


def _tested_widths(design: Design, law: str, params: np.ndarray) -> dict[int, np.ndarray]:
    """synthetic.tested_widths under a truth given by its law and parameters."""
    return tested_widths(design, _curve(law, params))


def design_power(design: Design, truth, growth: str, widths: dict, scale: float, repeats: int,
                 threshold: float, reps: int, rng: np.random.Generator, tau: float = 0.0,
                 pool: Workers | None = None) -> float:
    """The share of `repeats` simulated runs of `design` under `truth` that the group rule calls `growth`. Three
    learning rates as in the calibration (the middle one best, the others needing RATE_FACTOR times the
    width), so that cross-fitting adds the noise it adds to a real run; each cell's centre is moved by the run's
    between-cell noise tau (log-normal, one draw per n and run), which more seeds do not shrink. It stops as
    soon as POWER is out of reach, leaving `rng` where it was after the last run it counted (runs drawn ahead
    for `pool`'s workers are undone)."""
    cfg = synthetic_config(design, 2)
    factors = np.array([RATE_FACTOR, 1.0, RATE_FACTOR])[None, :, None]
    seeds, right, allowed = np.arange(design.seeds), 0, int(np.floor((1 - POWER) * repeats))
    pool = pool or Workers()

    def draw() -> list[tuple]:  # everything random about one run; measuring and judging it, the pool's
        run = []
        for n in range(design.n_min, design.n_max + 1):
            w50 = float(truth(n)) * np.exp(tau * rng.standard_normal())
            p = solve_probability(w50, widths[n][:, None, None], factors, scale)
            solved = (rng.random((len(widths[n]), 3, design.seeds)) < p).astype(float)
            run.append((n, widths[n], solved, seeds, bootstrap_draws(seeds, reps, rng)))
        return run

    ahead = collections.deque()  # (rng's state after the run, its call), in the order drawn
    drawn = done = 0
    while done < repeats:
        while drawn < repeats and len(ahead) < pool.ahead:
            run = draw()
            ahead.append((rng.bit_generator.state, pool.submit(_call, cfg, run, threshold)))
            drawn += 1
        state, call = ahead.popleft()
        done += 1
        right += call.result() == growth
        if done - right > allowed:
            rng.bit_generator.state = state  # as if the runs drawn ahead had never been drawn
            for _, later in ahead:
                later.cancel()
            break
    return right / done


def group_power(verdict: Verdict, cfg: Config, group: str, repeats: int = 16, reps: int = REPS,
                seed: int = 0, confirm: int = CONFIRM_REPEATS, pool: Workers | None = None) -> dict | None:
    """Designs tried for one group: the largest first (n up to n_max + 12, four times the seeds); where it
    passes the screen, every design of the table from the smallest (by members) up, and the first that passes
    both the screen and the confirmation by `confirm` fresh draws is named. None where the group has no fitted
    W50."""
    g = verdict.groups[group]
    if g.w50_call is None:
        return None
    truths, scale = _truths(g), _scale(g, verdict.cells)
    if not truths:
        return {"truths": {}, "fits_neither": True, "scale": scale, "repeats": repeats, "tried": [],
                "decides": None, "reason": "no law fits W50 within its measured noise, so no simulated truth "
                                          "stands for it and no design is promised"}
    rng = np.random.default_rng(seed)
    n_min, reach = min(cfg.task.ns), _curve(*max(truths.values(), key=lambda t: _curve(*t)(max(cfg.task.ns) + 8)))
    top = max([n for n in range(max(cfg.task.ns), MAX_N + 1) if reach(n) <= MAX_WIDTH], default=max(cfg.task.ns))
    n_max = max(cfg.task.ns)
    largest = Design(min(n_max + N_STEPS[-1], top), cfg.search.seeds, n_min)
    pool = pool or Workers()
    searched = {law: pool.submit(_tested_widths, largest, *truths[law]) for law in truths}  # one replay per truth
    widths = {law: future.result() for law, future in searched.items()}
    tried, found = [], None

    def attempt(design: Design, count: int = repeats) -> DesignPower:
        right = {}
        for law in truths:  # the next truth only where the last is called right often enough
            right[law] = design_power(design, _curve(*truths[law]), LAWS[law].growth, widths[law], scale, count,
                                      cfg.search.success_threshold, reps, rng, g.w50_call.tau, pool)
            if right[law] < POWER:
                break
        return DesignPower(design, right, len(truths), count)

    confirmed_as: dict[Design, bool] = {}
    tried.append(attempt(Design(largest.n_max, cfg.search.seeds * SEED_FACTORS[-1], n_min)))
    if tried[0].decides:  # the largest design passes the screen: the smallest that passes and is confirmed
        designs = {Design(min(n_max + step, largest.n_max), cfg.search.seeds * factor, n_min)
                   for factor in SEED_FACTORS for step in N_STEPS}
        for design in sorted(designs, key=lambda d: (_size(d), d.seeds)):
            screen = next((t for t in tried if t.design == design), None)
            if screen is None:
                tried.append(screen := attempt(design))
            if not screen.decides:
                continue
            check = attempt(design, confirm)  # fresh draws: a design is named only when they confirm it
            confirmed_as[design] = check.decides and check.lower >= POWER
            if confirmed_as[design]:
                found = check
                break
    tried.sort(key=lambda t: (t.design.seeds, t.design.n_max))
    return {"truths": {law: {"law": law, "growth": LAWS[law].growth, "params": [float(v) for v in p]}
                       for law, (_, p) in truths.items()},
            "fits_neither": all(p < RULE.alpha for p in g.w50_call.class_fits.values()),
            "scale": scale, "repeats": repeats, "confirm_repeats": confirm,
            "tried": [{"n_max": t.design.n_max, "seeds": t.design.seeds, "right": t.right,
                       **({"confirmed": confirmed_as[t.design]} if t.design in confirmed_as else {})}
                      for t in tried],
            "decides": None if found is None else {"n_max": found.design.n_max, "seeds": found.design.seeds,
                                                    "right": found.right, "wilson_lower": found.lower}}


def _size(design: Design) -> int:
    """Members grow with seeds and with the number of n: the order in which designs are preferred."""
    return design.seeds * (design.n_max - design.n_min + 1)


def design_cost(cfg: Config, design: Design, wstar, model, threads: int = 1) -> float:
    """Forecast seconds of the whole config run at `design` on this machine (scaling.planning.forecast), with w*(n, d)
    assumed from the fitted truths; the width grid grows to twice the largest assumed w*."""
    from scaling.planning import forecast

    ns = tuple(range(design.n_min, design.n_max + 1))
    top = max(wstar(n, d) for n in ns for d in cfg.depths_at(n) if d > 0)
    grid = [cfg.model.widths[0]]
    while grid[-1] < 2 * top:
        grid.append(grid[-1] * 2)
    variant = cfg.replace(ns=ns, seeds=design.seeds,
                          widths=tuple(grid) if cfg.model.width_search == WidthSearch.ADAPTIVE else cfg.model.widths)
    total = forecast.total(forecast.simulate(variant, wstar, model, threads=threads))
    return total.compile_s + total.train_wall_s


def _assumed_wstar(powers: dict):
    """w*(n, d) for costing a design: the larger of the simulated truths of the fixed depth group nearest to
    d (so the forecast errs high)."""
    curves = {int(group.split("=")[1]): [_curve(t["law"], np.array(t["params"])) for t in result["truths"].values()]
              for group, result in powers.items()
              if result is not None and result["truths"] and not group.startswith("depth=log2")}
    if not curves:
        return None
    return lambda n, d: max(float(c(n)) for c in curves[min(curves, key=lambda k: abs(k - d))])


def power_analysis(verdict: Verdict, cfg: Config, repeats: int = 16, reps: int = REPS, seed: int = 0,
                   cost: bool = True, workers: int = 1) -> dict:
    """group -> group_power (None where not fitted), each deciding design with its forecast cost in seconds on
    this machine (the cost model as `scaling plan` uses it; no probe is run here). The simulated runs are called
    on up to `workers` processes (analysis.simulation.workers; the command line uses every core, up to
    MAX_WORKERS), with the same numbers on any number."""
    with Workers(min(workers, MAX_WORKERS)) as pool:  # its processes start at the first task
        powers = {group: group_power(verdict, cfg, group, repeats, reps, seed, pool=pool)
                  for group, g in verdict.groups.items() if g.own}
    wstar = _assumed_wstar(powers) if cost else None
    if wstar is not None:
        from scaling.engine.devices import make_mesh, training_threads
        from scaling.planning import cost as cost_model

        model = cost_model.load()
        threads = training_threads(make_mesh(cfg.run.devices), cfg.run.bucket_mib)
        for result in powers.values():
            if result is not None and result["decides"] is not None:
                found = result["decides"]
                design = Design(found["n_max"], found["seeds"], min(cfg.task.ns))
                result["decides"]["cost_s"] = design_cost(cfg, design, wstar, model, threads)
    return powers
