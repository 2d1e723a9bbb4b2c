"""The files a results directory holds besides its store, written atomically, and removed only by --fresh.

Every output is written to a temporary file beside its final name and renamed into place, so a crash or a
full disk leaves the previous version whole, never a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from scaling.errors import UserError

SUMMARY, FITS, REPORT, FIGURES_DIR = "summary.csv", "fits.json", "REPORT.md", "figures"
# One name per figure function in analysis.figures; each is saved as NAME.pdf and NAME.png.
FIGURES = ("units_vs_bits", "total_units", "success_heatmaps", "min_depth", "steps_to_solve", "fit_comparison",
           "w_star_vs_budget")
FIGURE_SUFFIXES = (".pdf", ".png")


def _file_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's own is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def output_paths(out_dir: Path) -> list[Path]:
    """Every output file this project writes into a results directory (whether or not it exists now)."""
    figures = [out_dir / FIGURES_DIR / f"{name}{suffix}" for name in FIGURES for suffix in FIGURE_SUFFIXES]
    return [out_dir / SUMMARY, out_dir / FITS, out_dir / REPORT, *figures]


def write_atomic(files: dict[Path, bytes | str]) -> None:
    """Write every file through a temporary file beside it, then rename them all into place, in order.

    Nothing is renamed until every target is checked and every temporary file is written, so a full disk, a
    directory in a file's place or an error leaves all the previous versions whole. An OS error becomes one
    UserError line.
    """
    temps: list[tuple[str, Path]] = []
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
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            os.chmod(tmp, _file_mode())
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
        while temps:
            tmp, current = temps[0]
            os.replace(tmp, current)
            temps.pop(0)
    except OSError as e:
        raise UserError(str(current), f"cannot write ({e.strerror or e}); the previous outputs are intact") from None
    finally:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def remove_outputs(out_dir: Path) -> None:
    """Delete the outputs of an earlier sweep or analysis in out_dir (and only those)."""
    for path in output_paths(out_dir):
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise UserError(str(path), f"cannot remove for --fresh ({e.strerror or e})") from None
    try:
        (out_dir / FIGURES_DIR).rmdir()  # only when nothing else is left in it
    except OSError:
        pass
