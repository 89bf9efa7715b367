"""The package design, checked statically: no import cycles and the layering ramputils <- calibration <- halo <- ramp.

The graph is read with `ast` from every module of the four packages, imports inside functions included: a lazy
import keeps `import ramp` light, but a lazy cycle or a wrong-way lazy import is still a fault in the design.
Edges go to the module named, never implicitly to its parent packages: `ramp/__init__.py` importing `ramp.api`
and `ramp.api` importing `ramp.engine.run` is no cycle, but `ramp.engine.outputs` doing `from ramp import x`
(an edge to `ramp` itself) closes one.  No model is loaded; this runs in well under a second.

That `import ramp, halo, calibration` loads neither torch, transformers nor llama_cpp is checked by
`tests/test_api.py::test_import_is_light` and is not repeated here.

Known blind spot: a module named only at run time (`halo.cli` calls `importlib.import_module(name)` over its
SUBCOMMANDS list) is invisible; `importlib.import_module("literal")` is counted.
"""

import ast
import sys
from collections import deque
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ramputils", "calibration", "halo", "ramp")
ALLOWED = {"ramputils": set(), "calibration": {"ramputils"}, "halo": {"ramputils", "calibration"},
           "ramp": {"ramputils", "calibration", "halo"}}
# benchmarks/ and tests/ scripts put their own folder on sys.path (`from common import ...`), so their file names
# are import names too
OUTSIDE = {"benchmarks", "tests"} | {p.stem for d in ("benchmarks", "tests") for p in (ROOT / d).glob("*.py")
                                      if p.stem not in sys.stdlib_module_names}


def find_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the four packages under `root`."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _known(dotted: str, modules) -> str:
    """The longest prefix of `dotted` that is one of our modules, else `dotted` unchanged (a third-party name)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return dotted


def imports_of(name: str, path: Path, modules) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, at any depth; relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):  # walk reaches function bodies too
        if isinstance(node, ast.Import):
            found += [(_known(alias.name, modules), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                assert node.level <= len(parts), f"{path}:{node.lineno}: relative import beyond the top package"
                base = ".".join(parts[:len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            for alias in node.names:  # `from pkg import name` is the submodule pkg.name when that file exists
                sub = f"{source}.{alias.name}"
                found.append((sub if sub in modules else _known(source, modules), node.lineno))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")):
            found.append((_known(node.args[0].value, modules), node.lineno))
    return found


def import_graph(root: Path) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    """The modules, and module -> {imported module of the four packages: first line}; self-imports dropped."""
    modules = find_modules(root)
    graph = {}
    for name, path in modules.items():
        graph[name] = {}
        for target, line in imports_of(name, path, modules):
            if target in modules and target != name:
                graph[name].setdefault(target, line)
    return modules, graph


def strongly_connected(graph) -> list[list[str]]:
    """Tarjan's strongly connected components of {node: successors}, each sorted."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def find_cycles(graph) -> list[list[str]]:
    """The components that hold a cycle: more than one node, or a node importing itself."""
    return [c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph.get(c[0], ())]


def shortest_cycle(graph, component: list[str]) -> list[str]:
    """One concrete cycle through the component's first node, as [a, b, ..., a] (breadth-first, so shortest)."""
    start, members = component[0], set(component)
    came_from, queue = {start: None}, deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if w in members and w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")


def layering_violations(root: Path) -> list[str]:
    """'file:line: module imports target' for every import that goes against the allowed directions."""
    modules = find_modules(root)
    bad = []
    for name, path in modules.items():
        source = name.split(".")[0]
        for target, line in imports_of(name, path, modules):
            top = target.split(".")[0]
            if top in OUTSIDE or (top in PACKAGES and top != source and top not in ALLOWED[source]):
                bad.append(f"{path.relative_to(root)}:{line}: {name} imports {target}")
    return bad


