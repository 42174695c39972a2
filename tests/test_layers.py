"""The package's layers: every import goes down, never up, and no file is too long to read.

Read from the source (``ast``), at the level of the top-level units of ``funcmtl`` (a module
such as ``funcmtl.random`` or a package such as ``funcmtl.mtl``), imports inside functions
included.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "funcmtl"
MAX_LINES = 300

# Lowest first; a unit may import only units of lower layers (or itself).
LAYERS = [
    {"random", "tree", "_atomic", "_masking", "_options", "_transform", "_means", "_rundir_lock"},
    {"optim", "_dropout", "losses", "checkpoint", "data", "_json", "_registry"},
    {"_tensorboard", "_metrics_log"},
    {"_functional", "metrics", "aggregators", "weightings", "train", "rundir"},
    {"mtl"},
    {"ensemble", "datasets"},
    {"distributed"},
    {"experiment"},
    {"__init__"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> dict[str, set[str]]:
    """``{unit: the other units it imports}``."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        source = _unit(module.removesuffix(".__init__"))
        targets = graph.setdefault(source, set())
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "funcmtl":
                    names = [f"funcmtl.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            targets.update(_unit(n) for n in names if n.startswith("funcmtl."))
        targets.discard(source)
    return graph


def test_every_unit_has_a_layer() -> None:
    assert set(_imports()) <= set(LAYER), sorted(set(_imports()) - set(LAYER))


def test_imports_only_go_down() -> None:
    upward = [
        f"{source} (layer {LAYER[source]}) imports {target} (layer {LAYER[target]})"
        for source, targets in _imports().items()
        for target in targets
        if LAYER[target] >= LAYER[source]
    ]
    assert not upward, upward


def test_the_multi_task_step_knows_nothing_of_processes_or_experiments() -> None:
    assert not _imports()["mtl"] & {"distributed", "experiment"}


def _check_acyclic(name: str, graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, trail: tuple[str, ...]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, f"import cycle in {name}: {trail + (node,)}"
        state[node] = 1
        for dep in graph.get(node, ()):
            visit(dep, trail + (node,))
        state[node] = 2

    for node in graph:
        visit(node, ())


def test_no_import_cycle_between_the_modules_of_a_package() -> None:
    """Inside ``funcmtl.experiment`` (and every other package), the imports form a DAG: a
    reader can take the modules in order."""
    for package in [p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()]:
        prefix = f"funcmtl.{package.name}."
        graph = {}
        for path in package.glob("*.py"):
            deps = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ImportFrom) or not node.module:
                    continue
                if node.module.startswith(prefix):  # from funcmtl.pkg._mod import x
                    deps.add(node.module.removeprefix(prefix).split(".")[0])
                elif node.module == prefix[:-1]:  # from funcmtl.pkg import _mod (or a name)
                    for alias in node.names:
                        module = (package / f"{alias.name}.py").exists()
                        deps.add(alias.name if module else "__init__")
            graph[path.stem] = deps - {path.stem}
        _check_acyclic(package.name, graph)


def test_no_file_is_longer_than_a_reader_takes_in() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long
