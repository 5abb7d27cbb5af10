"""The Python SDK: mint sessions from a backend, and talk to ``/v1/realtime``.

One call mints and connects (the published ``speko.realtime.connect()``)::

    async with Speko() as speko:          # SPEKO_URL (default http://127.0.0.1:8000), SPEKO_KEY
        async with speko.realtime.connect(provider="openai", model="gpt-realtime",
                                          input_sample_rate=16000) as session:
            await session.send_audio(pcm16)           # bytes: PCM16 LE mono at the input rate
            await session.commit()
            async for frame in session:   # Audio | Transcript | ToolCall | Usage | Error | Close
                ...

A backend that hands the token to a browser mints only: ``await speko.create_session(...)``
returns a :class:`Session` (the mint answer). Anything holding a mint answer, as a
:class:`Session` or as the JSON dict, connects with ``connect(answer)``.

Frames are the typed Structs of :mod:`speko_bridge.frames`, with the browser SDK's names
and meanings: audio arrives as ``Audio(pcm=bytes, sample_rate=...)``. ``on(handler)``
receives every frame and ``on("transcript", handler)`` one type (plain or ``async``); both
return a function that unsubscribes. Every way a socket ends reaches ``close`` handlers
once, as a ``Close`` frame (one the bridge sent, or one the SDK makes when the connection
dropped without it: 1006). Iteration ends after the ``close`` frame. ``close(code, reason)``
may be called any number of times and returns once the close handshake is done.

With ``connect(answer, reconnect=True)`` (or a :class:`Reconnect` policy, and optionally
``get_session=``, the app's own mint), a connection that drops without a close frame is
resumed with the same token within the bridge's grace window; handlers see ``reconnecting``,
``resumed`` (or ``restarted`` on a fresh session) and one final ``close``; audio sent while
disconnected is dropped (``client_reconnect.py`` says which ends are retried and how).

Every failure raises :class:`SpekoError` (``status``, ``code``, ``message``): an HTTP error
carries the server's answer; a request refused before it is sent carries the status the
server would have given (422 ``invalid_request``); a socket the bridge refuses (bad, used,
expired or revoked token, origin, limits) carries its error code and ``close_code``, with
``status`` 0 (no HTTP answer was involved); ``timeout`` when the bridge does not answer
within ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec

from .client_reconnect import Reconnect, Reconnecting, Restarted, reconnect_after
from .codes import ApiErrorCode, CloseCode
from .frames import Audio, Close, Error, RealtimeFrame, Resumed, decode_frame
from .params import SessionParams, ToolSpec, TurnDetection
from .wire import SessionCreated, SessionView, validation_message

log = logging.getLogger("speko_bridge.client")

__all__ = ["RealtimeConnection", "Reconnect", "Reconnecting", "Restarted", "Resumed", "Session", "Speko",
           "SpekoClient", "SpekoError", "connect"]

#: Where :class:`SpekoClient` looks when no URL or key is passed (``make run`` prints the key).
URL_ENV, KEY_ENV = "SPEKO_URL", "SPEKO_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"
#: The bridge refuses a socket (bad, used, expired or revoked token, origin, limits) right
#: after the handshake with an ``error`` frame and a close, and accepts one with nothing: a
#: socket open this long without a refusal is accepted. It covers the server's token check
#: (a store round trip, well under 10 ms), not the network.
CONFIRM_SECONDS = 0.25
#: What a client frame's type is called in ``on()`` (the browser SDK's names).
_HTTP_UNPROCESSABLE = 422

#: Frames kept for ``async for`` when nobody iterates (callbacks only): the newest win.
ITER_BUFFER_FRAMES = 4096

_FRAME_TYPES = frozenset({"audio", "transcript", "tool_call", "usage", "error", "close", "resumed",
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
        return _session(created)


def _session(created: SessionCreated) -> Session:
    return Session(session_id=created.session_id, token=created.token, url=created.url,
                   expires_at=created.expires_at, ttl_seconds=created.ttl_seconds,
                   provider=created.provider, model=created.model,
                   input_sample_rate=created.input_sample_rate,
                   output_sample_rate=created.output_sample_rate,
                   turn_detection=msgspec.to_builtins(created.turn_detection))


class SpekoClient:
    """REST client for backends: mint, read and revoke sessions; ``realtime.connect()``
    mints and connects in one call. ``base_url`` and ``api_key`` default to the
    ``SPEKO_URL`` (else ``http://127.0.0.1:8000``) and ``SPEKO_KEY`` environment variables."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 10.0,
                 http: aiohttp.ClientSession | None = None) -> None:
        base_url = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
        api_key = api_key or os.environ.get(KEY_ENV)
        if not api_key:
            raise SpekoError(0, ApiErrorCode.INVALID_API_KEY, f"no API key: pass api_key or set {KEY_ENV}")
        self.base_url = base_url.rstrip("/")
        self.realtime = _Realtime(self)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http = http
        self._owns_http = http is None

    async def __aenter__(self) -> SpekoClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"SpekoClient({self.base_url!r}, api_key=<hidden>)"

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
        self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_http = True
        return self._http

    async def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        async with self._session().request(method, self.base_url + path, data=body, headers=headers) as r:
            data = await r.read()
            if r.status >= 400:
                raise _error(r.status, data)
            return data

    async def create_session(self, params: SessionParams | None = None, *, provider: str | None = None,
                             model: str | None = None, voice: str | None = None,
                             system_prompt: str | None = None, temperature: float | None = None,
                             input_sample_rate: int = 24000, output_sample_rate: int = 24000,
                             tools: list[ToolSpec | dict] | None = None, metadata: dict | None = None,
                             ttl_seconds: int | None = None,
                             turn_detection: TurnDetection | dict | None = None) -> Session:
        """Mint a session. Pass a :class:`SessionParams`, or its fields as keywords
        (snake_case); they are checked here before anything is sent."""
        if params is None:
            fields = {"provider": provider, "model": model, "voice": voice, "systemPrompt": system_prompt,
                      "temperature": temperature, "inputSampleRate": input_sample_rate,
                      "outputSampleRate": output_sample_rate, "metadata": metadata, "ttlSeconds": ttl_seconds,
                      "tools": [msgspec.to_builtins(t) for t in tools] if tools is not None else None,
                      "turnDetection": msgspec.to_builtins(turn_detection) if turn_detection is not None else None}
            try:
                params = msgspec.convert({k: v for k, v in fields.items() if v is not None}, SessionParams)
            except msgspec.ValidationError as exc:  # what the server would answer
                raise SpekoError(_HTTP_UNPROCESSABLE, ApiErrorCode.INVALID_REQUEST, validation_message(exc)) from None
        data = await self._request("POST", "/v1/sessions", msgspec.json.encode(params))
        return _session(msgspec.json.decode(data, type=SessionCreated))

    async def get_session(self, session_id: str) -> SessionView:
        data = await self._request("GET", f"/v1/sessions/{session_id}")
        return msgspec.json.decode(data, type=SessionView)

    async def revoke_session(self, session_id: str) -> SessionView:
        """Revoke: an unused token stops working, a live socket closes with 4004."""
        data = await self._request("DELETE", f"/v1/sessions/{session_id}")
        return msgspec.json.decode(data, type=SessionView)

    def connect(self, session: Session | dict, **kwargs) -> RealtimeConnection:
        return connect(session, **kwargs)


