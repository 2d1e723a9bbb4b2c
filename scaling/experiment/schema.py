"""The experiment file's schema: its sections and keys with their defaults (the one place defaults live), the
bounds checked before anything is created, the width-search modes, and a typed reader whose errors name the
file, the section, the key and the problem in one line."""

from __future__ import annotations

import enum
import math
from typing import Any, TypeVar

from scaling.choices import Activation, Data, Encoding, Init, Loss, Optimizer, Profile, Task, WidthSearch
from scaling.engine.tasks import MAX_SAMPLE_BITS, check_bits
from scaling.errors import UserError


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
MAX_SAMPLES = 2**31 - 1  # sample indices are int32 on the device
MAX_EVAL_SAMPLES = 2**20

Choice = TypeVar("Choice", bound=enum.StrEnum)
REQUIRED = object()
# section -> key -> default. The single source of defaults (min_depth_max = None: ceil(log2 n) + 2 when L* is
# searched at widths proportional to n, else the largest depth at n; max_steps = None: train.steps, so no
# cell is rerun at a larger budget).
SCHEMA: dict[str, dict[str, Any]] = {
    "experiment": {"name": REQUIRED, "description": ""},
    "task": {"kind": Task.PARITY, "n": REQUIRED, "encoding": Encoding.PM1, "k": None, "data": Data.TABLE,
             "samples": None, "eval_samples": 8192},
    "model": {"depths": [1, 2, 3], "widths": {"min": 1, "max": 64, "search": WidthSearch.ADAPTIVE},
              "profile": Profile.CONSTANT, "activation": Activation.RELU, "init": Init.HE},
    "train": {"optimizer": Optimizer.ADAM, "lrs": [3e-3, 1e-2, 3e-2], "steps": 3000, "eval_every": 100,
              "loss": Loss.BCE, "max_batch_rows": 65536, "weight_decay": 0.0,
              "batch_size": 32},
    "search": {"seeds": 8, "success_threshold": 0.5, "min_depth_widths": [2, 4], "min_depth_max": None,
               "max_steps": None, "lr_extend": 1},
    "run": {"seed": 0, "devices": "all", "bucket_mib": 1024, "pad_depth": True},
}


class Reader:
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

    def str_(self, key: str) -> str:
        v = self.get(key)
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, got {v!r}")
        return v

    def choice(self, key: str, choices: type[Choice]) -> Choice:
        """One of an enum's values, returned as its member."""
        v = self.str_(key)
        if v not in tuple(choices):
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {v!r}")
        return choices(v)

    def int_list(self, key: str, lo: int, value: Any = None, hi: int | None = None) -> tuple[int, ...]:
        v = self.get(key) if value is None else value
        if not isinstance(v, list) or not v:
            raise self.fail(key, f"must be a non-empty list of integers, got {v!r}")
        return tuple(sorted({self.int_(key, lo, x, hi) for x in v}))


# Readers of the keys that take more than one form; each returns the Config fields it fills.

def ns_of(r: Reader, table: bool = True) -> tuple[int, ...]:
    """The n grid; a truth table must fit in memory, the sample modes take n up to MAX_SAMPLE_BITS."""
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
        if table:
            check_bits(n, f"{r.path}: [task] n")
        elif n > MAX_SAMPLE_BITS:
            raise r.fail("n", f"must be <= {MAX_SAMPLE_BITS} in the sample modes, got {n}")
    return ns


def data_of(task: Reader) -> Data:
    """The data mode, checked against the task first (a sparse parity's n is too large for any table)."""
    data = task.choice("data", Data)
    if task.choice("kind", Task) == Task.SPARSE_PARITY and data == Data.TABLE:
        raise task.fail("data", 'a sparse parity is learned from samples: choose "online" or "fixed"')
    return data


def sampling_of(task: Reader, train: Reader, ns: tuple[int, ...]) -> dict[str, Any]:
    """The task's hidden bits and data mode: ks (() = every bit), data, samples (m, data = "fixed"), eval_samples
    and the train section's batch_size (0 in the table mode, where neither applies)."""
    kind, data = task.choice("kind", Task), data_of(task)
    if kind == Task.SPARSE_PARITY and "k" not in task.table:
        raise task.fail("k", 'is required with kind = "sparse_parity": how many hidden bits (a list for several)')
    if kind == Task.SPARSE_PARITY:
        ks = task.int_list("k", 1, task.get("k") if isinstance(task.get("k"), list) else [task.get("k")],
                           hi=min(ns))
    elif "k" in task.table:
        raise task.fail("k", 'names the hidden bits of kind = "sparse_parity"; parity uses every bit')
    else:
        ks = ()
    sample_keys = [("task", "samples"), ("task", "eval_samples"), ("train", "batch_size")]
    if data == Data.TABLE:
        for section, key in sample_keys:
            if key in (task if section == "task" else train).table:
                raise (task if section == "task" else train).fail(
                    key, 'applies to the sample modes only (data = "online" or "fixed")')
        return {"ks": ks, "data": data, "samples": 0, "eval_samples": 0, "batch_size": 0}
    if data == Data.FIXED:
        if "samples" not in task.table:
            raise task.fail("samples", 'is required with data = "fixed": the training set\'s size m')
        samples = task.int_("samples", 1, hi=MAX_SAMPLES)
    elif "samples" in task.table:
        raise task.fail("samples", 'is the training set of data = "fixed"; "online" draws fresh samples')
    else:
        samples = 0
    return {"ks": ks, "data": data, "samples": samples,
            "eval_samples": task.int_("eval_samples", 1, hi=MAX_EVAL_SAMPLES),
            "batch_size": train.int_("batch_size", 1, hi=2**16)}


def widths_of(r: Reader) -> tuple[tuple[int, ...], WidthSearch, int | None]:
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


def depths_of(r: Reader, n_max: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
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


def min_depth_widths_of(r: Reader) -> tuple[tuple[int, ...], int | None]:
    """min_depth_widths = [2, 4] (fixed widths), [] (no L* search) or {times_n = 1} (width n at each n)."""
    v = r.get("min_depth_widths")
    if isinstance(v, dict):
        if set(v) != {"times_n"}:
            raise r.fail("min_depth_widths", "as a table takes only times_n, e.g. min_depth_widths = {times_n = 1}")
        return (), r.int_("min_depth_widths.times_n", 1, v["times_n"])
    return (() if v == [] else r.int_list("min_depth_widths", 1)), None


def inits_of(r: Reader) -> tuple[Init, ...]:
    """init = "he", or a list of inits searched per (n, depth) as the learning rate is (in the listed order)."""
    v = r.get("init")
    if isinstance(v, list):
        if not v or len(set(v)) != len(v):
            raise r.fail("init", f"as a list must name distinct inits, at least one, got {v!r}")
        return tuple(Reader(r.path, r.section, {"init": x}).choice("init", Init) for x in v)
    return (r.choice("init", Init),)


def lrs_of(r: Reader) -> tuple[float, ...]:
    v = r.get("lrs")
    if not isinstance(v, list) or not v:
        raise r.fail("lrs", f"must be a non-empty list of numbers, got {v!r}")
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x < math.inf:
            raise r.fail("lrs", f"every learning rate must be a finite number > 0, got {x!r}")
    return tuple(sorted({float(x) for x in v}))


def weight_decay_of(r: Reader) -> float:
    value = r.get("weight_decay")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise r.fail("weight_decay", f"must be a number in [0, 1), got {value!r}")
    return float(value)
