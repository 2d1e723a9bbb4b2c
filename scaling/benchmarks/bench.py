"""`make bench`: the engine against its baselines on one workload, as ratios measured in the same run.

The workload: w* of n = 10 parity at depth 2 over widths 1..32, 8 seeds, Adam at 1e-2, 2000 steps,
full batches, solved members checked every 100 steps. Each way runs cold (its own compiles included, the
persistent compile cache off, fresh in-memory programs), but for sweep_warm:
  sweep       `scaling sweep` of the workload's config: the galloping search, planned buckets, early stops
  sweep_warm  the same sweep again, into a fresh store, with the programs that the first one compiled
  grid        `scaling sweep` of every width 1..32 (widths as a list: one round, no search), cold
  grid_warm   the grid again with its programs compiled: training alone, the most that compile work can reach
  naive_vmap  one jit(vmap) of all 256 members padded to width 32, every member for the whole budget
  one_by_one  a Python loop over models, each trained alone by the engine's compiled scan (one program per
              width), stopping when solved
  step_loop   one model at a time in the shape of the PyTorch loop: one jitted Adam step per Python
              call, a check of all rows every 100 steps
  torch_loop  the PyTorch loop itself (scaling.benchmarks.bench_torch), only where torch is installed
"""

from __future__ import annotations

import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from scaling.benchmarks import bench_samples, bench_torch
from scaling.engine.model import forward
from scaling.engine.network import init_member
from scaling.engine.population import Member, make_bucket, padding_waste
from scaling.engine.programs import Programs
from scaling.engine.tasks import make_table
from scaling.engine.train import train_bucket
from scaling.experiment import config
from scaling.planning import probes
from scaling.storage.outputs import check_writable, write_atomic

N, DEPTH, WIDTHS, SEEDS, LR, STEPS, EVAL_EVERY = 10, 2, range(1, 33), 8, 1e-2, 2000, 100


def workload_config(widths: str) -> str:
    """The workload's experiment file, its widths as given: SEARCHED or GRID."""
    return f"""
[experiment]
name = "bench"
[task]
n = {N}
[model]
depths = [{DEPTH}]
widths = {widths}
[train]
lrs = [{LR}]
steps = {STEPS}
eval_every = {EVAL_EVERY}
[search]
seeds = {SEEDS}
min_depth_widths = []
lr_extend = 0
"""


SEARCHED = f"{{max = {max(WIDTHS)}}}"  # the galloping search over widths 1..32
GRID = str(list(WIDTHS))  # every width in one round
WORKLOAD = workload_config(SEARCHED)
WAYS = ("sweep", "sweep_warm", "grid", "grid_warm")  # the engine's ways, each compared with every baseline


def workload() -> list[Member]:
    base = Member(task="parity", n=N, encoding="pm1", depth=DEPTH, width=1, activation="relu", init="he",
                  optimizer="adam", loss="bce", lr=LR, seed=0, steps=STEPS)
    return [dataclasses.replace(base, width=w, seed=s) for w in WIDTHS for s in range(SEEDS)]


def _train(buckets, programs: Programs, stop_early: bool = True) -> dict:
    start = time.perf_counter()
    solved = sum(r.solved for b in buckets for r in train_bucket(b, programs=programs, stop_early=stop_early))
    return {"wall_s": time.perf_counter() - start, "members": sum(len(b.members) for b in buckets),
            "buckets": len(buckets), "solved": solved, "compiles": programs.compiles,
            "compile_s": programs.compile_s, "padding_waste": padding_waste(buckets)}


def _step_loop(members: list[Member]) -> dict:
    """One model at a time in the shape of a PyTorch training loop: one jitted Adam step per Python call,
    every eval_every steps a check on the host whether every row is right. Each width compiles its own
    init, step and check (small programs); the network, init and loss are the engine's, unpadded."""
    table = make_table("parity", N, "pm1")
    x_RxN, y_R = jax.device_put((table.x_RxN, table.y_R))
    tx = optax.adam(LR)
    init = jax.jit(init_member, static_argnames=("n_in", "depth", "width", "depth_max", "width_max", "activation",
                                                 "init"))

    @jax.jit
    def step(params, opt_state, masks, x_RxN, y_R):
        loss = lambda p: optax.sigmoid_binary_cross_entropy(forward(p, masks, x_RxN, "relu"), y_R).mean()
        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def all_right(params, masks, x_RxN, y_R):
        return jnp.all((forward(params, masks, x_RxN, "relu") > 0) == (y_R > 0.5))

    start, solved = time.perf_counter(), 0
    for m in members:
        key = jax.random.fold_in(jax.random.wrap_key_data(m.key_data(0)), 0)
        params, masks = init(n_in=N, depth=m.depth, width=m.width, key=key, depth_max=m.depth, width_max=m.width,
                             activation="relu", init="he")
        opt_state = tx.init(params)
        for i in range(1, STEPS + 1):
            params, opt_state = step(params, opt_state, masks, x_RxN, y_R)
            if i % EVAL_EVERY == 0 and bool(all_right(params, masks, x_RxN, y_R)):
                solved += 1
                break
    compiles = sum(f._cache_size() for f in (init, step, all_right))
    return {"wall_s": time.perf_counter() - start, "members": len(members), "buckets": len(members),
            # compiles happen inside the jit calls: no compiler seconds of their own
            "solved": solved, "compiles": compiles, "compile_s": None, "padding_waste": 1.0}


