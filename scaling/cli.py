"""The `scaling` command line (also `python -m scaling`). Kept short: the logic lives in the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
from typing import TYPE_CHECKING

from scaling import about, sweep_command
from scaling.errors import UserError

if TYPE_CHECKING:  # pandas and jax load only when a command runs, so `scaling --help` answers at once
    from collections.abc import Callable

    from scaling.distributed.cluster import Cluster


def _launch(args) -> None:
    from scaling.distributed.launch import launch

    if code := launch(args.processes, args.sweep_command, args.devices_per_process, args.heartbeat, args.pin_cores):
        raise SystemExit(code)


def _plan(args) -> None:
    from scaling.engine.devices import make_mesh, training_threads
    from scaling.experiment import config
    from scaling.planning import probes
    from scaling.planning.forecast import describe, forecast, parse_oracle

    if args.power:
        return _power(args.power)
    if not args.config:
        raise UserError("scaling plan", "name an experiment file, or --power DIR")
    cfg = config.load(args.config, args.set)
    if args.assume_wstar is not None:
        parse_oracle(args.assume_wstar)  # a bad expression fails before the cost model is probed
    cluster = args.processes is not None or args.devices is not None
    processes = 1 if args.processes is None else args.processes
    devices = 1 if args.devices is None else args.devices
    if cluster and args.assume_wstar is None:
        raise UserError("--processes/--devices", "forecast the whole search, so they need --assume-wstar")
    if processes < 1 or devices < 1:
        raise UserError("--processes/--devices", f"must be at least 1, got {processes} and {devices}")
    threads = training_threads(make_mesh(cfg.run.devices) if not cluster else None, cfg.run.bucket_mib)
    model = probes.load_or_calibrate()
    out = forecast(cfg, model, args.assume_wstar, threads, processes, devices)
    print("\n".join(describe(cfg, model, out, threads, args.assume_wstar)))


def _power(dir: str) -> None:
    """The power analysis of a results directory: the design that would decide each depth group."""
    from analysis.calls.verdict import judge
    from analysis.measurement.data import load, load_config
    from analysis.reporting.answer import power_line
    from analysis.reporting.style import group_label as label
    from analysis.simulation.power import power_analysis
    from scaling.engine.devices import cores

    df, cfg = load(dir), load_config(dir)
    if df.empty:
        raise UserError(dir, "the store has no trained members yet")
    if cfg.task.data != "table":
        raise UserError(dir, "learned from samples: the power analysis is of the truth table's w* calls; "
                             "`scaling analyze` reports this run's α(k) and its controls")
    verdict = judge(df, cfg)
    for group, g in verdict.groups.items():
        print(f"{label(group)}: {g.call}" + (f" ({'; '.join(g.reasons)})" if g.reasons else ""))
    print("What would decide it (simulated from this run's fitted curves and noise):")
    powers = power_analysis(verdict, cfg, workers=cores())
    for group, result in powers.items():
        print(power_line(group, result, cfg))


def _analyze(args) -> None:
    from analysis.reporting.report import analyze
    from scaling.engine.devices import cores

    written = analyze(args.dir, power=not args.no_power, workers=cores())  # the power analysis on every core
    print("wrote " + ", ".join(str(p) for p in written))


def _bench(args) -> None:
    if args.processes is not None:
        from scaling.benchmarks.cluster_bench import run_cluster_bench

        print(json.dumps(run_cluster_bench(args.processes, args.out or "bench-cluster.json"), indent=1))
        return
    from scaling.benchmarks.bench import run_bench

    run_bench(args.out or "bench.json")


def _construct(args) -> None:
    from scaling.engine.constructions import describe

    print(describe(args.kind, args.n))


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of the experiment file (repeatable; a TOML value, e.g. --set search.seeds=8 "
                        "--set train.lrs=[1e-2]); checked like the file, and stored with the run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scaling", description="Depth-versus-width scaling of n-bit parity.")
    parser.add_argument("--version", action="version", version=f"scaling {about.version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="say more (each round's plan)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="train the populations of an experiment file (resumes by default)")
    p.add_argument("config", help="experiment file, e.g. experiments/default.toml")
    p.add_argument("--out", help="results directory (default results/<experiment name>)")
    p.add_argument("--fresh", action="store_true", help="delete the store in --out and start over")
    p.add_argument("--devices", type=int, help="shard the population over N devices (default: the file's run.devices)")
    group = p.add_argument_group("many processes (README, \"Many hosts\"); each flag also reads SCALING_<NAME>")
    group.add_argument("--distributed", action="store_true",
                       help="join a jax.distributed cluster found by auto-detection (TPU pod, SLURM, Open MPI)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (SCALING_COORDINATOR)")
    group.add_argument("--num-processes", type=int, metavar="N", help="processes in the cluster "
                                                                       "(SCALING_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1 (SCALING_PROCESS_ID)")
    group.add_argument("--heartbeat", type=int, metavar="S", help="seconds of silence after which a process "
                       "counts as lost and the cluster stops (SCALING_HEARTBEAT_S, default 30)")
    _add_set(p)
    p.set_defaults(func=sweep_command.run)
    p = sub.add_parser("launch", help="run a sweep as N local processes of one jax.distributed cluster")
    p.add_argument("--processes", type=int, required=True, metavar="N")
    p.add_argument("--devices-per-process", type=int, metavar="K", help="CPU devices of each process "
                                                                       "(JAX_NUM_CPU_DEVICES)")
    p.add_argument("--heartbeat", type=int, default=30, metavar="S",
                   help="seconds of silence after which a process counts as lost (default 30)")
    p.add_argument("--pin-cores", action="store_true", help="run process i on core i alone (for benchmarks)")
    p.add_argument("sweep_command", nargs=argparse.REMAINDER, metavar="command", help="-- sweep CONFIG [--out DIR]")
    p.set_defaults(func=_launch)
    p = sub.add_parser("plan", help="forecast a sweep's members, buckets, programs, FLOPs and time; trains and writes "
                                    "nothing")
    p.add_argument("config", nargs="?", help="experiment file, e.g. experiments/paper.toml")
    p.add_argument("--power", metavar="DIR", help="instead: which design would decide each depth group of the run in "
                                                  "DIR (a power analysis simulated from its own curves and noise)")
    p.add_argument("--assume-wstar", metavar="EXPR",
                   help='replay the whole search against an assumed w*(n, d), e.g. "2*n" or "2**(n-1)/d"')
    p.add_argument("--processes", type=int, metavar="P", help="with --assume-wstar: the search's wall time and "
                                                               "parallel efficiency on P processes (a cluster)")
    p.add_argument("--devices", type=int, metavar="D", help="... of D devices each (default 1)")
    _add_set(p)
    p.set_defaults(func=_plan)
    p = sub.add_parser("analyze", help="fits, figures and REPORT.md from a results directory")
    p.add_argument("dir")
    p.add_argument("--no-power", action="store_true", help="skip the power analysis (most of the analysis's time)")
    p.set_defaults(func=_analyze)
    p = sub.add_parser("bench", help="throughput benchmark, written as JSON")
    p.add_argument("--out", help="the JSON file (default bench.json, or bench-cluster.json with --processes)")
    p.add_argument("--processes", type=int, metavar="P", help="instead: P local processes of one cluster, one core "
                                                               "each, against one process on one core")
    p.set_defaults(func=_bench)
    p = sub.add_parser("construct", help="build a network by hand and check it on all 2^n rows")
    p.add_argument("kind")
    p.add_argument("--n", type=int, required=True)
    p.set_defaults(func=_construct)
    return parser


def _enable_compilation_cache() -> None:
    """Reuse compiled bucket programs across runs: a rerun of a small sweep drops from ~30 s to ~6 s here."""
    import jax

    from scaling.planning.cost import cache_dir

    jax.config.update("jax_compilation_cache_dir", os.environ.get("SCALING_JAX_CACHE", str(cache_dir() / "jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _logging(verbose: int, quiet: bool) -> logging.Logger:
    """The library logs through logging.getLogger(__name__); the command line shows its records on stderr."""
    logger = logging.getLogger("scaling")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("scaling: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


def main(argv: list[str] | None = None, on_cluster: Callable[[Cluster], None] | None = None,
         leaves: bool = False) -> int:
    """Run one command; returns the exit code (2: bad input or a store/OS fault, 130: interrupted).
    `on_cluster(cluster)`: called once this process has joined a cluster (the console script's signal handlers);
    `leaves`: the caller ends the process with os._exit right after (the console script's sweep)."""
    command = "command"
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        args.on_cluster, args.leaves = on_cluster or (lambda cluster: None), leaves
        logger = _logging(args.verbose, args.quiet)
        if command != "launch":  # launch only starts processes: importing jax would take a core from them
            _enable_compilation_cache()
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm([logger]):  # log lines above the progress bar, not through it
            args.func(args)
    except UserError as e:
        print(f"scaling {command}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:  # in-process callers; the console script exits on Ctrl-C itself (scaling.__main__)
        print(f"scaling {command}: interrupted; finished buckets are saved, rerun to resume", file=sys.stderr)
        return 130
    except (OSError, sqlite3.Error) as e:  # a fault that no layer named more precisely: still one line
        print(f"scaling {command}: error: {e}", file=sys.stderr)
        return 2
    return 0

