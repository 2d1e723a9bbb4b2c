"""The `scaling` command line (also `python -m scaling`). Kept short: the logic lives in the library."""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
from typing import TYPE_CHECKING

from scaling.errors import UserError

if TYPE_CHECKING:  # pandas and jax load only when a command runs, so `scaling --help` answers at once
    import pandas as pd


def _format_star(value: float, censored: bool, bound: int) -> str:
    return f">{bound}" if censored else f"{int(value)}"


def star_table(summary: pd.DataFrame, kind: str) -> pd.DataFrame:
    """w* (n x depth) or L* (n x width) as a printable pivot, censored cells shown as >bound."""
    import pandas as pd

    rows = summary[summary["kind"] == kind]
    if rows.empty:
        return pd.DataFrame()
    star, col = ("w_star", "depth") if kind == "min_width" else ("L_star", "group")
    cells = rows.assign(value=[_format_star(v, c, b) for v, c, b in zip(rows[star], rows["censored"], rows["bound"])])
    name = (lambda c: f"depth {int(c)}") if col == "depth" else (lambda c: str(c).replace("=", " "))
    table = cells.pivot(index="n", columns=col, values="value").rename(columns=name)
    table.columns.name = None
    return table


def _sweep(args) -> None:
    from scaling import config
    from scaling.sweep import run_sweep

    cfg = config.load(args.config)
    out = args.out or f"results/{cfg.experiment.name}"
    outcome = run_sweep(cfg, out, fresh=args.fresh, devices=args.devices, progress=True)
    print(f"{cfg.experiment.name}: trained {outcome.trained} members ({outcome.skipped} already in the store) in "
          f"{outcome.rounds} rounds, {outcome.buckets} buckets (padding waste {outcome.padding_waste:.2f}x), "
          f"{outcome.wall_s:.0f} s; compiled {outcome.compiles} programs ({outcome.compile_s:.0f} s of compiler time; "
          f"training threads waited {outcome.compile_wait_s:.0f} s for them) -> {out}")
    for kind, title in (("min_width", "w* (minimum width that solves)"), ("min_depth", "L* (minimum depth)")):
        table = star_table(outcome.summary, kind)
        if not table.empty:
            print(f"\n{title}, threshold {cfg.search.success_threshold}:\n{table.to_string()}")


def _plan(args) -> None:
    from scaling import config, probes
    from scaling.forecast import describe, forecast, parse_oracle
    from scaling.sweep import default_workers, make_mesh

    if args.power:
        _power(args.power)
        return
    if not args.config:
        raise UserError("scaling plan", "name an experiment file, or --power DIR")
    cfg = config.load(args.config)
    if args.assume_wstar is not None:
        parse_oracle(args.assume_wstar)  # a bad expression fails before the cost model is probed
    workers = default_workers(make_mesh(cfg.run.devices), cfg.run.bucket_mib)
    model = probes.load_or_calibrate()
    print("\n".join(describe(cfg, model, forecast(cfg, model, args.assume_wstar, workers), workers, args.assume_wstar)))


def _power(dir: str) -> None:
    """The power analysis of a results directory: the design that would decide each depth group."""
    from analysis.answer import label, power_line
    from analysis.data import load, load_config
    from analysis.power import power_analysis
    from analysis.verdict import judge

    df, cfg = load(dir), load_config(dir)
    if df.empty:
        raise UserError(dir, "the store has no trained members yet")
    verdict = judge(df, cfg)
    for group, g in verdict.groups.items():
        print(f"{label(group)}: {g.call}" + (f" ({'; '.join(g.reasons)})" if g.reasons else ""))
    print("What would decide it (simulated from this run's fitted curves and noise):")
    powers = power_analysis(verdict, cfg)
    for group, result in powers.items():
        print(power_line(group, result, cfg))


def _analyze(args) -> None:
    from analysis.report import analyze

    written = analyze(args.dir)
    print("wrote " + ", ".join(str(p) for p in written))


def _bench(args) -> None:
    from benchmarks.bench import run_bench

    run_bench(args.out)


def _construct(args) -> None:
    from scaling.constructions import describe

    print(describe(args.kind, args.n))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scaling", description="Depth-versus-width scaling of n-bit parity.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="say more (each round's plan)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="train the populations of an experiment file (resumes by default)")
    p.add_argument("config", help="experiment file, e.g. experiments/default.toml")
    p.add_argument("--out", help="results directory (default results/<experiment name>)")
    p.add_argument("--fresh", action="store_true", help="delete the store in --out and start over")
    p.add_argument("--devices", type=int, help="shard the population over N devices (default: the file's run.devices)")
    p.set_defaults(func=_sweep)
    p = sub.add_parser("plan", help="forecast a sweep's members, buckets, programs, FLOPs and time; trains and writes "
                                    "nothing")
    p.add_argument("config", nargs="?", help="experiment file, e.g. experiments/paper.toml")
    p.add_argument("--power", metavar="DIR", help="instead: which design would decide each depth group of the run in "
                                                  "DIR (a power analysis simulated from its own curves and noise)")
    p.add_argument("--assume-wstar", metavar="EXPR",
                   help='replay the whole search against an assumed w*(n, d), e.g. "2*n" or "2**(n-1)/d"')
    p.set_defaults(func=_plan)
    p = sub.add_parser("analyze", help="fits, figures and REPORT.md from a results directory")
    p.add_argument("dir")
    p.set_defaults(func=_analyze)
    p = sub.add_parser("bench", help="throughput benchmark, written as JSON")
    p.add_argument("--out", default="bench.json")
    p.set_defaults(func=_bench)
    p = sub.add_parser("construct", help="build a network by hand and check it on all 2^n rows")
    p.add_argument("kind")
    p.add_argument("--n", type=int, required=True)
    p.set_defaults(func=_construct)
    return parser


def _enable_compilation_cache() -> None:
    """Reuse compiled bucket programs across runs: a rerun of a small sweep drops from ~30 s to ~6 s here."""
    import jax

    from scaling.cost import cache_dir

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


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (2: bad input or a store/OS fault, 130: interrupted)."""
    command = "command"
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        logger = _logging(args.verbose, args.quiet)
        _enable_compilation_cache()
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm([logger]):  # log lines above the progress bar, not through it
            args.func(args)
    except UserError as e:
        print(f"scaling {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # in-process callers; the console script exits on Ctrl-C itself (scaling.__main__)
        print(f"scaling {command}: interrupted; finished buckets are saved, rerun to resume", file=sys.stderr)
        return 130
    except (OSError, sqlite3.Error) as e:  # a fault that no layer named more precisely: still one line
        print(f"scaling {command}: error: {e}", file=sys.stderr)
        return 2
    return 0

