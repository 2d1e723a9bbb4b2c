import json
import subprocess
import sys

import pytest

from scaling.engine.devices import make_mesh
from scaling.errors import UserError

# Run in a fresh interpreter: the CPU device count is fixed when the backend starts.
SCRIPT = """
import json, jax
jax.config.update("jax_num_cpu_devices", 2)
from scaling.engine.population import Member, make_bucket
from scaling.engine.devices import make_mesh
from scaling.engine.train import train_bucket
import dataclasses
base = Member(task="parity", n=3, encoding="pm1", depth=1, width=2, activation="relu", init="he", optimizer="adam",
              loss="bce", lr=3e-2, seed=0, steps=300)
base = dataclasses.replace(base, **{fields})
members = [dataclasses.replace(base, depth=d, width=w, seed=s) for d in (1, 2) for w in (2, 5) for s in range(3)]
bucket = make_bucket(members, eval_every=100)
plain, sharded = train_bucket(bucket), train_bucket(bucket, mesh=make_mesh(2))
print(json.dumps({"devices": jax.device_count(),
                  "plain": [[r.solved, r.steps_run, r.final_loss] for r in plain],
                  "sharded": [[r.solved, r.steps_run, r.final_loss] for r in sharded]}))
"""


@pytest.mark.parametrize("fields", [
    "{}",  # the truth table
    "dict(task='sparse_parity', n=12, k=2, data='online', batch_size=16, eval_samples=256, optimizer='sgd', "
    "loss='hinge', lr=0.1, weight_decay=0.01)",  # samples drawn on each device from each member's key
])
def test_sharded_population_equals_unsharded(fields):
    proc = subprocess.run([sys.executable, "-c", SCRIPT.replace("{fields}", fields)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    for (s1, n1, l1), (s2, n2, l2) in zip(out["plain"], out["sharded"]):
        assert (s1, n1) == (s2, n2) and abs(l1 - l2) < 1e-5


def test_asking_for_more_devices_than_visible_is_a_clean_error():
    with pytest.raises(UserError, match="only 1 are visible"):
        make_mesh(4)
    assert make_mesh(1) is None
