import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.engine.model import count_parameters, forward
from scaling.engine.network import MLP, init_member, split_params
from scaling.engine.population import layer_widths
from scaling.engine.tasks import MAX_BITS, parity_table, table_bytes
from scaling.errors import UserError


def test_every_choice_of_an_experiment_file_has_one_implementation():
    from scaling import choices
    from scaling.engine import model, steps, tasks
    for registry, choice in ((model.ACTIVATIONS, choices.Activation), (model.INITS, choices.Init),
                             (steps.OPTIMIZERS, choices.Optimizer), (steps.LOSSES, choices.Loss),
                             (tasks.SUBSETS, choices.Task)):
        assert set(registry) == set(choice), choice.__name__
    assert set(tasks.TABLES) == {choices.Task.PARITY}  # a sparse parity is learned from samples only


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_parity_table_is_complete_and_correct(n):
    table = parity_table(n, "01")
    assert table.x_RxN.shape == (2**n, n) and table.y_R.shape == (2**n,)
    rows = {tuple(r) for r in table.x_RxN.astype(int)}
    assert len(rows) == 2**n  # every vertex of the hypercube exactly once
    np.testing.assert_array_equal(table.y_R, table.x_RxN.sum(axis=1) % 2)


def test_pm1_encoding_maps_bits_to_signs():
    t01, tpm = parity_table(4, "01"), parity_table(4, "pm1")
    np.testing.assert_array_equal(tpm.x_RxN, 2 * t01.x_RxN - 1)
    np.testing.assert_array_equal(tpm.y_R, t01.y_R)
    assert set(np.unique(tpm.x_RxN)) == {-1.0, 1.0}


def test_too_many_bits_names_the_limit():
    with pytest.raises(UserError, match=f"n <= {MAX_BITS}"):
        parity_table(MAX_BITS + 1)
    with pytest.raises(UserError, match="encoding"):
        parity_table(3, "bits")
    assert table_bytes(20) == 2**20 * 21 * 4


def test_init_uses_true_fan_in_and_padding_is_zero():
    key = jax.random.key(1)
    params, masks = init_member(64, 2, 48, key, depth_max=3, width_max=96, activation="relu", init="he")
    k_in = params["in_kernel"]
    assert k_in.shape == (64, 96)
    assert np.all(np.asarray(k_in[:, 48:]) == 0)
    assert abs(float(k_in[:, :48].std()) - np.sqrt(2 / 64)) < 0.1 * np.sqrt(2 / 64)
    hidden = np.asarray(params["hidden_kernel"])
    assert abs(hidden[0, :48, :48].std() - np.sqrt(2 / 48)) < 0.1 * np.sqrt(2 / 48)  # fan-in 48, not 96
    assert np.all(hidden[1] == 0)  # the gated (padded) third layer
    np.testing.assert_array_equal(masks["layer_gate"], [1.0, 0.0])
    rad, _ = init_member(8, 1, 16, key, depth_max=1, width_max=16, activation="relu", init="rademacher")
    np.testing.assert_allclose(np.abs(np.asarray(rad["in_kernel"])), 1 / np.sqrt(8))


def test_padded_model_computes_the_same_function():
    key = jax.random.key(3)
    x_RxN = jnp.asarray(parity_table(5).x_RxN)
    small = init_member(5, 2, 6, key, depth_max=2, width_max=6, activation="tanh", init="lecun")
    padded = init_member(5, 2, 6, key, depth_max=4, width_max=16, activation="tanh", init="lecun")
    np.testing.assert_allclose(forward(*small, x_RxN, "tanh"), forward(*padded, x_RxN, "tanh"), atol=1e-6)


@pytest.mark.parametrize("width", [3, 16, 17, 40])
def test_both_layouts_compute_the_same_function_and_forward_picks_by_width(width):
    from scaling.engine.model import ACTIVATIONS, ROWS_MINOR_MAX_WIDTH, forward_rows_major, forward_rows_minor

    x_RxN = jnp.asarray(parity_table(6).x_RxN)
    params, masks = init_member(6, 3, width, jax.random.key(1), depth_max=4, width_max=width, activation="relu",
                                init="he")
    params = {**params, "in_bias": params["in_bias"] + 0.1, "hidden_bias": params["hidden_bias"] - 0.05}
    major, minor = (f(params, masks, x_RxN, ACTIVATIONS["relu"]) for f in (forward_rows_major, forward_rows_minor))
    np.testing.assert_allclose(major, minor, rtol=1e-5, atol=1e-5)
    chosen = minor if width <= ROWS_MINOR_MAX_WIDTH else major  # this suite runs on the CPU
    np.testing.assert_array_equal(forward(params, masks, x_RxN, "relu"), chosen)


