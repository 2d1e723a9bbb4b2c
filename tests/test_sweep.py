import dataclasses
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest
from conftest import TINY

from scaling import config, plan, search, sweep
from scaling.errors import UserError
from scaling.programs import Programs
from scaling.rounds import Calibration
from scaling.stats import min_width, summarize
from scaling.store import STORE_NAME
from scaling.sweep import _queue_next_round, _Stopped, default_workers, run_sweep, train_concurrently

KEY = ["n", "depth", "width", "lr", "seed"]
RESULT = ["steps_run", "solved", "step_solved", "diverged"]


def _rows(out):
    with sqlite3.connect(out / STORE_NAME) as conn:
        return pd.read_sql_query("SELECT * FROM members", conn).sort_values(KEY).reset_index(drop=True)


@pytest.fixture
def uninterrupted(tiny_sweep):
    return tiny_sweep


def test_tiny_end_to_end_sweep(uninterrupted):
    out, outcome = uninterrupted
    rows = _rows(out)
    assert len(rows) == outcome.trained and not rows.duplicated(KEY).any()
    assert outcome.rounds >= 2  # the grid, then at least one bisection round
    summary = outcome.summary  # what the sweep prints; `scaling analyze` writes it as summary.csv
    widths = summary[summary["kind"] == "min_width"]
    # depths 1 and 2 at every n, and ceil(log2 n) + 1: 2, 3, 3 for n = 2, 3, 4
    assert set(zip(widths["n"], widths["depth"])) == {(n, d) for n in (2, 3, 4) for d in (1, 2)} | {(3, 3), (4, 3)}
    assert set(summary[summary["kind"] == "min_depth"]["width"]) == {2, 4}
    with sqlite3.connect(out / STORE_NAME) as conn:
        run = pd.read_sql_query("SELECT * FROM runs", conn).iloc[0]
    assert run["config_hash"] == config.parse(TINY).hash() and run["backend"] == "cpu" and run["ended_at"]


def test_resume_after_a_stop_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    full_out, full = uninterrupted
    cfg = config.parse(TINY)
    calls = []

    def stop_after_two(bucket):
        calls.append(bucket)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, tmp_path, progress=False, on_bucket=stop_after_two)
    partial = _rows(tmp_path)
    assert len(partial) == sum(len(b.members) for b in calls) < full.trained
    resumed = run_sweep(cfg, tmp_path, progress=False)
    assert resumed.skipped == len(partial)
    mine, theirs = _rows(tmp_path), _rows(full_out)
    assert len(mine) == len(theirs) and not mine.duplicated(KEY).any()
    pd.testing.assert_frame_equal(mine[KEY + RESULT], theirs[KEY + RESULT])
    assert (mine["final_loss"] - theirs["final_loss"]).abs().max() < 1e-5
    again = run_sweep(cfg, tmp_path, progress=False)
    assert again.trained == 0 and len(_rows(tmp_path)) == len(mine)


def test_buckets_trained_at_once_give_the_same_rows_as_one_at_a_time(uninterrupted, tmp_path, monkeypatch):
    out, concurrent = uninterrupted  # two workers
    # The plan for two workers (rounds of one bucket are split in two), trained by one.
    two_workers_plan = lambda *args, **kwargs: plan.plan_buckets(*args, **{**kwargs, "workers": 2})
    monkeypatch.setattr(sweep, "plan_buckets", two_workers_plan)
    alone = run_sweep(config.parse(TINY), tmp_path, progress=False, workers=1)
    mine, theirs = _rows(tmp_path), _rows(out)
    assert (alone.trained, alone.rounds, alone.buckets) == (concurrent.trained, concurrent.rounds, concurrent.buckets)
    columns = KEY + RESULT + ["final_loss", "final_accuracy", "bucket"]
    pd.testing.assert_frame_equal(mine[columns], theirs[columns])  # bit for bit, and in the same buckets


def test_a_stopped_round_stops_its_workers_and_starts_no_more():
    started, stopped = [], []

    def train(bucket, stop):
        started.append(bucket)
        if bucket == 0:
            return "first"
        while not stop.wait(0.01):
            pass
        stopped.append(bucket)
        raise _Stopped

    results = train_concurrently([0, 1, 2, 3, 4], 2, train)
    assert next(results) == "first"
    results.close()  # what the sweep does when storing fails or the user interrupts
    assert sorted(stopped) == sorted(set(started) - {0}) and len(started) <= 3 and 4 not in started

    def fails(bucket, stop):
        if bucket == 1:
            raise ValueError("out of memory")
        while not stop.wait(0.01):
            pass
        raise _Stopped

    with pytest.raises(ValueError, match="out of memory"):
        list(train_concurrently([0, 1, 2], 2, lambda b, stop: "ok" if b == 0 else fails(b, stop)))


