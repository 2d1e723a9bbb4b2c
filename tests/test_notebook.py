"""examples/quickstart.ipynb runs from top to bottom on a real store, through the public analysis API only."""

import json
from pathlib import Path

from matplotlib.figure import Figure

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_on_a_small_store(tiny_sweep, monkeypatch):
    monkeypatch.setenv("SCALING_RESULTS", str(tiny_sweep[0]))
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}, code cell {i + 1}", "exec"), namespace)
    study = namespace["study"]
    assert len(study.calls) == len(study.verdict.groups) and len(study.members) == tiny_sweep[1].trained
    fig = namespace["fig"]
    assert isinstance(fig, Figure) and fig.axes[0].get_lines()  # drawn from the study's frames
    assert namespace["variant"].axes[0].get_title() == "Deep networks only"


def test_a_study_writes_what_analyze_writes_and_fits_json_is_strict(tiny_sweep, tmp_path):
    import shutil

    import analysis

    out = tmp_path / "copy"
    shutil.copytree(tiny_sweep[0], out)
    study = analysis.analyze(out, reps=5, power=False, write=False)
    assert not list(out.glob("*.json"))  # write=False wrote nothing
    written = study.write()
    assert {p.name for p in written} >= {"summary.csv", "fits.json", "REPORT.md", "units_vs_bits.png"}
    text = (out / "fits.json").read_text()

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    json.loads(text, parse_constant=refuse)
    assert analysis.reporting.files.strict_json({"a": float("nan"), "b": [float("inf"), 1.5]}) == \
        json.dumps({"a": None, "b": [None, 1.5]}, indent=2)
