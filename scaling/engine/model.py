"""The MLP family: its initialisation and the pure forward pass that the hot loop uses (the Flax NNX definition
is scaling.engine.network).

`depth` hidden layers (0 = logistic regression), one logit out. The first layer has `width` units; the later
layers follow the width profile (population.layer_widths): as wide as the first, or halving layer by layer.
A member may live padded inside a bucket of width `width_max`, depth `depth_max` and `n_in_max` input bits:
- padded units are switched off by `unit_mask` (one row per layer) and their parameters start (and stay) at zero;
- padded inputs (bits beyond the member's own n) meet input-kernel rows that start (and stay) at zero;
- padded layers are gated identities (`layer_gate` = 0 passes h through unchanged).
Initial values depend on each weight's position and the member's key, never on the padded shape,
so a member starts from the same weights whatever bucket it is placed in (orthogonal kernels to about 1e-6 in
the compiled init, whose float32 SVD sees the padded block; exactly on the host).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scaling.choices import Activation, Init
from scaling.engine.population import count_parameters  # noqa: F401  (re-exported: the parameter count)

ACTIVATIONS = {Activation.RELU: jax.nn.relu, Activation.TANH: jnp.tanh, Activation.SIGMOID: jax.nn.sigmoid}


class InitRecipe(NamedTuple):
    """How an init starts a network's weights."""

    gain: float  # variance gain of hidden layers (the output layer is linear, so it always uses gain 1)
    distribution: str  # of the unit-variance draws at each weight position
    bias: float = 0.0  # the hidden units' initial bias (the output's starts at 0)
    orthogonal: bool = False  # each real kernel block replaced by its polar factor at the same mean square


INITS = {Init.HE: InitRecipe(2.0, "normal"), Init.LECUN: InitRecipe(1.0, "normal"),
         Init.RADEMACHER: InitRecipe(1.0, "rademacher"), Init.LECUN_BIAS: InitRecipe(1.0, "normal", bias=0.1),
         Init.ORTHOGONAL: InitRecipe(2.0, "normal", orthogonal=True)}
SAMPLERS = {"normal": jax.random.normal, "rademacher": jax.random.rademacher}
OUTPUT_STREAM = 2**20  # the output layer's stream, fixed so that it does not move when a bucket pads the depth

# Full float32 matmuls: on GPUs the default may round inputs to TF32, which breaks the padding invariance
# (a padded member drifted 3e-4 in loss from the same member alone on an H100) and the exact constructions.
_HIGHEST = jax.lax.Precision.HIGHEST

Params = dict[str, jax.Array]
Masks = dict[str, jax.Array]


