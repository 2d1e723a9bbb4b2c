import jax
import pytest

# Silent broadcasting hides shape bugs; the engine must be explicit about every rank change.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def member_factory():
    from scaling.population import Member

    def make(n=2, depth=1, width=4, lr=1e-2, seed=0, steps=300, activation="relu", init="he", optimizer="adam",
             loss="bce", encoding="pm1"):
        return Member("parity", n, encoding, depth, width, activation, init, optimizer, loss, lr, seed, steps)

    return make
