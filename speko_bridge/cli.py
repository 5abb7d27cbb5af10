"""``speko-bridge serve --host --port``: load settings, set up logging, run uvicorn (configured
in ``server.py``, with its connection-level limits).

The port is bound before anything is printed: the dev banner (the API key as an ``export``
line to paste) appears only once the server can actually answer, and a port that is taken
stops the command at once with one line saying which and how to pick another.

SIGTERM (or a first Ctrl+C) drains instead of stopping at once (:func:`app.drain`): readiness
turns 503, new sockets are refused, live sessions get ``SPEKO_DRAIN_SECONDS`` to end and are
then closed with 1001, their records are written, and the process exits 0. A second signal
skips the rest of the drain (sessions still get their 1001 close); a third exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn

from . import logs
from .config import ConfigError, load_settings
from .server import server_config

log = logging.getLogger("speko_bridge")


#: uvicorn's own default backlog.
LISTEN_BACKLOG = 2048


class BindError(OSError):
    """The address cannot be bound; the message says why and what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening; uvicorn serves it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"{host}:{port} is already in use (another speko-bridge?); "
                            f"pick another port: --port {port + 1}, or PORT={port + 1} make run") from None
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(LISTEN_BACKLOG)  # connections made before uvicorn starts wait in the queue
    sock.set_inheritable(True)
    return sock


def banner(settings, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    return (
        f"\n  speko_bridge dev server on {base}\n"
        f"    export SPEKO_KEY={settings.dev_api_key}\n"
        f"    demo    : {base}/  (hold the button or Space to talk, in a browser)\n"
        f"    mint    : curl -s -X POST {base}/v1/sessions -H \"Authorization: Bearer $SPEKO_KEY\" "
        "-H 'Content-Type: application/json' -d '{\"provider\":\"openai\",\"model\":\"gpt-realtime\"}'\n"
        f"    data    : {settings.data_dir}/ (keys and SQLite file)\n"
    )


class DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM/SIGINT drains the app before uvicorn's own shutdown
    (which would otherwise cut every WebSocket at once)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is None and self._loop is not None and not self.should_exit:
            log.info("received %s, draining", signal.Signals(sig).name)
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        # a second signal: stop now (the lifespan still closes live sessions with 1001);
        # a third skips even that, as uvicorn's own second Ctrl+C does
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    def _start_drain(self) -> None:
        from .app import drain

        async def drain_then_exit() -> None:
            try:
                await drain(self.config.app)
            finally:
                self.should_exit = True

        self._drain_task = asyncio.ensure_future(drain_then_exit())


def freeze_startup_heap() -> None:
    """Keep what the process made before serving (modules, classes, the app: ~59,000
    objects) out of every later garbage collection. A full collection walks every tracked
    object and every session's audio waits for it: at 100 sessions, full collections took
    18-58 ms of CPU with the startup heap in them and 13-27 ms frozen (one run,
    ``bench/stack.py --bridge 'frozen={"gc_log": "f.txt"}' --bridge 'unfrozen={"no_freeze":
    true, "gc_log": "u.txt"}' --sessions 100 --seconds 8 --reps 3 --rates 24000``). Nothing
    frozen is ever freed, which is what startup objects are for; the sessions' own objects
    are collected as before. Called by ``serve`` only: a program embedding ``create_app``
    owns its own heap."""
    gc.collect()
    gc.freeze()


def serve(host: str, port: int, log_level: str) -> int:
    try:
        settings = load_settings(host=host, port=port)
    except ConfigError as exc:
        print(f"speko-bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, log_level)
    from .app import create_app

    app = create_app(settings)
    try:
        sock = bind(host, port)
    except BindError as exc:
        print(f"speko-bridge: {exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    if settings.dev_api_key:
        print(banner(settings, host, port), flush=True)
    config = server_config(app, settings, host=host, port=port, log_level=log_level)
    config.load()  # uvicorn's protocol modules imported now, so the freeze below holds them
    freeze_startup_heap()
    try:
        DrainingServer(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="speko-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve the REST API and the realtime WebSocket")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    return serve(args.host, args.port, args.log_level)


if __name__ == "__main__":
    sys.exit(main())
