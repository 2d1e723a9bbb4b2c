"""Experiment files: TOML in, one validated and frozen Config out. Every default lives here, once."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from scaling.errors import UserError
from scaling.names import ACTIVATIONS, ENCODINGS, INITS, LOSSES, OPTIMIZERS, TASKS
from scaling.population import member_bytes
from scaling.tasks import check_bits


class WidthSearch(enum.StrEnum):
    """How the widths of a cell are chosen (equal to its string, so the config hash is unchanged)."""

    ADAPTIVE = "adaptive"  # the coarse grid from below, then bisection to w* (scaling.search)
    GRID = "grid"  # exactly the listed widths
    PER_N = "per_n"  # one width per n, times_n * n


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    description: str
    task: str
    ns: tuple[int, ...]
    encoding: str
    depths: tuple[int, ...]  # fixed depths, at every n
    depth_log2: tuple[int, ...]  # a schedule tied to n: depth ceil(log2 n) + k for each k
    widths: tuple[int, ...]  # the explicit grid, or the coarse geometric grid of an adaptive search
    width_search: WidthSearch
    width_per_n: int | None  # with width_search = "per_n": the one width at each n is width_per_n * n
    activation: str
    init: str
    optimizer: str
    lrs: tuple[float, ...]
    steps: int
    eval_every: int
    loss: str
    max_batch_rows: int
    seeds: int
    success_threshold: float
    min_depth_widths: tuple[int, ...]
    min_depth_times_n: int | None  # L* at width k * n instead of fixed widths
    min_depth_max: int | None  # None: ceil(log2 n) + 2 with times_n, else the largest depth at n
    lr_extend: int  # at a transition width, a best learning rate at the grid's edge adds lr x 3 (or / 3), this often
    max_steps: int  # budget rule: a budget-limited cell is rerun at twice its budget while that stays <= this
    run_seed: int
    devices: int | None  # None = all visible devices
    bucket_mib: int
    pad_depth: bool
    source: str = ""  # the file's text, kept for provenance

    @property
    def max_width(self) -> int:
        return max(w for n in self.ns for w in self.widths_at(n))

    def widths_at(self, n: int) -> tuple[int, ...]:
        """The grid widths at n (the coarse grid when adaptive; 2n for an N-2N-1 study)."""
        return (self.width_per_n * n,) if self.width_per_n else self.widths

    def depths_at(self, n: int) -> tuple[int, ...]:
        """Every depth whose w* is searched at n: the fixed ones and the log2 schedule's."""
        return tuple(sorted(set(self.depths) | {log2_depth(n) + k for k in self.depth_log2}))

    @property
    def depth_groups(self) -> tuple[str, ...]:
        """One label per curve of w* over n: "depth=2" for a fixed depth, "depth=log2+1" for the schedule."""
        return tuple(f"depth={d}" for d in self.depths) + tuple(f"depth=log2+{k}" for k in self.depth_log2)

    @staticmethod
    def group_depth(group: str, n: int) -> int:
        """The depth that a depth group stands for at n."""
        value = group.split("=", 1)[1]
        return log2_depth(n) + int(value[len("log2+"):]) if value.startswith("log2+") else int(value)

    def min_depth_widths_at(self, n: int) -> tuple[int, ...]:
        return (self.min_depth_times_n * n,) if self.min_depth_times_n else self.min_depth_widths

    @property
    def min_depth_groups(self) -> tuple[str, ...]:
        """One label per L* curve: "width=4", or "width=1n" for widths proportional to n."""
        return (f"width={self.min_depth_times_n}n",) if self.min_depth_times_n else tuple(
            f"width={w}" for w in self.min_depth_widths)

    def min_depth_max_at(self, n: int) -> int:
        """L* is searched over depths 1..this at n."""
        if self.min_depth_max is not None:
            return self.min_depth_max
        return log2_depth(n) + 2 if self.min_depth_times_n else max(self.depths_at(n))

    def lr_range(self) -> tuple[float, float]:
        """The learning rates the search may add: up to lr_extend factors of 3 beyond the grid's edges."""
        return min(self.lrs) / 3**self.lr_extend, max(self.lrs) * 3**self.lr_extend

    def hash(self) -> str:
        """Hash of everything that changes which members exist or how they train (not names or prose)."""
        fields = dataclasses.asdict(self)
        for k in ("name", "description", "source", "devices", "bucket_mib", "pad_depth"):
            fields.pop(k)
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def log2_depth(n: int) -> int:
    """ceil(log2 n), at least 1: the depth of an XOR tree (and of the sawtooth) over n bits."""
    return max(1, math.ceil(math.log2(n)))


