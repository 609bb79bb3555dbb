"""The layering of the wsreid package, checked on its source (docs/architecture.md,
"Layers"): the command line (``wsreid.cli``) is imported by nothing outside it, a lower
layer imports nothing of the layers above it (:data:`BELOW`: the recipe loader and
validation, not the engine), and no two wsreid modules import each other, directly or
around a circle.

Every ``import`` counts, at module level and inside functions, except those under
``if TYPE_CHECKING:`` (they never run). An edge goes to the module named: ``from a.b
import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``. A package's
``__init__`` re-exporting its own submodules is an edge like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "wsreid"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The wsreid modules that the module ``name`` (file ``path``) imports."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    """wsreid module -> the wsreid modules it imports."""
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _in_cli(module: str) -> bool:
    return _within(module, "wsreid.cli")


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


#: (lower, upper): no module of the package ``lower`` imports a module of ``upper``. The
#: recipe layer judges what it needs of a run directory (``wsreid validate`` of an
#: ``init.run``) by wsreid.checkpoint_layout, the rule the engine follows too.
BELOW = [("wsreid.recipe", "wsreid.engine")]


def layer_offenders(graph: dict[str, set[str]]) -> list[str]:
    """``"<module> imports <module>"`` for each import against :data:`BELOW`."""
    return sorted(f"{m} imports {t}" for lower, upper in BELOW for m, targets in graph.items() if _within(m, lower)
                  for t in targets if _within(t, upper))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a list of modules, first repeated last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_nothing_outside_the_command_line_imports_it():
    graph = import_graph()
    offenders = sorted(f"{m} imports {t}" for m, targets in graph.items() if not _in_cli(m)
                       for t in targets if _in_cli(t) and m != "wsreid.__main__")
    assert offenders == []


def test_a_lower_layer_imports_nothing_of_the_layers_above():
    assert layer_offenders(import_graph()) == []


def test_no_import_circle_between_wsreid_modules():
    assert find_cycle(import_graph()) is None


def test_the_checks_see_a_circle_and_a_library_module_importing_the_command_line(tmp_path, monkeypatch):
    """The two checks fail on a package that breaks them (so they can fail at all)."""
    root = tmp_path / "wsreid"
    (root / "cli").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "cli" / "__init__.py").write_text("from wsreid import engine\n")
    (root / "engine.py").write_text("def f():\n    from wsreid.cli import main\n")
    (root / "a.py").write_text("from wsreid import b\n")
    (root / "b.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from wsreid import c\nfrom wsreid.a import x\n")
    (root / "c.py").write_text("from . import a\n")
    monkeypatch.setitem(globals(), "PACKAGE_ROOT", root)
    graph = import_graph()
    assert graph["wsreid.engine"] == {"wsreid.cli"} and graph["wsreid.b"] == {"wsreid.a"}
    assert graph["wsreid.c"] == {"wsreid.a"}
    assert find_cycle(graph) in (["wsreid.a", "wsreid.b", "wsreid.a"], ["wsreid.b", "wsreid.a", "wsreid.b"])
    with pytest.raises(AssertionError):
        test_nothing_outside_the_command_line_imports_it()


def test_the_layer_check_sees_the_recipe_layer_importing_the_engine(tmp_path, monkeypatch):
    """An import inside a function counts; ``wsreid.engineering`` is not the engine."""
    root = tmp_path / "wsreid"
    (root / "recipe").mkdir(parents=True)
    (root / "engine").mkdir()
    for name in ("__init__.py", "recipe/__init__.py", "engine/__init__.py", "engine/checkpoint.py", "engineering.py"):
        (root / name).write_text("")
    (root / "recipe" / "build.py").write_text("def f():\n    from wsreid.engine.checkpoint import latest\n")
    (root / "recipe" / "loader.py").write_text("from wsreid import engineering\n")
    monkeypatch.setitem(globals(), "PACKAGE_ROOT", root)
    assert layer_offenders(import_graph()) == ["wsreid.recipe.build imports wsreid.engine.checkpoint"]
    with pytest.raises(AssertionError):
        test_a_lower_layer_imports_nothing_of_the_layers_above()


def test_the_checkpoint_layout_imports_no_torch():
    """wsreid.checkpoint_layout (which files make a checkpoint, which one a run directory
    stands for) is shared by the engine and validation: file names only."""
    import subprocess
    import sys

    probe = "import sys, wsreid.checkpoint_layout; print(sorted({'torch', 'wsreid.engine'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
