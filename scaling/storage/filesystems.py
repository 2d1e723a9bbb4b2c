"""Which filesystem a results directory lives on, and so which SQLite journal its store can use.

SQLite's write-ahead log keeps its index in shared memory (the -shm file, memory-mapped by every connection),
which network filesystems do not share between hosts: on NFS or Lustre, where a cluster job's results directory
usually lives, WAL can corrupt a store or fail to open. There the store uses SQLite's rollback journal, which
needs only file locks.
"""

from __future__ import annotations

import os
from pathlib import Path

# Linux's names (/proc/mounts) of the filesystems whose memory-mapped files are not shared across hosts.
NETWORK = frozenset({"nfs", "nfs4", "lustre", "cifs", "smb3", "smbfs", "gpfs", "beegfs", "ceph", "glusterfs",
                     "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "9p", "afs", "panfs", "pvfs2",
                     "orangefs", "wekafs", "fuse.juicefs", "fuse.cephfs"})


def _unescape(field: str) -> str:
    """/proc/mounts writes a space in a mount point as \\040 (and tab, newline, backslash likewise)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_type(path: str | Path, mounts: str | None = None) -> str:
    """The type of the filesystem holding path (its deepest mount point in /proc/mounts); "" where unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:  # not Linux: no way to tell, so the local default
            return ""
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def journal_mode(path: str | Path, mounts: str | None = None) -> str:
    """The SQLite journal for a store in directory path: WAL on a local disk, the rollback journal (DELETE)
    on a network filesystem."""
    return "DELETE" if filesystem_type(path, mounts) in NETWORK else "WAL"
