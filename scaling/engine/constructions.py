"""Networks built by hand for n-bit parity, as parameters of the project's own MLP, checked on all 2^n rows.

Each builder writes layers on the bits b in {0, 1}^n; `_to_encoding` folds the pm1 map b = (x + 1) / 2 into
the first layer, so the same network runs on either encoding through model.forward.
All are ReLU networks whose output is exactly parity(b) - 1/2 (so the sign classifies every row).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from scaling.engine.population import hidden_units, layer_widths, padded_layer_widths
from scaling.engine.tasks import MAX_BITS, parity_table
from scaling.errors import UserError

# A layer is (kernel_IxO, bias_O); the last layer maps to the single logit.
Layer = tuple[np.ndarray, np.ndarray]
# Evaluating a construction holds rows x widest-layer floats; above this the check is refused.
MAX_CHECK_BYTES = 2**30


def _dnf(n: int) -> list[Layer]:
    """One AND unit per odd-weight pattern p: ReLU(sum_{p_i=1} b_i - sum_{p_i=0} b_i - |p| + 1) = [b == p]."""
    rows = np.arange(2**n)
    bits = (rows[:, None] >> np.arange(n)[None, :]) & 1
    patterns_PxN = bits[bits.sum(1) % 2 == 1].astype(np.float64)
    kernel_NxP = (2 * patterns_PxN - 1).T
    bias_P = 1 - patterns_PxN.sum(1)
    return [(kernel_NxP, bias_P), (np.ones((len(patterns_PxN), 1)), np.array([-0.5]))]


def _one_layer(n: int) -> list[Layer]:
    """ReLU(s - k) for k = 0..n-1, s = sum b; output weights 1, -2, 2, -2, ... interpolate s mod 2."""
    out = np.array([1.0] + [2.0 * (-1) ** k for k in range(1, n)])[:, None]
    return [(np.ones((n, n)), -np.arange(n, dtype=np.float64)), (out, np.array([-0.5]))]


def _xor_tree(n: int) -> list[Layer]:
    """XOR(a, b) = ReLU(a + b) - 2 ReLU(a + b - 1), merged pairwise level by level; an odd one out passes as ReLU(v)."""
    # `values` are linear read-outs of the previous layer: value_j = readout[:, j] . h  (+ offset_j).
    readout, offset = np.eye(n), np.zeros(n)
    layers = []
    while readout.shape[1] > 1:
        m = readout.shape[1]
        pairs, odd = m // 2, m % 2
        width = 2 * pairs + odd
        mix = np.zeros((m, width))  # pre-activation_u = sum_j mix[j, u] * value_j
        bias = np.zeros(width)
        next_readout = np.zeros((width, pairs + odd))
        for p in range(pairs):
            a, b, u, v = 2 * p, 2 * p + 1, 2 * p, 2 * p + 1
            mix[[a, b], u] = 1.0
            mix[[a, b], v] = 1.0
            bias[v] = -1.0
            next_readout[u, p], next_readout[v, p] = 1.0, -2.0
        if odd:
            mix[m - 1, width - 1] = 1.0
            next_readout[width - 1, pairs] = 1.0
        layers.append((readout @ mix, offset @ mix + bias))
        readout, offset = next_readout, np.zeros(pairs + odd)
    layers.append((readout, offset - 0.5))
    return layers


def _sawtooth(n: int) -> list[Layer]:
    """z = s / 2^k (k = ceil log2 n), then k tent maps T(z) = 2 ReLU(z) - 4 ReLU(z - 1/2); T^k(j / 2^k) = j mod 2."""
    k = math.ceil(math.log2(n)) if n > 1 else 0
    if k == 0:
        return [(np.ones((n, 1)), np.array([-0.5]))]
    tent_in = np.array([1.0, 1.0])
    tent_bias = np.array([0.0, -0.5])
    layers = [(np.ones((n, 1)) / 2**k * tent_in[None, :], tent_bias)]
    readout = np.array([[2.0], [-4.0]])  # z' = 2 h1 - 4 h2
    for _ in range(k - 1):
        layers.append((readout @ tent_in[None, :], tent_bias))
    layers.append((readout, np.array([-0.5])))
    return layers


BUILDERS = {"dnf": _dnf, "one_layer": _one_layer, "xor_tree": _xor_tree, "sawtooth": _sawtooth}


@dataclasses.dataclass
class Construction:
    kind: str
    n: int
    encoding: str
    params: dict  # the MLP's parameters (model.forward), padded to the widest layer
    masks: dict
    depth: int
    width: int  # the widest layer
    units: int  # hidden units really used (non-zero in and out), not depth x padded width
    parameters: int  # non-zero weights and biases
    layer_units: tuple[int, ...] = ()  # units really used in each hidden layer

    def family_width(self, profile: str) -> int:
        """The smallest first-layer width whose network of this depth and width profile holds this one: the
        width at which the trained family could express it (population.layer_widths)."""
        return next(w for w in range(1, max(self.layer_units, default=0) * 2 + 2)
                    if all(a >= b for a, b in zip(layer_widths(w, self.depth, profile), self.layer_units)))

    def family_units(self, profile: str) -> int:
        """Hidden units of that family network: what a measurement at this depth and profile would count."""
        return int(hidden_units(self.family_width(profile), self.depth, profile)) if self.depth else 0

    def in_family(self, profile: str) -> Construction:
        """This network with the unit masks of its family network (every unit outside it switched off), so that
        check() proves the family holds it."""
        if self.depth == 0:
            return self
        widths_D = padded_layer_widths(self.family_width(profile), self.depth, self.depth, profile)
        if widths_D.max() > self.width:
            raise ValueError(f"{self.kind} needs no wider family network than its own padding")
        unit_mask = (np.arange(self.width)[None, :] < widths_D[:, None]).astype(np.float32)
        return dataclasses.replace(self, masks={**self.masks, "unit_mask": unit_mask})


def _to_encoding(layers: list[Layer], encoding: str) -> list[Layer]:
    if encoding == "01":
        return layers
    kernel, bias = layers[0]  # b = (x + 1) / 2  =>  b @ K + c = x @ (K / 2) + (c + sum_i K_i / 2)
    return [(kernel / 2, bias + kernel.sum(0) / 2), *layers[1:]]


def _check_n(kind: str, n: int) -> None:
    if kind not in BUILDERS:
        raise UserError("construct KIND", f"unknown kind {kind!r}; choose one of {', '.join(BUILDERS)}")
    if not isinstance(n, int) or n < 1 or n > MAX_BITS:
        raise UserError("construct --n", f"n must be an integer in 1..{MAX_BITS}, got {n!r}")
    widest = 2 ** (n - 1) if kind == "dnf" else n
    if 2**n * widest * 4 > MAX_CHECK_BYTES:
        raise UserError("construct --n", f"checking {kind} at n = {n} needs {2**n * widest * 4 / 2**30:.0f} GiB "
                                          f"(limit {MAX_CHECK_BYTES // 2**30} GiB); try a smaller n")


def build(kind: str, n: int, encoding: str = "pm1") -> Construction:
    """The named construction as parameters of the project's MLP."""
    _check_n(kind, n)
    layers = _to_encoding(BUILDERS[kind](n), encoding)
    hidden, (out_kernel, out_bias) = layers[:-1], layers[-1]
    depth = len(hidden)
    layer_units = tuple(int(np.sum(np.any(k != 0, axis=0) & np.any(nxt[0] != 0, axis=1)))
                        for k, nxt in zip([h[0] for h in hidden], layers[1:]))
    nonzero = sum(int(np.count_nonzero(k) + np.count_nonzero(b)) for k, b in layers)
    f32 = lambda a: np.asarray(a, np.float32)  # numpy, so that unit counts need no jax; forward takes these as is
    if depth == 0:
        params, masks, width = {"out_kernel": f32(out_kernel), "out_bias": f32(out_bias)}, {}, 0
    else:
        width = max(k.shape[1] for k, _ in hidden)
        pad_cols = lambda a: np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])])
        pad_rows = lambda a: np.pad(a, [(0, width - a.shape[0]), (0, 0)])
        params = {
            "in_kernel": f32(pad_cols(hidden[0][0])), "in_bias": f32(pad_cols(hidden[0][1])),
            "hidden_kernel": f32(np.array([pad_cols(pad_rows(k)) for k, _ in hidden[1:]]).reshape(-1, width, width)),
            "hidden_bias": f32(np.array([pad_cols(b) for _, b in hidden[1:]]).reshape(-1, width)),
            "out_kernel": f32(pad_rows(out_kernel)), "out_bias": f32(out_bias),
        }
        masks = {"unit_mask": f32(np.ones((depth, width))), "layer_gate": f32(np.ones(depth - 1))}
    return Construction(kind, n, encoding, params, masks, depth, width, sum(layer_units), nonzero, layer_units)


