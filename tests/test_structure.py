"""The shape of the code: no import cycle among the modules of app/ and worker/, no module longer
than `MAX_LINES`, and `RunKind.` branches kept in the run-kind tables."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "worker")
MAX_LINES = 600
# The run-kind tables and the enum's own module; elsewhere `RunKind.` is the exception.
RUN_KIND_TABLES = {"app/run_kinds.py", "worker/methods.py", "app/models/training.py"}
MAX_RUN_KIND_LINES = 5


def _python_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: top-level ones and those in top-level `if`,
    `try` and `with` blocks, but not under `if TYPE_CHECKING` nor inside functions or classes."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level_imports(block)
        elif isinstance(node, ast.With):
            yield from _module_level_imports(node.body)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of app/ and worker/ it imports when imported. `from pkg import name`
    counts as importing `pkg` (its `__init__` runs, re-exports included) and, when `name` is a
    submodule, `pkg.name` too."""
    files = {_module_name(p): p for p in _python_files()}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    package = name if is_package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{node.module}" if node.module else package
                else:
                    base = node.module or ""
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_cycle_finder_reports_the_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_app_and_worker_import_no_cycle() -> None:
    graph = import_graph()
    assert "app.services.runs.lifecycle" in graph and "worker.runner" in graph  # the walk found both
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_is_over_the_line_limit() -> None:
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in _python_files()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_run_kind_branches_stay_in_the_tables() -> None:
    lines = [
        f"{p.relative_to(ROOT)}:{number}: {line.strip()}"
        for p in _python_files()
        if str(p.relative_to(ROOT)) not in RUN_KIND_TABLES
        for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "RunKind." in line
    ]
    assert len(lines) <= MAX_RUN_KIND_LINES, "\n".join(lines)
