"""The sweep lock: DIR/.lock, held by the one sweep that writes a results directory."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from scaling.errors import UserError

LOCK_NAME = ".lock"


class DirLock:
    """An exclusive flock on DIR/.lock, held by the one sweep that writes DIR; it dies with the process.

    The lock file is never followed through a symbolic link, and it is removed on release (while still
    locked): a sweep that takes the lock checks that the file it locked is still the one at DIR/.lock, so a
    sweep that opened the file just before it was removed tries again instead of locking a stale file."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_NAME
        for _ in range(100):
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as e:
                problem = ("is a symbolic link; a sweep never follows one: remove it" if e.errno == errno.ELOOP else
                           f"cannot create the sweep lock ({e.strerror or e})")
                raise UserError(str(self.path), problem) from None
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(self.fd)
                raise UserError(str(out_dir), f"another sweep (pid {holder}) is writing this results directory; "
                                              "wait for it to finish, or use another --out") from None
            try:
                current = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            mine = os.fstat(self.fd)
            if not stat.S_ISREG(mine.st_mode) or mine.st_nlink > 1:  # a hard link would have us overwrite a file
                os.close(self.fd)
                raise UserError(str(self.path), "is not a plain lock file of its own (a link or a special file); "
                                                "remove it")
            if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                break
            os.close(self.fd)  # removed (or replaced) by the sweep that held it: lock the new one
        else:
            raise UserError(str(self.path), "keeps being replaced while this sweep tries to lock it")
        try:  # the holder's pid, for the message another sweep gets; a full disk only loses the pid
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass  # a read-only directory keeps its lock file: harmless
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
