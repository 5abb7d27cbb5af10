"""The Python SDK's connection to ``/v1/realtime``: :class:`RealtimeConnection`.

``speko_bridge.client`` (the part a backend uses to mint) re-exports everything here, so an
app imports the SDK from one place; the connection lives apart because it is the part with
a lifecycle: open (mint, socket, the bridge's accept or refusal within
:data:`CONFIRM_SECONDS`), send, read (one reader task per socket, frames to the app's
handlers and to its ``async for`` through an :class:`Inbox`), reconnect
(``client_reconnect.py``) and close (idempotent, one final ``close`` frame however the socket
ended). Importing it loads no server code (``tests/test_imports.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec

from .client_reconnect import Reconnect, reconnect_after
from .codes import ApiErrorCode, CloseCode
from .frames import Audio, Close, Error, RealtimeFrame, decode_frame
from .wire import SessionCreated

log = logging.getLogger("speko_bridge.client")

#: The bridge refuses a socket (bad, used, expired or revoked token, origin, limits) right
#: after the handshake with an ``error`` frame and a close, and accepts one with nothing: a
#: socket open this long without a refusal is accepted. It covers the server's token check
#: (a store round trip, well under 10 ms), not the network.
CONFIRM_SECONDS = 0.25
_HTTP_UNPROCESSABLE = 422

#: Frames kept for ``async for`` when nobody iterates (callbacks only): the newest win.
ITER_BUFFER_FRAMES = 4096

#: What a client frame's type is called in ``on()`` (the browser SDK's names).
FRAME_TYPES = frozenset({"audio", "transcript", "tool_call", "usage", "error", "close", "resumed",
                         "reconnecting", "restarted", "*"})


class SpekoError(Exception):
    """An error answer from the bridge's REST API, or a socket that could not open."""

    def __init__(self, status: int, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.close_code = close_code


class Session(msgspec.Struct, kw_only=True):
    """A minted session (the mint answer): hand it, or its JSON, to the client that connects.
    Its ``repr`` leaves the token out, so that logging a session leaks nothing."""

    session_id: str
    token: str
    url: str
    expires_at: str
    ttl_seconds: int
    provider: str | None = None
    model: str | None = None
    input_sample_rate: int = 24000
    output_sample_rate: int = 24000
    turn_detection: dict = msgspec.field(default_factory=lambda: {"type": "manual"})

    def __repr__(self) -> str:
        return (f"Session(session_id={self.session_id!r}, provider={self.provider!r}, model={self.model!r}, "
                f"url={self.url!r}, expires_at={self.expires_at!r}, token=<hidden>)")

    def to_answer(self) -> dict:
        """The mint answer as the bridge wrote it (camelCase), for a backend to pass on to the
        browser SDK's ``connect()``."""
        return {"sessionId": self.session_id, "token": self.token, "url": self.url,
                "expiresAt": self.expires_at, "ttlSeconds": self.ttl_seconds, "provider": self.provider,
                "model": self.model, "inputSampleRate": self.input_sample_rate,
                "outputSampleRate": self.output_sample_rate, "turnDetection": self.turn_detection}

    @classmethod
    def from_answer(cls, answer: dict) -> Session:
        """The 201 body of ``POST /v1/sessions`` (camelCase JSON, as a dict) as a Session."""
        try:
            created = msgspec.convert(answer, SessionCreated)
        except msgspec.ValidationError as exc:
            raise SpekoError(_HTTP_UNPROCESSABLE, ApiErrorCode.INVALID_REQUEST, f"not a mint answer: {exc}") from None
        return session_from(created)


def session_from(created: SessionCreated) -> Session:
    """The mint answer's wire type as the SDK's :class:`Session`."""
    return Session(session_id=created.session_id, token=created.token, url=created.url,
                   expires_at=created.expires_at, ttl_seconds=created.ttl_seconds,
                   provider=created.provider, model=created.model,
                   input_sample_rate=created.input_sample_rate,
                   output_sample_rate=created.output_sample_rate,
                   turn_detection=msgspec.to_builtins(created.turn_detection))


class Inbox:
    """The frames a connection received, as the app takes them: handlers registered with
    ``on()`` (each frame to its type's handlers, then to ``"*"``), and ``async for`` (a buffer
    of the newest :data:`ITER_BUFFER_FRAMES`, ended by the ``close`` frame)."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Callable[[RealtimeFrame], Any]]] = collections.defaultdict(list)
        self.frames: collections.deque[RealtimeFrame] = collections.deque(maxlen=ITER_BUFFER_FRAMES)
        self._wakeup = asyncio.Event()
        self.ended = False
        self.first = asyncio.Event()  # the first frame, or the end

    def subscribe(self, frame_type: str | Callable[[RealtimeFrame], Any],
                  handler: Callable[[RealtimeFrame], Any] | None = None) -> Callable[[], None]:
        if handler is None and callable(frame_type):
            frame_type, handler = "*", frame_type
        if frame_type not in FRAME_TYPES:
            raise ValueError(f"unknown frame type {frame_type!r}; one of {sorted(FRAME_TYPES)}")
        self.handlers[frame_type].append(handler)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self.handlers[frame_type].remove(handler)

        return unsubscribe

    async def until_close(self) -> AsyncIterator[RealtimeFrame]:
        while True:
            while self.frames:
                frame = self.frames.popleft()
                yield frame
                if isinstance(frame, Close):
                    return
            if self.ended:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def put(self, frame: RealtimeFrame) -> None:
        self.frames.append(frame)
        self._wakeup.set()
        self.first.set()
        kind = frame.type if isinstance(frame, Audio) else _type_of(frame)
        for handler in (*self.handlers.get(kind, ()), *self.handlers.get("*", ())):
            try:
                result = handler(frame)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a user's handler must not kill the session
                log.exception("frame handler %r failed", handler)

    def end(self) -> None:
        self.ended = True
        self._wakeup.set()
        self.first.set()


class RealtimeConnection:
    """One live session. Use as ``async with``; it connects on entry and closes on exit.
    ``session`` is the mint answer when there is one (``session_id``, ``expires_at``...)."""

    def __init__(self, url: str | None, token: str | None, *, output_sample_rate: int = 24000,
                 origin: str | None = None, connect_timeout: float = 10.0, timeout: float | None = None,
                 reconnect: bool | Reconnect = False, get_session=None) -> None:
        """``timeout``: the same as ``connect_timeout`` (Mastra's name). ``reconnect``: True
        for the default :class:`Reconnect` policy; ``get_session``: its fresh-session callback."""
        if reconnect is True or (reconnect is False and get_session is not None):
            reconnect = Reconnect()
        if isinstance(reconnect, Reconnect) and get_session is not None:
            reconnect.get_session = get_session
        self._policy: Reconnect | None = reconnect or None
        self._reconnecting = False
        self._accepted = False  # reconnection starts only once the bridge has accepted a socket
        self._stop_reconnect = asyncio.Event()  # close() while reconnecting
        #: Audio bytes dropped because they were sent while the connection was down.
        self.dropped_audio_bytes = 0
        if timeout is not None:
            connect_timeout = timeout
        self.url = url
        self.session: Session | None = None
        self._mint = None
        self.output_sample_rate = output_sample_rate
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._token = token
        self._origin = origin
        self._connect_timeout = connect_timeout
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._inbox = Inbox()
        self._closing: asyncio.Task | None = None
        self._close_seen = False
        self._sent_close: tuple[int, str] | None = None

    def __repr__(self) -> str:
        state = "closed" if self._inbox.ended else "open" if self._ws is not None else "new"
        return (f"RealtimeConnection(url={self.url!r}, session_id={self.session_id!r}, {state}"
                f"{'' if self.close_code is None else f', close_code={self.close_code}'}, token=<hidden>)")

    @staticmethod
    def _as_session(answer: Session | dict) -> Session:
        return Session.from_answer(answer) if isinstance(answer, dict) else answer

    @property
    def session_id(self) -> str | None:
        return self.session.session_id if self.session else None

    @property
    def expires_at(self) -> str | None:
        return self.session.expires_at if self.session else None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> RealtimeConnection:
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self) -> None:
        """Mint (``realtime.connect``), open the socket, and return once the bridge has
        accepted it; :class:`SpekoError` if it refuses, or nothing answers in time."""
        if self._mint is not None:
            self.session = await self._mint()
            self.url, self._token = self.session.url, self.session.token
            self.output_sample_rate = self.session.output_sample_rate
        self._http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._open()
        except TimeoutError:
            await self._abandon()
            raise SpekoError(0, "timeout", f"no session from {self.url} within {self._connect_timeout} s") from None
        except BaseException:
            await self._abandon()
            raise

    async def _open(self) -> None:
        try:
            self._ws = await self._http.ws_connect(
                self.url, protocols=[self._token], origin=self._origin,
                timeout=aiohttp.ClientWSTimeout(ws_close=self._connect_timeout),
                max_msg_size=4 * 1024 * 1024)
        except aiohttp.WSServerHandshakeError as exc:
            raise SpekoError(exc.status, "handshake_failed", exc.message) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SpekoError(0, "connection_failed", f"{type(exc).__name__}: {exc}") from None
        self._reader = asyncio.create_task(self._read())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONFIRM_SECONDS):
                await self._inbox.first.wait()
        first = self._inbox.frames[0] if self._inbox.frames else None
        if isinstance(first, Error) or (self._inbox.ended and first is None):
            await self._reader  # the close follows the refusal at once
            raise SpekoError(0, first.code if first else "connection_failed",
                             first.message if first else self.close_reason or "closed at once",
                             close_code=self.close_code)
        self._accepted = True

    async def _abandon(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._http is not None:
            await self._http.close()
        self._end()

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close (idempotent); returns after the close handshake and the last frame."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(code, reason))
        await asyncio.shield(self._closing)

    async def _close(self, code: int, reason: str) -> None:
        if self._reconnecting:  # no socket to close: stop trying, end with this code
            self._sent_close = (code, reason)
            self._stop_reconnect.set()
        elif self._ws is not None and not self._ws.closed:
            self._sent_close = (code, reason)
            await self._ws.close(code=code, message=reason.encode())
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._http is not None:
            await self._http.close()
        if self.close_code is None and self._ws is not None:
            self.close_code = self._ws.close_code
        self._end()

    # ------------------------------------------------------------------ sending

    async def send_audio(self, pcm: bytes) -> None:
        """PCM16 LE mono at the session's ``inputSampleRate``; any chunk size. Dropped (not
        queued) while reconnecting."""
        if self._reconnecting:
            self.dropped_audio_bytes += len(pcm)
            return
        await self._socket().send_bytes(bytes(pcm))

    async def commit(self) -> None:
        await self._socket().send_str('{"type":"commit"}')

    async def interrupt(self) -> None:
        await self._socket().send_str('{"type":"interrupt"}')

    async def send_text(self, text: str) -> None:
        """A typed user turn (protocol v2): echoed back as a final user transcript, answered."""
        await self._socket().send_str(json.dumps({"type": "text", "text": text}))

    async def send_tool_result(self, call_id: str, output: str | dict | list) -> None:
        """``output`` as text, or any JSON value (sent as JSON text)."""
        text = output if isinstance(output, str) else json.dumps(output)
        await self._socket().send_str(json.dumps({"type": "tool_result", "callId": call_id, "output": text}))

    def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None or self._ws.closed:
            raise SpekoError(0, "not_connected", "the session is not open")
        return self._ws

    # ------------------------------------------------------------------ receiving

    def on(self, frame_type: str | Callable[[RealtimeFrame], Any],
           handler: Callable[[RealtimeFrame], Any] | None = None) -> Callable[[], None]:
        """``on(handler)``: every frame; ``on(frame_type, handler)``: frames of that type
        (``"*"``: all). Returns a function that unregisters it."""
        return self._inbox.subscribe(frame_type, handler)

    def __aiter__(self) -> AsyncIterator[RealtimeFrame]:
        return self._inbox.until_close()

    async def _read(self) -> None:
        while True:
            ws = self._ws
            close = await self._pump(ws)
            if self._sent_close is not None:  # our own close
                final = Close(*self._sent_close)
                break
            code = close.code if close is not None else (ws.close_code or CloseCode.ABNORMAL)
            if close is None and ws.close_code in (None, 1005, 1006):
                code = CloseCode.ABNORMAL  # no close frame: the connection dropped
            if (self._policy is None or not self._accepted
                    or not await reconnect_after(self, self._policy, code)):
                final = (Close(*self._sent_close) if self._sent_close is not None
                         else close or Close(code, "connection closed without a close frame"))
                break
        self.close_code, self.close_reason = final.code, final.reason
        self._close_seen = True
        await self._dispatch(final)  # "close" handlers hear every end once
        self._end()

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse) -> Close | None:
        """Dispatch one socket's frames until it ends; its ``close`` frame (kept back: a
        reconnect may follow), or None when it ended without one."""
        close = None
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                await self._dispatch(Audio(msg.data, self.output_sample_rate))
            elif msg.type is aiohttp.WSMsgType.TEXT:
                try:
                    frame = decode_frame(msg.data)
                except msgspec.DecodeError:
                    log.warning("ignoring a frame this SDK does not know: %.200s", msg.data)
                    continue
                if isinstance(frame, Close):
                    close = frame
                    continue
                await self._dispatch(frame)
        return close

    async def _dispatch(self, frame: RealtimeFrame) -> None:
        await self._inbox.put(frame)

    def _end(self) -> None:
        self._inbox.end()


def _type_of(frame: RealtimeFrame) -> str:
    return type(frame).__struct_config__.tag
