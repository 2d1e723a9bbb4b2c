"""The packages' layers, checked on every import (module-level or inside a function): each layer imports only
the layers below it, `scaling` never imports `analysis` (only the command line composes the two), and the
analysis imports the library's layers, never the sweep, the cluster, the command line or the benchmarks."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lowest first. A module may import its own layer and those before it.
LAYERS = [
    ("scaling", "scaling.errors", "scaling.about", "scaling.choices"),  # the shared vocabulary
    ("scaling.engine",),  # tasks, networks, populations, compiled programs: knows nothing of experiments
    ("scaling.experiment",),  # experiment files -> Config
    ("scaling.storage",),  # the results store and outputs
    ("scaling.planning",),  # search, stats, buckets, the cost model
    ("scaling.distributed",),  # many processes
    ("scaling.sweep", "scaling.progress"),  # the round loop over all of the above
    ("analysis", "analysis.measurement"),  # reads stores: W50 and w* per cell
    ("analysis.calls",),  # fits, laws, the calls, the lecture's claims, the verdict
    ("analysis.simulation",),  # synthetic truths, the calibration, the power analysis
    ("analysis.reporting",),  # the Study, figures, REPORT.md
    ("scaling.cli", "scaling.sweep_command", "scaling.__main__", "analysis.__main__",
     "scaling.benchmarks"),  # the command lines
]
ANALYSIS_MAY_NOT = ("scaling.sweep", "scaling.distributed", "scaling.cli", "scaling.__main__", "scaling.benchmarks",
                    "scaling.sweep_command")


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best, rank = "", None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    assert rank is not None, f"{module} belongs to no layer: add it to LAYERS"
    return rank


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from scaling import engine`
    return {m for m in found if m.split(".")[0] in ("scaling", "analysis")}


def _modules() -> dict[str, set[str]]:
    return {_name(p): _imports(p) for top in ("scaling", "analysis") for p in (ROOT / top).rglob("*.py")}


def test_every_import_runs_down_the_layers():
    modules = _modules()
    known = set(modules)
    wrong = set()
    for module, imports in modules.items():
        for target in imports:
            if target not in known and target.rsplit(".", 1)[0] in known:
                target = target.rsplit(".", 1)[0]  # `from scaling.engine.model import forward`: the module
            if target not in known:
                continue
            if _layer(target) > _layer(module):
                wrong.add(f"{module} imports {target}")
            library = module.startswith("analysis.") and _layer(module) < len(LAYERS) - 1
            if library and target.startswith(ANALYSIS_MAY_NOT):
                wrong.add(f"{module} imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_the_layers_check_catches_an_upward_import():
    assert _layer("scaling.engine.train") < _layer("scaling.planning.cost") < _layer("analysis.reporting.report")
    assert _layer("scaling.cli") == len(LAYERS) - 1 and _layer("scaling.benchmarks.bench") == len(LAYERS) - 1
    assert _layer("scaling.choices") == 0 and _layer("scaling.sweep") > _layer("scaling.distributed.dealer")


def test_no_two_modules_import_each_other():
    """No cycle among the modules (lazy imports inside functions included): each one reads top down."""
    modules = _modules()
    graph = {m: {t if t in modules else t.rsplit(".", 1)[0] for t in imports} & set(modules) - {m}
             for m, imports in modules.items()}
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}  # a package's own
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return [*path[path.index(t):], t] if t in path else [m, t]
            if t not in state and (cycle := visit(t, [*path, t])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m, [m])
            assert cycle is None, " -> ".join(cycle)
