"""A population's initial state, assembled on the host from one shape-generic program of weight draws.

The init program of scaling.engine.programs is compiled per bucket shape: in a cold default sweep on a CPU, 18 of
its 39 programs and 27 of its 88 compiler seconds. Here one program draws DRAWS_PER_CALL weights at given
positions (key, stream, row, column), whatever the bucket; the host scales them by each member's true fan-in and lays
them into the padded arrays, as scaling.engine.network.MLP does. Every array equals the compiled init program's (tested;
only a zero in a gated-off layer may differ in sign, and that layer's output is discarded), so a member starts
from the same weights either way; orthogonal kernels agree to float rounding (the host's SVD is float64 on the
real block, the program's float32 on the padded one).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from scaling.engine.model import INITS, OUTPUT_STREAM, unit_draw, weight_scale
from scaling.engine.population import BucketSpec, layer_sizes, padded_layer_widths, padded_shapes

DRAWS_PER_CALL = 2**15  # positions per call of the draw program: one compiled shape for every bucket


@functools.partial(jax.jit, static_argnames=("distribution",))
def draw(key_data_Qx2, stream_Q, row_Q, col_Q, distribution: str) -> jax.Array:
    """Unit-variance draws at each position, from the member's key folded with 0 (as the init program folds it)."""
    def one(key_data, stream, row, col):
        return unit_draw(jax.random.fold_in(jax.random.wrap_key_data(key_data), 0), stream, row, col, distribution)

    return jax.vmap(one)(key_data_Qx2, stream_Q, row_Q, col_Q)


def _blocks(n: int, depth: int, width: int, init: str, profile: str) -> list[tuple[str, int, int, int, float]]:
    """The real (unpadded) weight blocks of one member: (parameter, stream, rows, cols, scale)."""
    gain = INITS[init].gain
    sizes = layer_sizes(n, depth, width, profile)  # depth 0 (a bucket of its own): the output layer alone
    names = ["in_kernel", *["hidden_kernel"] * (depth - 1), "out_kernel"] if depth else ["out_kernel"]
    streams = [0, *range(1, depth), OUTPUT_STREAM] if depth else [OUTPUT_STREAM]
    gains = [gain] * depth + [1.0]
    return [(name, stream, rows, cols, float(weight_scale(g, rows, np)))
            for name, stream, rows, cols, g in zip(names, streams, sizes, sizes[1:], gains)]


def initial_params(spec: BucketSpec, key_data_Px2: np.ndarray, n_P, depth_P, width_P, draw_fn) -> tuple[dict, dict]:
    """(params, masks) of a population, each leaf with a leading population axis, as numpy arrays.
    draw_fn(key_data_Qx2, stream_Q, row_Q, col_Q) -> values_Q, for exactly DRAWS_PER_CALL positions."""
    P, N, W, D = len(n_P), spec.n, spec.width_max, spec.depth_max
    f32 = np.float32
    params = {name: np.zeros((P, *shape), f32) for name, shape in padded_shapes(N, D, W).items()}
    masks: dict = {}
    if D > 0:
        masks = {"input_mask": (np.arange(N)[None, :] < n_P[:, None]).astype(f32),
                 "unit_mask": (np.arange(W) < padded_layer_widths(width_P, depth_P, D, spec.profile)[..., None]
                               ).astype(f32),
                 "layer_gate": (np.arange(1, D)[None, :] < depth_P[:, None]).astype(f32)}
        bias = f32(INITS[spec.init].bias)  # the hidden units' initial bias, on real units of real layers only
        params["in_bias"] = bias * masks["unit_mask"][:, 0]
        params["hidden_bias"] = bias * masks["unit_mask"][:, 1:] * masks["layer_gate"][:, :, None]
    # Every real position of every member in one flat list (members of one shape share their positions), drawn
    # in calls of DRAWS_PER_CALL, then laid into the padded arrays one shape and block at a time.
    shapes = np.stack([n_P, depth_P, width_P], axis=1)
    groups = [(shape, np.flatnonzero((shapes == shape).all(axis=1))) for shape in np.unique(shapes, axis=0)]
    keys, streams, rows, cols, places = [], [], [], [], []
    for (n, depth, width), members in groups:
        blocks = _blocks(int(n), int(depth), int(width), spec.init, spec.profile)
        stream_T = np.concatenate([np.full(r * c, stream, np.uint32) for _, stream, r, c, _ in blocks])
        row_T = np.concatenate([np.repeat(np.arange(r, dtype=np.uint32), c) for _, _, r, c, _ in blocks])
        col_T = np.concatenate([np.tile(np.arange(c, dtype=np.uint32), r) for _, _, r, c, _ in blocks])
        keys.append(np.repeat(key_data_Px2[members], len(stream_T), axis=0))
        streams.append(np.tile(stream_T, len(members)))
        rows.append(np.tile(row_T, len(members)))
        cols.append(np.tile(col_T, len(members)))
        places.append((members, blocks, len(stream_T)))
    values_Q = _draw_all(np.concatenate(keys).astype(np.uint32), np.concatenate(streams), np.concatenate(rows),
                         np.concatenate(cols), draw_fn)
    orthogonal = INITS[spec.init].orthogonal
    offset = 0
    for members, blocks, per_member in places:
        values_GxT = values_Q[offset:offset + len(members) * per_member].reshape(len(members), per_member)
        offset += len(members) * per_member
        start = 0
        for name, stream, r, c, scale in blocks:
            block_GxRxC = values_GxT[:, start:start + r * c].reshape(-1, r, c)
            block_GxRxC = (_polar(block_GxRxC) if orthogonal else block_GxRxC) * f32(scale)
            start += r * c
            if name == "hidden_kernel":
                params[name][members, stream - 1, :r, :c] = block_GxRxC
            else:
                params[name][members, :r, :c] = block_GxRxC
    return params, masks


def _polar(block_GxRxC: np.ndarray) -> np.ndarray:
    """model.polar_factor of each real block, in float64 (one member's block alone: no padding enters)."""
    u_GxRxK, _, vt_GxKxC = np.linalg.svd(block_GxRxC.astype(np.float64), full_matrices=False)
    return (u_GxRxK @ vt_GxKxC * np.sqrt(max(block_GxRxC.shape[1:]))).astype(np.float32)


def _draw_all(key_data_Qx2, stream_Q, row_Q, col_Q, draw_fn) -> np.ndarray:
    """draw_fn over any number of positions, in calls of exactly DRAWS_PER_CALL (the last one padded)."""
    total = len(stream_Q)
    out = np.empty(total, np.float32)
    for start in range(0, total, DRAWS_PER_CALL):
        size = min(DRAWS_PER_CALL, total - start)
        pad = lambda a: np.pad(a[start:start + size], [(0, DRAWS_PER_CALL - size)] + [(0, 0)] * (a.ndim - 1))
        out[start:start + size] = np.asarray(draw_fn(pad(key_data_Qx2), pad(stream_Q), pad(row_Q), pad(col_Q)))[:size]
    return out
