"""`scaling sweep`: one process's sweep, or its part in a cluster's; and the lines it ends with."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING

from scaling.errors import UserError

if TYPE_CHECKING:  # pandas and jax load only when a sweep runs
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
    index = ["k", "n"] if "k" in cells else "n"  # a sparse parity: one row per task (k, n)
    table = cells.pivot(index=index, columns=col, values="value").rename(columns=name).fillna("-")  # - : not searched
    table.columns.name = None
    return table


def run(args) -> None:
    with contextlib.ExitStack() as stack:
        _sweep_in(args, stack)


def _sweep_in(args, stack: contextlib.ExitStack) -> None:
    from scaling.distributed import cluster as clusters
    from scaling.experiment import config

    cfg = config.load(args.config, args.set)
    out = args.out or f"results/{cfg.experiment.name}"
    join = clusters.join_from({"distributed": args.distributed, "coordinator": args.coordinator,
                               "processes": args.num_processes, "process_id": args.process_id,
                               "heartbeat_s": args.heartbeat})

    def compile_cache():  # made once jax may start (after a cluster's join)
        from scaling.engine.programs import Programs

        # The console script leaves with os._exit (args.leaves): a cache not closed does not wait for a guess
        # that the last round left compiling. An in-process caller's cache is closed.
        return Programs() if args.leaves else stack.enter_context(Programs())

    if join is None:
        from scaling.sweep import run_sweep

        return _report_sweep(cfg, out, run_sweep(cfg, out, fresh=args.fresh, devices=args.devices,
                                                 programs=compile_cache()))
    cluster = clusters.join(join, on_lost=_leave_cluster)
    args.on_cluster(cluster)  # the console script's signal handlers stop the whole cluster from here on
    import jax

    from scaling.distributed.handshake import fingerprint, handshake
    from scaling.engine.devices import make_mesh, training_threads
    from scaling.sweep import follow_sweep, run_sweep

    try:  # from here on, a failure tells the other processes
        mesh = make_mesh(args.devices if args.devices is not None else cfg.run.devices)
        threads = training_threads(mesh, cfg.run.bucket_mib)
        handshake(cluster, fingerprint(cfg.source, out, 1 if mesh is None else mesh.size, threads))
        if not cluster.leader:
            logging.getLogger("scaling").info("process %d: trained %d buckets; process 0 stored their rows",
                                              cluster.process_id, follow_sweep(cfg, cluster, args.devices))
            jax.distributed.shutdown()
            return
        programs = compile_cache()
        outcome = run_sweep(cfg, out, fresh=args.fresh, devices=args.devices, cluster=cluster, programs=programs)
        programs.wait_idle()  # a guess still compiling ends before the distributed runtime does
    except BaseException as e:
        if cluster.leader:
            cluster.abort(f"process 0 stopped: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                          lost=getattr(e, "peer", None))
        elif not isinstance(e, clusters.ClusterError):  # a failure of its own: process 0 stops with it
            cluster.bye(str(e).splitlines()[0] if str(e) else type(e).__name__)
        else:
            cluster.bye()
        raise
    jax.distributed.shutdown()
    _report_sweep(cfg, out, outcome)


def _leave_cluster(error: UserError) -> None:
    """A process other than 0 whose process 0 is lost: one line, and out at once (from the heartbeat thread)."""
    from scaling.engine import claims

    print(f"scaling sweep: error: {error}", file=sys.stderr, flush=True)
    claims.release_held()
    os._exit(getattr(error, "exit_code", 1))


def _report_sweep(cfg, out: str, outcome) -> None:
    print(f"{cfg.experiment.name}: trained {outcome.trained} members ({outcome.skipped} already in the store) in "
          f"{outcome.rounds} rounds, {outcome.buckets} buckets (padding waste {outcome.padding_waste:.2f}x), "
          f"{outcome.wall_s:.0f} s; compiled {outcome.compiles} programs ({outcome.compile_s:.0f} s of compiler time), "
          f"loaded {outcome.loads} from the program store; training threads waited {outcome.compile_wait_s:.0f} s "
          f"({outcome.compile_wait_s / max(outcome.wall_s * outcome.threads, 1e-9):.0%} of their time) for them "
          f"-> {out}")
    for kind, title in (("min_width", "w* (minimum width that solves)"), ("min_depth", "L* (minimum depth)")):
        table = star_table(outcome.summary, kind)
        if not table.empty:
            print(f"\n{title}, threshold {cfg.search.success_threshold}:\n{table.to_string()}")
