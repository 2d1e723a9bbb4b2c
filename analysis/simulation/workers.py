"""Tasks run here, or on worker processes: the power analysis' simulated runs (analysis.simulation.power).

Processes, not threads: the fits hold the GIL (two threads ran the default store's power analysis in 122 s,
one in 117 s). Spawned, not forked, since the parent may hold jax's threads, which a fork would copy
half-way; like every spawned process they import the caller's main module, so a script that asks for workers
runs its work under `if __name__ == "__main__":` (`scaling analyze` and `python -m analysis` do).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time


def _start_worker(parent: int) -> None:
    """A worker leaves Ctrl-C to its parent to report, and ends when its parent has ended (the command line,
    stopped by a signal, exits at once without shutting its pool down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class Workers:
    """Runs module-level functions here (workers <= 1) or on `workers` spawned processes, started at the first
    task. `ahead`: how many tasks a caller that reads results in order should keep submitted."""

    def __init__(self, workers: int = 1):
        self.pool = None
        if workers > 1:
            # The pool's locks start multiprocessing's resource tracker, which warns of "leaked semaphores" when
            # a parent stopped by a signal exits at once: a Ctrl-C says one line, so the tracker starts quiet.
            quiet, os.environ["PYTHONWARNINGS"] = os.environ.get("PYTHONWARNINGS"), "ignore::UserWarning"
            try:
                self.pool = concurrent.futures.ProcessPoolExecutor(
                    workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                    initargs=(os.getpid(),))
            finally:
                if quiet is None:
                    del os.environ["PYTHONWARNINGS"]
                else:
                    os.environ["PYTHONWARNINGS"] = quiet
        self.ahead = 1 if self.pool is None else workers + 1

    def submit(self, task, *args) -> concurrent.futures.Future:
        """task(*args) on a worker, or here (task: a module-level function, as a worker imports it)."""
        if self.pool is not None:
            return self.pool.submit(task, *args)
        here = concurrent.futures.Future()
        here.set_result(task(*args))
        return here

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
