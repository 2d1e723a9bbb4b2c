"""`make bench`'s PyTorch baseline, a plain PyTorch training loop: one model at a time, one optimizer step per
Python iteration, a check of every row each eval_every steps. It runs only where torch is importable; torch is
not a dependency of the toolkit (install it into .venv to add this baseline).

Each model starts from the engine's initial weights for that member (computed before the clock starts, so the
baseline is not charged for JAX), with torch's Adam at the same learning rate, full batches and the mean binary
cross-entropy on the logit. The network is nn.Sequential of nn.Linear and nn.ReLU, as a PyTorch user writes it.
"""

from __future__ import annotations

import importlib.util
import time

import jax
import numpy as np

from scaling.engine.network import init_member
from scaling.engine.population import Member
from scaling.engine.tasks import make_table


def available() -> bool:
    return importlib.util.find_spec("torch") is not None


def initial_params(members: list[Member], n: int) -> list[dict[str, np.ndarray]]:
    """The engine's initial weights of each member, unpadded (one jitted init per width)."""
    init = jax.jit(init_member, static_argnames=("n_in", "depth", "width", "depth_max", "width_max", "activation",
                                                 "init"))
    params = []
    for m in members:
        key = jax.random.fold_in(jax.random.wrap_key_data(m.key_data(0)), 0)
        p, _ = init(n_in=n, depth=m.depth, width=m.width, key=key, depth_max=m.depth, width_max=m.width,
                    activation=m.activation, init=m.init)
        params.append(jax.tree.map(np.asarray, p))
    return params


def network(torch, params: dict[str, np.ndarray]):
    """nn.Sequential holding `params` (the engine's kernels are (in, out); nn.Linear's weights are (out, in))."""
    nn = torch.nn
    kernels = [params["in_kernel"], *params["hidden_kernel"], params["out_kernel"]]
    biases = [params["in_bias"], *params["hidden_bias"], params["out_bias"]]
    layers = []
    for i, (kernel_IxO, bias_O) in enumerate(zip(kernels, biases)):
        linear = nn.Linear(*kernel_IxO.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(np.array(kernel_IxO.T)))
            linear.bias.copy_(torch.tensor(np.array(bias_O)))
        layers += [linear] if i == len(kernels) - 1 else [linear, nn.ReLU()]
    return nn.Sequential(*layers)


def torch_loop(members: list[Member], n: int, lr: float, steps: int, eval_every: int) -> dict:
    """Train each member alone in PyTorch until every row is right (checked each eval_every steps) or `steps`."""
    import torch

    table = make_table(members[0].task, n, members[0].encoding)
    x_RxN, y_R = torch.from_numpy(table.x_RxN), torch.from_numpy(table.y_R)
    initial = initial_params(members, n)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    start, solved = time.perf_counter(), 0
    for params in initial:
        net = network(torch, params)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        for i in range(1, steps + 1):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(x_RxN)[:, 0], y_R).backward()
            optimizer.step()
            if i % eval_every == 0:
                with torch.no_grad():
                    if bool(((net(x_RxN)[:, 0] > 0) == (y_R > 0.5)).all()):
                        solved += 1
                        break
    return {"wall_s": time.perf_counter() - start, "members": len(members), "buckets": len(members),
            "solved": solved, "compiles": 0, "compile_s": None, "padding_waste": 1.0,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
