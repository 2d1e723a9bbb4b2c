"""Parity truth tables: every row of the n-bit hypercube, vectorised, with a memory guard."""

from __future__ import annotations

import dataclasses

import numpy as np

from scaling.choices import Encoding, Task
from scaling.errors import UserError

MAX_BITS = 20
# The full table of the largest supported n (2^20 rows x 20 bits, float32) is 80 MiB; anything that
# estimates more than this is refused before a single row is allocated.
MAX_TABLE_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class Table:
    """A whole truth table: inputs x_RxN (float32) and labels y_R in {0, 1} (float32)."""

    x_RxN: np.ndarray
    y_R: np.ndarray

    @property
    def rows(self) -> int:
        return self.x_RxN.shape[0]


def table_bytes(n: int) -> int:
    """Bytes the float32 table of n bits needs: 2^n rows of n inputs plus one label."""
    return (2**n) * (n + 1) * 4


def check_bits(n: int, where: str = "task.n") -> None:
    """Refuse an n outside 1..MAX_BITS or whose table would not fit MAX_TABLE_BYTES."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UserError(where, f"n must be an integer >= 1, got {n!r}")
    if n > MAX_BITS or table_bytes(n) > MAX_TABLE_BYTES:
        raise UserError(
            where,
            f"n = {n} needs a table of {table_bytes(n) / 2**20:.0f} MiB; the limit is n <= {MAX_BITS} "
            f"({MAX_TABLE_BYTES // 2**20} MiB)",
        )


def parity_table(n: int, encoding: str = "pm1") -> Table:
    """All 2^n rows of n-bit parity; bit i of row r is (r >> i) & 1 and the label is the XOR of the bits."""
    check_bits(n)
    if encoding not in tuple(Encoding):
        raise UserError("task.encoding", f"unknown encoding {encoding!r}; choose one of {', '.join(Encoding)}")
    rows_R = np.arange(2**n, dtype=np.int64)
    bits_RxN = ((rows_R[:, None] >> np.arange(n)[None, :]) & 1).astype(np.int8)
    y_R = (bits_RxN.sum(axis=1) % 2).astype(np.float32)
    x_RxN = bits_RxN.astype(np.float32)
    if encoding == Encoding.PM1:
        x_RxN = 2.0 * x_RxN - 1.0
    return Table(x_RxN=x_RxN, y_R=y_R)


TABLES = {Task.PARITY: parity_table}  # the table builder of each task


def make_table(task: str, n: int, encoding: str) -> Table:
    """The table of a named task."""
    if task not in TABLES:
        raise UserError("task.kind", f"unknown task {task!r}; choose one of {', '.join(Task)}")
    return TABLES[task](n, encoding)