def test_workers_default_to_the_cores_on_a_cpu_and_reject_a_bad_override(monkeypatch):
    monkeypatch.delenv("SCALING_WORKERS", raising=False)
    assert default_workers(None) >= 1
    assert default_workers(None, bucket_mib=2**30) == 1  # no room in memory for a second bucket of 1 PiB
    monkeypatch.setenv("SCALING_WORKERS", "3")
    assert default_workers(None) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("SCALING_WORKERS", bad)
        with pytest.raises(UserError, match="SCALING_WORKERS.*at least 1"):
            default_workers(None)


MONOTONE = (TINY.replace("n = [2, 4]", "n = [2, 3]").replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1]")
            .replace("seeds = 3", "seeds = 6").replace("steps = 400", "steps = 300")
            .replace("min_depth_widths = [2, 4]", "min_depth_widths = []"))


def test_adaptive_search_matches_the_exhaustive_grid(tmp_path):
    """A real small case whose success rates rise monotonically with width (6 seeds; with 3 seeds a lucky
    seed at an untested width can make the exhaustive grid's w* differ, which is the definition at work)."""
    adaptive = run_sweep(config.parse(MONOTONE), tmp_path / "a", progress=False)
    grid = config.parse(MONOTONE.replace("widths = {max = 8}", "widths = [1, 2, 3, 4, 5, 6, 7, 8]"))
    exhaustive = run_sweep(grid, tmp_path / "e", progress=False)
    assert exhaustive.trained > adaptive.trained
    pick = lambda s: s[s["kind"] == "min_width"].set_index(["n", "depth"])[["w_star", "censored"]].sort_index()
    pd.testing.assert_frame_equal(pick(adaptive.summary), pick(exhaustive.summary))


def _oracle_config():
    """TINY at depths 1 and 2, widths up to 64, 2 seeds, no L* search: the config the oracle tests search."""
    return config.parse(TINY.replace("widths = {max = 8}", "widths = {max = 64}").replace("seeds = 3", "seeds = 2")
                        .replace("min_depth_widths = [2, 4]", "min_depth_widths = []")
                        .replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1, 2]"))


def _search_against(cfg, solve_step) -> pd.DataFrame:
    """Run the search loop against an oracle: solve_step(member) is the step it solves at, or None."""
    rows: list[dict] = []
    for _ in range(30):
        df = pd.DataFrame(rows, columns=["n", "depth", "width", "lr", "seed", "steps_budget", "solved", "step_solved"])
        done = {(r["n"], r["depth"], r["width"], r["lr"], r["seed"], r["steps_budget"]) for r in rows}
        todo = [m for m in search.wanted_members(cfg, df)
                if (m.n, m.depth, m.width, m.lr, m.seed, m.steps) not in done]
        if not todo:
            return df
        for m in todo:
            step = solve_step(m)
            solved = step is not None and step <= m.steps
            rows.append({"n": m.n, "depth": m.depth, "width": m.width, "lr": m.lr, "seed": m.seed,
                         "steps_budget": m.steps, "solved": solved, "step_solved": step if solved else None})
    raise AssertionError("the search did not settle in 30 rounds")


def test_bisection_finds_every_threshold_with_few_widths():
    """The search loop against an oracle (solved iff width >= k): exact w* at every k up to the bound, censored
    above."""
    cfg = _oracle_config()
    thresholds = {(2, 1): 1, (2, 2): 37, (3, 1): 64, (3, 2): 65, (4, 1): 5, (4, 2): 20}
    df = _search_against(cfg, lambda m: 10 if m.width >= thresholds[(m.n, m.depth)] else None)
    stars = min_width(df).set_index(["n", "depth"])
    for cell, k in thresholds.items():
        if k > 64:
            assert stars.loc[cell, "censored"] and stars.loc[cell, "bound"] == 64
        else:
            assert stars.loc[cell, "w_star"] == k, cell
    assert set(df["steps_budget"]) == {cfg.steps}  # nothing budget-limited: the budget rule never fires
    widths_tested = df.groupby(["n", "depth"])["width"].nunique()
    assert widths_tested.max() <= 7 + 6  # the coarse grid plus log2(32) bisection steps, not all 64 widths


