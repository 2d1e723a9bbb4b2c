"""`make profile` (python -m benchmarks.profile): where a training step's time goes, and how well the cost
model predicts it.

For a few bucket shapes like a default sweep's (n = 8 unless noted, lr 1e-9 so nobody stops early) it prints
the measured time of a training step (warm, whole chunks through train_bucket), the cost model's prediction,
and the time of the forward plus backward pass alone and of the optimizer with its padding masks alone
(each in a 100-step scan whose carry changes every step, so XLA cannot hoist the work out of the loop), and
forward plus backward in the layout the engine does not use for that width (scaling.engine.model.rows_minor), and
the step time and the backend compiler's seconds (the init and chunk programs) with the engine's XLA options
and with XLA's defaults.
Then it times two default-sweep buckets trained one after the other and at once, on the sweep's threads.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaling.engine.model import ACTIVATIONS, forward_rows_major, forward_rows_minor, param_mask, rows_minor
from scaling.engine.population import Member, make_bucket
from scaling.engine.programs import Programs
from scaling.engine.steps import compiler_options, init_population, loss
from scaling.engine.tasks import parity_table
from scaling.engine.train import train_bucket
from scaling.planning import cost, probes

SHAPES = [(8, 4, 2, 528), (8, 3, 2, 384), (8, 3, 8, 192), (8, 2, 8, 144), (6, 3, 6, 192), (8, 2, 16, 48),
          (8, 2, 32, 64), (4, 3, 4, 256), (10, 2, 2, 8), (8, 2, 128, 16)]  # (n, depth, width, members)
STEPS = 100


def _seconds(f, *args, reps: int = 3) -> float:
    jax.block_until_ready(f(*args))
    start = time.perf_counter()
    for _ in range(reps):
        out = f(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / reps


def _compile_seconds(lowered: jax.stages.Lowered, options: dict | None) -> float:
    start = time.perf_counter()
    lowered.compile(options)
    return time.perf_counter() - start


def profile_shape(n: int, depth: int, width: int, population: int, model: cost.CostModel) -> dict[str, float]:
    base = Member(task="parity", n=n, encoding="pm1", depth=depth, width=width, activation="relu", init="he",
                  optimizer="adam", loss="bce", lr=1e-9, seed=0, steps=2 * STEPS)
    bucket = make_bucket([dataclasses.replace(base, seed=s) for s in range(population)], eval_every=STEPS)

    def steps_s(engine: Programs, xla_default: Programs) -> tuple[float, float]:
        """Seconds per step with each set of programs, compiled first, then timed in the order A B B A (the
        timings of this machine drift)."""
        seconds = {id(engine): 0.0, id(xla_default): 0.0}
        for programs in (engine, xla_default):
            train_bucket(bucket, programs=programs)  # compiles
        for programs in (engine, xla_default, xla_default, engine):
            start = time.perf_counter()
            train_bucket(bucket, programs=programs)
            seconds[id(programs)] += (time.perf_counter() - start) / 2 / bucket.steps
        return seconds[id(engine)], seconds[id(xla_default)]

    # The backend compiler alone, each way (traced and lowered once, outside the clock; first, as JAX keeps
    # compiled programs in memory and training compiles the same ones).
    with Programs() as programs, Programs(xla_defaults=True) as xla_default:
        lowered = [programs.lowered(kind, bucket.spec, bucket.slots) for kind in ("init", "chunk")]
        compile_s, xla_default_compile_s = (sum(_compile_seconds(low, options) for low in lowered)
                                            for options in (compiler_options(), None))
        step_s, xla_default_step_s = steps_s(programs, xla_default)

    slots = bucket.slots
    column = lambda v, dtype=jnp.int32: jnp.full((slots,), v, dtype)
    keys = jnp.asarray(np.stack([base.key_data(s) for s in range(slots)]))
    state = init_population(keys, column(n), column(depth), column(width), column(1e-9, jnp.float32),
                             spec=bucket.spec)
    table = parity_table(n)
    x_RxN, y_R = jnp.asarray(table.x_RxN), jnp.asarray(table.y_R)
    valid_R = jnp.ones(y_R.shape, bool)

    def forward_backward_s(layout) -> float:
        """Seconds per step of forward plus backward through `layout` (the engine's, or the other one)."""
        relu = ACTIVATIONS["relu"]
        grad_P = jax.vmap(jax.grad(lambda p, m: loss(layout(p, m, x_RxN, relu), y_R, valid_R, "bce")))

        @jax.jit
        def forward_backward(params, masks):
            body = lambda p, _: (jax.tree.map(lambda a, g: a - 1e-30 * g, p, grad_P(p, masks)), None)
            return jax.lax.scan(body, params, None, length=STEPS)[0]

        return _seconds(forward_backward, state.params, state.masks) / STEPS

    layouts = (forward_rows_minor, forward_rows_major)[::1 if rows_minor(width) else -1]  # the engine's first

    tx = optax.adam(1e-3)

    @jax.jit
    def optimizer(params, opt_state, masks):
        def body(carry, _):
            p, o = carry
            updates, o = jax.vmap(tx.update)(p, o, p)
            updates = jax.tree.map(jnp.multiply, updates, jax.vmap(param_mask)(p, masks))
            return (jax.vmap(optax.apply_updates)(p, updates), o), None
        return jax.lax.scan(body, (params, opt_state), None, length=STEPS)[0]

    return {"step_s": step_s, "model_s": model.step_s(bucket.spec, slots), "compile_s": compile_s,
            "xla_default_step_s": xla_default_step_s, "xla_default_compile_s": xla_default_compile_s,
            "forward_backward_s": forward_backward_s(layouts[0]), "other_layout_s": forward_backward_s(layouts[1]),
            "optimizer_s": _seconds(optimizer, state.params, jax.vmap(tx.init)(state.params), state.masks) / STEPS}


def threads_check() -> dict[str, float | bool]:
    """Two buckets of default-sweep members (1000 steps, nobody stops early), trained one after the other and
    then on two training threads, programs compiled beforehand: seconds each way, and whether the rows agree."""
    from scaling.experiment import config
    from scaling.planning import search
    from scaling.sweep import train_concurrently

    cfg = config.load(Path(__file__).resolve().parents[2] / "experiments" / "default.toml")
    points = [(8, 3, 8), (7, 2, 6), (6, 3, 5)]
    buckets = [make_bucket([dataclasses.replace(m, seed=m.seed + offset, steps=1000)
                            for p in points for m in search.members_at(cfg, *p)], eval_every=100, width_max=8)
               for offset in (0, 100)]
    with Programs() as programs:
        train = lambda bucket, stop=None: train_bucket(bucket, programs=programs, stop_early=False)
        train(dataclasses.replace(buckets[0], steps=100))  # compiles
        start = time.perf_counter()
        alone = [train(b) for b in buckets]
        one_after_other = time.perf_counter() - start
        start = time.perf_counter()
        together = list(train_concurrently(buckets, 2, train))
    return {"one_after_other_s": one_after_other, "at_once_s": time.perf_counter() - start,
            "same_rows": all(dataclasses.replace(a, wall_s=0.0) == dataclasses.replace(b, wall_s=0.0)
                             for rows_a, rows_b in zip(alone, together) for a, b in zip(rows_a, rows_b))}


def main() -> None:
    model = probes.load_or_calibrate()
    print(f"cost model: {'calibrated' if model.calibrated else 'built-in default'} ({model.backend})")
    print("(compile s: the backend compiler on the init and chunk programs; xla default: the same with XLA's "
          "default options instead of scaling.engine.steps.compiler_options)")
    print(f"{'n':>2} {'depth':>5} {'width':>5} {'members':>7} {'step ms':>8} {'model ms':>9} {'fwd+bwd ms':>11} "
          f"{'other layout':>13} {'optimizer ms':>13} {'compile s':>10} {'xla default: compile s':>23} {'step ms':>8}")
    for shape in SHAPES:
        r = profile_shape(*shape, model)
        print(f"{shape[0]:>2} {shape[1]:>5} {shape[2]:>5} {shape[3]:>7} {r['step_s'] * 1e3:>8.3f} "
              f"{r['model_s'] * 1e3:>9.3f} {r['forward_backward_s'] * 1e3:>11.3f} {r['other_layout_s'] * 1e3:>13.3f} "
              f"{r['optimizer_s'] * 1e3:>13.3f} {r['compile_s']:>10.2f} {r['xla_default_compile_s']:>23.2f} "
              f"{r['xla_default_step_s'] * 1e3:>8.3f}", flush=True)
    r = threads_check()
    print(f"two buckets: {r['one_after_other_s']:.2f} s one after the other, {r['at_once_s']:.2f} s at once on two "
          f"threads; rows {'identical' if r['same_rows'] else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