def _sweep(cfg, programs: Programs) -> dict:
    """A sweep of the workload into a fresh store; `programs` may hold compiled programs already (warm)."""
    from scaling.sweep import run_sweep

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        outcome = run_sweep(cfg, out, progress=False, programs=programs)
        wall = time.perf_counter() - start
    star = outcome.summary.query("kind == 'min_width'")["w_star"].tolist()
    return {"wall_s": wall, "members": outcome.trained, "buckets": outcome.buckets, "w_star": star,
            "compiles": outcome.compiles, "compile_s": outcome.compile_s, "padding_waste": outcome.padding_waste}


def _measure() -> dict:
    """The workload, timed every way (the caller turns the persistent compile cache off)."""
    cfg = config.parse(WORKLOAD)
    members = workload()
    probes.load_or_calibrate()  # before anything is timed
    with Programs() as programs:  # cold: nothing compiled before
        results = {"sweep": _sweep(cfg, programs)}
        print(f"sweep done: {results['sweep']['wall_s']:.1f} s", flush=True)
        programs.wait_idle()  # a guess the cold sweep left compiling (it does not wait for one) ends first
        results["sweep_warm"] = _sweep(cfg, programs)  # again, its programs compiled: what training alone costs
        print(f"sweep_warm done: {results['sweep_warm']['wall_s']:.1f} s", flush=True)
    with Programs() as programs:
        grid = config.parse(workload_config(GRID))
        results["grid"] = _sweep(grid, programs)
        print(f"grid done: {results['grid']['wall_s']:.1f} s", flush=True)
        programs.wait_idle()
        results["grid_warm"] = _sweep(grid, programs)
    print(f"grid_warm done: {results['grid_warm']['wall_s']:.1f} s", flush=True)
    ways = {"naive_vmap": ([make_bucket(members, eval_every=EVAL_EVERY)], False),
            "one_by_one": ([make_bucket([m], eval_every=EVAL_EVERY) for m in members], True)}
    for name, (buckets, stop_early) in ways.items():
        with Programs() as programs:
            results[name] = _train(buckets, programs, stop_early=stop_early)
        print(f"{name} done: {results[name]['wall_s']:.1f} s", flush=True)
    results["step_loop"] = _step_loop(members)
    print(f"step_loop done: {results['step_loop']['wall_s']:.1f} s", flush=True)
    return results


def run_bench(out: str | Path = "bench.json") -> dict:
    out = Path(out)
    check_writable(out)  # fail now, not after minutes of benchmarking
    cache_was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)  # cold means cold
    try:
        results = _measure()
        samples = bench_samples.measure()  # the sample modes' workload (a sparse parity from fresh samples)
    finally:
        jax.config.update("jax_enable_compilation_cache", cache_was)
    baselines = ["one_by_one", "step_loop", "naive_vmap"]
    if bench_torch.available():
        results["torch_loop"] = bench_torch.torch_loop(workload(), N, LR, STEPS, EVAL_EVERY)
        baselines.insert(2, "torch_loop")
    else:
        print("torch is not installed: the PyTorch loop is left out (pip install torch into .venv to add it)")
    ratio = lambda slow, fast: round(results[slow]["wall_s"] / results[fast]["wall_s"], 2)
    report = {
        "workload": {"n": N, "depth": DEPTH, "widths": [min(WIDTHS), max(WIDTHS)], "seeds": SEEDS, "lr": LR,
                     "steps": STEPS, "eval_every": EVAL_EVERY},
        "machine": {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
                    "devices": jax.device_count(), "python": platform.python_version(), "jax": jax.__version__},
        "results": {k: {f: (round(v, 3) if isinstance(v, float) else v) for f, v in r.items()}
                    for k, r in results.items()},
        **{f"{way}_speedup": {f"vs_{k}": ratio(k, way) for k in baselines} for way in WAYS},
        "samples": samples,
    }
    write_atomic({out: json.dumps(report, indent=2)})
    print(f"{'way':<12}{'members':>8}{'buckets':>8}{'compiles':>9}{'compile s':>10}{'wall s':>9}{'waste':>7}")
    for name, r in results.items():
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
        print(f"{name:<12}{r['members']:>8}{r['buckets']:>8}{r['compiles']:>9}{compile_s:>10}"
              f"{r['wall_s']:>9.1f}{r['padding_waste']:>7.2f}")
    described = {"one_by_one": "the one-model scan loop", "step_loop": "the one-model step loop",
                 "torch_loop": "the PyTorch loop", "naive_vmap": "the naive vmap"}
    for way in WAYS:
        r = report[f"{way}_speedup"]
        print(f"{way}: " + ", ".join(f"{r[f'vs_{k}']}x {described[k]}" for k in baselines))
    print("sparse parity from samples (member-steps per second): engine "
          f"{samples['results']['engine']['member_steps_per_s']:,.0f}, "
          + ", ".join(f"{v}x the {k[3:].replace('_', ' ')}" for k, v in samples["engine_throughput"].items()))
    print(f"-> {out}")
    return report