# Upper bounds, checked before anything is created. Widths have none of their own: the memory check below
# bounds them through run.bucket_mib (one member must fit in one bucket).
MAX_STEPS = 10**8  # step counters are int32 inside the compiled programs; 10^8 steps is days of training
MAX_DEPTH = 64  # hidden layers are unrolled into the compiled program, so compile time grows with depth
MAX_SEEDS = 10_000
MAX_MEMBERS = 2_000_000  # the first round's members are planned in memory at once (paper.toml: 192,000)
MAX_BUCKET_MIB = 2**20

REQUIRED = object()
# section -> key -> default. The single source of defaults (min_depth_max = None: ceil(log2 n) + 2 when L* is
# searched at widths proportional to n, else the largest depth at n; max_steps = None: train.steps, so no
# cell is rerun at a larger budget).
SCHEMA: dict[str, dict[str, Any]] = {
    "experiment": {"name": REQUIRED, "description": ""},
    "task": {"kind": "parity", "n": REQUIRED, "encoding": "pm1"},
    "model": {"depths": [1, 2, 3], "widths": {"min": 1, "max": 64, "search": WidthSearch.ADAPTIVE},
              "activation": "relu", "init": "he"},
    "train": {"optimizer": "adam", "lrs": [3e-3, 1e-2, 3e-2], "steps": 3000, "eval_every": 100, "loss": "bce",
              "max_batch_rows": 65536},
    "search": {"seeds": 8, "success_threshold": 0.5, "min_depth_widths": [2, 4], "min_depth_max": None,
               "max_steps": None, "lr_extend": 1},
    "run": {"seed": 0, "devices": "all", "bucket_mib": 1024, "pad_depth": True},
}