def test_nnx_module_and_pure_forward_agree():
    model = MLP(3, 2, 5, key=jax.random.key(0), activation="sigmoid")
    x_RxN = jnp.asarray(parity_table(3).x_RxN)
    params, masks = split_params(model)
    np.testing.assert_array_equal(model(x_RxN), forward(params, masks, x_RxN, "sigmoid"))
    assert sum(p.size for p in params.values()) == count_parameters(2, 5, 3)
    logreg = MLP(3, 0, 1, key=jax.random.key(0))
    assert logreg(x_RxN).shape == (8,)


@pytest.mark.parametrize("n, depth, width, depth_max, width_max, profile",
                         [(3, 0, 1, 0, 1, "constant"), (4, 1, 3, 1, 4, "constant"), (5, 2, 6, 4, 8, "halving")])
def test_the_padded_layout_is_the_models_and_counts_its_parameters(n, depth, width, depth_max, width_max, profile):
    """population.padded_shapes is the shape of every array the model builds (the memory estimate and the host
    initialisation use it), and layer_sizes' blocks hold exactly count_parameters' weights and biases."""
    from scaling.engine.population import layer_sizes, padded_shapes

    model = MLP(n, depth, width, key=jax.random.key(0), depth_max=depth_max, width_max=width_max, profile=profile)
    params, _ = split_params(model)
    assert {name: tuple(p.shape) for name, p in params.items()} == padded_shapes(n, depth_max, width_max)
    sizes = layer_sizes(n, depth, width, profile)
    assert sum(a * b + b for a, b in zip(sizes, sizes[1:])) == count_parameters(depth, width, n, profile)
    real = sum(float(np.count_nonzero(p)) for name, p in params.items() if "kernel" in name)
    assert real == sum(a * b for a, b in zip(sizes, sizes[1:]))  # the padding stays zero


@pytest.mark.parametrize("n, depth, width, profile",
                         [(4, 3, 6, "halving"), (9, 2, 4, "constant"), (3, 1, 12, "constant")])
def test_orthogonal_init_gives_orthogonal_real_blocks_whatever_the_padding(n, depth, width, profile):
    """Each real kernel block has orthonormal columns (rows when it widens), scaled to He's mean square
    (2 / fan-in per entry), and zeros outside it; padded into a larger network it is the same block."""
    alone, _ = init_member(n, depth, width, jax.random.key(3), depth_max=depth, width_max=width, activation="relu",
                           init="orthogonal", profile=profile)
    padded, _ = init_member(n + 2, depth, width, jax.random.key(3), depth_max=depth + 1, width_max=width + 5,
                            activation="relu", init="orthogonal", n_real=n, profile=profile)
    widths = layer_widths(width, depth, profile)
    kernels = [("in_kernel", None, n, widths[0])] + [("hidden_kernel", layer - 1, widths[layer - 1], widths[layer])
                                                   for layer in range(1, depth)]
    for name, layer, rows, cols in kernels:
        whole = np.asarray(alone[name] if layer is None else alone[name][layer])
        other = np.asarray(padded[name] if layer is None else padded[name][layer])
        block = whole[:rows, :cols]
        assert not whole[rows:].any() and not whole[:, cols:].any()
        np.testing.assert_allclose(other[:rows, :cols], block, atol=1e-6)
        assert not other[rows:].any() and not other[:, cols:].any()
        gram = block.T @ block if rows >= cols else block @ block.T  # the orthonormal side
        np.testing.assert_allclose(gram, np.eye(min(rows, cols)) * 2.0 * max(rows, cols) / rows, rtol=1e-5,
                                   atol=1e-5)
    assert np.isclose(float(np.sum(np.asarray(alone["out_kernel"]) ** 2)), 1.0, rtol=1e-5)  # gain 1: a unit vector


def test_positive_biases_start_on_real_units_of_real_layers_only():
    params, _ = init_member(4, 2, 5, jax.random.key(2), depth_max=3, width_max=8, activation="relu",
                            init="lecun_bias", profile="halving")
    np.testing.assert_allclose(params["in_bias"], [0.1] * 5 + [0.0] * 3)
    np.testing.assert_allclose(params["hidden_bias"][0], [0.1] * 3 + [0.0] * 5)  # halving: 5, then 3 units
    assert np.all(np.asarray(params["hidden_bias"][1]) == 0) and np.all(np.asarray(params["out_bias"]) == 0)
