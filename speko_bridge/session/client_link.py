"""One client socket attached to a session: its reader and writer tasks, and its close.

A session outlives its client socket when that socket drops without a close handshake
(docs/protocol.md "Resuming after a dropped connection"): the session keeps the provider side,
and a new socket with the same token gets a new :class:`ClientLink`. So everything tied to
one socket lives here, and the session (``runner.py``) holds at most one link at a time.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..codes import CloseCode
from .asgi import abort_transport, channel, writable, writable_event
from .client_to_provider import ClientToProvider

if TYPE_CHECKING:
    from .phase import Outcome
    from .runner import Session

#: How long the close handshake with the client may take before the connection is aborted.
CLIENT_CLOSE_TIMEOUT = 2.0
#: When a send to the client fails, how long the reader gets to report how the socket ended
#: (a dropped socket is resumable, a closed one is not) before the session ends anyway.
READER_VERDICT_TIMEOUT = 2.0


class ClientLink:
    def __init__(self, session: Session, ws: WebSocket) -> None:
        self.session = session
        self.ws = ws
        self.reader = ClientToProvider(session, ws)
        self.tasks: list[asyncio.Task] = []
        #: Set when this socket is done with: closed by the session's end, or dropped.
        self.finished = asyncio.Event()

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.reader.run(), name="client-reader"),
            asyncio.create_task(self._writer(), name="client-writer"),
        ]
        for task in self.tasks:
            task.add_done_callback(self.session._task_done)

    async def stop(self) -> None:
        """Cancel the reader and the writer (never the calling task) and wait for them."""
        current = asyncio.current_task()
        others = [task for task in self.tasks if task is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def close(self, outcome: Outcome) -> None:
        """Send the client codec's final messages and close with the session's code."""
        ws = self.ws
        if ws.client_state is not WebSocketState.CONNECTED:
            return
        try:
            async with asyncio.timeout(CLIENT_CLOSE_TIMEOUT):
                for text in self.session.client.final(outcome.code, outcome.error_code, outcome.message):
                    await ws.send_text(text)
                await ws.close(outcome.code, outcome.message[:120])
        except TimeoutError:
            abort_transport(ws.scope)  # a client that does not read cannot hold us
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client is already gone

    async def _writer(self) -> None:
        session = self.session
        ws = self.ws
        send_text, send_bytes = ws.send_text, ws.send_bytes
        raw = channel(ws.scope)
        event = None
        if raw is not None:  # the server's send, without Starlette's layers (asgi.py says why)
            event = writable_event(ws.scope)  # the fast path needs the server's send (outbox.py)
            send = raw[1]

            def send_text(text: str):
                return send({"type": "websocket.send", "text": text})

            def send_bytes(data: bytes):
                return send({"type": "websocket.send", "bytes": data})
        try:
            await session.outbox.pump(send_text, send_bytes, session.client.audio_message,
                                      session.metrics, writable(ws.scope), event)
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The socket is gone; the reader hears how (a close frame, or a dropped
            # connection that the session may wait for) and decides.
            reader = self.tasks[0]
            try:
                async with asyncio.timeout(READER_VERDICT_TIMEOUT):
                    await asyncio.shield(reader)
            except (TimeoutError, Exception):
                pass
            if not reader.done() and session.link is self:
                session.end(CloseCode.NORMAL, None, "client connection lost")
