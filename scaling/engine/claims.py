"""Claims on compiles: of the processes that need one program at once, one compiles it (the program store's).

A process claims a program before compiling it: a claim file beside the stored programs, created exclusively
and holding the claimer's host, pid and a random token. Another process that finds the claim waits for the
program instead (wait), unless the claim is stale: older than CLAIM_S, or made on this host by a process that
has ended. A claim is released only by its holder, and a process that leaves without waiting for a compile
releases what it holds first (release_held).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

# A claim older than this is stale (its process hangs, or its host cannot be asked whether it lives): compile.
# Claims are not refreshed while a compile runs; a chunk program compiles in 1-3 s on a CPU.
CLAIM_S = 120.0
POLL_S = 0.02
_held: dict[Path, str] = {}  # the claims this process holds or is making: path -> token
_leaving = False  # set by release_held: no more claims


def release_held() -> None:
    """Drop this process's claims of compiles still running, for a process that leaves without waiting for them
    (a guess at a sweep's end): the others then compile those programs instead of waiting for stale claims."""
    global _leaving
    _leaving = True
    for path, token in list(_held.items()):
        release(token, path)


def claim(path: Path | None) -> str | bool | None:
    """Claim a program's compile: the claim's token (this process holds it: release it), False (another live
    process holds it) or None (no claim can be made here: the store is off, read-only or full; compile)."""
    if path is None or _leaving:
        return None
    token = f"{platform.node()} {os.getpid()} {os.urandom(6).hex()}"
    for _ in range(2):  # a second try after removing a stale claim
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f"{path.name}.") as f:
                f.write(token)
                f.flush()
                _held[path] = token  # before it exists: release_held may come at any moment
                os.link(f.name, path)  # never visible half-written; fails where another claim exists
            return token
        except FileExistsError:
            _forget(path, token)
            if not stale(path):
                return False
            path.unlink(missing_ok=True)
        except OSError:
            _forget(path, token)
            return None
    return None


def _forget(path: Path, token: str) -> None:
    if _held.get(path) == token:
        del _held[path]


def stale(path: Path) -> bool:
    """A claim older than CLAIM_S, or made on this host by a process that has ended."""
    try:
        if time.time() - path.stat().st_mtime > CLAIM_S:
            return True
        host, pid, _ = path.read_text().split()
    except (OSError, ValueError):  # gone meanwhile
        return False
    if host == platform.node() and pid.isdigit() and int(pid) != os.getpid():
        try:
            os.kill(int(pid), 0)  # asks only whether the process lives
        except ProcessLookupError:
            return True
        except OSError:  # it lives, under another user
            pass
    return False


def release(token: str, path: Path) -> None:
    """Remove this process's claim (never another's that replaced it after ours went stale)."""
    _forget(path, token)
    try:
        if path.read_text() == token:
            path.unlink()
    except OSError:
        pass


def wait(path: Path, program: Path) -> None:
    """Until the program that another process claimed is stored, or its claim ends without it or goes stale
    (checked once a second)."""
    checked = time.monotonic()
    while path.exists() and not program.is_file():
        if time.monotonic() - checked > 1.0:
            if stale(path):
                break
            checked = time.monotonic()
        time.sleep(POLL_S)
