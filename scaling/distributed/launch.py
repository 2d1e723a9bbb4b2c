"""`scaling launch`: the processes of one cluster on this machine (a laptop, a test), on a free port.

    scaling launch --processes 2 --devices-per-process 2 -- sweep experiments/default.toml --out results/x

Each process is `python -m scaling sweep ...` with SCALING_COORDINATOR, SCALING_NUM_PROCESSES and
SCALING_PROCESS_ID set (and JAX_NUM_CPU_DEVICES with --devices-per-process), which is all a process needs to
join (scaling.distributed.cluster). A Ctrl-C or SIGTERM is passed on to every process. When one process fails, the
others stop within the heartbeat; any still running after that are killed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from scaling.distributed.cluster import DEFAULT_HEARTBEAT_S, ENVIRONMENT
from scaling.errors import UserError

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port that nothing listens on now (the coordinator binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(processes: int, command: list[str], devices_per_process: int | None = None,
           heartbeat_s: int = DEFAULT_HEARTBEAT_S, pin_cores: bool = False) -> int:
    """Run `command` (a `sweep` command line) as `processes` local processes of one cluster; returns process 0's
    exit code, or the first failure of another when process 0 succeeded. pin_cores: process i runs on the
    i-th core this process may use (and no other), for benchmarks."""
    command = command[1:] if command[:1] == ["--"] else command
    if not command or command[0] != "sweep":
        raise UserError("scaling launch", "runs a sweep: scaling launch --processes N -- sweep CONFIG [--out DIR]")
    if processes < 1:
        raise UserError("--processes", f"must be at least 1, got {processes}")
    if devices_per_process is not None and devices_per_process < 1:
        raise UserError("--devices-per-process", f"must be at least 1, got {devices_per_process}")
    port = free_port()
    children = []
    for i in range(processes):
        env = {**os.environ, ENVIRONMENT["coordinator"]: f"localhost:{port}",
               ENVIRONMENT["processes"]: str(processes), ENVIRONMENT["process_id"]: str(i),
               ENVIRONMENT["heartbeat_s"]: str(heartbeat_s)}
        if devices_per_process is not None:
            env["JAX_NUM_CPU_DEVICES"] = str(devices_per_process)
        quiet = ["-q"] if i else []  # the others' progress is process 0's bar
        core = sorted(os.sched_getaffinity(0))[i % len(os.sched_getaffinity(0))] if pin_cores else None
        pin = None if core is None else (lambda core=core: os.sched_setaffinity(0, {core}))
        children.append(subprocess.Popen([sys.executable, "-m", "scaling", *quiet, *command], env=env,
                                         preexec_fn=pin))

    def forward(signum, frame) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    deadline = None
    while any(child.poll() is None for child in children):
        failed = any(child.returncode not in (None, 0) for child in children)
        if failed and deadline is None:
            deadline = time.monotonic() + heartbeat_s + 10
        if deadline is not None and time.monotonic() > deadline:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    log.warning("process %d did not stop within the heartbeat after another failed; killed",
                                children.index(child))
        time.sleep(0.1)
    codes = [child.wait() for child in children]
    return codes[0] or next((c for c in codes if c), 0)
