import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import analysis
from analysis.reporting import figures
from scaling.cli import main


@pytest.fixture(scope="module")
def analyzed(tiny_sweep):
    out, _ = tiny_sweep
    assert main(["analyze", str(out)]) == 0
    return out


def test_report_from_a_real_sweep(analyzed):
    report = (analyzed / "REPORT.md").read_text()
    for heading in ("## Verdict", "## Definitions", "## Minimum width w* per depth", "## Fits", "## Figures"):
        assert heading in report
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)  # no NaN reaches a report
    for kind in ("dnf", "one_layer", "xor_tree", "sawtooth"):
        assert kind in report  # theory lines computed by the constructions
    fits = json.loads((analyzed / "fits.json").read_text())
    assert {"L_star/width=2", "verdict"} <= set(fits)
    verdict = fits.pop("verdict")
    for name, entry in fits.items():
        assert "best" in entry or "skipped" in entry, name
    assert set(verdict["groups"]) == {"1", "2", "log2+1"}  # the schedule: depth ceil(log2 n) + 1 = 2, 3, 3
    for entry in verdict["groups"].values():  # n = 2..4 is 3 points: too few to call any growth
        assert entry["call"] == "undecided" and entry["w50"] is None
        assert any("a call needs at least 5" in reason for reason in entry["reasons"])
        assert entry["cells"] == 3 and 0 <= entry["budget_limited_cells"] <= 3
    assert verdict["power"] == {"depth=1": None, "depth=2": None, "depth=log2+1": None}  # nothing to simulate from
    assert report.index("**Answer.**") < report.index("## Verdict")  # the report opens with its answer


