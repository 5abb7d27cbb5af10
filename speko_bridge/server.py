"""uvicorn as the bridge runs it: one :func:`server_config` for ``speko-bridge serve`` and the
tests, with every connection-level limit set on purpose.

uvicorn leaves three gaps a client on the open internet can use before any route runs:

- **Header size.** httptools (the fast parser uvicorn picks) has no limit: a client that
  streams a never-ending header grows the process until it dies. :class:`GuardedHttpProtocol`
  counts the bytes of a request until its headers are complete and answers 431 past
  :data:`MAX_HEADER_BYTES`.
- **Header read time.** Nothing times the headers out: a client that sends one header line
  every few seconds (slowloris) holds a socket and a file descriptor for ever. The same
  class arms a timer when a request starts and answers 408 if its headers are not complete
  within :data:`HEADER_TIMEOUT_SECONDS` (a connection that sent nothing is just closed).
- **Refused WebSocket handshakes.** A handshake the websockets library refuses while
  parsing it (a header line over 8 KiB, e.g. 2,000 subprotocols, or over 128 headers) got
  its 431 written into the library's buffer, which uvicorn never sends: the client waited
  for ever. websockets 16 writes no answer at all, only the end of the stream.
  :class:`AnsweringWebSocketProtocol` sends the library's answer, or its own 431 (a line or
  header count over the library's limits) or 400 (any other unreadable request) when the
  library wrote none, and closes.

And it caps connections per process (:func:`connection_limit`): a connection over the cap is
answered 503 and closed at once, before it costs more than its socket.

Why these classes and not uvicorn's options alone (uvicorn 0.5x):
``h11_max_incomplete_event_size`` limits headers for the h11 parser only (slower than
httptools, and with no header timeout either); ``timeout_keep_alive`` only runs *between*
requests; ``limit_concurrency`` answers 503 to HTTP requests but never to WebSocket
upgrades or idle sockets. So the server keeps httptools and the websockets implementation
uvicorn picks, and adds the missing checks on top (:func:`server_config`).

What stays with the load balancer is in SECURITY.md ("What is left to you").

Settings chosen by measurement (issue 23; bench/stack.py runs them side by side):

- **No permessage-deflate** (:data:`WS_PER_MESSAGE_DEFLATE`). uvicorn accepts it by
  default and every browser offers it, so every 20 ms audio frame was deflated and
  inflated: 15-18 us per 960-byte frame for the compression alone (about as much as the
  rest of the bridge's work on that frame, measured in isolation), for audio that hardly
  compresses. Without it a client gets the same messages, uncompressed.
- **uvloop and httptools** (what uvicorn picks when they are installed, ``uvicorn[standard]``),
  **websockets' sans-IO protocol** (subclassed below; uvicorn's own choice too): the legacy
  websockets protocol and wsproto were no cheaper at 50 sessions, and the session's
  ``asgi.py`` relies on the sans-IO protocol's handles.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import SecurityError

from .codes import ApiErrorCode
from .config import Settings

log = logging.getLogger("speko_bridge.server")

#: uvicorn's own message limit: what one client message may make it buffer. The bridge
#: enforces its smaller limit itself (256 KiB, 4009) so a client gets a proper close frame;
#: only messages over 1 MiB hit this one (1009), which keeps what a connection can make the
#: server hold before the bridge sees the message at 1 MiB instead of 16.
WS_MAX_SIZE = 1024 * 1024
#: Request line plus headers. Our own requests need ~1 KiB (a token is at most 4 KiB);
#: 32 KiB leaves room for the cookies a browser attaches when the bridge shares a domain
#: with a site, and is what nginx/Node allow at most by default. A connection holds at most
#: this plus one read (256 KiB) before it is answered 431.
MAX_HEADER_BYTES = 32 * 1024
#: From a request's first byte (or the connection's opening) to its last header. A browser
#: sends its headers in one packet; 10 s is plenty for a slow mobile link and makes holding
#: an idle socket cost the attacker a new connection every 10 s.
HEADER_TIMEOUT_SECONDS = 10.0
#: Idle time between keep-alive requests before the connection is closed (uvicorn's 5 s,
#: stated here so it is a decision, not a default).
KEEP_ALIVE_SECONDS = 5
#: Connections allowed on top of ``SPEKO_MAX_SESSIONS`` WebSockets: REST calls, probes and
#: handshakes in flight. Each is one file descriptor; keep ``ulimit -n`` above the sum.
HTTP_CONNECTION_HEADROOM = 1024
#: permessage-deflate on client sockets: off (the module docstring says why).
WS_PER_MESSAGE_DEFLATE = False


def connection_limit(settings: Settings) -> int:
    """Connections one process accepts at once (WebSockets and HTTP together)."""
    return settings.max_sessions + HTTP_CONNECTION_HEADROOM


class _Error(msgspec.Struct):
    code: str
    message: str


class _ErrorBody(msgspec.Struct):
    error: _Error


_REASONS = {
    400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable",
}


def _raw_error(status: int, code: str, message: str) -> bytes:
    """A complete ``Connection: close`` response with the API's usual error body."""
    body = msgspec.json.encode(_ErrorBody(_Error(code, message)))
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit, a header read timeout and a
    per-process connection cap (class attributes; :func:`server_config` sets them)."""

    max_header_bytes: int = MAX_HEADER_BYTES
    header_timeout: float = HEADER_TIMEOUT_SECONDS
    max_connections: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_bytes = 0  # bytes received while this request's headers are incomplete
        self._head_size = 0  # request line and headers as parsed, counted exactly
        self._awaiting_headers = True
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            self._refuse(503, ApiErrorCode.SERVER_BUSY, "too many connections to this server; retry later")
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        counting = self._awaiting_headers
        if counting:
            self._header_bytes += len(data)
            if self._header_timer is None:
                self._arm_header_timer()
        super().data_received(data)
        # counted only while a request's headers were incomplete both before and after this
        # chunk, so a body or the end of a pipelined request never counts against them
        if counting and self._awaiting_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(431, ApiErrorCode.HEADERS_TOO_LARGE,
                         f"request line and headers must be at most {self.max_header_bytes} bytes")

    # Headers that arrive complete in one read are measured exactly as they are parsed; the
    # callbacks below are no-ops once the request is refused (the parser goes on parsing
    # the rest of the read, and uvicorn must not start a request or a WebSocket for it).

    def on_message_begin(self) -> None:
        self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        if self._refused:
            return
        if self._head_size > self.max_header_bytes:
            self._refuse(431, ApiErrorCode.HEADERS_TOO_LARGE,
                         f"request line and headers must be at most {self.max_header_bytes} bytes")
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._awaiting_headers = True  # the next request on this connection starts afresh

    def handle_websocket_upgrade(self) -> None:
        if not self._refused:
            super().handle_websocket_upgrade()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers or self.transport.is_closing():
            return
        if self._header_bytes == 0 or (self.cycle is not None and not self.cycle.response_complete):
            # nothing of a request yet (an idle or preconnected socket, whose client may be
            # sending one right now and would read our 408 as its answer), or mid-response
            # (a 408 would corrupt it): hang up without a word
            self._refused = True
            self.transport.close()
            return
        self._refuse(408, ApiErrorCode.REQUEST_TIMEOUT,
                     f"request headers not complete within {self.header_timeout:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        if self._refused:
            return
        log.debug("refused a connection: %s %s", status, code)
        self._refused = True
        self._cancel_header_timer()
        self.transport.write(_raw_error(status, code, message))
        self.transport.close()


class AnsweringWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, but a handshake the library refuses while parsing it
    is answered (the library's own response, else ours: 431 or 400) and closed, not left
    hanging or dropped without a word."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (not self.handshake_complete and self.conn.handshake_exc is not None
                and not self.transport.is_closing()):
            answer = b"".join(self.conn.data_to_send())
            if not answer.startswith(b"HTTP/"):  # websockets >= 16 answers nothing
                answer = _handshake_refusal(self.conn.handshake_exc)
            self.transport.write(answer)
            self.transport.close()


def _handshake_refusal(exc: BaseException) -> bytes:
    """Our answer to a handshake the websockets library could not parse: 431 when it hit one
    of its size limits (``SecurityError``: a line over 8 KiB, over 128 headers), else 400."""
    if isinstance(exc.__cause__, SecurityError) or isinstance(exc, SecurityError):
        return _raw_error(431, ApiErrorCode.HEADERS_TOO_LARGE,
                          "a WebSocket handshake header line or the number of headers is over the limit")
    return _raw_error(400, ApiErrorCode.INVALID_REQUEST, f"unreadable WebSocket handshake: {exc}")


def server_config(
    app: Any,
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    max_connections: int | None = None,
) -> uvicorn.Config:
    """The uvicorn configuration ``speko-bridge serve`` runs (and the tests' servers).

    ``header_timeout`` and ``max_connections`` exist so a test can reach the limits
    quickly; production takes the defaults (:func:`connection_limit` for the cap)."""
    if max_connections is None:
        max_connections = connection_limit(settings)
    protocol = type("GuardedHttpProtocol", (GuardedHttpProtocol,), {
        "header_timeout": header_timeout, "max_connections": max_connections,
    })
    cap = protocol.max_connections
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, log_config=None, lifespan="on",
        http=protocol, ws=AnsweringWebSocketProtocol, ws_max_size=WS_MAX_SIZE,
        ws_per_message_deflate=WS_PER_MESSAGE_DEFLATE,
        proxy_headers=True, timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # uvicorn's own cap answers 503 to HTTP requests when connections or running
        # requests reach it; ours (above) also covers WebSocket upgrades and idle sockets
        # (+1: uvicorn counts with >=, ours with >, so ours is the one a connection meets)
        limit_concurrency=cap + 1,
    )
