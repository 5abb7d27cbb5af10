"""What every provider simulator shares: an aiohttp server on a loopback port, the counters
tests read, and a validator of client messages built on first use (it needs the provider's
SDK types, which only the test extra installs)."""

from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web


class SimulatorServer:
    #: The WebSocket path(s) served; ``url`` points at the first.
    PATHS: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.connections = 0  # upgraded sockets
        self.handshakes = 0  # upgrade attempts, refused ones included
        self.open_sockets = 0
        self.received: list[list[dict]] = []  # per connection, every client message
        self.violations: list[str] = []  # client messages the provider's types refuse
        self.replies = 0  # model responses begun, all connections (tests count usage against it)
        self.replies_ended = 0  # of those, the ones over (done, cancelled or cut short by a closed socket)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._checker: Callable[[dict], str | None] | None = None
        self._stopping = asyncio.Event()  # stalled handlers wait on this, so stop() is quick

    def make_checker(self) -> Callable[[dict], str | None]:
        raise NotImplementedError

    def _check(self, message: dict) -> str | None:
        if self._checker is None:
            self._checker = self.make_checker()
        return self._checker(message)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def make_app(self) -> web.Application:
        app = web.Application()
        for path in self.PATHS:
            app.router.add_get(path, self._handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if getattr(getattr(self, "config", None), "validate", False) and self._checker is None:
            # Built now, not on the first message: it imports the SDK's types (~1 s), which
            # would stall every socket served by this event loop mid-conversation.
            self._checker = self.make_checker()
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()
        self.url = f"ws://{bound[0]}:{bound[1]}{self.PATHS[0]}"

    async def stall(self) -> None:
        """Stop answering (a hung provider) until the simulator stops."""
        await self._stopping.wait()

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _drop_or_stall(self, ws: web.WebSocketResponse, fail: str | None) -> bool:
        """Failures every provider shows mid-answer: the TCP connection drops with no close
        frame, or the server stops sending. True: the reply stops here."""
        if fail == "drop_mid_response":
            ws._writer.transport.abort()
            return True
        if fail == "stall_mid_response":
            await self.stall()
            return True
        return False
