"""jax's distributed key-value client, which a cluster's processes talk through: private in jax (jax.distributed
has no public key-value store), so reached here alone, with a one-line error when a jax release moves it."""

from __future__ import annotations

from scaling.errors import ClusterError

# The methods of jax's private key-value client that a cluster calls (the same in jax 0.10 and 0.11).
KEY_VALUE_METHODS = ("key_value_set", "key_value_try_get", "blocking_key_value_get", "key_value_delete",
                     "key_value_dir_get", "wait_at_barrier")


def client():
    """jax's distributed runtime client (private: jax.distributed has no public key-value store), or a
    ClusterError saying what moved when a jax release no longer has it where this version looks."""
    import jax

    try:
        from jax._src import distributed  # the runtime's key-value store, as jax's own checkpointing uses it

        found = distributed.global_state.client
        missing = [m for m in KEY_VALUE_METHODS if found is not None and not hasattr(found, m)]
    except (ImportError, AttributeError) as e:
        missing = [str(e)]
    if missing:
        raise ClusterError("jax", f"jax {jax.__version__} moved its key-value client ({', '.join(missing)}); "
                                  "multi-process sweeps need jax 0.10 or 0.11")
    return found
