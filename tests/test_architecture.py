"""The house's shape, checked from the source: the import graph (every import, the lazy ones inside functions
too) has no circle, curation never imports distill, distill never imports evaluation, models imports none of
the others, and no file outgrows what a newcomer reads at once."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("curation", "distill", "evaluation", "ui", "models")
MAX_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the studio modules it imports, anywhere in its file."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {resolve(f"{node.module}.{a.name}") or resolve(node.module) for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names}
        graph[name] = {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as a path a -> b -> ... -> a, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_curation_never_imports_distill():
    arrows = sorted((a, b) for a, targets in import_graph().items() for b in targets
                    if a.startswith("curation") and b.startswith("distill"))
    assert arrows == []


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _arrows(source: str, targets: tuple[str, ...]) -> list[tuple[str, str]]:
    """(module, imported module) pairs from the package `source` into any of the packages `targets`."""
    return sorted((a, b) for a, found in import_graph().items() for b in found
                  if _inside(a, source) and any(_inside(b, t) for t in targets))


def test_training_never_imports_evaluation():
    assert _arrows("distill", ("evaluation",)) == []


def test_models_is_a_leaf():
    assert _arrows("models", ("curation", "distill", "evaluation", "ui", "app")) == []


def test_files_stay_readable():
    too_long = {}
    for path in _modules().values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long[str(path.relative_to(ROOT))] = lines
    assert too_long == {}


def test_functions_stay_readable():
    """No function needs a scroll bar (style rule 8): a tab's build is layout + wiring, each its own function."""
    too_long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long[f"{name}.{node.name}"] = lines
    assert too_long == {}