def test_every_figure_is_written_as_pdf_and_png(analyzed):
    for name in ("units_vs_bits", "total_units", "success_heatmaps", "min_depth", "steps_to_solve",
                 "fit_comparison", "w_star_vs_budget"):
        assert (analyzed / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
        assert (analyzed / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{name}.png" in (analyzed / "REPORT.md").read_text()


def test_load_and_min_width_are_importable(analyzed):
    df = analysis.load(analyzed)
    assert {"run_id", "n", "depth", "width", "lr", "seed", "steps_budget", "steps_run", "solved", "step_solved",
            "final_loss", "final_accuracy", "diverged", "bucket", "wall_s", "encoding", "optimizer"} <= set(df.columns)
    stars = analysis.min_width(df[df["depth"].isin([1, 2]) | ((df["depth"] == 3) & (df["n"] >= 3))])
    summary = pd.read_csv(analyzed / "summary.csv")
    mine = stars.set_index(["n", "depth"])["w_star"]
    theirs = summary[summary["kind"] == "min_width"].set_index(["n", "depth"])["w_star"]
    pd.testing.assert_series_equal(mine.sort_index(), theirs.sort_index(), check_dtype=False, check_index_type=False)


def test_figures_render_from_small_synthetic_frames(tmp_path):
    ns = np.arange(2, 7, dtype=float)
    points = pd.concat([
        pd.DataFrame({"curve": f"{q}/depth={d}", "quantity": q, "group": f"depth={d}", "n": ns,
                      "y": d * 2.0**ns / 4, "censored": ns > 5, "lo": d * 2.0**ns / 5, "hi": d * 2.0**ns / 3})
        for q in ("w50", "units", "steps") for d in (1, 2)
    ] + [pd.DataFrame({"curve": "L_star/width=2", "quantity": "L_star", "group": "width=2", "n": ns,
                       "y": np.ceil(np.log2(ns)), "censored": False, "lo": np.nan, "hi": np.nan})])
    fitted = pd.DataFrame({"curve": "w50/depth=1", "family": "exponential", "rank": 1, "n": ns, "y": 2.0**ns / 4})
    theory = pd.DataFrame({"kind": ["dnf", "one_layer"] * 5, "n": np.repeat(ns, 2), "units": 1.0})
    rates = pd.DataFrame({"n": np.repeat(ns, 3), "depth": 1, "width": np.tile([1, 2, 4], 5), "rate": 0.5})
    stars = pd.DataFrame({"n": ns, "depth": 1, "w_star": 2.0, "censored": False})
    weights = pd.DataFrame({"curve": ["a", "a", "b", "b"], "family": ["exponential", "power"] * 2,
                            "weight": [0.7, 0.3, 0.4, 0.6], "boot_win_rate": [0.8, 0.2, np.nan, np.nan]})
    made = {
        "units_vs_bits": figures.units_vs_bits(points, fitted, theory),
        "total_units": figures.total_units(points, fitted, theory),
        "success_heatmaps": figures.success_heatmaps(rates, stars),
        "min_depth": figures.min_depth(points, fitted),
        "steps_to_solve": figures.steps_to_solve(points, fitted, {"steps/depth=1": 1.9}),
        "fit_comparison": figures.fit_comparison(weights),
        "w_star_vs_budget": figures.w_star_vs_budget(pd.DataFrame({
            "n": np.repeat(ns, 4), "depth": 1, "fraction": np.tile([0.125, 0.25, 0.5, 1.0], 5),
            "budget": np.tile([125, 250, 500, 1000], 5), "w_star": np.tile([16.0, 8, 6, 6], 5), "censored": False,
            "bound": 32})),
    }
    for name, fig in made.items():
        assert isinstance(fig, Figure) and fig.axes
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.stat().st_size > 5000


def test_analyze_without_a_store_is_a_clean_error(tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == 2
    assert "no results store" in capsys.readouterr().err


def test_python_dash_m_analysis_is_the_analyze_command(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("scaling analyze: error:") and "no results store" in proc.stderr


def test_two_runs_compare_member_by_member_and_cell_by_cell(tiny_sweep, tmp_path, capsys, monkeypatch):
    import shutil
    import sqlite3
    from contextlib import closing

    from analysis.measurement.runs import compare_runs
    from analysis.measurement.runs import main as runs_main

    out, outcome = tiny_sweep
    assert analysis.compare_runs is compare_runs  # the importable analysis API
    same = compare_runs(out, out)
    assert (same.common, same.same_loss, same.gained, same.lost) == (outcome.trained,) * 2 + (0, 0)
    assert same.changed.empty and len(same.cells) == len(outcome.summary)
    assert "differs in 0 of" in same.text() and "outside both runs' one-seed ranges in 0" in same.text()
    # A copy in which one solved member of the smallest width at which any solved came out unsolved.
    other = tmp_path / "other"
    shutil.copytree(out, other, ignore=shutil.ignore_patterns(".lock"))
    with closing(sqlite3.connect(other / "results.sqlite")) as conn, conn:
        conn.execute("UPDATE members SET solved = 0, step_solved = NULL, final_loss = final_loss + 1 WHERE rowid = "
                     "(SELECT rowid FROM members WHERE solved = 1 ORDER BY width, n, depth, lr, seed LIMIT 1)")
    moved = compare_runs(out, other)
    assert (moved.common, moved.same_loss, moved.gained, moved.lost) == (outcome.trained, outcome.trained - 1, 0, 1)
    assert "solved flags differ in 1 (0 solved only in B, 1 only in A)" in moved.text()
    # A config without an L* search summarises with neither a width nor an L_star column.
    from analysis.measurement import runs
    from scaling.planning.stats import summarize

    no_depth_search = lambda df, cfg: summarize(df, cfg).query("kind == 'min_width'").drop(columns=["width", "L_star"])
    monkeypatch.setattr(runs, "summarize", no_depth_search)
    assert compare_runs(out, out).changed.empty and len(compare_runs(out, out).cells) < len(outcome.summary)
    assert runs_main([str(out), str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m analysis.measurement.runs: error:") and "no results store" in err
    assert len(err.splitlines()) == 1


def test_scaling_plan_power_reports_each_depth_group(tiny_sweep, capsys):
    out, _ = tiny_sweep
    assert main(["plan", "--power", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "depth 1 (shallow): undecided" in printed and "What would decide it" in printed
    assert printed.count("no fitted W50 curve to simulate from") == 3  # n = 2..4: three points per group
    assert main(["plan"]) == 2 and "name an experiment file, or --power DIR" in capsys.readouterr().err


def test_the_heatmaps_draw_a_store_without_hidden_layers():
    """A config whose only width search is depth 0 (experiments/min_depth.toml) still gets every figure."""
    rates = pd.DataFrame({"n": [2, 3], "depth": 0, "width": 0, "rate": 0.0})
    stars = pd.DataFrame({"n": [2, 3], "depth": 0, "w_star": np.nan, "censored": True})
    assert isinstance(figures.success_heatmaps(rates, stars), Figure)


def test_analyze_without_the_power_analysis(tiny_sweep, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(tiny_sweep[0], out)
    assert main(["analyze", str(out), "--no-power"]) == 0
    assert json.loads((out / "fits.json").read_text())["verdict"]["power"] == {}
    report = (out / "REPORT.md").read_text()
    assert "not run by this analysis (`scaling analyze DIR --no-power`)" in report
    assert "no fitted W50 curve to simulate from" not in report


def test_the_analysis_does_not_depend_on_the_order_rows_were_written(tiny_sweep, tmp_path):
    """Another plan (another thread count, memory budget or cluster) writes the same members in another order;
    every bootstrap must draw the same seeds all the same."""
    import shutil
    import sqlite3

    written, reversed_ = tmp_path / "written", tmp_path / "reversed"
    for out in (written, reversed_):
        shutil.copytree(tiny_sweep[0], out)
    with sqlite3.connect(reversed_ / "results.sqlite") as conn:
        conn.execute("CREATE TABLE shuffled AS SELECT * FROM members ORDER BY rowid DESC")
        conn.execute("DELETE FROM members")
        conn.execute("INSERT INTO members SELECT * FROM shuffled")
        conn.execute("DROP TABLE shuffled")
    pd.testing.assert_frame_equal(analysis.load(written), analysis.load(reversed_))  # one canonical order
    for out in (written, reversed_):
        assert main(["analyze", str(out), "--no-power"]) == 0
    for name in ("REPORT.md", "fits.json", "summary.csv"):
        assert (written / name).read_text() == (reversed_ / name).read_text(), name


def test_a_moved_cell_is_checked_against_either_runs_one_seed_range():
    import numpy as np
    import pandas as pd

    from analysis.measurement.runs import _within

    series = lambda *values: pd.Series(values, dtype=float)
    star, lo, hi = series(19, 19, np.nan, np.nan, 25), series(18, 20, 18, 18, 18), series(20, 21, np.nan, 20, np.nan)
    assert _within(star, lo, hi).tolist() == [True, False, True, False, True]  # NaN: censored, above every width
