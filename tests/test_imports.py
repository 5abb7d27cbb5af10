"""The package's import structure: the Python SDK stays light, and no module imports one
that imports it back (a cycle makes import order matter and hides which layer is which)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "speko_bridge"

#: What a backend that only mints and a script that only talks must not pay for: the web
#: framework and server, the store and its drivers, yaml, the bridge's audio stack.
SERVER_ONLY = ("starlette", "uvicorn", "yaml", "redis", "prometheus_client", "soxr", "numpy",
               "speko_bridge.store", "speko_bridge.api", "speko_bridge.app", "speko_bridge.session",
               "speko_bridge.openapi")


def modules_after_import(module: str) -> list[str]:
    code = f"import {module}, sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    return json.loads(out.stdout)


def test_importing_the_sdk_pulls_in_no_server_code():
    loaded = modules_after_import("speko_bridge.client")
    assert "speko_bridge.client" in loaded and "aiohttp" in loaded
    heavy = [m for m in loaded if any(m == s or m.startswith(s + ".") for s in SERVER_ONLY)]
    assert heavy == [], f"importing speko_bridge.client imports {heavy}"


# --------------------------------------------------------------------------- import graph


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.Module, deferred: bool):
    """Import statements that run when the module is imported: at the top level, also
    inside top-level ``if``/``try``/``with`` blocks; with ``deferred``, also those inside
    functions (an import moved into a function hides a cycle, it does not remove it)."""
    if deferred:
        typing_only = {id(n) for block in ast.walk(tree)
                       if isinstance(block, ast.If) and _type_checking_only(block)
                       for n in ast.walk(block)}
        yield from (n for n in ast.walk(tree)
                    if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in typing_only)
        return
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _type_checking_only(node):
            continue  # ``if TYPE_CHECKING:`` never runs: annotations only, no import at run time
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []) or []:
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(root: Path = PACKAGE, deferred: bool = False) -> dict[str, set[str]]:
    """Edges ``importer -> imported`` among the package's own modules."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path)), deferred):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # ``from .x import y``: y is a submodule, or a name defined in x
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in files else target
                           for a in node.names]
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        path.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == GREY:
                return path[path.index(nxt):] + [nxt]
            if colour[nxt] == WHITE and (cycle := visit(nxt)):
                return cycle
        path.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_reader_sees_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "speko_bridge"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("import json\ntry:\n    from .sub.c import X\nexcept ImportError:\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import thing\n\ndef f():\n    from .. import b\n")
    graph = import_graph(pkg)
    assert graph["speko_bridge.a"] == {"speko_bridge.b"}
    assert graph["speko_bridge.b"] == {"speko_bridge.sub.c"}
    assert graph["speko_bridge.sub.c"] == {"speko_bridge.a"}  # the import in f() does not count
    assert find_cycle(graph) == ["speko_bridge.a", "speko_bridge.b", "speko_bridge.sub.c", "speko_bridge.a"]
    (pkg / "sub" / "c.py").write_text("def f():\n    from ..a import thing\n")
    assert find_cycle(import_graph(pkg)) is None
    assert find_cycle(import_graph(pkg, deferred=True)) is not None


def test_no_import_cycle_among_the_package_modules():
    graph = import_graph()
    assert {"speko_bridge.api", "speko_bridge.openapi", "speko_bridge.simulator.openai"} <= set(graph)
    assert "speko_bridge.wire" in graph["speko_bridge.openapi"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    # nor one hidden by importing inside a function (openapi.py once did that to import api.py)
    cycle = find_cycle(import_graph(deferred=True))
    assert cycle is None, "import cycle through a deferred import: " + " -> ".join(cycle)