def describe_cycles(root: Path) -> list[str]:
    modules, graph = import_graph(root)
    lines = []
    for component in find_cycles(graph):
        cycle = shortest_cycle(graph, component)
        steps = [f"{a} ({modules[a].relative_to(root)}:{graph[a][b]})" for a, b in pairwise(cycle)]
        lines.append(f"cycle among {component}: " + " -> ".join([*steps, cycle[-1]]))
    return lines


# ---- the real code ----

def test_the_four_packages_are_found():
    modules = find_modules(ROOT)
    assert set(PACKAGES) <= set(modules) and "ramp.engine.outputs" in modules and len(modules) > 50


def test_real_edges_are_seen():
    """Guards the resolver on the real tree: relative, lazy and `from pkg import submodule` edges."""
    _, graph = import_graph(ROOT)
    assert "ramp.engine.ray_train" in graph["ramp.engine.run"]      # lazy, relative: `from . import ray_train`
    assert "ramp.agents.sac" in graph["ramp.engine.sac_train"]      # `from ..agents.sac import SAC`
    assert "ramp.engine.run" in graph["ramp.api"]                   # lazy, inside a function
    assert "halo.measure" in graph["halo.measure.kld"]              # `from . import Model`: the package itself


def test_no_import_cycles():
    cycles = describe_cycles(ROOT)
    assert not cycles, "import cycles (lazy imports included):\n" + "\n".join(cycles)


def test_imports_follow_the_layering():
    """ramputils imports none of the others; calibration only ramputils; halo ramputils and calibration;
    nothing imports benchmarks/ or tests/."""
    bad = layering_violations(ROOT)
    assert not bad, "imports against the layering ramputils <- calibration <- halo <- ramp:\n" + "\n".join(bad)


# ---- the checker itself, on hand-made graphs and trees ----

def test_cycle_finder_on_hand_made_graphs():
    acyclic = {"p": {"p.api", "p.sub"}, "p.api": {"p.sub"}, "p.sub": set()}
    assert find_cycles(acyclic) == []
    through_init = {"p": {"p.api"}, "p.api": {"p.engine.outputs"}, "p.engine.outputs": {"p"}, "q": {"p"}}
    assert find_cycles(through_init) == [["p", "p.api", "p.engine.outputs"]]
    assert shortest_cycle(through_init, ["p", "p.api", "p.engine.outputs"]) == ["p", "p.api", "p.engine.outputs", "p"]
    two = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}, "e": {"e"}}
    assert sorted(find_cycles(two)) == [["a", "b"], ["c", "d"], ["e"]]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_checker_sees_relative_lazy_and_wrong_way_imports(tmp_path):
    root = _tree(tmp_path, {
        "ramputils/__init__.py": "__version__ = '0'\n",
        "calibration/__init__.py": "from ramputils import __version__\n",
        "calibration/models.py": "def f():\n    from ramp.engine import log\n",          # lazy, wrong way
        "halo/__init__.py": "",
        "halo/util.py": "import common\n",                                             # a benchmarks/ script
        "ramp/__init__.py": "from . import api\n",
        "ramp/api.py": "from .engine.outputs import write\n",
        "ramp/engine/__init__.py": "",
        "ramp/engine/log.py": "",
        "ramp/engine/outputs.py": "def write():\n    from .. import __version__\n",  # lazy, closes a cycle
    })
    _, graph = import_graph(root)
    assert graph["ramp"] == {"ramp.api": 1} and graph["ramp.api"] == {"ramp.engine.outputs": 1}
    assert graph["ramp.engine.outputs"] == {"ramp": 2} and graph["calibration.models"] == {"ramp.engine.log": 2}
    assert find_cycles(graph) == [["ramp", "ramp.api", "ramp.engine.outputs"]]
    assert "ramp/engine/outputs.py:2" in describe_cycles(root)[0]
    assert layering_violations(root) == ["calibration/models.py:2: calibration.models imports ramp.engine.log",
                                         "halo/util.py:1: halo.util imports common"]
    (root / "ramp/engine/outputs.py").write_text("def write():\n    from ramputils import __version__\n")
    assert describe_cycles(root) == []
