"""The GPU check's script, run as make test runs it: its CPU mode (a tiny subset, both stores on the CPU)."""

import json
import re
import sqlite3
from pathlib import Path

import pytest

from scaling.benchmarks import device_check


def test_the_device_check_runs_on_the_cpu_and_writes_its_figures(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the script puts the project on its children's path itself
    out = tmp_path / "device-check.json"
    keep = tmp_path / "kept"
    assert device_check.main(["--cpu", "--out", str(out), "--minutes", "6", "--keep", str(keep)]) == 0
    figures = json.loads(out.read_text())
    assert figures["platform"] == "cpu" and figures["jax"] and "stopped" not in figures
    assert figures["subset"]["measured_s"] > 0 and figures["subset"]["cpu_measured_s"] > 0
    # Both stores were trained on this CPU from one config: every member the same, bit for bit.
    members = re.search(r"members: (\d+) in A, (\d+) in B, (\d+) in both; final loss equal bit for bit in (\d+)",
                        figures["accelerator_vs_cpu"]["lines"][0])
    assert members and int(members[1]) > 0 and len(set(members.groups())) == 1
    # Each sweep's closing line and tables, and (--keep) its store and log to take home.
    assert re.search(r": trained \d+ members .* compiled \d+ programs", figures["subset-accel"]["summary"])
    assert any("w*" in line for line in figures["subset-cpu"]["tables"])
    assert sorted(p.name for p in keep.iterdir()) == ["subset-accel.log", "subset-accel.sqlite",
                                                      "subset-cpu.log", "subset-cpu.sqlite"]
    with sqlite3.connect(keep / "subset-accel.sqlite") as kept:
        assert kept.execute("SELECT COUNT(*) FROM members").fetchone()[0] == int(members[1])


def test_a_budget_too_short_stops_with_the_figures_so_far(tmp_path):
    out = tmp_path / "device-check.json"
    assert device_check.main(["--cpu", "--out", str(out), "--minutes", "0.01"]) == 0
    figures = json.loads(out.read_text())
    assert figures["platform"] == "cpu" and "no time left" in figures["stopped"] and "subset" not in figures


def test_a_failing_step_leaves_its_error_and_the_check_goes_on(tmp_path, monkeypatch):
    out = tmp_path / "device-check.json"
    real = device_check._scaling

    def broken_plan(args, *rest, **kw):
        if args[0] == "plan":
            raise device_check._Failed("scaling plan failed (1): planted")
        if args[0] == "sweep" and "subset-cpu" in args[-1]:  # a sweep that fails still leaves its log
            raise device_check._Failed("scaling sweep failed (1): planted", "the sweep's own output")
        return real(args, *rest, **kw)

    monkeypatch.setattr(device_check, "_scaling", broken_plan)
    keep = tmp_path / "kept"
    assert device_check.main(["--cpu", "--out", str(out), "--minutes", "6", "--keep", str(keep)]) == 0
    figures = json.loads(out.read_text())
    assert figures["subset"]["error"].endswith("planted") and figures["subset"]["measured_s"] > 0
    assert figures["subset-cpu"]["error"].endswith("planted") and "accelerator_vs_cpu" not in figures
    assert (keep / "subset-cpu.log").read_text() == "the sweep's own output"


def test_a_default_sweep_past_its_share_is_stopped_with_its_log_and_leaves_the_subset_its_time(tmp_path, monkeypatch):
    asked = {}

    def slow_sweep(args, env, deadline, module="scaling"):
        asked["left_s"] = deadline - device_check.time.monotonic()
        raise device_check._OutOfTime("scaling sweep ran past the budget (1 s)", "round 0: 336 members")

    monkeypatch.setattr(device_check, "_scaling", slow_sweep)
    budget = device_check.time.monotonic() + device_check.SUBSET_SHARE_S + 60
    with pytest.raises(device_check._Failed, match="subset's"):
        device_check._default_sweep(tmp_path, {}, budget, tmp_path)
    assert 55 < asked["left_s"] <= 60  # the sweep ran under the budget less the subset's share
    assert (tmp_path / "default.log").read_text() == "round 0: 336 members"  # what it wrote before it stopped


@pytest.mark.parametrize("platform", ["gpu", "cpu"])
def test_a_gpu_also_sweeps_the_subset_with_xlas_autotuner_off_and_a_cpu_does_not(tmp_path, monkeypatch, platform):
    assert device_check._variants("gpu") == [("subset-accel-autotune-off", "--xla_gpu_autotune_level=0")]
    assert device_check._variants("cpu") == []
    swept, compared = {}, []

    def sweep(config, out, env, deadline, keep):
        swept[out.name] = env
        return {"wall_s": 1.0}

    def scaling(args, env, deadline, module="scaling"):
        if module == "analysis.measurement.runs":
            compared.append([Path(a).name for a in args])
        return 1.0, "with w* = 2*n: at most 3 s here", ""

    monkeypatch.setattr(device_check, "_sweep", sweep)
    monkeypatch.setattr(device_check, "_scaling", scaling)
    accel = {"XLA_FLAGS": "--xla_dump_to=/tmp/x", "SCALING_JAX_CACHE": "accel-cache"}
    figures = {"platform": platform}
    device_check._steps(figures, tmp_path, accel, {"JAX_PLATFORMS": "cpu"}, False, 1e12, lambda: None, None)
    if platform == "gpu":  # its own compile cache, the machine's flags kept, and compared with the same CPU store
        env = swept["subset-accel-autotune-off"]
        assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_autotune_level=0"
        assert env["SCALING_JAX_CACHE"] != accel["SCALING_JAX_CACHE"]
        assert compared[-1] == ["subset-accel-autotune-off", "subset-cpu"] and "autotune" in " ".join(figures)
    else:
        assert sorted(swept) == ["default", "subset-accel", "subset-cpu"]
    assert compared[0] == ["subset-accel", "subset-cpu"]
