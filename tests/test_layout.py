"""The size rule of issue 18, kept: no module in ``speko_bridge/`` over 450 lines, no class
over 250 (docs/architecture.md).

Why a test: a newcomer reads a module or a class whole, and past these sizes one stops
reading as one thing (``bridge.py`` had grown to 806 lines, its session class to ~530, before
issue 18 split it). The test names the offender, so the fix is to split it where it falls
apart into parts with names (the provider codecs' ``*_wire.py``, ``google_gate.py``, ...),
not to raise the limit.

Counted with ``ast``: a module's lines are all its lines (docstrings and comments included:
they are read too), a class's are its ``class`` line to its last line. ``simulator/`` is
exempt, modules and classes alike: each plays one provider's whole protocol from its
documentation, is read beside that documentation rather than alone, and is test tooling,
not the service.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "speko_bridge"

MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 250
#: Packages the rule does not apply to (the module docstring says why).
EXEMPT = ("simulator",)

#: Known offenders, each with the work that removes it: ``<path from the repository>`` for a
#: module, ``<path>:<Class>`` for a class. An entry that no longer offends fails the test too,
#: so that this stays empty once the work lands.
KNOWN_EXCEPTIONS: dict[str, str] = {
}


def offenders(root: Path = PACKAGE) -> dict[str, int]:
    """Every module over :data:`MAX_MODULE_LINES` and class over :data:`MAX_CLASS_LINES`
    under ``root`` (a package directory), keyed as :data:`KNOWN_EXCEPTIONS` is, with its size."""
    found: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in EXEMPT:
            continue
        name = f"{root.name}/{relative.as_posix()}"
        source = path.read_text("utf-8")
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            found[name] = lines
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    found[f"{name}:{node.name}"] = size
    return found


def _describe(found: dict[str, int]) -> str:
    return "; ".join(
        f"{key} has {size} lines (limit {MAX_CLASS_LINES if ':' in key else MAX_MODULE_LINES})"
        for key, size in sorted(found.items()))


def test_no_module_or_class_in_the_package_is_over_the_limits():
    found = offenders()
    new = {key: size for key, size in found.items() if key not in KNOWN_EXCEPTIONS}
    assert not new, ("over the size limits of docs/architecture.md, split it: " + _describe(new))
    stale = sorted(set(KNOWN_EXCEPTIONS) - set(found))
    assert not stale, f"no longer over the limits, remove from KNOWN_EXCEPTIONS: {stale}"


def test_the_counter_names_each_offender_and_skips_the_simulators(tmp_path):
    pkg = tmp_path / "speko_bridge"
    (pkg / "providers").mkdir(parents=True)
    (pkg / "simulator").mkdir()

    def cls(name: str, lines: int, indent: str = "") -> str:  # a class of exactly ``lines`` lines
        return f"{indent}class {name}:\n" + f"{indent}    x = 1\n" * (lines - 1)

    (pkg / "fits.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    (pkg / "long.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (pkg / "providers" / "codec.py").write_text(
        cls("Small", MAX_CLASS_LINES) + cls("Big", MAX_CLASS_LINES + 1)
        + "def f():\n" + cls("Inner", MAX_CLASS_LINES + 2, indent="    "))
    (pkg / "simulator" / "sim.py").write_text(cls("Sim", MAX_MODULE_LINES + 10))
    assert offenders(pkg) == {
        "speko_bridge/long.py": MAX_MODULE_LINES + 1,
        "speko_bridge/providers/codec.py": 3 * MAX_CLASS_LINES + 4,  # the module, too
        "speko_bridge/providers/codec.py:Big": MAX_CLASS_LINES + 1,
        "speko_bridge/providers/codec.py:Inner": MAX_CLASS_LINES + 2,
    }