def test_galloping_matches_the_exhaustive_grid_with_fewer_members_and_never_trains_above_twice_w_star():
    """The same oracle against the gallop (1, 2, 4, ... then bisection) and against every width 1..64."""
    cfg = _oracle_config()
    thresholds = {(2, 1): 1, (2, 2): 37, (3, 1): 33, (3, 2): 65, (4, 1): 5, (4, 2): 20}
    oracle = lambda m: 10 if m.width >= thresholds[(m.n, m.depth)] else None
    gallop = _search_against(cfg, oracle)
    exhaustive = _search_against(dataclasses.replace(cfg, widths=tuple(range(1, 65)), width_search="grid"), oracle)
    pick = lambda df: min_width(df).set_index(["n", "depth"])[["w_star", "censored", "bound"]].sort_index()
    mine, theirs = pick(gallop), pick(exhaustive)
    pd.testing.assert_frame_equal(mine[["w_star", "censored"]], theirs[["w_star", "censored"]])
    assert (mine.loc[mine["censored"], "bound"] == 64).all()  # a censored cell climbed to the bound
    assert len(gallop) < len(exhaustive) / 4
    widest = gallop.groupby(["n", "depth"])["width"].max()
    for cell, k in thresholds.items():
        assert widest[cell] <= (2 * k if k <= 64 else 64), cell  # the first passing rung lies in [w*, 2 w*)


def test_a_settled_cell_whose_w_star_is_its_widest_width_trains_one_confirming_width_above():
    """So that a seed-bootstrap resample that fails at w* finds a passing width above it, not a censored cell."""
    cfg = _oracle_config()
    thresholds = {(2, 1): 4, (2, 2): 1, (3, 1): 64, (3, 2): 6, (4, 1): 5, (4, 2): 65}
    df = _search_against(cfg, lambda m: 10 if m.width >= thresholds[(m.n, m.depth)] else None)
    widest = df.groupby(["n", "depth"])["width"].max()
    assert widest[(2, 1)] == 8 and widest[(2, 2)] == 2  # w* is a rung: the next rung confirms it
    assert widest[(3, 2)] == 8 and widest[(4, 1)] == 8  # the gallop already tested a width above w*
    assert widest[(3, 1)] == 64 and widest[(4, 2)] == 64  # nothing wider than the bound to confirm with
    stars = min_width(df).set_index(["n", "depth"])
    assert [stars.loc[cell, "w_star"] for cell in [(2, 1), (2, 2), (3, 2), (4, 1)]] == [4, 1, 6, 5]


