"""scaling: how many hidden units does gradient training need for n-bit parity, at each depth?

The public engine API (see README "Python API"):
    Member, make_bucket, train_bucket, MemberResult, parity_table
They are loaded on first use, so `import scaling.cli` (and `scaling --help`) does not pay for importing jax.
"""

import importlib

_EXPORTS = {**dict.fromkeys(["Bucket", "BucketSpec", "Member", "MemberResult", "make_bucket"],
                            "scaling.engine.population"),
            "parity_table": "scaling.engine.tasks", "train_bucket": "scaling.engine.train"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scaling' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
