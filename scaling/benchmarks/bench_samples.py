"""`make bench`'s sample-mode workload: a 3-sparse parity of 30 bits learned from fresh samples by the sparse-parity
recipe (one hidden ReLU layer of 100, SGD lr 0.1, weight decay 0.01, hinge loss, batch 32, every 100 steps a
check of 8,192 fresh samples), 32 seeds, until each has learned it. Three ways, timed in one run:
  engine      the members as one population, one bucket (scaling.engine.train), cold
  step_loop   one model at a time: one jitted SGD step per Python call on the engine's batches, the check every
              100 steps (so its members solve at the engine's steps: a check of the engine as well)
  torch_loop  the same loop in PyTorch (only where torch is importable): nn.Sequential, torch.optim.SGD with
              weight_decay, fresh torch.randint samples every step
PyTorch draws its own samples, so its members solve at other steps; the throughput compared is member-steps per
second (steps trained until solved, summed over members).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import optax

from scaling.benchmarks import bench_torch
from scaling.engine.model import forward
from scaling.engine.network import init_member
from scaling.engine.population import Member, make_bucket
from scaling.engine.programs import Programs
from scaling.engine.steps import LOSSES, parity_labels, sample_batch
from scaling.engine.tasks import decode, eval_inputs, hidden_subset
from scaling.engine.train import train_bucket

N, K, WIDTH, SEEDS, LR, DECAY, BATCH, EVAL, EVAL_EVERY, CAP = 30, 3, 100, 32, 0.1, 0.01, 32, 8192, 100, 20000


def workload() -> list[Member]:
    base = Member(task="sparse_parity", n=N, encoding="pm1", depth=1, width=WIDTH, activation="relu", init="he",
                  optimizer="sgd", loss="hinge", lr=LR, seed=0, steps=CAP, weight_decay=DECAY, k=K, data="online",
                  batch_size=BATCH, eval_samples=EVAL)
    return [dataclasses.replace(base, seed=s) for s in range(SEEDS)]


def _summary(name: str, start: float, steps: list[int], solved: int) -> dict:
    wall = time.perf_counter() - start
    return {"way": name, "wall_s": round(wall, 3), "members": SEEDS, "solved": solved, "member_steps": int(sum(steps)),
            "member_steps_per_s": round(sum(steps) / wall, 1)}


def _engine(members: list[Member]) -> dict:
    start = time.perf_counter()
    with Programs() as programs:
        results = train_bucket(make_bucket(members, eval_every=EVAL_EVERY), programs=programs)
    return _summary("engine", start, [r.steps_run for r in results], sum(r.solved for r in results))


def _step_loop(members: list[Member]) -> dict:
    spec = make_bucket(members, eval_every=EVAL_EVERY).spec
    subset_N = jnp.zeros(N).at[jnp.array(hidden_subset(0, N, K))].set(1.0)
    x_ExN = jnp.asarray(eval_inputs(0, N, EVAL, "pm1"))
    y_E = parity_labels(decode(x_ExN, "pm1").astype(jnp.int32), subset_N)
    tx = optax.chain(optax.add_decayed_weights(DECAY), optax.sgd(LR))

    @jax.jit
    def step(params, opt_state, masks, key_data, i):
        x_BxN, y_B = sample_batch(key_data, i, subset_N, spec)
        loss = lambda p: LOSSES["hinge"](forward(p, masks, x_BxN, "relu"), y_B).mean()
        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def all_right(params, masks):
        return jnp.all((forward(params, masks, x_ExN, "relu") > 0) == (y_E > 0.5))

    start, steps, solved = time.perf_counter(), [], 0
    for m in members:
        key_data = jnp.asarray(m.key_data(0))
        params, masks = init_member(N, 1, WIDTH, jax.random.fold_in(jax.random.wrap_key_data(key_data), 0),
                                    depth_max=1, width_max=WIDTH, activation="relu", init="he")
        opt_state, i = tx.init(params), 0
        while i < CAP:
            params, opt_state = step(params, opt_state, masks, key_data, i)
            i += 1
            if i % EVAL_EVERY == 0 and bool(all_right(params, masks)):
                solved += 1
                break
        steps.append(i)
    return _summary("step_loop", start, steps, solved)


def _torch_loop(members: list[Member]) -> dict:
    import torch

    subset = torch.tensor(hidden_subset(0, N, K))
    x_ExN = torch.from_numpy(eval_inputs(0, N, EVAL, "pm1"))
    y_E = ((x_ExN[:, subset] > 0).sum(1) % 2).float()
    initial = bench_torch.initial_params(members, N)
    start, steps, solved = time.perf_counter(), [], 0
    for seed, params in enumerate(initial):
        torch.manual_seed(seed)
        net = bench_torch.network(torch, params)
        optimizer = torch.optim.SGD(net.parameters(), lr=LR, weight_decay=DECAY)
        i = 0
        while i < CAP:
            bits = torch.randint(0, 2, (BATCH, N))
            target = 2.0 * (bits[:, subset].sum(1) % 2).float() - 1.0
            optimizer.zero_grad(set_to_none=True)
            torch.clamp(1.0 - target * net(2.0 * bits.float() - 1.0)[:, 0], min=0).mean().backward()
            optimizer.step()
            i += 1
            if i % EVAL_EVERY == 0:
                with torch.no_grad():
                    if bool(((net(x_ExN)[:, 0] > 0) == (y_E > 0.5)).all()):
                        solved += 1
                        break
        steps.append(i)
    return _summary("torch_loop", start, steps, solved) | {"torch": torch.__version__,
                                                           "torch_threads": torch.get_num_threads()}


def measure() -> dict:
    """Every way, with the engine's throughput as a ratio against each baseline (member-steps per second)."""
    members = workload()
    results = {"engine": _engine(members)}
    print(f"samples engine done: {results['engine']['wall_s']:.1f} s", flush=True)
    results["step_loop"] = _step_loop(members)
    print(f"samples step_loop done: {results['step_loop']['wall_s']:.1f} s", flush=True)
    if bench_torch.available():
        results["torch_loop"] = _torch_loop(members)
        print(f"samples torch_loop done: {results['torch_loop']['wall_s']:.1f} s", flush=True)
    rate = lambda way: results[way]["member_steps_per_s"]
    return {"workload": {"n": N, "k": K, "width": WIDTH, "seeds": SEEDS, "lr": LR, "weight_decay": DECAY,
                         "batch": BATCH, "eval_samples": EVAL, "eval_every": EVAL_EVERY, "cap": CAP},
            "results": results,
            "engine_throughput": {f"vs_{way}": round(rate("engine") / rate(way), 2) for way in results
                                  if way != "engine"}}
