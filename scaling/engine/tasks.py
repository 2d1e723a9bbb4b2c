"""Parity's data: truth tables (every row of the n-bit hypercube, vectorised, with a memory guard), and for the
sample modes the hidden subset of a sparse parity and the shared evaluation samples. Training samples are
drawn on the device from each member's key (scaling.engine.steps)."""

from __future__ import annotations

import dataclasses

import numpy as np

from scaling.choices import Encoding, Task
from scaling.errors import UserError

MAX_BITS = 20
MAX_SAMPLE_BITS = 256  # n in the sample modes (online, fixed): no table is ever built
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


def hidden_subset(run_seed: int, n: int, k: int) -> tuple[int, ...]:
    """The k hidden bits (sorted indices into 0..n-1) of the sparse parity at (n, k) in a run: drawn from the run
    seed, n and k alone, so every member at (n, k) learns the same function and a rerun draws it again.
    k = 0 stands for every bit (full parity)."""
    if k == 0 or k == n:
        return tuple(range(n))
    rng = np.random.default_rng([run_seed, n, k, 0x5B5E7])
    return tuple(sorted(int(i) for i in rng.choice(n, size=k, replace=False)))


def every_bit(run_seed: int, n: int, k: int) -> tuple[int, ...]:
    """Full parity's subset: all n bits."""
    return tuple(range(n))


# The bits whose parity each task labels with, in the sample modes (the table mode builds TABLES instead).
SUBSETS = {Task.PARITY: every_bit, Task.SPARSE_PARITY: hidden_subset}


def subset_text(bits: tuple[int, ...]) -> str:
    """How a member row stores its hidden bits: "0,7,12"."""
    return ",".join(map(str, bits))


def encode(bits, encoding: str):
    """Bits (0/1, any array type) as network inputs: +-1 or 0/1."""
    return 2.0 * bits - 1.0 if encoding == Encoding.PM1 else 1.0 * bits


def decode(x, encoding: str):
    """Network inputs back to bits (bool, any array type): the inverse of encode."""
    return x > (0.0 if encoding == Encoding.PM1 else 0.5)


def eval_inputs(run_seed: int, n: int, count: int, encoding: str) -> np.ndarray:
    """The sample modes' evaluation inputs x_ExN (float32): `count` uniform random inputs of n bits, drawn from
    the run seed alone, bit j from its own stream (fresh: independent of every member's training draws). A
    member of fewer bits reads the first columns, so its evaluation is the same in a bucket of any n; its
    labels are the parity of its own hidden bits."""
    bits_ExN = np.stack([np.random.default_rng([run_seed, j, 0xE7A1]).integers(0, 2, size=count, dtype=np.int8)
                         for j in range(n)], axis=1)
    return encode(bits_ExN.astype(np.float32), encoding).astype(np.float32)
