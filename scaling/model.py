"""The MLP family: a Flax NNX definition plus the pure forward pass that the hot loop uses.

One hidden width for all layers, `depth` hidden layers (0 = logistic regression), one logit out.
A member may live padded inside a bucket of width `width_max` and depth `depth_max`:
- padded units are switched off by `unit_mask` and their parameters start (and stay) at zero;
- padded layers are gated identities (`layer_gate` = 0 passes h through unchanged).
Initial values depend on each weight's position and the member's key, never on the padded shape,
so a member starts from the same weights whatever bucket it is placed in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scaling import names
from scaling.names import INITS
from scaling.population import count_parameters  # noqa: F401  (re-exported: the model's parameter count)

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}
assert tuple(ACTIVATIONS) == names.ACTIVATIONS, "scaling.names.ACTIVATIONS must list exactly these"
# Variance gain of hidden layers per init; the output layer is linear, so it always uses gain 1.
_HIDDEN_GAIN = {"he": 2.0, "lecun": 1.0, "rademacher": 1.0}
_OUTPUT_STREAM = 2**20

# Full float32 matmuls: on GPUs the default may round inputs to TF32, which breaks the padding invariance
# (a padded member drifted 3e-4 in loss from the same member alone on an H100) and the exact constructions.
_HIGHEST = jax.lax.Precision.HIGHEST

Params = dict[str, jax.Array]
Masks = dict[str, jax.Array]


class Mask(nnx.Variable):
    """A non-trainable 0/1 switch (padded units and gated layers)."""


def _position_values(key: jax.Array, rows: int, cols: int, init: str) -> jax.Array:
    """Unit-variance draws whose value at (i, j) depends only on (key, i, j), not on rows or cols."""
    draw = jax.random.rademacher if init == "rademacher" else jax.random.normal

    def one(i: jax.Array, j: jax.Array) -> jax.Array:
        return draw(jax.random.fold_in(jax.random.fold_in(key, i), j), (), dtype=jnp.float32)

    i_R, j_C = jnp.arange(rows), jnp.arange(cols)
    return jax.vmap(lambda i: jax.vmap(lambda j: one(i, j))(j_C))(i_R)


def _init_kernel(key, rows, cols, fan_in, real_rows, real_cols, init, gain):
    """A (rows x cols) kernel scaled by the TRUE fan-in; entries outside the real block are zero."""
    values_RxC = _position_values(key, rows, cols, init) * jnp.sqrt(gain / fan_in)
    real_RxC = (jnp.arange(rows)[:, None] < real_rows) & (jnp.arange(cols)[None, :] < real_cols)
    return jnp.where(real_RxC, values_RxC, 0.0)


class MLP(nnx.Module):
    """A parity MLP, padded to (depth_max, width_max); depth and width may be traced (vmapped init)."""

    def __init__(
        self,
        n_in: int,
        depth: int | jax.Array,
        width: int | jax.Array,
        *,
        key: jax.Array,
        depth_max: int | None = None,
        width_max: int | None = None,
        activation: str = "relu",
        init: str = "he",
    ):
        depth_max = int(depth) if depth_max is None else depth_max
        width_max = int(width) if width_max is None else width_max
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
        self.activation = activation
        gain = _HIDDEN_GAIN[init]
        keys = [jax.random.fold_in(key, layer) for layer in range(depth_max)]
        # The output layer's stream is fixed, so it does not move when the bucket pads the depth.
        out_key = jax.random.fold_in(key, _OUTPUT_STREAM)
        if depth_max == 0:
            self.out_kernel = nnx.Param(_init_kernel(out_key, n_in, 1, n_in, n_in, 1, init, 1.0))
            self.out_bias = nnx.Param(jnp.zeros((1,), jnp.float32))
            return
        W, D = width_max, depth_max
        self.unit_mask = Mask((jnp.arange(W) < width).astype(jnp.float32))
        self.layer_gate = Mask((jnp.arange(1, D) < depth).astype(jnp.float32))
        self.in_kernel = nnx.Param(_init_kernel(keys[0], n_in, W, n_in, n_in, width, init, gain))
        self.in_bias = nnx.Param(jnp.zeros((W,), jnp.float32))
        hidden_LxWxW = jnp.stack(
            [_init_kernel(keys[layer], W, W, width, width, width, init, gain) for layer in range(1, D)]
        ) if D > 1 else jnp.zeros((0, W, W), jnp.float32)
        self.hidden_kernel = nnx.Param(hidden_LxWxW * self.layer_gate[...][:, None, None])
        self.hidden_bias = nnx.Param(jnp.zeros((D - 1, W), jnp.float32))
        self.out_kernel = nnx.Param(_init_kernel(out_key, W, 1, width, width, 1, init, 1.0))
        self.out_bias = nnx.Param(jnp.zeros((1,), jnp.float32))

    def __call__(self, x_RxN: jax.Array) -> jax.Array:
        params, masks = split_params(self)
        return forward(params, masks, x_RxN, self.activation)


def split_params(model: MLP) -> tuple[Params, Masks]:
    """The model's trainable parameters and its masks as plain dicts of arrays (the hot path's state)."""
    _, params, masks = nnx.split(model, nnx.Param, Mask)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(masks)


def forward(params: Params, masks: Masks, x_RxN: jax.Array, activation: str) -> jax.Array:
    """Logits (R,) of one member; padded units stay zero and gated layers pass h through."""
    act = ACTIVATIONS[activation]
    if "in_kernel" not in params:
        return jnp.matmul(x_RxN, params["out_kernel"], precision=_HIGHEST)[:, 0] + params["out_bias"][0]
    unit_1xW = masks["unit_mask"][None, :]
    h_RxW = act(jnp.matmul(x_RxN, params["in_kernel"], precision=_HIGHEST) + params["in_bias"][None, :]) * unit_1xW
    for layer in range(params["hidden_kernel"].shape[0]):
        pre_RxW = jnp.matmul(h_RxW, params["hidden_kernel"][layer], precision=_HIGHEST)
        new_RxW = act(pre_RxW + params["hidden_bias"][layer][None, :]) * unit_1xW
        h_RxW = jnp.where(masks["layer_gate"][layer] > 0, new_RxW, h_RxW)
    return jnp.matmul(h_RxW, params["out_kernel"], precision=_HIGHEST)[:, 0] + params["out_bias"][0]


def param_mask(params: Params, masks: Masks) -> Params:
    """1 where a parameter belongs to the member's real network, 0 where it is padding."""
    if "in_kernel" not in params:
        return jax.tree.map(jnp.ones_like, params)
    unit_W, gate_L = masks["unit_mask"], masks["layer_gate"]
    return {
        "in_kernel": jnp.broadcast_to(unit_W[None, :], params["in_kernel"].shape),
        "in_bias": unit_W,
        "hidden_kernel": gate_L[:, None, None] * unit_W[None, :, None] * unit_W[None, None, :],
        "hidden_bias": gate_L[:, None] * unit_W[None, :],
        "out_kernel": unit_W[:, None],
        "out_bias": jnp.ones_like(params["out_bias"]),
    }


def init_member(n_in: int, depth, width, key, *, depth_max: int, width_max: int, activation: str, init: str):
    """Pure (params, masks) of one member, for use under jax.vmap."""
    return split_params(
        MLP(n_in, depth, width, key=key, depth_max=depth_max, width_max=width_max, activation=activation, init=init)
    )
