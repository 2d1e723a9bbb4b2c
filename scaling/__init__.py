"""scaling: how many hidden units does gradient training need for n-bit parity, at each depth?

The public engine API (see README "Python API"):
    Member, make_bucket, train_bucket, MemberResult, parity_table
They are loaded on first use, so `import scaling.cli` (and `scaling --help`) does not pay for importing jax.
"""

import importlib

_EXPORTS = {"Bucket": "scaling.population", "BucketSpec": "scaling.population", "Member": "scaling.population",
            "MemberResult": "scaling.population", "make_bucket": "scaling.population",
            "parity_table": "scaling.tasks", "train_bucket": "scaling.train"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scaling' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
