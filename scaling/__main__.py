"""`python -m scaling` and the `scaling` console script (run). Kept tiny on purpose: the Ctrl-C handler
below is installed before anything heavy is imported.

A Ctrl-C ends the process at once, with one line and exit code 130; SIGTERM and SIGHUP (a closed terminal, a
batch system's time limit) the same way, with 143 and 129. It never raises KeyboardInterrupt:
raised inside jax's start-up (a C++ callback), that aborts the process with a C++ traceback. Exiting at
once is safe: Python runs the handler between bytecodes, never inside SQLite, so a bucket's transaction is
either committed or rolled back on the next open, the kernel drops the sweep lock, and every output file
is written through a rename.
"""

import os
import signal
import sys

_ON_INTERRUPT = {"sweep": "finished buckets are saved, rerun to resume",
                 "analyze": "the outputs are whole (all from before, or all from this analysis)"}


def run(argv: list[str] | None = None) -> None:
    """The console script: exits the process (a sweep, and a failed process of a cluster, through os._exit,
    which no caller can catch)."""
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), "command")
    after = f"; {_ON_INTERRUPT[command]}" if command in _ON_INTERRUPT else ""

    joined: list = []  # this process's cluster, once it has joined one (scaling.cli.main says)

    def interrupted(signum, frame) -> None:
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        cluster = joined[0] if joined else None
        if cluster is not None and cluster.leader:  # the whole cluster stops with process 0
            cluster.abort(f"process 0 was {how}")
        elif cluster is not None:  # process 0 stops at once, saying why
            cluster.bye(f"process {cluster.process_id} was {how}")
        sys.stderr.write(f"scaling {command}: {how}{after}\n")
        sys.stderr.flush()
        _release_claims()
        os._exit(128 + signum)  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    if {"--distributed", "--coordinator"} & set(args) or os.environ.get("SCALING_COORDINATOR"):
        # A cluster's process: the distributed runtime's C++ warnings would break the one-line messages. 1 is
        # what importing jax sets, and so what a parent that imported it passes on; 0 asks for every message.
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1") in ("", "1"):
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    from scaling.cli import main

    try:
        code = main(argv, on_cluster=joined.append, leaves=command == "sweep")
    except Exception as e:  # noqa: BLE001 (a bug or a device fault; one process alone shows its traceback)
        if not joined:
            raise
        detail = str(e).splitlines()[0] if str(e) else ""
        sys.stderr.write(f"scaling {command}: error: {type(e).__name__}: {detail}\n")
        code = 1  # the command line has told the other processes already
    if code and joined or command == "sweep":
        # A failed process of a cluster leaves at once: jax's exit handler would wait for the lost processes and
        # then abort with a C++ stack trace. A sweep skips the interpreter's teardown of jax and its programs
        # (0.25 s of every sweep on the 2-core CPU): its store and outputs are closed, its threads joined.
        import logging

        logging.shutdown()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a reader that has gone (`scaling sweep ... | head -1`)
            pass
        _release_claims()
        os._exit(code)
    sys.exit(code)


def _release_claims() -> None:
    """Before os._exit: the claims of compiles still running (a guess), so that no process waits for them."""
    claims = sys.modules.get("scaling.engine.claims")  # never imported here only to release nothing
    if claims is not None:
        claims.release_held()


if __name__ == "__main__":
    run()
