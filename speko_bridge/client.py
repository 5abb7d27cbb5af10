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

This module is the minting side (:class:`SpekoClient`, ``connect()``); the connection,
:class:`RealtimeConnection` with :class:`Session` and :class:`SpekoError`, lives in
``client_connection.py`` and is re-exported here, so an app imports the SDK from here alone.
"""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp
import msgspec

from .client_connection import (  # noqa: F401 (re-exported)
    _HTTP_UNPROCESSABLE,
    CONFIRM_SECONDS,
    ITER_BUFFER_FRAMES,
    RealtimeConnection,
    Session,
    SpekoError,
    log,
    session_from,
)
from .client_reconnect import Reconnect, Reconnecting, Restarted
from .codes import ApiErrorCode
from .frames import Resumed
from .params import SessionParams, ToolSpec, TurnDetection
from .wire import SessionCreated, SessionView, validation_message

__all__ = ["RealtimeConnection", "Reconnect", "Reconnecting", "Restarted", "Resumed", "Session", "Speko",
           "SpekoClient", "SpekoError", "connect"]

#: Where :class:`SpekoClient` looks when no URL or key is passed (``make run`` prints the key).
URL_ENV, KEY_ENV = "SPEKO_URL", "SPEKO_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"


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
        return session_from(msgspec.json.decode(data, type=SessionCreated))

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
