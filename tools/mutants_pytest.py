"""pytest plugin for ``make mutants`` only: caps Hypothesis property tests at
``MAX_EXAMPLES`` examples each.

Why: mutmut runs every fast test that calls a mutated function once per mutant; the codec
property tests ask for 200-300 examples (seconds each), which alone would put the run past
half an hour on two cores. 50 examples still send hundreds of random and malformed events
per mutant, and Hypothesis replays from its example database any example that killed a
mutant before. ``make test`` is unaffected: this plugin is loaded only through
``pytest_add_cli_args`` in ``[tool.mutmut]``.

The cap is applied through the settings Hypothesis attaches to each ``@given`` test (read
when the test runs); if a Hypothesis release renames that attribute the plugin does nothing
and the run is only slower.
"""

from __future__ import annotations

MAX_EXAMPLES = 50


def pytest_collection_modifyitems(items) -> None:
    try:
        from hypothesis import settings
    except ImportError:  # pragma: no cover - hypothesis is a test dependency
        return
    for item in items:
        test = getattr(item, "obj", None)
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if current is not None and current.max_examples > MAX_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(current, max_examples=MAX_EXAMPLES)
