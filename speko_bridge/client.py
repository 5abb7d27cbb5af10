"""The Python SDK: mint sessions from a backend, and talk to ``/v1/realtime``.

Minting (a backend service holding an API key)::

    async with SpekoClient("https://voice.example.com", api_key) as speko:
        session = await speko.create_session(provider="openai", model="gpt-realtime",
                                             input_sample_rate=16000)
        # hand session.url and session.token to the browser, or talk yourself:
        async with speko.connect(session) as rt:
            await rt.send_audio(pcm16)
            await rt.commit()
            async for frame in rt:          # Audio | Transcript | ToolCall | Usage | Error | Close
                ...

Realtime without the API key (what a browser-side Python program would do)::

    async with connect(url, token, output_sample_rate=16000) as rt: ...

Frames are the typed Structs of :mod:`speko_bridge.frames`; audio arrives as
``Audio(pcm=bytes, sample_rate=...)``. ``rt.on("transcript", handler)`` registers a
callback (plain or ``async``) and returns a function that unregisters it; ``"*"`` receives
every frame. Iteration ends after the ``close`` frame. ``close()`` may be called any
number of times and returns once the close handshake is done; ``close_code`` and
``close_reason`` tell how the session ended.

Every HTTP error raises :class:`SpekoError` carrying ``status``, ``code`` and ``message``
from the ``{"error": {...}}`` body.
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

from .codes import ApiErrorCode, CloseCode
from .frames import Audio, Close, RealtimeFrame, decode_frame
from .params import SessionParams, ToolSpec
from .wire import SessionCreated, SessionView

log = logging.getLogger("speko_bridge.client")

__all__ = ["RealtimeConnection", "Session", "SpekoClient", "SpekoError", "connect"]

#: Frames kept for ``async for`` when nobody iterates (callbacks only): the newest win.
ITER_BUFFER_FRAMES = 4096

_FRAME_TYPES = frozenset({"audio", "transcript", "tool_call", "usage", "error", "close", "*"})


class SpekoError(Exception):
    """An error answer from the bridge's REST API (or a socket that could not open)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Session(msgspec.Struct, kw_only=True):
    """A minted session: hand ``url`` and ``token`` to the client that will connect."""

    session_id: str
    token: str
    url: str
    expires_at: str
    ttl_seconds: int
    input_sample_rate: int = 24000
    output_sample_rate: int = 24000


