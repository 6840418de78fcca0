"""The package's shape: layers import downwards only, no import cycles, short public functions.

The layers (docs/architecture.md), low to high: core modules and ``datasets`` < ``text`` <
``models`` < ``annotation`` / ``evaluation`` < ``pp``, ``tl``, ``pl`` < ``cli``. Every import
counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import that reaches up
is still a dependency that runs the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "scelmo"

#: Subpackages and the top-level modules that are not core, with their layer.
LAYERS = {
    "datasets": 0,
    "text": 1,
    "models": 2,
    "annotation": 3,
    "evaluation": 3,
    "metrics": 3,
    "pp": 4,
    "tl": 4,
    "pl": 4,
    "cli": 5,
    "demo": 5,
}
#: Modules allowed to import any layer: the package's lazy front door and ``python -m scelmo``.
ENTRY_POINTS = {"scelmo", "scelmo.__main__"}
#: The most lines a public function's body (docstring excluded) may have.
MAX_BODY_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names}
    return {module for module in found if module in known and module != name}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return components


def test_the_checker_finds_a_cycle_and_an_upward_import():
    graph = {"scelmo.models.a": {"scelmo.tl.b"}, "scelmo.tl.b": {"scelmo.models.a"}}
    assert _cycles(graph) == [["scelmo.models.a", "scelmo.tl.b"]]
    assert _layer("scelmo.models.a") < _layer("scelmo.tl.b")
    assert _layer("scelmo.gene_embeddings") == 0


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_imports_go_down_the_layers():
    upward = [
        f"{module} (layer {_layer(module)}) -> {target} (layer {_layer(target)})"
        for module, targets in sorted(_graph().items())
        if module not in ENTRY_POINTS
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def _public_functions(tree: ast.Module):
    """Public functions and public methods of public classes."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not item.name.startswith("_"):
                    yield f"{node.name}.{item.name}", item


def _body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_public_functions_are_short(path):
    tree = ast.parse(path.read_text(), str(path))
    long = [
        f"{name}: {_body_lines(node)} lines"
        for name, node in _public_functions(tree)
        if _body_lines(node) > MAX_BODY_LINES
    ]
    assert long == []
