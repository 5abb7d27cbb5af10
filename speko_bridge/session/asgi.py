"""The things the session needs from the server below ASGI, and why.

ASGI gives an app ``receive`` and ``send`` and nothing else. The session needs four facts
ASGI does not carry:

1. **How many client messages the server has already read and queued** (the client reader
   joins their audio into one provider message when the bridge has fallen behind).
2. **Whether the client's socket takes writes now** (the writer waits for that *before* it
   takes the next item from the outbox: an item is never held in hand while the client is
   behind, so an interrupt drops every chunk not yet written, and what was written is what
   the client gets and what the truncation counts). uvicorn waits for writability inside
   its ``send``, after the item was already taken.
3. **The TCP transport, to abort it** (a client that stopped reading cannot complete a
   close handshake: after ``CLIENT_CLOSE_TIMEOUT`` the connection is dropped, or the socket
   would stay ESTABLISHED with megabytes unsent until the kernel gives up).
4. **Whether the client's socket ended without a close frame from the client** (a dropped
   connection, which a resumable session waits for; docs/protocol.md (v2)). uvicorn's sans-IO
   protocol reports a lost connection as 1005, the same code as a close frame without a
   status, so the disconnect event cannot tell them apart; the protocol's ``conn.close_rcvd``
   (websockets' record of the close frame received, None if none) can.

uvicorn's WebSocket protocols pass their own bound methods as ``receive``/``send``, so the
protocol object (``send.__self__``) holds both. Starlette wraps ``send`` in closures further
in, so the lookup must happen outermost: :class:`ServerHandles` is a pure ASGI middleware
that records the protocol in the scope before Starlette's own layers wrap anything.

It also records the server's own ``receive``/``send`` (:func:`channel`): a session's audio
goes through them directly, not through Starlette's ``WebSocket`` (three more coroutine
layers and two state checks per message: a few percent of the CPU of a busy server, issue
23's profile). Starlette's wrapper is still used for the handshake and the close; the
reader mirrors the one piece of state it keeps that the session reads (``client_state``
after a disconnect), and a failed send raises what it raises through Starlette minus the
translation (uvicorn's ``ClientDisconnected`` is an ``OSError``; a send after the close is
a ``RuntimeError``), both of which the writer already handles.

Checked against uvicorn 0.54 (``websockets_impl``: legacy ``websockets`` protocol, queued
messages in ``messages``, a ``collections.deque``; ``websockets_sansio_impl`` and
``wsproto_impl``: ``queue``, an ``asyncio.Queue``; all three: ``writable``, an
``asyncio.Event``, and ``transport``) and Starlette 1.10. Behind any other server these facts
are simply unknown: nothing is joined (every message goes upstream on its own), the writer
does not wait, and the connection is left to that server's own timeouts.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

SCOPE_KEY = "speko.server_protocol"
CHANNEL_KEY = "speko.asgi_channel"


class ServerHandles:
    """ASGI middleware: remember the server's protocol object of each WebSocket."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            scope[SCOPE_KEY] = getattr(send, "__self__", None)
            scope[CHANNEL_KEY] = (receive, send)
        await self.app(scope, receive, send)


def channel(scope) -> tuple[Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]] | None:
    """The server's own ``receive`` and ``send`` of this WebSocket (None without
    :class:`ServerHandles` outermost)."""
    return scope.get(CHANNEL_KEY)


def queued_messages(scope) -> Callable[[], int]:
    """A callable: how many client messages the server holds for the app right now."""
    protocol = scope.get(SCOPE_KEY)
    queue = getattr(protocol, "queue", None)
    if isinstance(queue, asyncio.Queue):
        return queue.qsize
    messages = getattr(protocol, "messages", None)
    if isinstance(messages, collections.deque):
        return messages.__len__
    return lambda: 0


def writable(scope) -> Callable[[], Awaitable[object]]:
    """A coroutine function that returns once the client's socket takes writes."""
    event = getattr(scope.get(SCOPE_KEY), "writable", None)
    if isinstance(event, asyncio.Event):
        return event.wait
    return _no_wait


def writable_event(scope) -> asyncio.Event | None:
    """The event :func:`writable` waits on (set while the client's socket takes writes), or
    None when the server does not expose one."""
    event = getattr(scope.get(SCOPE_KEY), "writable", None)
    return event if isinstance(event, asyncio.Event) else None


async def _no_wait() -> None:
    return None


def abort_transport(scope) -> bool:
    """Drop the client's TCP connection without a close handshake; False when the server
    does not expose its transport."""
    transport = getattr(scope.get(SCOPE_KEY), "transport", None)
    if transport is None:
        return False
    transport.abort()
    return True


def dropped(scope) -> bool | None:
    """True if the client's socket ended with no close frame from the client, False if one
    came, None when the server does not say (then the disconnect code decides: 1006)."""
    protocol = scope.get(SCOPE_KEY)
    conn = getattr(protocol, "conn", None)  # websockets-sansio: the websockets Protocol
    if conn is not None and hasattr(conn, "close_rcvd"):
        return conn.close_rcvd is None
    if protocol is not None and hasattr(protocol, "close_rcvd"):  # legacy websockets
        return protocol.close_rcvd is None
    return None