def check(c: Construction) -> tuple[int | None, float]:
    """(first misclassified row or None, max |logit - (parity - 1/2)|) over all 2^n rows."""
    import jax.numpy as jnp  # here, not at the top: analysis imports this module for unit counts alone

    from scaling.engine.model import forward

    table = parity_table(c.n, c.encoding)
    logits_R = np.asarray(forward(c.params, c.masks, jnp.asarray(table.x_RxN), "relu"))
    wrong = np.flatnonzero((logits_R > 0) != (table.y_R > 0.5))
    return (int(wrong[0]) if wrong.size else None), float(np.max(np.abs(logits_R - (table.y_R - 0.5))))


def describe(kind: str, n: int) -> str:
    """Build, check and summarise one construction (the `scaling construct` output)."""
    c = build(kind, n)
    first_wrong, err = check(c)
    verdict = (f"exact on all 2^{n} = {2**n} rows (max |logit - (parity - 1/2)| = {err:.2g})" if first_wrong is None
               else f"WRONG: first failing row {first_wrong} (bits {first_wrong:0{n}b}, low bit last)")
    family = "; ".join(f"{p} profile: first width {c.family_width(p)}, {c.family_units(p)} units"
                       for p in ("constant", "halving")) if c.depth else "no hidden layer"
    return (f"{kind} n={n}: depth {c.depth}, width {c.width}, {c.units} hidden units, "
            f"{c.parameters} non-zero parameters; {verdict}. Smallest trained-family network that holds it: "
            f"{family}")


def unit_counts(ns) -> pd.DataFrame:
    """Hidden units every construction really uses, per n: the theory lines of figures and REPORT.md; and
    units_constant, units_halving: the units of the smallest network of each width profile that holds it."""
    rows = []
    for n in ns:
        for kind in BUILDERS:
            try:
                c = build(kind, int(n))
            except UserError:
                continue  # too large to build and check (dnf beyond n = 14)
            rows.append({"kind": kind, "n": int(n), "depth": c.depth, "width": c.width, "units": c.units,
                         "parameters": c.parameters,
                         **{f"units_{p}": c.family_units(p) for p in ("constant", "halving")}})
    return pd.DataFrame(rows)
