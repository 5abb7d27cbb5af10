"""pytest plugin for ``make mutants`` only (loaded through ``pytest_add_cli_args`` in
``[tool.mutmut]``; ``make test`` never loads it). Two jobs:

1. Cap Hypothesis property tests at ``MAX_EXAMPLES`` examples each. mutmut runs every fast
   test that calls a mutated function once per mutant; the codec property tests ask for
   200-300 examples (seconds each), which alone would put the run past half an hour on two
   cores. 50 examples still send hundreds of random and malformed events per mutant, and
   Hypothesis replays from its example database any example that killed a mutant before.
   The cap goes through the settings Hypothesis attaches to each ``@given`` test (read when
   the test runs); if a Hypothesis release renames that attribute, nothing is capped and
   the run is only slower.

2. Stop this run's redis-server processes when mutmut times a mutant out. mutmut ends a
   hung mutant with SIGXCPU (then SIGKILL), so pytest never tears down the session's
   ``redis_server`` fixture and the server would be left running, one per timed-out
   mutant. On SIGXCPU we kill the servers this process started, then die of the same
   signal, so mutmut still records a timeout.
"""

from __future__ import annotations

import os
import signal
import sys

MAX_EXAMPLES = 50
_started: list = []  # RedisServer objects started in this process


def _cap_hypothesis(items) -> None:
    try:
        from hypothesis import settings
    except ImportError:  # pragma: no cover - hypothesis is a test dependency
        return
    for item in items:
        test = getattr(item, "obj", None)
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if current is not None and current.max_examples > MAX_EXAMPLES:
            test._hypothesis_internal_use_settings = settings(current, max_examples=MAX_EXAMPLES)


def _track_redis_servers() -> None:
    module = sys.modules.get("tests.redis_server")
    cls = getattr(module, "RedisServer", None)
    if cls is None or getattr(cls.start, "_mutants_tracked", False):
        return
    original = cls.start

    def start(self, *args, **kwargs):
        _started.append(self)
        return original(self, *args, **kwargs)

    start._mutants_tracked = True
    cls.start = start


def _on_timeout(signum, frame) -> None:
    for server in _started:
        proc = getattr(server, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def pytest_configure(config) -> None:
    signal.signal(signal.SIGXCPU, _on_timeout)


def pytest_collection_modifyitems(items) -> None:
    _cap_hypothesis(items)
    _track_redis_servers()  # conftest has imported tests.redis_server by now
