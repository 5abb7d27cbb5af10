"""The client reader: client messages -> client codec -> intents -> provider codec -> upstream.

Audio goes upstream as it comes; when more client messages are already waiting (the bridge
fell behind), their audio is joined into one provider message (up to
``COALESCE_MAX_BYTES``): same samples, same order, fewer messages, so a busy bridge catches
up instead of building a backlog. Anything that is not audio first sends what was joined.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.websockets import WebSocketState

from ..audio import Resampler
from ..clientproto.base import (
    Cancel,
    Configure,
    FlushAudio,
    Forward,
    Invalid,
    Reply,
    Respond,
    SendAudio,
    SendText,
    TextMessage,
    ToolOutput,
)
from ..codes import CloseCode, ErrorCode
from ..frames import Transcript
from .asgi import channel, dropped, queued_messages
from .outbox import COALESCE_MAX_BYTES
from .pacing import Pacer

if TYPE_CHECKING:
    from .runner import Session

#: Largest client message. 256 KiB is over 5 s of 24 kHz PCM16 in one chunk: far more than
#: any sane client sends (browsers send 20-100 ms), small enough to bound a burst.
MAX_CLIENT_MESSAGE_BYTES = 256 * 1024


def utf8_len(text: str) -> int:
    """Size of a text message on the wire (the limit is in bytes, not characters)."""
    return len(text) if text.isascii() else len(text.encode())


#: Close codes a client may leave in the record as they are: a normal end, a page going away,
#: and a connection lost with no close frame (what the server itself saw). Any other code a
#: client sends (4004, 4500, 3xxx, ...) is the client's word, not the server's: recorded as a
#: normal end whose reason quotes it, so no client can mark its record revoked or count as a
#: provider failure in the record and in ``speko_sessions_closed_total``.
CLIENT_CLOSE_CODES_KEPT = frozenset({CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.ABNORMAL})


def client_close(code: int | None) -> tuple[int, None, str]:
    """How a session that the client closed ends: (close code, no error, reason)."""
    if code in CLIENT_CLOSE_CODES_KEPT:
        return int(code), None, "client closed the connection"
    if code is None or code == 1005:  # 1005: a close frame with no code
        return CloseCode.NORMAL, None, "client closed the connection"
    return CloseCode.NORMAL, None, f"client closed the connection with code {int(code)}"


class ClientToProvider:
    """The reader of one client socket (a resumed session gets a new one, with fresh
    resampler and pacing state: the new socket's audio does not continue the old stream)."""

    def __init__(self, session: Session, ws) -> None:
        self.session = session
        self.ws = ws
        provider = session.provider
        in_rate = session.client.input_rate
        self.resample_in = Resampler(in_rate, provider.input_rate if provider else in_rate)
        self._joined: list[bytes] = []  # resampled client audio not sent yet (more is queued)
        self._joined_bytes = 0
        self._audio_read = 0  # client audio bytes in the message being applied (for pacing)

    async def run(self) -> None:
        session = self.session
        raw = channel(self.ws.scope)
        # the server's receive, without Starlette's layers (asgi.py says why)
        receive = raw[0] if raw is not None else self.ws.receive
        client = session.client
        metrics = session.metrics
        waiting = queued_messages(self.ws.scope)
        settings = session.state.settings
        monotonic = time.monotonic
        pacer = Pacer(client.input_rate, settings.audio_burst_seconds,
                      settings.client_messages_per_second, monotonic())
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ws.client_state = WebSocketState.DISCONNECTED  # as Starlette's receive does
                code = message.get("code")
                if dropped(self.ws.scope):
                    code = CloseCode.ABNORMAL  # no close frame: the connection was lost
                session.client_left(self.ws, code)
                return
            metrics.frames_in += 1
            data = message.get("bytes")
            if data is not None:
                if self._over_limit(len(data)):
                    return
                intents = client.receive_bytes(data)
            else:
                text = message.get("text")
                if text is None:
                    continue
                if self._over_limit(utf8_len(text)):
                    return
                intents = client.receive_text(text)
            self._audio_read = 0
            await self._apply(intents)
            if self._joined and not (self._joined_bytes < COALESCE_MAX_BYTES and waiting()):
                await self._send_joined()
            pause = pacer.wait(monotonic(), self._audio_read)
            if pause > 0:
                if self._joined:
                    await self._send_joined()
                await asyncio.sleep(pause)  # read nothing meanwhile: TCP pushes back on the client

    def _over_limit(self, size: int) -> bool:
        """Count a client message's bytes; True (and the session ends with 4009) when it is
        over ``MAX_CLIENT_MESSAGE_BYTES``."""
        self.session.metrics.bytes_in += size
        if size <= MAX_CLIENT_MESSAGE_BYTES:
            return False
        self.session.end(CloseCode.PROTOCOL_VIOLATION, ErrorCode.INVALID_MESSAGE,
                         f"message of {size} bytes exceeds the {MAX_CLIENT_MESSAGE_BYTES} byte limit")
        return True

    async def _apply(self, intents: list) -> None:
        session = self.session
        upstream, provider = session.upstream, session.provider
        for intent in intents:
            kind = type(intent)
            if kind is SendAudio:
                self._audio_read += len(intent.pcm)
                pcm = self.resample_in.process(intent.pcm)
                if pcm:
                    self._joined.append(pcm)
                    self._joined_bytes += len(pcm)
                continue
            if self._joined:  # audio goes before whatever comes after it
                await self._send_joined()
            if kind is Reply:
                await session.put(TextMessage(intent.message))
            elif kind is Invalid:
                session.metrics.client_invalid.inc()
                await session.put(TextMessage(intent.answer))
            elif provider is None:
                continue  # no provider on this server: the session is ending
            elif kind is FlushAudio:
                tail = self.resample_in.flush(renew=False)  # the commit goes up without waiting for a new filter
                if tail:
                    await upstream.send(provider.audio(tail))
            elif kind is Respond:
                if intent.commit:
                    await session.toward_client.speech_stopped()  # a commit ends speech under way
                asked = provider.commit() if intent.commit else provider.respond()
                if asked:  # a codec may hold a commit back (Gemini, while a tool call waits)
                    session.expect_reply()
                await upstream.send(asked)
            elif kind is SendText:
                if intent.respond:
                    session.expect_reply()
                    await session.put_all(session.client.frame(Transcript("user", intent.text, True)))
                await upstream.send(provider.text(intent.text, intent.respond))
            elif kind is Configure:
                await self._configure(intent)
            elif kind is Cancel:
                await session.cancel_reply()
            elif kind is ToolOutput:
                session.expect_reply()
                await upstream.send(provider.tool_result(intent.call_id, intent.output))
            elif kind is Forward:
                if intent.reply_due:
                    session.expect_reply()
                await upstream.send([intent.message])

    async def _configure(self, intent: Configure) -> None:
        """Apply a client's new session: what the provider codec sends, or a new upstream
        connection whose setup carries it; then the client hears the session in effect."""
        session = self.session
        done = session.provider.configure(intent.params)
        if done.redo:
            session.toward_client.redo()
        else:
            await session.upstream.send(done.messages)
        answer = session.client.configured(session.provider.params, done.refused)
        session.toward_client.tools_changed()  # after configured(): the client codec's tools are the new ones
        await session.put_all(answer)

    async def _send_joined(self) -> None:
        joined = self._joined
        pcm = b"".join(joined) if len(joined) > 1 else joined[0]
        joined.clear()
        self._joined_bytes = 0
        if self.session.provider is not None:
            await self.session.upstream.send(self.session.provider.audio(pcm))
