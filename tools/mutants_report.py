"""Per-module summary of a ``make mutants`` run (mutmut 3), and the module list it runs.

Why a script of our own: mutmut prints one running total for the whole project and leaves
the per-function verdicts in ``mutants/<file>.meta``. The habit we want ("run it before
resolving an issue that touches these modules") needs, per module, the score, the target
it must meet, and each survivor as a one-line diff, so a reader can tell at a glance whether
a test is missing. Survivors that cannot be killed (the mutant behaves exactly like the
code) are listed with a one-line reason in ``tests/mutants-equivalent.txt`` and shown as
"accepted"; an entry that no longer names a surviving mutant is reported as stale, because
mutmut numbers mutants per function and the numbers move when the function is edited.

Usage (from the repository root, inside the venv):
    python tools/mutants_report.py modules   # the modules' dotted names, for the Makefile
    python tools/mutants_report.py           # the report; exit 1 if a module misses its target
"""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PYPROJECT = Path("pyproject.toml")
MUTANTS_DIR = Path("mutants")
EQUIVALENT_FILE = Path("tests/mutants-equivalent.txt")

# Targets from issue 25: a surviving mutant in the token or store code is a way to mint,
# replay or lose a session that no test notices, so every one is killed or explained; the
# codecs and the resampler have many harmless spellings of the same output (log text,
# defaults that callers always override), so 90 % killed is the bar there.
STRICT_PREFIXES = ("speko_bridge/tokens.py", "speko_bridge/store/")
CODEC_TARGET = 0.90

# mutmut's exit-code meanings (mutmut/stats.py, status_by_exit_code). A timeout means the
# tests hung on the mutant and a crash (segfault, SIGKILL) that they died on it: a user
# would notice both, so both count as detected.
KILLED_CODES = {1, 3, 37}
TIMEOUT_CODES = {36, -24, 24, 152, 255, -11, -9}
SURVIVED_CODES = {0}
NO_TESTS_CODES = {5, 33}


def modules() -> list[str]:
    """The files mutmut mutates: ``only_mutate`` in pyproject.toml is the one list."""
    config = tomllib.loads(PYPROJECT.read_text("utf-8"))["tool"]["mutmut"]
    return list(config["only_mutate"])


def dotted(path: str) -> str:
    """``speko_bridge/store/redis.py`` -> ``speko_bridge.store.redis``: mutmut names each
    mutant ``<dotted module>.<function>__mutmut_<n>``, so ``<dotted>.*`` selects a module."""
    return path.removesuffix(".py").replace("/", ".")


def load_equivalents() -> dict[str, str]:
    """``<mutant name> <reason>`` per line; ``#`` starts a comment line."""
    accepted: dict[str, str] = {}
    if not EQUIVALENT_FILE.exists():
        return accepted
    for raw in EQUIVALENT_FILE.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition(" ")
        accepted[name] = reason.strip() or "(no reason given)"
    return accepted


def diff_lines(name: str, path: str) -> list[str]:
    """The changed lines of one mutant, from mutmut's own differ (falls back to nothing)."""
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant
    except ImportError:  # a mutmut without this helper: the name is still enough for `mutmut show`
        return []
    try:
        diff = get_diff_for_mutant(name, path=path)
    except Exception as exc:  # noqa: BLE001 - a report line must not stop the report
        return [f"(no diff: {exc})"]
    return [
        line for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@dataclass
class ModuleResult:
    path: str
    killed: int = 0
    timeout: int = 0
    survived: list[str] = field(default_factory=list)
    no_tests: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    total: int = 0

    @property
    def strict(self) -> bool:
        return self.path.startswith(STRICT_PREFIXES)


def read_module(path: str) -> ModuleResult | None:
    meta = MUTANTS_DIR / (path + ".meta")
    if not meta.exists():
        return None
    codes: dict[str, int | None] = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    result = ModuleResult(path=path, total=len(codes))
    for name, code in sorted(codes.items()):
        if code in KILLED_CODES:
            result.killed += 1
        elif code in TIMEOUT_CODES:
            result.timeout += 1
        elif code in SURVIVED_CODES:
            result.survived.append(name)
        elif code in NO_TESTS_CODES:
            result.no_tests.append(name)
        else:  # not checked, suspicious, segfault, interrupted
            result.other.append(f"{name} (exit {code})")
    return result


def report() -> int:
    accepted = load_equivalents()
    seen_accepted: set[str] = set()
    failed: list[str] = []
    rows: list[str] = []
    for path in modules():
        result = read_module(path)
        if result is None:
            rows.append(f"{path}: not run (no {MUTANTS_DIR}/{path}.meta)")
            failed.append(path)
            continue
        open_survivors = [n for n in result.survived + result.no_tests if n not in accepted]
        ok_survivors = [n for n in result.survived + result.no_tests if n in accepted]
        seen_accepted.update(ok_survivors)
        detected = result.killed + result.timeout
        score = detected / result.total if result.total else 1.0
        if result.strict:
            target = "all killed or accepted"
            met = not open_survivors and not result.other
        else:
            target = f">= {CODEC_TARGET:.0%} killed"
            met = score >= CODEC_TARGET and not result.other
        if not met:
            failed.append(path)
        rows.append(
            f"\n{path}: {detected}/{result.total} killed ({score:.1%}"
            + (f", {result.timeout} by timeout or crash" if result.timeout else "")
            + f"), {len(ok_survivors)} accepted, {len(open_survivors)} surviving"
            + f"  [target: {target}: {'met' if met else 'MISSED'}]"
        )
        for name in open_survivors:
            kind = "no test calls it" if name in result.no_tests else "survived"
            rows.append(f"  {kind}: {name}")
            rows.extend(f"      {line.strip()}" for line in diff_lines(name, path))
        for name in ok_survivors:
            rows.append(f"  accepted: {name}: {accepted[name]}")
        for entry in result.other:
            rows.append(f"  not decided: {entry}")
    stale = sorted(set(accepted) - seen_accepted)
    print("Mutation score per module (mutmut; survivors first, then accepted equivalents)")
    print("\n".join(rows))
    if stale:
        print(f"\nStale entries in {EQUIVALENT_FILE} (killed now, or renumbered after an edit):")
        print("\n".join(f"  {name}" for name in stale))
    print()
    if failed:
        print("Targets missed: " + ", ".join(failed))
        return 1
    print("Every module meets its target.")
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["modules"]:
        print(" ".join(dotted(path) for path in modules()))
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    return report()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