class SpekoClient:
    """REST client for backends: mint, read and revoke sessions."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0,
                 http: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http = http
        self._owns_http = http is None

    async def __aenter__(self) -> SpekoClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

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
                             ttl_seconds: int | None = None) -> Session:
        """Mint a session. Pass a :class:`SessionParams`, or its fields as keywords
        (snake_case); they are checked here before anything is sent."""
        if params is None:
            fields = {"provider": provider, "model": model, "voice": voice, "systemPrompt": system_prompt,
                      "temperature": temperature, "inputSampleRate": input_sample_rate,
                      "outputSampleRate": output_sample_rate, "metadata": metadata, "ttlSeconds": ttl_seconds,
                      "tools": [msgspec.to_builtins(t) for t in tools] if tools is not None else None}
            try:
                params = msgspec.convert({k: v for k, v in fields.items() if v is not None}, SessionParams)
            except msgspec.ValidationError as exc:
                raise SpekoError(0, ApiErrorCode.INVALID_REQUEST, str(exc)) from None
        data = await self._request("POST", "/v1/sessions", msgspec.json.encode(params))
        created = msgspec.json.decode(data, type=SessionCreated)
        return Session(session_id=created.session_id, token=created.token, url=created.url,
                       expires_at=created.expires_at, ttl_seconds=created.ttl_seconds,
                       input_sample_rate=params.input_sample_rate,
                       output_sample_rate=params.output_sample_rate)

    async def get_session(self, session_id: str) -> SessionView:
        data = await self._request("GET", f"/v1/sessions/{session_id}")
        return msgspec.json.decode(data, type=SessionView)

    async def revoke_session(self, session_id: str) -> SessionView:
        """Revoke: an unused token stops working, a live socket closes with 4004."""
        data = await self._request("DELETE", f"/v1/sessions/{session_id}")
        return msgspec.json.decode(data, type=SessionView)

    def connect(self, session: Session, **kwargs) -> RealtimeConnection:
        return RealtimeConnection(session.url, session.token,
                                  output_sample_rate=session.output_sample_rate, **kwargs)


def connect(url: str, token: str, *, output_sample_rate: int = 24000, **kwargs) -> RealtimeConnection:
    """Open ``/v1/realtime`` with a token minted elsewhere (use as ``async with``)."""
    return RealtimeConnection(url, token, output_sample_rate=output_sample_rate, **kwargs)


def _error(status: int, data: bytes) -> SpekoError:
    try:
        err = json.loads(data)["error"]
        return SpekoError(status, str(err["code"]), str(err["message"]))
    except (ValueError, KeyError, TypeError):
        return SpekoError(status, ApiErrorCode.HTTP_ERROR, data[:200].decode(errors="replace"))


class RealtimeConnection:
    """One live session. Use as ``async with``; it connects on entry and closes on exit."""

    def __init__(self, url: str, token: str, *, output_sample_rate: int = 24000,
                 origin: str | None = None, connect_timeout: float = 10.0) -> None:
        self.url = url
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

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> RealtimeConnection:
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self) -> None:
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._http.ws_connect(
                self.url, protocols=[self._token], origin=self._origin,
                timeout=aiohttp.ClientWSTimeout(ws_close=self._connect_timeout),
                max_msg_size=4 * 1024 * 1024)
        except aiohttp.WSServerHandshakeError as exc:
            await self._http.close()
            raise SpekoError(exc.status, "handshake_failed", exc.message) from None
        except (aiohttp.ClientError, OSError) as exc:
            await self._http.close()
            raise SpekoError(0, "connection_failed", f"{type(exc).__name__}: {exc}") from None
        self._reader = asyncio.create_task(self._read())

    async def close(self, code: int = CloseCode.NORMAL) -> None:
        """Close (idempotent); returns after the close handshake and the last frame."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(code))
        await asyncio.shield(self._closing)

    async def _close(self, code: int) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close(code=code)
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
        """PCM16 LE mono at the session's ``inputSampleRate``; any chunk size."""
        await self._socket().send_bytes(bytes(pcm))

    async def commit(self) -> None:
        await self._socket().send_str('{"type":"commit"}')

    async def interrupt(self) -> None:
        await self._socket().send_str('{"type":"interrupt"}')

    async def send_tool_result(self, call_id: str, output: str | dict | list) -> None:
        """``output`` as text, or any JSON value (sent as JSON text)."""
        text = output if isinstance(output, str) else json.dumps(output)
        await self._socket().send_str(json.dumps({"type": "tool_result", "callId": call_id, "output": text}))

    def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None or self._ws.closed:
            raise SpekoError(0, "not_connected", "the session is not open")
        return self._ws

    # ------------------------------------------------------------------ receiving

    def on(self, frame_type: str, handler: Callable[[RealtimeFrame], Any]) -> Callable[[], None]:
        """Call ``handler(frame)`` for each frame of ``frame_type`` (``"*"``: all).
        Returns a function that unregisters it."""
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
        ws = self._ws
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
                    self.close_code, self.close_reason = frame.code, frame.reason
                await self._dispatch(frame)
        if self.close_code is None:
            self.close_code = ws.close_code
            if not self.close_reason and ws.close_code is not None:
                self.close_reason = "connection closed without a close frame"
        self._end()

    async def _dispatch(self, frame: RealtimeFrame) -> None:
        self._frames.append(frame)
        self._wakeup.set()
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


def _type_of(frame: RealtimeFrame) -> str:
    return type(frame).__struct_config__.tag
