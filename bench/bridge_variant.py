"""``speko-bridge serve`` with some of its uvicorn and aiohttp settings changed, for
bench/stack.py to compare them side by side with the ones speko_bridge/server.py chose.

    python bench/bridge_variant.py '{"ws": "websockets", "loop": "asyncio"}' --port 9200

Keys of the JSON object: any ``uvicorn.Config`` attribute (``ws``, ``loop``,
``ws_per_message_deflate``, ``ws_max_queue``...), and ``aiohttp_read_bufsize``,
``aiohttp_autoping``, ``aiohttp_heartbeat`` for the provider side, and ``copy_resampler``
(true: the resampler copies instead of filtering, to measure the filter's share),
``time_resampler`` (true: time spent in ``Resampler.process``, written to
/tmp/resampler-times.txt every 20,000 calls) and ``no_freeze`` (true: the startup heap
is not frozen, ``cli.freeze_startup_heap``), ``gc_log`` (a path: each full garbage
collection's CPU time appended to it). A string ``ws`` names one
of uvicorn's own implementations, so it replaces the bridge's handshake-answering subclass
(the difference in CPU is what is measured here, not the handshake fix).
"""

from __future__ import annotations

import functools
import json
import os
import sys

import aiohttp

sys.path.insert(0, os.getcwd())  # the checkout bench/common.spawn runs in, not an installed copy

from speko_bridge import cli, server


def copy_resampler() -> None:
    """Measurement only: every Resampler copies whole samples to the output length
    (repeat or drop) instead of filtering, so a row shows what the filter itself costs."""
    from speko_bridge import audio

    def process(self, data: bytes) -> bytes:
        if self.passthrough or not data:
            return data
        n = len(data) * self.out_rate // self.in_rate & ~1
        return (data * 2)[:n]

    audio.Resampler.process = process
    audio.Resampler.flush = lambda self: b""


def time_resampler() -> None:
    """Measurement only: the mean wall time of a ``Resampler.process`` call, appended to
    /tmp/resampler-times.txt every 20,000 calls."""
    import time

    from speko_bridge import audio

    process = audio.Resampler.process
    acc = {"n": 0, "ns": 0}

    def timed(self, data: bytes) -> bytes:
        t = time.perf_counter_ns()
        out = process(self, data)
        acc["ns"] += time.perf_counter_ns() - t
        acc["n"] += 1
        if acc["n"] == 20_000:
            with open("/tmp/resampler-times.txt", "a") as f:
                print(f"{acc['ns'] / acc['n'] / 1000:.2f} us per call", file=f)
            acc.update(n=0, ns=0)
        return out

    audio.Resampler.process = timed


def log_full_collections(path: str) -> None:
    """Measurement only: append each full (generation 2) garbage collection's CPU time to
    ``path``, one line each: wall clock, ms, objects collected."""
    import gc
    import time

    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.thread_time()
            return
        with open(path, "a") as f:
            print(f"{time.time():.3f} {(time.thread_time() - started[0]) * 1000:.2f} {info['collected']}", file=f)

    gc.callbacks.append(callback)


def main() -> int:
    overrides = json.loads(sys.argv[1])
    if overrides.pop("copy_resampler", False):
        copy_resampler()
    if overrides.pop("time_resampler", False):
        time_resampler()
    if overrides.pop("no_freeze", False):
        cli.freeze_startup_heap = lambda: None
    if "gc_log" in overrides:
        log_full_collections(overrides.pop("gc_log"))
    upstream = {k.removeprefix("aiohttp_"): overrides.pop(k) for k in list(overrides)
                if k.startswith("aiohttp_")}
    if "read_bufsize" in upstream:
        init = aiohttp.ClientSession.__init__
        aiohttp.ClientSession.__init__ = functools.partialmethod(init, read_bufsize=upstream.pop("read_bufsize"))
    if upstream:
        connect = aiohttp.ClientSession.ws_connect

        def ws_connect(self, *args, **kwargs):
            return connect(self, *args, **{**kwargs, **upstream})

        aiohttp.ClientSession.ws_connect = ws_connect
    chosen = server.server_config

    def server_config(*args, **kwargs):
        config = chosen(*args, **kwargs)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    cli.server_config = server_config
    return cli.main(["serve", *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(main())