#: The published name: ``Speko().realtime.connect(provider=..., model=...)``.
Speko = SpekoClient


class _Realtime:
    """``speko.realtime``: mint and connect in one call."""

    def __init__(self, client: SpekoClient) -> None:
        self._client = client

    def connect(self, *, origin: str | None = None, connect_timeout: float = 10.0,
                **params: Any) -> RealtimeConnection:
        """Mint a session with ``params`` (the keywords of :meth:`SpekoClient.create_session`)
        and open it, on ``async with`` entry; the connection's ``session`` is the mint answer."""
        conn = RealtimeConnection(None, None, origin=origin, connect_timeout=connect_timeout)
        conn._mint = lambda: self._client.create_session(**params)
        return conn


def connect(answer: Session | dict | str, token: str | None = None, *, output_sample_rate: int | None = None,
            **kwargs) -> RealtimeConnection:
    """Open a session minted elsewhere (use as ``async with``): ``connect(answer)`` with the
    mint answer as it is (a :class:`Session` or the JSON dict), or ``connect(url, token)``."""
    if isinstance(answer, dict):
        answer = Session.from_answer(answer)
    if isinstance(answer, Session):
        conn = RealtimeConnection(answer.url, answer.token,
                                  output_sample_rate=output_sample_rate or answer.output_sample_rate, **kwargs)
        conn.session = answer
        return conn
    if token is None:
        raise TypeError("connect(answer) or connect(url, token)")
    return RealtimeConnection(answer, token, output_sample_rate=output_sample_rate or 24000, **kwargs)


def _error(status: int, data: bytes) -> SpekoError:
    try:
        err = json.loads(data)["error"]
        return SpekoError(status, str(err["code"]), str(err["message"]))
    except (ValueError, KeyError, TypeError):
        return SpekoError(status, ApiErrorCode.HTTP_ERROR, data[:200].decode(errors="replace"))


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
        self._handlers: dict[str, list[Callable[[RealtimeFrame], Any]]] = collections.defaultdict(list)
        self._frames: collections.deque[RealtimeFrame] = collections.deque(maxlen=ITER_BUFFER_FRAMES)
        self._wakeup = asyncio.Event()
        self._ended = False
        self._closing: asyncio.Task | None = None
        self._first = asyncio.Event()  # the first frame, or the end
        self._close_seen = False
        self._sent_close: tuple[int, str] | None = None

    def __repr__(self) -> str:
        state = "closed" if self._ended else "open" if self._ws is not None else "new"
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
                await self._first.wait()
        first = self._frames[0] if self._frames else None
        if isinstance(first, Error) or (self._ended and first is None):
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
        if handler is None and callable(frame_type):
            frame_type, handler = "*", frame_type
        if frame_type not in _FRAME_TYPES:
            raise ValueError(f"unknown frame type {frame_type!r}; one of {sorted(_FRAME_TYPES)}")
        self._handlers[frame_type].append(handler)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._handlers[frame_type].remove(handler)

        return unsubscribe

    def __aiter__(self) -> AsyncIterator[RealtimeFrame]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RealtimeFrame]:
        while True:
            while self._frames:
                frame = self._frames.popleft()
                yield frame
                if isinstance(frame, Close):
                    return
            if self._ended:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

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
        self._frames.append(frame)
        self._wakeup.set()
        self._first.set()
        kind = frame.type if isinstance(frame, Audio) else _type_of(frame)
        for handler in (*self._handlers.get(kind, ()), *self._handlers.get("*", ())):
            try:
                result = handler(frame)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a user's handler must not kill the session
                log.exception("frame handler %r failed", handler)

    def _end(self) -> None:
        self._ended = True
        self._wakeup.set()
        self._first.set()


def _type_of(frame: RealtimeFrame) -> str:
    return type(frame).__struct_config__.tag
