"""`scaling plan CONFIG`: what a sweep will cost, before anything is trained (a dry run that writes nothing).

It plans round 0 exactly as a sweep would (members, buckets, programs, padded and useful training FLOPs),
bounds the whole search from above, and, given an assumed w*(n, d), replays every round of the search
against that oracle. Times come from the backend's cost model (scaling.planning.cost) and assume that every member
runs its whole budget, so they are upper bounds; FLOPs count a training step as 6 multiply-add FLOPs per
weight and row (population.TRAIN_FLOPS_PER_MADD).
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Callable

import pandas as pd

from scaling.engine.population import Bucket, Member
from scaling.errors import UserError
from scaling.experiment.config import Config
from scaling.experiment.schema import WidthSearch
from scaling.planning import plan, search
from scaling.planning.cost import CostModel, deal, makespan

# Every value is a float, so that no expression can build a huge integer ("9**9**9"): a float overflows at once.
_FUNCTIONS = {f: (lambda fn: lambda *x: float(fn(*x)))(getattr(math, f))
              for f in ("log2", "log", "log10", "sqrt", "exp", "ceil", "floor")}
_FUNCTIONS.update(min=min, max=max, abs=abs)
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load, ast.Constant, ast.Add, ast.Sub,
          ast.Mult, ast.Div, ast.FloorDiv, ast.Pow, ast.Mod, ast.USub, ast.UAdd)
_MAX_LENGTH = 500


class _Floats(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        return ast.copy_location(ast.Constant(float(node.value)), node)


def parse_oracle(expr: str) -> Callable[[int, int], float]:
    """w*(n, d) from an expression in n and d (the depth), e.g. "1.5*n" or "2**(n-1)" or "n*log2(n)/d". It is
    evaluated in floats, so it takes microseconds whatever it says; a value that is not a finite number > 0 at
    some (n, d) is refused there."""
    where = "--assume-wstar"
    if not expr.strip():
        raise UserError(where, "is empty; give w* as an expression in n and d, e.g. \"2*n\"")
    if len(expr) > _MAX_LENGTH:
        raise UserError(where, f"is {len(expr)} characters long; at most {_MAX_LENGTH}")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise UserError(where, f"{expr!r} is not an expression ({e.msg})") from None
    except (RecursionError, MemoryError, ValueError):
        raise UserError(where, f"{expr[:40]!r}... nests too deeply") from None
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            raise UserError(where, f"{expr!r} uses {type(node).__name__}; allowed: numbers, n, d, + - * / // % **, "
                                   f"and {', '.join(sorted(_FUNCTIONS))}")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or
                                               not isinstance(node.value, (int, float))):
            raise UserError(where, f"{expr!r} holds {node.value!r}; only numbers are allowed")
        if isinstance(node, ast.Name) and node.id not in {"n", "d", *_FUNCTIONS}:
            raise UserError(where, f"{expr!r} names {node.id!r}; use n (bits) and d (depth)")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
            raise UserError(where, f"{expr!r} calls something other than {', '.join(sorted(_FUNCTIONS))}")
    try:
        code = compile(ast.fix_missing_locations(_Floats().visit(tree)), where, "eval")
    except OverflowError:
        raise UserError(where, f"{expr[:40]!r}... holds a number too large for a float") from None
    except (RecursionError, MemoryError, ValueError):
        raise UserError(where, f"{expr[:40]!r}... nests too deeply") from None

    def wstar(n: int, d: int) -> float:
        try:
            value = eval(code, {"__builtins__": {}}, {**_FUNCTIONS, "n": float(n), "d": float(d)})
        except (ArithmeticError, ValueError, TypeError) as e:
            raise UserError(where, f"{expr!r} fails at n = {n}, d = {d} ({e})") from None
        if not (isinstance(value, float) and 0 < value < math.inf):
            raise UserError(where, f"{expr!r} is {value!r} at n = {n}, d = {d}; w* must be a finite number > 0")
        return value

    wstar(2, 1)  # fail now on an expression that cannot be evaluated
    return wstar


@dataclasses.dataclass
class Tally:
    """The cost of some buckets: members, buckets, new programs, FLOPs (whole budgets) and predicted seconds."""

    members: int = 0
    buckets: int = 0
    programs: int = 0
    padded_flops: float = 0.0
    useful_flops: float = 0.0
    compile_s: float = 0.0
    train_s: float = 0.0  # the buckets' training seconds, one after another
    train_wall_s: float = 0.0  # the same on the sweep's threads: each round ends with its last bucket
    wall_s: float = 0.0  # compiles and training on a cluster's processes (the slowest one ends each round)

    def add(self, buckets: list[Bucket], model: CostModel, known: set, threads: int = 1, processes: int = 1,
            devices: int = 1, seen: list[set] | None = None) -> None:
        """Count one round of buckets, trained in order on `threads` training threads (scaling.sweep); on a cluster,
        dealt to `processes` (scaling.planning.cost.deal) of `devices` each, where `seen` holds each one's compiled
        shapes."""
        seen = seen if seen is not None else [set(known) for _ in range(processes)]
        per_process = threads if devices == 1 else 1  # a mesh is kept busy by one bucket
        owners = deal(buckets, model, [per_process] * processes, [set(shapes) for shapes in seen])
        walls = []
        for process, shapes in enumerate(seen):
            mine = [b for b, owner in zip(buckets, owners) if owner == process]
            new = {(b.spec, b.slots) for b in mine} - shapes
            shapes |= new
            # the population splits over the devices of the process's mesh
            train = makespan([b.steps * model.step_s(b.spec, -(-b.slots // devices)) for b in mine], per_process)
            walls.append(sum(model.program_s(spec) for spec, _ in new) + train)
        self.wall_s += max(walls)
        forecast = model.forecast(buckets, known)
        self.members += sum(len(b.members) for b in buckets)
        self.buckets += len(buckets)
        self.programs += forecast["programs"]
        self.compile_s += forecast["compile_s"]
        self.train_s += forecast["train_s"]
        self.train_wall_s += makespan([model.train_s(b) for b in buckets], threads)
        for b in buckets:
            padded, useful = b.flops()
            self.padded_flops += padded * b.steps
            self.useful_flops += useful * b.steps
        known |= {(b.spec, b.slots) for b in buckets}

    @property
    def waste(self) -> float:
        return self.padded_flops / max(self.useful_flops, 1.0)

    def line(self) -> str:
        return (f"{self.members:,} members in {self.buckets:,} buckets, {self.programs:,} bucket shapes to compile; "
                f"{self.padded_flops:.3g} padded / {self.useful_flops:.3g} useful training FLOPs "
                f"(waste {self.waste:.2f}x); at most {_duration(self.compile_s + self.train_wall_s)} here "
                f"({_duration(self.compile_s)} of it compiling)")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _tally(members: list[Member], cfg: Config, model: CostModel, threads: int = 1) -> Tally:
    tally = Tally()
    tally.add(plan.plan_buckets(members, cfg, model, threads=threads), model, set(), threads)
    return tally


def _width_grid(cfg: Config) -> list[Member]:
    """Every coarse width at every (n, k, depth): what round 0 trained before the search grew widths from below."""
    return [m for n, k in cfg.tasks() for d in cfg.depths_at(n) for w in cfg.widths_at(n)
            for m in search.members_at(cfg, n, d, w, k=k)]


def _budget_factor(cfg: Config) -> int:
    """Sum of the budgets that the budget rule may try, in units of train.steps (1 + 2 + 4 + ...)."""
    total, budget = 0, cfg.train.steps
    while budget <= cfg.search.max_steps:
        total += budget
        budget *= search.BUDGET_FACTOR
    return total // cfg.train.steps


def upper_bound(cfg: Config, model: CostModel, threads: int = 1) -> Tally:
    """A bound on the whole search: in every (n, depth) cell, every rung of the coarse grid plus the longest
    bisection (within the widest gap), at every budget the budget rule may reach, with every learning rate the
    edge rule may add; plus the min-depth grid."""
    members = []
    factors = [search.LR_FACTOR**k for k in range(1, cfg.search.lr_extend + 1)]
    extra_lrs = tuple(float(f"{min(cfg.train.lrs) / f:.6g}") for f in factors) + tuple(
        float(f"{max(cfg.train.lrs) * f:.6g}") for f in factors)
    for n, k in cfg.tasks():
        widths = set(cfg.widths_at(n))
        if cfg.model.width_search == WidthSearch.ADAPTIVE and len(cfg.widths_at(n)) > 1:
            lo, hi = cfg.widths_at(n)[-2:]
            while hi - lo > 1:  # the bisection that climbs the whole top gap
                lo = (lo + hi) // 2
                widths.add(lo)
        for depth in cfg.depths_at(n):
            for width in sorted(widths):
                members += search.members_at(cfg, n, depth, width, lrs=cfg.train.lrs + extra_lrs, k=k)
    tally = _tally(members, cfg, model, threads)
    factor = _budget_factor(cfg)
    for field in ("members", "padded_flops", "useful_flops", "train_s", "train_wall_s"):
        setattr(tally, field, getattr(tally, field) * factor)
    in_width_grid = set(_width_grid(cfg))
    depth_grid = [m for m in search.grid_members(cfg) if m not in in_width_grid]
    if depth_grid:
        extra = _tally(depth_grid, cfg, model, threads)
        for field in ("members", "buckets", "programs", "padded_flops", "useful_flops", "compile_s", "train_s",
                      "train_wall_s"):
            setattr(tally, field, getattr(tally, field) + getattr(extra, field))
    return tally


def simulate(cfg: Config, wstar: Callable[[int, int], float], model: CostModel, max_rounds: int = 200,
             threads: int = 1, processes: int = 1, devices: int = 1) -> list[Tally]:
    """Every round of the search against an oracle: a member solves (at step 1) iff width >= w*(n, depth); on
    `processes` of `devices` each (Tally.wall_s)."""
    known: set = set()
    seen: list[set] = [set() for _ in range(processes)]
    all_threads = (threads if devices == 1 else 1) * processes  # a cluster plans for every process's threads
    rounds: list[Tally] = []

    def execute(todo: list[Member]) -> pd.DataFrame:  # the round as the sweep would plan it, answered by w*
        todo = sorted(set(todo))
        tally = Tally()
        tally.add(plan.plan_buckets(todo, cfg, model, known, all_threads), model, known, threads, processes, devices,
                  seen)
        rounds.append(tally)
        return search.assumed_rows(todo, lambda m: m.depth > 0 and m.width >= wstar(m.n, m.depth))

    try:
        for _ in search.replay(cfg, execute, max_rounds=max_rounds):
            pass
    except search.Unsettled as e:
        raise UserError("--assume-wstar", str(e)) from None
    return rounds


def total(tallies: list[Tally]) -> Tally:
    out = Tally()
    for t in tallies:
        for f in dataclasses.fields(Tally):
            setattr(out, f.name, getattr(out, f.name) + getattr(t, f.name))
    return out


def forecast(cfg: Config, model: CostModel, assume_wstar: str | None = None, threads: int = 1,
             processes: int = 1, devices: int = 1) -> dict:
    """The forecast of a sweep that trains `threads` buckets at once: Tally of round 0 ("round0"), the whole
    search's bound ("upper_bound") and the full width grid ("full_grid"); with an assumed w*, every round of
    the replayed search ("rounds") and their total ("search"), and with processes or devices, the search's wall
    time on them and on one process of as many devices ("cluster")."""
    oracle = parse_oracle(assume_wstar) if assume_wstar is not None else None
    out = {"round0": _tally(search.grid_members(cfg), cfg, model, threads),
           "upper_bound": upper_bound(cfg, model, threads),
           "full_grid": _tally(sorted(set(_width_grid(cfg))), cfg, model, threads)}
    if oracle is not None:
        rounds = simulate(cfg, oracle, model, threads=threads, processes=processes, devices=devices)
        out["rounds"], out["search"] = rounds, total(rounds)
        if processes > 1 or devices > 1:
            alone = total(simulate(cfg, oracle, model, threads=threads, devices=devices)).wall_s
            wall = out["search"].wall_s
            out["cluster"] = {"processes": processes, "devices": devices, "wall_s": wall, "one_process_s": alone,
                              "efficiency": alone / (processes * wall) if wall > 0 else float("nan")}
    return out


def describe(cfg: Config, model: CostModel, out: dict, threads: int = 1, assume_wstar: str | None = None) -> list[str]:
    """The lines `scaling plan` prints for a forecast."""
    source = "calibrated" if model.calibrated else "built-in default, not calibrated"
    lines = [f"{cfg.experiment.name}: the plan on this {model.backend} ({model.device}; cost model {source}; "
             f"{threads} bucket"
             f"{'s' if threads > 1 else ''} at once). FLOPs and times assume every member runs its whole budget.",
             f"  round 0:              {out['round0'].line()}",
             f"  whole search, bound:  {out['upper_bound'].line()}",
             f"  the full width grid:  {out['full_grid'].line()}  (every coarse width in every cell at once)"]
    if "rounds" in out:
        rounds = len(out["rounds"])
        lines.append(f"  with w* = {assume_wstar}: {rounds} round{'' if rounds == 1 else 's'}, {out['search'].line()}")
    if "cluster" in out:
        c = out["cluster"]
        lines.append(f"  on {c['processes']} process{'es' if c['processes'] > 1 else ''} x {c['devices']} device"
                     f"{'s' if c['devices'] > 1 else ''} (a forecast: whole budgets, buckets dealt whole): "
                     f"{_duration(c['wall_s'])}; one process of {c['devices']} device{'s' if c['devices'] > 1 else ''}"
                     f": {_duration(c['one_process_s'])}; parallel efficiency {c['efficiency']:.0%}")
    return lines
