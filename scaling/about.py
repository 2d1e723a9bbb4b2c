"""What this copy of scaling is: its version (from the package metadata) and a hash of its source files."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path


def version() -> str:
    """The installed package's version ("unknown" when run from a source tree that is not installed)."""
    try:
        return importlib.metadata.version("scaling")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def source_hash() -> str:
    """sha256 of every .py file of the package (names and bytes): two copies that differ in any line differ here."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
