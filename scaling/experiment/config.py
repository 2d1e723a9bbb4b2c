"""Experiment files: TOML in, one validated and frozen Config out. The keys, defaults and bounds are
scaling.experiment.schema's, once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path

from scaling.choices import Activation, Data, Encoding, Init, Loss, Optimizer, Profile, Task, WidthSearch
from scaling.errors import UserError
from scaling.experiment import limits
from scaling.experiment import overrides as overrides_mod
from scaling.experiment.schema import (
    MAX_BUCKET_MIB,
    MAX_DEPTH,
    MAX_SEEDS,
    MAX_STEPS,
    SCHEMA,
    Reader,
    data_of,
    depths_of,
    inits_of,
    log2_depth,
    lrs_of,
    min_depth_widths_of,
    ns_of,
    sampling_of,
    weight_decay_of,
    widths_of,
)


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    description: str


@dataclasses.dataclass(frozen=True)
class TaskSection:
    kind: Task
    ns: tuple[int, ...]
    encoding: Encoding
    ks: tuple[int, ...] = ()  # a sparse parity's hidden bits, one task per k (() = every bit: parity)
    data: Data = Data.TABLE  # the truth table, or samples: online (fresh every step) or a fixed set
    samples: int = 0  # the fixed training set's size m
    eval_samples: int = 0  # fresh samples per evaluation (sample modes)


@dataclasses.dataclass(frozen=True)
class Model:
    depths: tuple[int, ...]  # fixed depths, at every n
    depth_log2: tuple[int, ...]  # a schedule tied to n: depth ceil(log2 n) + k for each k
    widths: tuple[int, ...]  # the explicit grid, or the coarse geometric grid of an adaptive search
    width_search: WidthSearch
    times_n: int | None  # with width_search = "per_n": the one width at each n is times_n * n
    profile: Profile  # the widths of the later layers, from the first layer's (the searched width)
    activation: Activation
    inits: tuple[Init, ...]  # initialisations: one, or several searched per (n, depth) like the learning rate


@dataclasses.dataclass(frozen=True)
class Train:
    optimizer: Optimizer
    lrs: tuple[float, ...]
    steps: int
    eval_every: int
    loss: Loss
    max_batch_rows: int
    weight_decay: float  # L2 weight decay added to every gradient (0: none)
    batch_size: int = 0  # samples per step in the sample modes (0: the table mode's max_batch_rows applies)


@dataclasses.dataclass(frozen=True)
class Search:
    seeds: int
    success_threshold: float
    min_depth_widths: tuple[int, ...]
    min_depth_times_n: int | None  # L* at width k * n instead of fixed widths
    min_depth_max: int | None  # None: ceil(log2 n) + 2 with times_n, else the largest depth at n
    lr_extend: int  # at a transition width, a best learning rate at the grid's edge adds lr x 3 (or / 3), this often
    max_steps: int  # budget rule: a budget-limited cell is rerun at twice its budget while that stays <= this


@dataclasses.dataclass(frozen=True)
class Run:
    seed: int
    devices: int | None  # None = all visible devices
    bucket_mib: int
    pad_depth: bool


# The fields of the config hash, named as they have been since the first stored run (section, field, name):
# the run's and the experiment's sections change no member, so they are left out.
# Hashed under the names they had when stores were first written: init before it could hold a list (one init:
# its value alone), times_n (the file's key) as width_per_n.
_NAMES = {"inits": "init", "times_n": "width_per_n"}
_HASHED = [("task", "kind", "task"), ("task", "ns", "ns"), ("task", "encoding", "encoding"), ("task", "ks", "k"),
           ("task", "data", "data"), ("task", "samples", "samples"), ("task", "eval_samples", "eval_samples")] + [
    (section, f.name, _NAMES.get(f.name, f.name)) for section, cls in (("model", Model), ("train", Train),
                                                                        ("search", Search))
    for f in dataclasses.fields(cls)] + [("run", "seed", "run_seed")]
# Fields added after stores existed, hashed only when they differ from their default, so that every earlier
# experiment file keeps its hash (and its stores).
_HASHED_UNLESS = {"profile": Profile.CONSTANT, "weight_decay": 0.0, "k": (), "data": Data.TABLE, "samples": 0,
                  "eval_samples": 0, "batch_size": 0}


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated experiment file, one frozen section per [section] of the file."""

    experiment: Experiment
    task: TaskSection
    model: Model
    train: Train
    search: Search
    run: Run
    source: str = ""  # the file's text, kept for provenance

    def replace(self, **fields) -> Config:
        """A copy with some fields changed, each named as in its section: cfg.replace(seeds=4, pad_depth=False)."""
        sections = {}
        for key, value in fields.items():
            section = next((f.name for f in dataclasses.fields(self) if f.name != "source" and key in {
                g.name for g in dataclasses.fields(getattr(self, f.name))}), None)
            if section is None:
                raise TypeError(f"no section of Config has a field {key!r}")
            sections.setdefault(section, {})[key] = value
        return dataclasses.replace(self, **{s: dataclasses.replace(getattr(self, s), **changes)
                                            for s, changes in sections.items()})

    @property
    def max_width(self) -> int:
        return max(w for n in self.task.ns for w in self.widths_at(n))

    def tasks(self) -> list[tuple[int, int]]:
        """Every (n, k) whose widths are searched: k = 0 (every bit) for parity, each k of a sparse parity."""
        return [(n, k) for n in self.task.ns for k in (self.task.ks or (0,))]

    def widths_at(self, n: int) -> tuple[int, ...]:
        """The grid widths at n (the coarse grid when adaptive; 2n for an N-2N-1 study)."""
        return (self.model.times_n * n,) if self.model.times_n else self.model.widths

    def depths_at(self, n: int) -> tuple[int, ...]:
        """Every depth whose w* is searched at n: the fixed ones and the log2 schedule's."""
        return tuple(sorted(set(self.model.depths) | {log2_depth(n) + k for k in self.model.depth_log2}))

    @property
    def depth_groups(self) -> tuple[str, ...]:
        """One label per curve of w* over n: "depth=2" for a fixed depth, "depth=log2+1" for the schedule."""
        return tuple(f"depth={d}" for d in self.model.depths) + tuple(f"depth=log2+{k}" for k in self.model.depth_log2)

    @staticmethod
    def group_depth(group: str, n: int) -> int:
        """The depth that a depth group stands for at n."""
        value = group.split("=", 1)[1]
        return log2_depth(n) + int(value[len("log2+"):]) if value.startswith("log2+") else int(value)

    def min_depth_widths_at(self, n: int) -> tuple[int, ...]:
        return (self.search.min_depth_times_n * n,) if self.search.min_depth_times_n else self.search.min_depth_widths

    @property
    def min_depth_groups(self) -> tuple[str, ...]:
        """One label per L* curve: "width=4", or "width=1n" for widths proportional to n."""
        return (f"width={self.search.min_depth_times_n}n",) if self.search.min_depth_times_n else tuple(
            f"width={w}" for w in self.search.min_depth_widths)

    def min_depth_max_at(self, n: int) -> int:
        """L* is searched over depths 1..this at n."""
        if self.search.min_depth_max is not None:
            return self.search.min_depth_max
        return log2_depth(n) + 2 if self.search.min_depth_times_n else max(self.depths_at(n))

    def lr_range(self) -> tuple[float, float]:
        """The learning rates the search may add: up to lr_extend factors of 3 beyond the grid's edges."""
        return min(self.train.lrs) / 3**self.search.lr_extend, max(self.train.lrs) * 3**self.search.lr_extend

    def hash(self) -> str:
        """Hash of everything that changes which members exist or how they train (not names or prose)."""
        fields = {name: getattr(getattr(self, section), field) for section, field, name in _HASHED}
        fields["init"] = fields["init"][0] if len(fields["init"]) == 1 else list(fields["init"])
        fields = {k: v for k, v in fields.items() if k not in _HASHED_UNLESS or v != _HASHED_UNLESS[k]}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


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
    r = {s: Reader(path, s, raw.get(s, {})) for s in SCHEMA}
    widths, width_search, times_n = widths_of(r["model"])
    ns = ns_of(r["task"], data_of(r["task"]) == Data.TABLE)
    sampling = sampling_of(r["task"], r["train"], ns)
    depths, depth_log2 = depths_of(r["model"], max(ns))
    min_depth_widths, min_depth_times_n = min_depth_widths_of(r["search"])
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
        experiment=Experiment(name=name, description=r["experiment"].str_("description")),
        task=TaskSection(kind=r["task"].choice("kind", Task), ns=ns, encoding=r["task"].choice("encoding", Encoding),
                         **{k: v for k, v in sampling.items() if k != "batch_size"}),
        model=Model(depths=depths, depth_log2=depth_log2, widths=widths, width_search=width_search,
                    times_n=times_n, profile=r["model"].choice("profile", Profile),
                    activation=r["model"].choice("activation", Activation),
                    inits=inits_of(r["model"])),
        train=Train(optimizer=r["train"].choice("optimizer", Optimizer), lrs=lrs_of(r["train"]), steps=steps,
                    eval_every=eval_every, loss=r["train"].choice("loss", Loss),
                    max_batch_rows=r["train"].int_("max_batch_rows", 1), weight_decay=weight_decay_of(r["train"]),
                    batch_size=sampling["batch_size"]),
        search=Search(seeds=r["search"].int_("seeds", 1, hi=MAX_SEEDS), success_threshold=float(threshold),
                      min_depth_widths=min_depth_widths, min_depth_times_n=min_depth_times_n,
                      min_depth_max=None if min_depth_max is None
                      else r["search"].int_("min_depth_max", 1, hi=MAX_DEPTH),
                      lr_extend=r["search"].int_("lr_extend", 0, hi=8), max_steps=max_steps),
        run=Run(seed=r["run"].int_("seed", 0), devices=None if devices == "all" else devices,
                bucket_mib=r["run"].int_("bucket_mib", 1, hi=MAX_BUCKET_MIB), pad_depth=pad_depth),
        source=text,
    )
    limits.check_size(cfg, path)
    limits.check_lrs(cfg, r)
    return cfg


def load(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read and validate an experiment file, with `section.key=value` overrides (the command line's --set)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(str(path), "no such experiment file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(str(path), f"cannot read: {e}") from None
    if not overrides:
        return parse(text, str(path))
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(str(path), f"not valid TOML: {e}") from None
    header = f"{path} with " + " ".join(f"--set {o}" for o in overrides)
    return parse(overrides_mod.dump(overrides_mod.apply(raw, overrides), header), f"{path} (with --set)")
