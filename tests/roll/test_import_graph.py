"""roll/ imports point one way: no module reaches itself again through any import, function-level ones included
(a function-level import hides a cycle from the interpreter at start-up, not from the design)."""
from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def module_files(package: str = "roll") -> dict[str, Path]:
    files = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The known modules `module` imports anywhere in its body, and the packages whose __init__ that runs (except
    its own ancestors, which are already importing)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    found: set[str] = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
            found.update(a for a in _ancestors(name) if a in known)
    return found - {module} - set(_ancestors(module))


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    known = set(files)
    return {module: imported_modules(module, path, known) for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_roll_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(module_files("roll")))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg.b import g\n    return g\n")
    (tmp_path / "pkg" / "b.py").write_text("from . import a\n")
    files = {"pkg": tmp_path / "pkg" / "__init__.py", "pkg.a": tmp_path / "pkg" / "a.py",
             "pkg.b": tmp_path / "pkg" / "b.py"}
    graph = import_graph(files)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    (tmp_path / "pkg" / "b.py").write_text("import json\n")
    assert find_cycle(import_graph(files)) is None


@pytest.mark.parametrize("chain", [["roll.cli", "roll.train_cli"],
                                   ["roll.config.schema", "roll.models.config", "roll.models.tiny"]])
def test_the_formerly_circular_modules_import_one_way(chain: list[str]) -> None:
    graph = import_graph(module_files("roll"))
    for upstream, downstream in itertools.pairwise(chain):
        assert downstream in graph[upstream] and upstream not in graph[downstream]
    assert not any(m.startswith("roll.tasks") for m in graph["roll.models.tiny"] | graph["roll.models.config"])