def test_the_budget_rule_reruns_budget_limited_cells_at_twice_the_budget_up_to_max_steps():
    """Oracle: at n = 2 a member of width w solves at step 6400 / w, so each doubling of the budget halves
    w*; at n = 3 it solves at step 10 from width 5 on, whatever the budget."""
    cfg = config.parse(TINY.replace("widths = {max = 8}", "widths = {max = 64}").replace("seeds = 3", "seeds = 2")
                       .replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1]")
                       .replace("n = [2, 4]", "n = [2, 3]")
                       .replace("min_depth_widths = [2, 4]", "min_depth_widths = []\nmax_steps = 1600"))
    df = _search_against(cfg, lambda m: 6400 // m.width if m.n == 2 else (10 if m.width >= 5 else None))
    budgets = df.groupby("n")["steps_budget"].unique()
    assert sorted(budgets[2]) == [400, 800, 1600] and list(budgets[3]) == [400]
    summary = summarize(df, cfg).set_index("n")
    assert summary.loc[2, "w_star"] == 4 and not summary.loc[2, "budget_converged"]  # 6400 / 1600; capped
    assert summary.loc[3, "w_star"] == 5 and summary.loc[3, "budget_converged"]


def test_store_of_another_config_is_refused_unless_fresh(uninterrupted, tmp_path):
    out, _ = uninterrupted
    other = config.parse(TINY.replace("steps = 400", "steps = 200"))
    before = (out / STORE_NAME).read_bytes()
    with pytest.raises(UserError, match="another config"):
        run_sweep(other, out, progress=False)
    assert (out / STORE_NAME).read_bytes() == before  # untouched
    (tmp_path / STORE_NAME).write_text("not a database")
    with pytest.raises(UserError, match="not a results store"):
        run_sweep(other, tmp_path, progress=False)


def test_python_dash_m_reports_bad_input_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("[model]", "[model]\ncolour = 1"))
    proc = subprocess.run([sys.executable, "-m", "scaling", "sweep", str(bad), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("[model] colour: unknown key; expected one of depths, widths, activation, init")
    assert not (tmp_path / "o").exists()


def test_the_learning_rate_edge_rule_extends_the_grid_at_transition_widths_up_to_its_cap():
    """Oracle: lr 1e-2 solves from width 8, lr 3e-2 from width 6, lr 9e-2 (one step beyond the grid) from 4.
    The best rate at the transition widths sits at the grid's top edge, so 9e-2 is added there, never 2.7e-1."""
    cfg = config.parse(TINY.replace("widths = {max = 8}", "widths = {max = 16}").replace("seeds = 3", "seeds = 2")
                       .replace("depths = {fixed = [1, 2], log2 = [1]}", "depths = [1]").replace("n = [2, 4]", "n = 3")
                       .replace("lrs = [3e-2]", "lrs = [1e-2, 3e-2]")
                       .replace("min_depth_widths = [2, 4]", "min_depth_widths = []\nlr_extend = 1"))
    need = lambda lr: 8 if lr < 0.02 else 6 if lr < 0.05 else 4
    df = _search_against(cfg, lambda m: 10 if m.width >= need(m.lr) else None)
    extended = df[~df["lr"].isin(cfg.lrs)]
    assert set(extended["lr"]) == {0.09} and set(extended["width"]) <= {5, 6, 7, 8}  # never below: no gain there
    summary = summarize(df, cfg).set_index("n")
    assert summary.loc[3, "w_star"] == 6 and summary.loc[3, "best_lr"] in (0.03, 0.09)


def test_a_thin_round_compiles_the_next_rounds_likely_programs_meanwhile():
    """While a round trains, the programs of the next round are queued as if every member failed, then as if
    every one solved (the gallop climbs, or the cells settle)."""
    from scaling import cost
    from scaling.plan import plan_buckets

    cfg = config.parse(MONOTONE)
    model, programs = cost.load(), Programs()
    round0 = search.wanted_members(cfg, pd.DataFrame())
    _queue_next_round(cfg, pd.DataFrame(), round0, Calibration(model, 1), set(), programs, None)
    programs.wait_idle()
    climb = search.wanted_members(cfg, search.with_assumed_rows(pd.DataFrame(), round0, lambda m: False))
    expected = {(b.spec, b.slots) for b in plan_buckets(sorted(set(climb) - set(round0)), cfg, model)}
    assert expected and all(programs.has("chunk", spec, slots, None) for spec, slots in expected)
    assert programs.compiles >= 2 * len(expected)  # an init and a chunk program for each guessed bucket
    # Guesses are not known shapes until a round asks for them: plans must not depend on which guesses started.
    assert programs.shapes() == set()
    spec, slots = next(iter(expected))
    compiled = programs.compiles
    programs.chunk(spec, slots, None)
    assert programs.shapes() == {(spec, slots)} and programs.compiles == compiled  # asked for: known, not recompiled


def test_a_program_needed_now_does_not_wait_behind_the_queue():
    import threading

    from scaling.population import make_bucket

    cfg = config.parse(MONOTONE)
    bucket = make_bucket(search.wanted_members(cfg, pd.DataFrame())[:4], eval_every=cfg.eval_every)
    programs, release = Programs(), threading.Event()
    programs._pool.submit(release.wait)  # the one background thread is busy
    programs.prefetch(bucket)  # queued behind it
    compiled = threading.Event()
    asker = threading.Thread(target=lambda: (programs.chunk(bucket.spec, bucket.slots, None), compiled.set()))
    asker.start()
    try:
        assert compiled.wait(60), "the chunk program waited behind the busy background thread"
        assert programs.compiles == 1 and programs.shapes() == {(bucket.spec, bucket.slots)}
    finally:
        release.set()
        asker.join()
    programs.wait_idle()
    assert programs.compiles == 2  # the init program, from the queue; the chunk program was not compiled twice


def test_a_sweep_compiles_each_program_once_and_a_bounded_number_of_them(tmp_path):
    """Counted by the sweep's compile cache: programs repeat across rounds (far fewer than one per bucket and
    round), and an identical second sweep with the same cache compiles none (no silent recompiles)."""
    with Programs() as programs:
        first = run_sweep(config.parse(TINY), tmp_path / "a", progress=False, programs=programs)
        chunk_shapes = programs.shapes()
        assert first.compiles == programs.compiles and first.compile_s > 0
        # chunk, compaction and start-up programs
        assert first.compiles <= 3 * len(chunk_shapes) and first.compiles <= 24
        second = run_sweep(config.parse(TINY), tmp_path / "b", progress=False, programs=programs)
        assert second.trained == first.trained and second.compiles == 0 and programs.compiles == first.compiles
    with sqlite3.connect(tmp_path / "a" / STORE_NAME) as conn:
        assert conn.execute("SELECT compiles FROM runs").fetchone()[0] == first.compiles
