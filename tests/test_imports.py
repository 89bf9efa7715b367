"""The import structure: no cycle anywhere in the four packages (lazy imports inside functions count: a cycle
hidden in a function is still one in the design), and imports point one way, ramputils <- calibration <- halo
<- ramp, with nothing importing benchmarks/ or tests/.  That `import ramp, halo, calibration` loads no torch is
checked in tests/test_api.py."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ramputils", "calibration", "halo", "ramp")
ALLOWED = {"ramputils": set(), "calibration": {"ramputils"}, "halo": {"ramputils", "calibration"},
           "ramp": {"ramputils", "calibration", "halo"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str, known: dict) -> str | None:
    """The longest known module that `name` (a module or a name inside one) denotes."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_edges(known: dict) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every import of a known module, at any depth of the code."""
    edges = []
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in `base`
            for target in targets:
                found = _resolve(target, known)
                if found is not None and found != module:
                    edges.append((module, found, node.lineno))
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    cycle = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycle is not None and set(cycle) == {"a", "b", "c"}


def test_edges_resolve_relative_and_lazy_imports():
    edges = {(a, b) for a, b, _ in import_edges(modules())}
    assert ("ramp.engine.run", "ramp.engine.ray_train") in edges           # lazy, relative: `from . import ray_train`
    assert ("ramp.engine.sac_train", "ramp.agents.sac") in edges           # `from ..agents.sac import SAC`
    assert ("ramp.api", "ramp.engine.run") in edges                        # lazy, inside a function


def test_no_import_cycle():
    known = modules()
    graph = {m: set() for m in known}
    for a, b, _ in import_edges(known):
        graph[a].add(b)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_imports_point_one_way():
    known = modules()
    wrong = [f"{known[a].relative_to(ROOT)}:{line} imports {b}" for a, b, line in import_edges(known)
             if b.split(".")[0] != a.split(".")[0] and b.split(".")[0] not in ALLOWED[a.split(".")[0]]]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("forbidden", ["benchmarks", "tests", "common", "pareto", "synthetic", "conftest"])
def test_no_package_imports_scripts_or_tests(forbidden):
    hits = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            hits += [f"{module}:{node.lineno}" for n in names if n.split(".")[0] == forbidden]
    assert not hits, hits