class _Reader:
    """Typed access to one section, with errors that name the file, the key and the problem."""

    def __init__(self, path: str, section: str, table: dict):
        self.path, self.section, self.table = path, section, table

    def fail(self, key: str, problem: str) -> UserError:
        return UserError(f"{self.path}: [{self.section}] {key}", problem)

    def get(self, key: str) -> Any:
        default = SCHEMA[self.section][key]
        if key not in self.table:
            if default is REQUIRED:
                raise self.fail(key, "is required")
            return default
        return self.table[key]

    def int_(self, key: str, lo: int = 0, value: Any = None, hi: int | None = None) -> int:
        v = self.get(key) if value is None else value
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(key, f"must be an integer, got {v!r}")
        if v < lo:
            raise self.fail(key, f"must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.fail(key, f"must be <= {hi}, got {v}")
        return v

    def str_(self, key: str, choices=None) -> str:
        v = self.get(key)
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def int_list(self, key: str, lo: int, value: Any = None, hi: int | None = None) -> tuple[int, ...]:
        v = self.get(key) if value is None else value
        if not isinstance(v, list) or not v:
            raise self.fail(key, f"must be a non-empty list of integers, got {v!r}")
        return tuple(sorted({self.int_(key, lo, x, hi) for x in v}))


def _ns(r: _Reader) -> tuple[int, ...]:
    v = r.get("n")
    if isinstance(v, dict):  # n = {values = [4, 8]}: exactly these
        if set(v) != {"values"}:
            raise r.fail("n", "as a table takes only 'values', e.g. n = {values = [4, 8]}")
        ns = r.int_list("n", 1, v["values"])
    elif isinstance(v, list) and len(v) == 2:  # n = [lo, hi]: the inclusive range
        lo, hi = r.int_("n", 1, v[0]), r.int_("n", 1, v[1])
        if hi < lo:
            raise r.fail("n", f"range [{lo}, {hi}] is empty")
        ns = tuple(range(lo, hi + 1))
    elif isinstance(v, int) and not isinstance(v, bool):
        ns = (r.int_("n", 1),)
    else:
        ns = r.int_list("n", 1)
    for n in ns:
        check_bits(n, f"{r.path}: [task] n")
    return ns


def _widths(r: _Reader) -> tuple[tuple[int, ...], WidthSearch, int | None]:
    v = r.get("widths")
    if isinstance(v, list):
        return r.int_list("widths", 1), WidthSearch.GRID, None
    if not isinstance(v, dict):
        raise r.fail("widths", f"must be a list or a table like {{max = 64, search = \"adaptive\"}}, got {v!r}")
    if "times_n" in v:  # widths = {times_n = 2}: one width per n, 2n (Tesauro & Janssens' N-2N-1 networks)
        if set(v) != {"times_n"}:
            raise r.fail("widths", "times_n stands alone, e.g. widths = {times_n = 2}")
        return (), WidthSearch.PER_N, r.int_("widths.times_n", 1, v["times_n"])
    unknown = set(v) - {"max", "min", "search"}
    if unknown:
        raise r.fail("widths", f"unknown key {sorted(unknown)[0]!r}; expected max, min, search (or times_n alone)")
    default = SCHEMA["model"]["widths"]  # a table sets only what it changes
    hi = r.int_("widths.max", 1, v.get("max", default["max"]))
    lo = r.int_("widths.min", 1, v.get("min", default["min"]))
    if hi < lo:
        raise r.fail("widths", f"max ({hi}) is below min ({lo})")
    search = v.get("search", default["search"])
    if search not in (WidthSearch.ADAPTIVE, WidthSearch.GRID):
        raise r.fail("widths.search", f"must be 'adaptive' or 'grid', got {search!r}")
    coarse, w = [], lo
    while w < hi:
        coarse.append(w)
        w *= 2
    coarse.append(hi)
    return tuple(coarse), WidthSearch(search), None


def _depths(r: _Reader, n_max: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """depths = [1, 2, 3] (fixed), or {fixed = [1], log2 = [0, 1]}: depth ceil(log2 n) + k as well."""
    v = r.get("depths")
    if not isinstance(v, dict):
        return r.int_list("depths", 0, hi=MAX_DEPTH), ()
    unknown = set(v) - {"fixed", "log2"}
    if unknown or not v:
        raise r.fail("depths", "as a table takes fixed and/or log2, e.g. depths = {fixed = [1], log2 = [0, 1]}")
    fixed = r.int_list("depths.fixed", 0, v["fixed"], hi=MAX_DEPTH) if "fixed" in v else ()
    offsets = r.int_list("depths.log2", 0, v["log2"], hi=MAX_DEPTH) if "log2" in v else ()
    if offsets and log2_depth(n_max) + max(offsets) > MAX_DEPTH:
        raise r.fail("depths.log2",
                     f"reaches depth {log2_depth(n_max) + max(offsets)} at n = {n_max}, over {MAX_DEPTH}")
    return fixed, offsets


def _min_depth_widths(r: _Reader) -> tuple[tuple[int, ...], int | None]:
    """min_depth_widths = [2, 4] (fixed widths), [] (no L* search) or {times_n = 1} (width n at each n)."""
    v = r.get("min_depth_widths")
    if isinstance(v, dict):
        if set(v) != {"times_n"}:
            raise r.fail("min_depth_widths", "as a table takes only times_n, e.g. min_depth_widths = {times_n = 1}")
        return (), r.int_("min_depth_widths.times_n", 1, v["times_n"])
    return (() if v == [] else r.int_list("min_depth_widths", 1)), None


def _lrs(r: _Reader) -> tuple[float, ...]:
    v = r.get("lrs")
    if not isinstance(v, list) or not v:
        raise r.fail("lrs", f"must be a non-empty list of numbers, got {v!r}")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x < math.inf:
            raise r.fail("lrs", f"every learning rate must be a finite number > 0, got {x!r}")
    return tuple(sorted({float(x) for x in v}))


def parse(text: str, path: str = "<config>") -> Config:
    """Validate an experiment file's text; raises UserError naming the file, key and problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(path, f"not valid TOML: {e}") from None
    for section, table in raw.items():
        if section not in SCHEMA:
            raise UserError(f"{path}: [{section}]", f"unknown section; expected one of {', '.join(SCHEMA)}")
        if not isinstance(table, dict):
            raise UserError(f"{path}: {section}", "must be a [section] table")
        for key in table:
            if key not in SCHEMA[section]:
                raise UserError(f"{path}: [{section}] {key}",
                                f"unknown key; expected one of {', '.join(SCHEMA[section])}")
    r = {s: _Reader(path, s, raw.get(s, {})) for s in SCHEMA}
    widths, width_search, width_per_n = _widths(r["model"])
    ns = _ns(r["task"])
    depths, depth_log2 = _depths(r["model"], max(ns))
    min_depth_widths, min_depth_times_n = _min_depth_widths(r["search"])
    threshold = r["search"].get("success_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise r["search"].fail("success_threshold", f"must be a number in (0, 1], got {threshold!r}")
    devices = r["run"].get("devices")
    if devices != "all":
        devices = r["run"].int_("devices", 1)
    steps, eval_every = r["train"].int_("steps", 1, hi=MAX_STEPS), r["train"].int_("eval_every", 1)
    if eval_every > steps:
        raise r["train"].fail("eval_every", f"({eval_every}) must not exceed steps ({steps})")
    min_depth_max = r["search"].get("min_depth_max")
    max_steps = r["search"].get("max_steps")
    max_steps = steps if max_steps is None else r["search"].int_("max_steps", steps, hi=MAX_STEPS)
    pad_depth = r["run"].get("pad_depth")
    if not isinstance(pad_depth, bool):
        raise r["run"].fail("pad_depth", f"must be true or false, got {pad_depth!r}")
    name = r["experiment"].str_("name")
    if not name.strip():
        raise r["experiment"].fail("name", "must not be empty")
    if any(c in name for c in "/\\\0") or name.strip() in (".", "..") or not name.isprintable():
        raise r["experiment"].fail("name", f"names the results directory (results/NAME), so it must be printable, "
                                           f"without path separators or NUL, and not . or ..; got {name!r}")
    cfg = Config(
        name=name,
        description=r["experiment"].str_("description"),
        task=r["task"].str_("kind", TASKS),
        ns=ns,
        encoding=r["task"].str_("encoding", ENCODINGS),
        depths=depths,
        depth_log2=depth_log2,
        widths=widths,
        width_search=width_search,
        width_per_n=width_per_n,
        activation=r["model"].str_("activation", ACTIVATIONS),
        init=r["model"].str_("init", INITS),
        optimizer=r["train"].str_("optimizer", OPTIMIZERS),
        lrs=_lrs(r["train"]),
        steps=steps,
        eval_every=eval_every,
        loss=r["train"].str_("loss", LOSSES),
        max_batch_rows=r["train"].int_("max_batch_rows", 1),
        seeds=r["search"].int_("seeds", 1, hi=MAX_SEEDS),
        success_threshold=float(threshold),
        min_depth_widths=min_depth_widths,
        min_depth_times_n=min_depth_times_n,
        min_depth_max=None if min_depth_max is None else r["search"].int_("min_depth_max", 1, hi=MAX_DEPTH),
        max_steps=max_steps,
        lr_extend=r["search"].int_("lr_extend", 0, hi=8),
        run_seed=r["run"].int_("seed", 0),
        devices=None if devices == "all" else devices,
        bucket_mib=r["run"].int_("bucket_mib", 1, hi=MAX_BUCKET_MIB),
        pad_depth=pad_depth,
        source=text,
    )
    _check_size(cfg, path)
    _check_lrs(cfg, r)
    return cfg


# Learning rates are float32 on the device. Adam's first step moves every weight by about lr, so a rate past
# float32's largest number (with the search's x 3 extensions) makes every weight infinite at once, and one
# below its smallest is zero: neither trains anything.
_F32 = np.finfo(np.float32)


def _check_lrs(cfg: Config, r: _Reader) -> None:
    lo, hi = cfg.lr_range()
    if hi > float(_F32.max) or lo < float(_F32.tiny):
        raise r["train"].fail("lrs", f"learning rates from {lo:.3g} to {hi:.3g} (the grid and the search's "
                                     f"extensions) must lie within float32's normal range, {float(_F32.tiny):.3g} "
                                     f"to {float(_F32.max):.3g}: Adam's first step moves each weight by about lr")


def _check_size(cfg: Config, path: str) -> None:
    """Refuse a config whose first round, or whose largest member, would not fit in memory."""
    points = sum(len(cfg.depths_at(n)) * len(cfg.widths_at(n))
                 + len(cfg.min_depth_widths_at(n)) * cfg.min_depth_max_at(n) for n in cfg.ns)
    members = points * len(cfg.lrs) * cfg.seeds
    if members > MAX_MEMBERS:
        raise UserError(f"{path}: [search] seeds", f"the first round would plan {members:,} members (points x "
                                                   f"lrs x seeds), over the limit of {MAX_MEMBERS:,}")
    budget = cfg.bucket_mib * 2**20
    for n in cfg.ns:
        rows = min(2**n, cfg.max_batch_rows)
        shapes = [(max(cfg.depths_at(n)), max(cfg.widths_at(n)), "[model] widths")]
        if cfg.min_depth_widths_at(n):
            shapes.append((cfg.min_depth_max_at(n), max(cfg.min_depth_widths_at(n)), "[search] min_depth_widths"))
        for depth, width, key in shapes:
            need = member_bytes(n, depth, width, rows)
            if need > budget:
                raise UserError(f"{path}: {key}", f"one member of width {width} and depth {depth} at n = {n} "
                                                  f"needs about {need / 2**20:,.0f} MiB, over run.bucket_mib = "
                                                  f"{cfg.bucket_mib}; use smaller widths or raise bucket_mib")


def load(path: str | Path) -> Config:
    """Read and validate an experiment file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(str(path), "no such experiment file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(str(path), f"cannot read: {e}") from None
    return parse(text, str(path))
