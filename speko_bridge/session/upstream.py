"""The provider side of a session: one WebSocket to the provider (aiohttp), and the client
messages held while it is not ready (connecting, or reconnecting after a ``goAway``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

import aiohttp

from ..codes import CloseCode, ErrorCode
from ..providers.base import Fatal, Outbound

log = logging.getLogger("speko_bridge.session")

#: Client messages held while the provider session is being set up: 5 s of 24 kHz PCM16
#: (as base64 JSON, ~4/3 of that). A normal setup takes well under a second; past this the
#: client reader waits for the provider (backpressure on the client's TCP connection).
HELD_MAX_BYTES = 5 * 48_000 * 4 // 3
#: Largest provider message accepted. What providers send is audio deltas of a few KiB and
#: echoes of the session config (instructions and tools: ~300 KiB at most, even for a client
#: of the OpenAI-compatible endpoint that sends its own); a larger message ends the session
#: with 4500 instead of growing it.
UPSTREAM_MAX_MESSAGE_BYTES = 1024 * 1024
#: How long to wait for the provider's close handshake when we end a session.
UPSTREAM_CLOSE_TIMEOUT = 2.0


def buffered(socket) -> Callable[[], int]:
    """A callable: how many provider messages aiohttp has read from ``socket`` and not yet
    handed over. While some are, what the session makes of the current one waits in the
    outbox so the writer joins it with what follows (outbox.py's fast path must not split a
    burst the writer would have joined). Checked against aiohttp 3.14 (the reader queue's
    ``_buffer``, a deque, public in its compiled reader too); on any other layout it answers
    1, which only turns the fast path off."""
    buffer = getattr(getattr(socket, "_reader", None), "_buffer", None)
    if isinstance(buffer, deque):
        return buffer.__len__
    return _one


def _one() -> int:
    return 1


class UpstreamFailed(Exception):
    """The provider could not be reached or refused the connection."""

    def __init__(self, fatal: Fatal) -> None:
        super().__init__(fatal.message)
        self.fatal = fatal


def _handshake_failure(status: int) -> Fatal:
    if status in (401, 403):
        return Fatal(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_AUTH_FAILED,
                     f"provider refused the credentials (HTTP {status})")
    if status == 429:
        return Fatal(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR,
                     "provider rate limit or quota reached (HTTP 429)")
    return Fatal(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE,
                 f"provider handshake failed (HTTP {status})")


class Upstream:
    def __init__(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str],
                 connect_timeout: float, metrics, log_context: dict) -> None:
        self._http = http
        self._url = url
        self._headers = headers
        self._connect_timeout = connect_timeout
        self._metrics = metrics
        self._log_context = log_context
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        #: Set while the provider takes client messages; cleared while connecting.
        self.ready = asyncio.Event()
        self._held: deque[Outbound] = deque()
        self._held_bytes = 0
        #: The reason of the provider's close frame, if it sent one.
        self.close_reason = ""

    async def connect(self, start: Callable[[], list[Outbound]]) -> aiohttp.ClientWebSocketResponse:
        """Open a (new) provider socket and send what ``start()`` returns, asked once the
        socket is open (codecs reset their turn state there); raises :class:`UpstreamFailed`.
        Client messages stay held until :meth:`flush_held`."""
        self.ready.clear()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._connect_timeout):
                socket = await self._http.ws_connect(
                    self._url, headers=self._headers, max_msg_size=UPSTREAM_MAX_MESSAGE_BYTES,
                    autoping=True, compress=0,
                )
        except aiohttp.WSServerHandshakeError as exc:
            raise UpstreamFailed(_handshake_failure(exc.status)) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise UpstreamFailed(Fatal(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE,
                                       f"cannot reach the provider: {type(exc).__name__}")) from None
        self.socket = socket
        self.close_reason = ""
        elapsed = time.monotonic() - started
        self._metrics.connect.observe(elapsed)
        log.debug("upstream connected", extra={**self._log_context, "upstream_ms": round(elapsed * 1000, 1)})
        await self._write(socket, start())
        return socket

    @staticmethod
    async def _write(socket: aiohttp.ClientWebSocketResponse, messages) -> None:
        for m in messages:
            if type(m) is str:
                await socket.send_str(m)
            else:
                await socket.send_bytes(m)

    async def send(self, messages: list[Outbound]) -> None:
        """Send now, or hold while the provider is not ready; past ``HELD_MAX_BYTES`` held,
        wait for it (the caller is the client reader: the client's TCP pushes back)."""
        if not messages:
            return
        if self.ready.is_set():
            await self._write(self.socket, messages)
            return
        for m in messages:
            self._held.append(m)
            self._held_bytes += len(m)
        if self._held_bytes > HELD_MAX_BYTES:
            await self.ready.wait()

    async def flush_held(self) -> None:
        """The provider is ready: send what was held, in order, then take messages as they come."""
        held = self._held
        while held:
            m = held.popleft()
            self._held_bytes -= len(m)
            await self._write(self.socket, (m,))
        self._held_bytes = 0
        self.ready.set()

    async def close(self, socket: aiohttp.ClientWebSocketResponse | None = None) -> None:
        """Close ``socket`` (default: the current one); a provider that will not close
        cleanly is simply dropped."""
        socket = socket or self.socket
        if socket is None or socket.closed:
            return
        try:
            async with asyncio.timeout(UPSTREAM_CLOSE_TIMEOUT):
                await socket.close()
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
