"""The files a results directory holds besides its store: written atomically, listed, and removed only by --fresh.

Every output is written to a temporary file beside its final name and renamed into place, so a crash or a
full disk leaves the previous version whole, never a half-written file. The writers (the analysis, for
summary.csv, fits.json, REPORT.md and the figures) name their files; this module lists every name it wrote
in DIR/.outputs, so that --fresh removes exactly those and never needs to know what they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from pathlib import Path, PurePosixPath

from scaling.errors import UserError
from scaling.storage.dirlock import LOCK_NAME
from scaling.storage.results import SIDE_SUFFIXES, STORE_NAME

MANIFEST = ".outputs"  # JSON list of the names, relative to DIR, of every output written there


def _file_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's own is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# Never outputs, whatever an edited manifest says: the store, SQLite's files beside it, the lock, the manifest.
_RESERVED = {STORE_NAME, *(STORE_NAME + suffix for suffix in SIDE_SUFFIXES), LOCK_NAME, MANIFEST}


def _listed(out_dir: Path) -> list[str]:
    """The manifest's names of plain files inside out_dir (an edited manifest cannot point elsewhere, through a
    link, or at the store)."""
    try:
        names = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    root = out_dir.resolve()

    def ok(name) -> bool:
        if not isinstance(name, str) or name in _RESERVED or PurePosixPath(name).is_absolute():
            return False
        inside = (out_dir / name).resolve().parent.is_relative_to(root)  # no folder that links elsewhere
        return inside and not {"..", "."} & set(PurePosixPath(name).parts)

    return [n for n in names if ok(n)]


def write_outputs(out_dir: Path, files: dict[str, bytes | str]) -> list[Path]:
    """Write `files` (names relative to out_dir, "/" between folders) all or nothing, and list them in the
    manifest. Returns their paths."""
    names = sorted(set(_listed(out_dir)) | set(files))
    paths = {out_dir / name: data for name, data in files.items()}
    write_atomic({out_dir / MANIFEST: json.dumps(names, indent=0), **paths})  # listed before they exist
    return list(paths)


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT, SIGTERM and SIGHUP back in the main thread for the block (delivered right after it)."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def write_atomic(files: dict[Path, bytes | str]) -> None:
    """Write every file through a temporary file beside it, then rename them all into place, in order.

    Nothing is renamed until every target is checked and every temporary file is written, so a full disk, a
    directory in a file's place or an error leaves all the previous versions whole. An OS error becomes one
    UserError line.
    """
    temps: list[tuple[str, Path]] = []
    made: list[Path] = []  # folders this call created: removed again if it fails (no empty figures/ left)
    current = next(iter(files))
    for path in files:  # a rename onto a directory would fail part-way: refuse before anything is replaced
        if path.is_dir() and not path.is_symlink():
            raise UserError(str(path), "is a directory where an output file belongs; move it away and rerun "
                                       "(the previous outputs are intact)")
        if path.parent.exists() and not path.parent.is_dir():
            raise UserError(str(path.parent), "is a file where the outputs' folder belongs; move it away and "
                                              "rerun (the previous outputs are intact)")
    try:
        for path, data in files.items():
            current = path
            raw = data.encode() if isinstance(data, str) else data
            made.extend(reversed([p for p in (path.parent, *path.parent.parents) if not p.exists()]))
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            os.chmod(tmp, _file_mode())
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
        with _signals_held():  # a Ctrl-C or SIGTERM waits for the renames: the outputs change all together
            while temps:
                tmp, current = temps[0]
                os.replace(tmp, current)
                temps.pop(0)
    except OSError as e:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        temps.clear()
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only while empty
        raise UserError(str(current), f"cannot write ({e.strerror or e}); the previous outputs are intact") from None
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def check_writable(path: Path) -> None:
    """Fail now, in one line, if a file cannot be written at path (before minutes of work whose output it is);
    folders that do not exist yet are fine where they can be made."""
    if path.is_dir():
        raise UserError(str(path), "is a directory; name a file")
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())  # the nearest that exists
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(str(path), f"cannot be written ({e.strerror or e})") from None


def remove_outputs(out_dir: Path) -> None:
    """Delete the outputs listed in out_dir's manifest (and only those), then the manifest."""
    listed = [out_dir / name for name in _listed(out_dir)]
    for path in [*listed, out_dir / MANIFEST]:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise UserError(str(path), f"cannot remove for --fresh ({e.strerror or e})") from None
    for folder in sorted({p.parent for p in listed if p.parent != out_dir}, key=lambda p: -len(p.parts)):
        try:
            folder.rmdir()  # only when nothing else is left in it
        except OSError:
            pass