def unit_draw(key: jax.Array, stream, row, col, distribution: str) -> jax.Array:
    """The unit-variance draw of one weight position: a function of (key, stream, row, col) alone. Both
    initialisers use it: the Flax module's (scaling.engine.network) and the host's shape-generic one
    (scaling.engine.host_init)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, stream), row), col)
    return SAMPLERS[distribution](key, (), jnp.float32)


def weight_scale(gain, fan_in, xp=jnp):
    """The factor of a unit-variance draw for a layer of this fan-in (float32, as every initialiser computes it;
    xp=np on the host, where jax's eager operations would compile a tiny program each)."""
    return xp.sqrt(xp.float32(gain) / xp.float32(fan_in))


# Orthogonal init. A block of r x c unit-variance draws G = U S V^T becomes its polar factor U V^T (orthonormal
# columns when r >= c, rows otherwise: the orthogonal matrix nearest to G, unique and free of QR's sign choices)
# times sqrt(max(r, c)), so that its mean square is 1 like G's; the fan-in scale then applies as for any draw.
# Only the member's real block enters, so the factor does not depend on the padding: the host computes it on
# the real block in float64, the compiled init on the zero-padded block in float32 (equal to about 1e-6).
def polar_factor(block_RxC: jax.Array, real_rows, real_cols) -> jax.Array:
    """The unit-mean-square polar factor of the real (top-left) block of a zero-padded block; zero elsewhere."""
    u_RxK, _, vt_KxC = jnp.linalg.svd(block_RxC, full_matrices=False)
    kept_K = (jnp.arange(u_RxK.shape[1]) < jnp.minimum(real_rows, real_cols)).astype(block_RxC.dtype)
    scale = jnp.sqrt(jnp.maximum(real_rows, real_cols).astype(jnp.float32))
    return jnp.matmul(u_RxK * kept_K[None, :], vt_KxC, precision=_HIGHEST) * scale


def position_values(key: jax.Array, blocks: list[tuple[int, int, int]], init: Init) -> list[jax.Array]:
    """Unit-variance draws for each (stream, rows, cols) block: the value at (i, j) of a block depends only on
    (key, stream, i, j), never on rows or cols. Every block comes from one vectorised draw over all positions,
    so the program holds a single threefry chain, whatever the depth (each chain costs about a second of XLA
    compile on a CPU)."""
    distribution = INITS[init].distribution
    stream_Q, i_Q, j_Q = (np.concatenate(parts) for parts in zip(*(
        (np.full(r * c, s), np.repeat(np.arange(r), c), np.tile(np.arange(c), r)) for s, r, c in blocks)))
    values_Q = jax.vmap(lambda s, i, j: unit_draw(key, s, i, j, distribution))(
        jnp.asarray(stream_Q, jnp.uint32), jnp.asarray(i_Q, jnp.uint32), jnp.asarray(j_Q, jnp.uint32))
    ends = np.cumsum([r * c for _, r, c in blocks])
    return [part.reshape(r, c) for part, (_, r, c) in zip(jnp.split(values_Q, ends[:-1]), blocks)]


def scaled_values(values_RxC, fan_in, real_rows, real_cols, gain, orthogonal: bool = False):
    """A kernel scaled by the TRUE fan-in; entries outside the real block are zero."""
    rows, cols = values_RxC.shape
    real_RxC = (jnp.arange(rows)[:, None] < real_rows) & (jnp.arange(cols)[None, :] < real_cols)
    values_RxC = jnp.where(real_RxC, values_RxC, 0.0)
    if orthogonal:
        values_RxC = polar_factor(values_RxC, jnp.asarray(real_rows), jnp.asarray(real_cols))
    return jnp.where(real_RxC, values_RxC * weight_scale(gain, fan_in), 0.0)


# On a CPU, a network of at most this width runs with rows as the minor (contiguous) axis of its activations,
# (units, rows) instead of (rows, units): with a few units per row, XLA's CPU kernels otherwise work along
# an axis of a few floats. `make profile` times both layouts (forward plus backward in 100-step
# scans); on the 2-core CPU rows-minor was 1.2-4.3x faster at widths up to 16 (3.2-4.3x at width 2), about
# as fast at width 32 and 0.93x as fast at width 128.
ROWS_MINOR_MAX_WIDTH = 16


def rows_minor(width: int) -> bool:
    """Whether a network padded to `width` units computes with rows as the minor axis (see above)."""
    return 0 < width <= ROWS_MINOR_MAX_WIDTH and jax.default_backend() == "cpu"


def forward(params: Params, masks: Masks, x_RxN: jax.Array, activation: str) -> jax.Array:
    """Logits (R,) of one member; padded units stay zero and gated layers pass h through."""
    act = ACTIVATIONS[activation]
    if "in_kernel" not in params:
        return jnp.matmul(x_RxN, params["out_kernel"], precision=_HIGHEST)[:, 0] + params["out_bias"][0]
    layout = forward_rows_minor if rows_minor(params["in_kernel"].shape[1]) else forward_rows_major
    return layout(params, masks, x_RxN, act)


def forward_rows_major(params: Params, masks: Masks, x_RxN: jax.Array, act) -> jax.Array:
    """forward (hidden layers only) on activations (rows, units)."""
    unit_DxW = masks["unit_mask"]
    h_RxW = act(jnp.matmul(x_RxN, params["in_kernel"], precision=_HIGHEST) + params["in_bias"][None, :]) \
        * unit_DxW[0][None, :]
    for layer in range(params["hidden_kernel"].shape[0]):
        pre_RxW = jnp.matmul(h_RxW, params["hidden_kernel"][layer], precision=_HIGHEST)
        new_RxW = act(pre_RxW + params["hidden_bias"][layer][None, :]) * unit_DxW[layer + 1][None, :]
        h_RxW = jnp.where(masks["layer_gate"][layer] > 0, new_RxW, h_RxW)
    return jnp.matmul(h_RxW, params["out_kernel"], precision=_HIGHEST)[:, 0] + params["out_bias"][0]


def forward_rows_minor(params: Params, masks: Masks, x_RxN: jax.Array, act) -> jax.Array:
    """forward (hidden layers only) on transposed activations (units, rows): the same function as
    forward_rows_major, with other float rounding."""
    x_NxR = x_RxN.T
    unit_DxW = masks["unit_mask"]
    h_WxR = act(jnp.matmul(params["in_kernel"].T, x_NxR, precision=_HIGHEST) + params["in_bias"][:, None]) \
        * unit_DxW[0][:, None]
    for layer in range(params["hidden_kernel"].shape[0]):
        pre_WxR = jnp.matmul(params["hidden_kernel"][layer].T, h_WxR, precision=_HIGHEST)
        new_WxR = act(pre_WxR + params["hidden_bias"][layer][:, None]) * unit_DxW[layer + 1][:, None]
        h_WxR = jnp.where(masks["layer_gate"][layer] > 0, new_WxR, h_WxR)
    return jnp.matmul(params["out_kernel"].T, h_WxR, precision=_HIGHEST)[0] + params["out_bias"][0]


def param_mask(params: Params, masks: Masks) -> Params:
    """1 where a parameter belongs to the member's real network, 0 where it is padding."""
    if "in_kernel" not in params:
        return jax.tree.map(jnp.ones_like, params)
    unit_DxW, gate_L = masks["unit_mask"], masks["layer_gate"]
    return {
        "in_kernel": masks["input_mask"][:, None] * unit_DxW[0][None, :],
        "in_bias": unit_DxW[0],
        "hidden_kernel": gate_L[:, None, None] * unit_DxW[:-1, :, None] * unit_DxW[1:, None, :],
        "hidden_bias": gate_L[:, None] * unit_DxW[1:],
        "out_kernel": unit_DxW[-1][:, None],
        "out_bias": jnp.ones_like(params["out_bias"]),
    }
