"""The GPU check's script, run as make test runs it: its CPU mode (a tiny subset, both stores on the CPU)."""

import json
import re

from scaling.benchmarks import device_check


def test_the_device_check_runs_on_the_cpu_and_writes_its_figures(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the script puts the project on its children's path itself
    out = tmp_path / "device-check.json"
    assert device_check.main(["--cpu", "--out", str(out), "--minutes", "6"]) == 0
    figures = json.loads(out.read_text())
    assert figures["platform"] == "cpu" and figures["jax"] and "stopped" not in figures
    assert figures["subset"]["measured_s"] > 0 and figures["subset"]["cpu_measured_s"] > 0
    # Both stores were trained on this CPU from one config: every member the same, bit for bit.
    members = re.search(r"members: (\d+) in A, (\d+) in B, (\d+) in both; final loss equal bit for bit in (\d+)",
                        figures["accelerator_vs_cpu"][0])
    assert members and int(members[1]) > 0 and len(set(members.groups())) == 1


def test_a_budget_too_short_stops_with_the_figures_so_far(tmp_path):
    out = tmp_path / "device-check.json"
    assert device_check.main(["--cpu", "--out", str(out), "--minutes", "0.01"]) == 0
    figures = json.loads(out.read_text())
    assert figures["platform"] == "cpu" and "no time left" in figures["stopped"] and "subset" not in figures
