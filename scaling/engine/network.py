"""The MLP family as a Flax NNX module (scaling.engine.model has its initialisation recipes and the pure forward
pass that the hot loop runs on the parameters split from it). The engine imports it when it first traces a
network's initialisation (scaling.engine.steps): flax takes 0.23 s to import, which a warm sweep, whose programs
are loaded compiled, never pays."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.choices import Activation, Init, Profile
from scaling.engine.model import INITS, OUTPUT_STREAM, Masks, Params, forward, position_values, scaled_values
from scaling.engine.population import padded_layer_widths


class Mask(nnx.Variable):
    """A non-trainable 0/1 switch (padded units and gated layers)."""


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
        activation: Activation = Activation.RELU,
        init: Init = Init.HE,
        n_real: int | jax.Array | None = None,
        profile: Profile = Profile.CONSTANT,
    ):
        """n_in is the input width of the arrays; n_real (traced or not, default n_in) the member's own bits."""
        n_real = n_in if n_real is None else n_real
        depth_max = int(depth) if depth_max is None else depth_max
        width_max = int(width) if width_max is None else width_max
        self.activation = Activation(activation)  # a ValueError names an unknown one
        gain, _, bias, orthogonal = INITS[Init(init)]
        scaled = lambda *args: scaled_values(*args, orthogonal=orthogonal)
        # Layer l draws from stream l; the output layer draws from OUTPUT_STREAM.
        W, D = width_max, depth_max
        if depth_max == 0:
            (out_NxO,) = position_values(key, [(OUTPUT_STREAM, n_in, 1)], init)
            self.out_kernel = nnx.Param(scaled(out_NxO, n_real, n_real, 1, 1.0))
            self.out_bias = nnx.Param(jnp.zeros((1,), jnp.float32))
            return
        in_NxW, *hidden, out_WxO = position_values(
            key, [(0, n_in, W), *((layer, W, W) for layer in range(1, D)), (OUTPUT_STREAM, W, 1)], init)
        widths_D = padded_layer_widths(width, depth, D, Profile(profile), xp=jnp)
        self.input_mask = Mask((jnp.arange(n_in) < n_real).astype(jnp.float32))
        self.unit_mask = Mask((jnp.arange(W)[None, :] < widths_D[:, None]).astype(jnp.float32))
        self.layer_gate = Mask((jnp.arange(1, D) < depth).astype(jnp.float32))
        self.in_kernel = nnx.Param(scaled(in_NxW, n_real, n_real, widths_D[0], gain))
        self.in_bias = nnx.Param(jnp.float32(bias) * self.unit_mask[...][0])
        # Hidden layer l (1..D-1) maps layer l-1's units to layer l's: its fan-in is the width of layer l-1.
        hidden_LxWxW = jnp.stack([scaled(h_WxW, widths_D[layer - 1], widths_D[layer - 1], widths_D[layer], gain)
                                  for layer, h_WxW in enumerate(hidden, start=1)]
                                 ) if D > 1 else jnp.zeros((0, W, W), jnp.float32)
        self.hidden_kernel = nnx.Param(hidden_LxWxW * self.layer_gate[...][:, None, None])
        self.hidden_bias = nnx.Param(jnp.float32(bias) * self.unit_mask[...][1:] * self.layer_gate[...][:, None])
        self.out_kernel = nnx.Param(scaled(out_WxO, widths_D[D - 1], widths_D[D - 1], 1, 1.0))
        self.out_bias = nnx.Param(jnp.zeros((1,), jnp.float32))

    def __call__(self, x_RxN: jax.Array) -> jax.Array:
        params, masks = split_params(self)
        return forward(params, masks, x_RxN, self.activation)


def split_params(model: MLP) -> tuple[Params, Masks]:
    """The model's trainable parameters and its masks as plain dicts of arrays (the hot path's state)."""
    _, params, masks = nnx.split(model, nnx.Param, Mask)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(masks)


def init_member(n_in: int, depth, width, key, *, depth_max: int, width_max: int, activation: str, init: str,
                n_real=None, profile: str = "constant"):
    """Pure (params, masks) of one member, for use under jax.vmap (n_real: its own bits, when below n_in)."""
    return split_params(MLP(n_in, depth, width, key=key, depth_max=depth_max, width_max=width_max,
                            activation=activation, init=init, n_real=n_real, profile=profile))
