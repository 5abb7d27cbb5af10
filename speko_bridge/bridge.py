"""The session runner: ``/v1/realtime`` from handshake to the last record write.

One :class:`BridgeSession` per socket, three tasks around one codec::

    client reader  : client WS -> ClientMessage / PCM -> Resampler(in) -> codec -> upstream WS
    upstream reader: upstream WS -> codec.receive -> frames / AudioOut -> Resampler(out) -> outbox
    client writer  : outbox (bounded) -> client WS

Every way a session ends goes through :meth:`BridgeSession.end`, first caller wins; the
runner then sends the ``error`` (if any) and the ``close`` frame, closes the socket with
the same code, closes upstream and writes the record. Nothing else closes anything.

Bounds (memory per session stays fixed whatever the peers do):
- the outbox holds at most ``OUTBOX_MAX`` messages; when the client reads too slowly the
  upstream reader waits, and TCP pushes back on the provider;
- client audio that arrives before the provider is ready is held up to
  ``HELD_AUDIO_MAX_BYTES``; past that the client reader waits for the provider;
- one client message is at most ``MAX_CLIENT_MESSAGE_BYTES`` (else 4009);
- audio already waiting when a pump gets to it (client messages uvicorn has queued, or
  assistant chunks in the outbox) goes on joined, up to ``COALESCE_MAX_BYTES``: a bridge
  that fell behind spends less per second of audio and catches up;
- a client that leaves the outbox full for ``SPEKO_CLIENT_SEND_TIMEOUT`` (it stopped
  reading) is closed with 4009; the close handshake gets ``CLIENT_CLOSE_TIMEOUT``, then
  the TCP connection is aborted.

Faults of the provider, each ending the session with a mapped code (never a hang):
- no message for ``SPEKO_UPSTREAM_READ_TIMEOUT`` while a reply is due (from a ``commit``
  or ``tool_result`` until that reply's usage) -> 4500 ``provider_unavailable``;
- ``MALFORMED_RUN_MAX`` unreadable messages in a row -> 4500 ``provider_error`` (single
  ones are skipped and counted);
- a message over ``UPSTREAM_MAX_MESSAGE_BYTES``, a dropped connection -> 4500.

The session record is written when the session ends; if the store is unavailable the
write is retried for ``SPEKO_RECORD_RETRY_SECONDS`` and a write that never lands is logged
and counted (``speko_record_writes_failed_total{outcome="lost"}``), never silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import aiohttp
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .audio import Resampler
from .frames import (
    Close,
    CloseCode,
    Commit,
    Error,
    ErrorCode,
    Interrupt,
    InvalidMessage,
    ToolCall,
    ToolResult,
    Transcript,
    Usage,
    decode_client_message,
    encode_frame,
)
from .providers import get_provider
from .providers.base import AudioDone, AudioOut, ClearAudio, Fatal, Outbound, Ready, Reconnect
from .store import ConsumeOutcome, SessionRecord, StoreUnavailable, UsageTotals
from .tokens import TokenError, verify_token

log = logging.getLogger("speko_bridge.bridge")

#: Largest client message. 256 KiB is over 5 s of 24 kHz PCM16 in one chunk: far more than
#: any sane client sends (browsers send 20-100 ms), small enough to bound a burst.
MAX_CLIENT_MESSAGE_BYTES = 256 * 1024
#: Outbox depth. Providers send ~50-100 ms of audio per delta, so 256 messages is tens of
#: seconds of audio: a client that is this far behind is not listening any more.
OUTBOX_MAX = 256
#: Client audio held while the provider session is being set up: 10 s of 24 kHz PCM16
#: (as base64 JSON, ~4/3 of that). A normal setup takes well under a second.
HELD_AUDIO_MAX_BYTES = 10 * 48_000 * 4 // 3
#: How long to wait for the provider's close handshake when we end a session.
UPSTREAM_CLOSE_TIMEOUT = 2.0
#: Largest upstream message accepted (OpenAI allows 15 MiB appends; replies are smaller).
UPSTREAM_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

#: How long the close handshake with the client may take before the connection is aborted.
CLIENT_CLOSE_TIMEOUT = 2.0
#: Unreadable upstream messages in a row after which the provider is deemed unusable.
MALFORMED_RUN_MAX = 32

#: Largest audio message made by joining queued chunks (client writer: assistant audio;
#: client reader: user audio going upstream): 32 KiB is 0.68 s of 24 kHz PCM16.
COALESCE_MAX_BYTES = 32 * 1024

#: Interrupted item ids remembered to mute their late deltas; only recent ones matter.
MUTED_ITEMS_MAX = 64


class SessionRegistry:
    """The sessions live in this process, by id: revocation and drain reach them here."""

    def __init__(self) -> None:
        self._live: dict[str, BridgeSession] = {}

    def __len__(self) -> int:
        return len(self._live)

    def sessions(self) -> list[BridgeSession]:
        return list(self._live.values())

    def add(self, session: BridgeSession) -> None:
        self._live[session.session_id] = session

    def remove(self, session: BridgeSession) -> None:
        if self._live.get(session.session_id) is session:
            del self._live[session.session_id]

    def revoke(self, session_id: str) -> bool:
        session = self._live.get(session_id)
        if session is None:
            return False
        session.end(CloseCode.REVOKED, ErrorCode.SESSION_REVOKED, "session revoked")
        return True

    def close_all(self, code: int, error_code: str | None, message: str) -> None:
        for session in list(self._live.values()):
            session.end(code, error_code, message)

    async def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._live and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self._live


async def _refuse(ws: WebSocket, code: int, error_code: str, message: str) -> None:
    """Answer a socket that may not start a session: error frame, close frame, close."""
    ws.app.state.metrics.sockets_refused.labels(str(int(code))).inc()
    try:
        await ws.send_text(encode_frame(Error(error_code, message)))
        await ws.send_text(encode_frame(Close(code, message)))
        await ws.close(code, message[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away first; nothing left to tell it


_CONSUME_ERRORS = {
    ConsumeOutcome.NOT_FOUND: (ErrorCode.INVALID_TOKEN, "token does not match any session"),
    ConsumeOutcome.USED: (ErrorCode.TOKEN_USED, "token already used"),
    ConsumeOutcome.EXPIRED: (ErrorCode.TOKEN_EXPIRED, "token expired"),
    ConsumeOutcome.REVOKED: (ErrorCode.SESSION_REVOKED, "session revoked"),
}


async def realtime_endpoint(ws: WebSocket) -> None:
    """``GET /v1/realtime``: authenticate the socket, then run its session."""
    offered = ws.scope.get("subprotocols") or []
    token = offered[0] if offered else None
    # Select the first offered subprotocol even when it turns out to be a bad token: a
    # browser fails a handshake that offered subprotocols and got none back, and would
    # see only 1006 instead of our error frame.
    await ws.accept(subprotocol=token)
    await serve_socket(ws, token, BridgeSession, _refuse,
                       "no token: offer it as the first WebSocket subprotocol")


async def serve_socket(ws: WebSocket, token: str | None, session_cls, refuse, no_token: str) -> None:
    """Everything between an accepted socket and its session: origin, drain, token, limits,
    single-use consume; then run ``session_cls``. ``refuse(ws, close_code, error_code,
    message)`` answers a socket that may not start (in the protocol of its endpoint)."""
    state = ws.app.state
    settings = state.settings
    if settings.allowed_origins is not None:
        origin = ws.headers.get("origin")
        if origin not in settings.allowed_origins:
            await refuse(ws, CloseCode.ORIGIN_NOT_ALLOWED, ErrorCode.ORIGIN_NOT_ALLOWED,
                          f"origin {origin!r} not allowed")
            return
    if state.draining:
        await refuse(ws, CloseCode.GOING_AWAY, ErrorCode.INTERNAL_ERROR, "server is shutting down")
        return
    if token is None:
        await refuse(ws, CloseCode.BAD_TOKEN, ErrorCode.INVALID_TOKEN, no_token)
        return
    try:
        claims = verify_token(settings.signing, token, issuer=settings.issuer,
                              audience=settings.audience, now=time.time())
    except TokenError as exc:
        await refuse(ws, CloseCode.BAD_TOKEN, exc.code, exc.message)
        return
    if len(state.registry) >= settings.max_sessions:
        await refuse(ws, CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED,
                      "this server is at its session limit; retry shortly")
        return
    store = state.store
    slot_owner = None
    try:
        if settings.max_sessions_per_key:
            # The slot is taken before the token is consumed, so a refusal leaves the token
            # usable for a retry once another session of the same key has ended.
            pending = await store.get(claims.session_id)
            if pending is not None:
                if not await store.acquire_slot(pending.owner, claims.session_id,
                                                settings.max_sessions_per_key, time.time()):
                    await refuse(ws, CloseCode.RATE_LIMITED, ErrorCode.RATE_LIMITED,
                                  "this API key is at its concurrent session limit; retry shortly")
                    return
                slot_owner = pending.owner
        result = await store.consume(claims.session_id, claims.jti, time.time())
    except StoreUnavailable as exc:
        log.warning("socket refused, store unavailable: %s", exc)
        await _release(store, slot_owner, claims.session_id)
        await refuse(ws, CloseCode.INTERNAL_ERROR, ErrorCode.INTERNAL_ERROR, "session store unavailable")
        return
    if result.outcome is not ConsumeOutcome.OK:
        await _release(store, slot_owner, claims.session_id)
        code, message = _CONSUME_ERRORS[result.outcome]
        await refuse(ws, CloseCode.BAD_TOKEN, code, message)
        return
    try:
        await session_cls(ws, result.record, state).run()
    finally:
        await _release(store, slot_owner, claims.session_id)


async def _release(store, owner: str | None, session_id: str) -> None:
    if owner is None:
        return
    try:
        await store.release_slot(owner, session_id)
    except StoreUnavailable as exc:  # the lease runs out by itself (SLOT_LEASE_SECONDS)
        log.warning("session slot not released: %s", exc, extra={"session_id": session_id})


def utf8_len(text: str) -> int:
    """Size of a text message on the wire (the limit is in bytes, not characters)."""
    return len(text) if text.isascii() else len(text.encode())


def _queued_messages(ws: WebSocket):
    """A callable: how many client messages the server has read and queued for the app.
    uvicorn's WebSocket protocols keep them in an ``asyncio.Queue`` on the protocol, whose
    bound method the ASGI receive callable is; behind any other server this says 0 and
    every client message goes upstream on its own."""
    queue = getattr(getattr(ws._receive, "__self__", None), "queue", None)
    if isinstance(queue, asyncio.Queue):
        return queue.qsize
    return lambda: 0


def _writable(ws: WebSocket):
    """A coroutine function that returns once the client's socket takes writes without
    waiting. uvicorn's WebSocket protocols hold an ``asyncio.Event`` ``writable`` (clear
    while the transport's buffer is over its high-water mark) on the protocol whose bound
    method the ASGI receive callable is (the send callable reaches us wrapped by
    Starlette's exception middleware); behind any other server there is nothing to wait on."""
    event = getattr(getattr(ws._receive, "__self__", None), "writable", None)
    if isinstance(event, asyncio.Event):
        return event.wait
    return _no_wait


async def _no_wait() -> None:
    return None


def _abort_transport(ws: WebSocket) -> None:
    """Drop the client's TCP connection without a close handshake (it stopped reading, so
    the handshake cannot complete). The ASGI send callable of uvicorn's protocols is a
    bound method of the protocol, which holds the transport; behind any other server the
    connection is left to that server's keepalive timeout."""
    transport = getattr(getattr(ws._send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()


class BridgeSession:
    def __init__(self, ws: WebSocket, record: SessionRecord, state) -> None:
        self.ws = ws
        self.record = record
        self.session_id = record.session_id
        self.params = record.params
        self.state = state
        self.spec = get_provider(record.provider)
        self.codec = self.spec.codec(self.params) if self.spec else None
        in_rate = self.codec.input_rate if self.codec else self.params.input_sample_rate
        self.resample_in = Resampler(self.params.input_sample_rate, in_rate)
        self.resample_out: Resampler | None = None  # made on the first audio (rate from provider)
        self.outbox: asyncio.Queue = asyncio.Queue(OUTBOX_MAX)
        self.upstream: aiohttp.ClientWebSocketResponse | None = None
        self.ready = asyncio.Event()
        self.held: deque[Outbound] = deque()
        self.held_bytes = 0
        self.usage = UsageTotals()
        self.background: set[asyncio.Task] = set()  # usage writes, old upstream closes
        self.done = asyncio.Event()
        self.outcome: tuple[int, str | None, str] | None = None
        # interruption bookkeeping: what the client has actually been sent
        self.playing_item: str | None = None
        self.played_bytes = 0
        self.muted_items: set[str | None] = set()
        self.last_item: str | None = None
        self.drops = 0  # times _drop_audio ran
        self.out_rate = self.params.output_sample_rate
        self._upstream_reason = ""
        # read timeout: armed while a reply is due, measured from the last upstream message
        self.reply_due = False
        self.last_upstream = time.monotonic()
        self.malformed_run = 0
        #: provider events go to the client untouched (OpenAI-compatible endpoint, OpenAI)
        self.passthrough = False
        self.metrics = state.metrics.for_session(record.provider)
        self.log_context = {"session_id": self.session_id, "provider": record.provider}

    # -- ending ----------------------------------------------------------------------------

    def end(self, code: int, error_code: str | None, message: str) -> None:
        """Ask the session to end with ``code``; the first caller decides."""
        if self.outcome is None:
            self.outcome = (int(code), error_code, message)
            self.done.set()

    # -- main ------------------------------------------------------------------------------

    async def run(self) -> None:
        registry = self.state.registry
        registry.add(self)
        self.metrics.active.inc()
        loop = asyncio.get_running_loop()
        ttl = loop.call_later(
            self.record.ttl_seconds, self.end, CloseCode.TTL_REACHED, ErrorCode.SESSION_EXPIRED,
            f"session reached its ttl of {self.record.ttl_seconds} s",
        )
        tasks = [
            asyncio.create_task(self._client_reader(), name="client-reader"),
            asyncio.create_task(self._upstream(), name="upstream"),
            asyncio.create_task(self._client_writer(), name="client-writer"),
        ]
        for task in tasks:
            task.add_done_callback(self._task_done)
        self._watchdog_handle = loop.call_later(self._watch_interval(), self._watchdog)
        try:
            await self.done.wait()
        finally:
            ttl.cancel()
            self._watchdog_handle.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._close_client()
            await self._close_upstream()
            self.metrics.flush()
            await self._write_record()
            registry.remove(self)
            self.metrics.active.dec()

    def _watch_interval(self) -> float:
        return min(1.0, self.state.settings.upstream_read_timeout / 4)

    def _watchdog(self) -> None:
        """Every second: end the session if the provider owes a reply and has been silent
        for longer than the read timeout (a stalled provider, or a dead TCP path); add the
        message counts to /metrics."""
        self.metrics.flush()
        timeout = self.state.settings.upstream_read_timeout
        if self.reply_due and time.monotonic() - self.last_upstream > timeout:
            self.end(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE,
                     f"provider sent nothing for {timeout:g} s while a reply was due")
            return
        self._watchdog_handle = asyncio.get_running_loop().call_later(self._watch_interval(), self._watchdog)

    def _task_done(self, task: asyncio.Task) -> None:
        """A pump that dies of anything but cancellation ends the session, never hangs it."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, (aiohttp.ClientConnectionError, ConnectionError)):
            self.end(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE,
                     "provider connection lost")
            return
        log.error("session task %s failed", task.get_name(), exc_info=exc, extra=self.log_context)
        self.end(CloseCode.INTERNAL_ERROR, ErrorCode.INTERNAL_ERROR, "internal error")

    async def _close_client(self) -> None:
        code, _, message = self.outcome
        if self.ws.client_state is not WebSocketState.CONNECTED:
            return
        try:
            async with asyncio.timeout(CLIENT_CLOSE_TIMEOUT):
                for text in self._final_messages():
                    await self.ws.send_text(text)
                await self.ws.close(code, message[:120])
        except TimeoutError:
            _abort_transport(self.ws)  # a client that does not read cannot hold us
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client is already gone

    async def _close_upstream(self) -> None:
        if self.upstream is not None and not self.upstream.closed:
            try:
                async with asyncio.timeout(UPSTREAM_CLOSE_TIMEOUT):
                    await self.upstream.close()
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass  # a provider that will not close cleanly is simply dropped

    async def _write_record(self) -> None:
        code, _, message = self.outcome
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        status = "revoked" if code == CloseCode.REVOKED else "ended"
        failed = self.state.metrics.record_writes_failed
        deadline = time.monotonic() + self.state.settings.record_retry_seconds
        delay = 0.1
        try:
            while True:
                try:
                    await self.state.store.finish(
                        self.session_id, status=status, close_code=code, close_reason=message,
                        usage=self.usage, now=time.time(),
                    )
                    break
                except StoreUnavailable as exc:
                    if time.monotonic() + delay > deadline:
                        failed.labels("lost").inc()
                        log.error("session record not written, gave up: %s", exc,
                                  extra={**self.log_context, "close_code": code})
                        break
                    failed.labels("retried").inc()
                    log.warning("session record not written, retrying in %.1f s: %s", delay, exc,
                                extra=self.log_context)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        except asyncio.CancelledError:
            failed.labels("lost").inc()
            log.error("session record not written: server stopped while retrying",
                      extra={**self.log_context, "close_code": code})
            raise
        self.metrics.closed(code)
        log.info("session ended", extra={**self.log_context, "close_code": code})

    # -- client -> upstream ----------------------------------------------------------------

    async def _client_reader(self) -> None:
        """Client audio goes upstream as it comes; when more client messages are already
        waiting (the bridge fell behind), their audio is joined into one provider message
        (up to ``COALESCE_MAX_BYTES``): same samples, same order, fewer messages, so a busy
        bridge catches up instead of building a backlog."""
        ws = self.ws
        metrics = self.metrics
        waiting = _queued_messages(ws)
        joined: list[bytes] = []  # resampled audio not sent yet (more messages were waiting)
        joined_bytes = 0
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code") or CloseCode.NORMAL
                self.end(code, None, "client closed the connection")
                return
            data = message.get("bytes")
            metrics.frames_in += 1
            if data is not None:
                if self._over_limit(len(data)):
                    return
                pcm = self.resample_in.process(data)
                if pcm:
                    joined.append(pcm)
                    joined_bytes += len(pcm)
                if joined_bytes < COALESCE_MAX_BYTES and waiting():
                    continue  # more messages are already here: their audio joins this
            if joined:  # sent before whatever a text message asks for
                await self._send_up(self.codec.audio(b"".join(joined)))
                joined.clear()
                joined_bytes = 0
            text = message.get("text")
            if text is None:
                continue
            if self._over_limit(utf8_len(text)):
                return
            try:
                intent = decode_client_message(text)
            except InvalidMessage as exc:
                await self._put(encode_frame(Error(ErrorCode.INVALID_MESSAGE, str(exc))))
                continue
            if isinstance(intent, Commit):
                tail = self.resample_in.flush()
                out = self.codec.audio(tail) if tail else []
                self._reply_due()
                await self._send_up(out + self.codec.commit())
            elif isinstance(intent, Interrupt):
                await self._interrupt()
            elif isinstance(intent, ToolResult):
                self._reply_due()
                await self._send_up(self.codec.tool_result(intent.call_id, intent.output))

    def _reply_due(self) -> None:
        if not self.reply_due:
            self.reply_due = True
            self.last_upstream = time.monotonic()

    def _over_limit(self, size: int) -> bool:
        """Count a client message's bytes; True (and the session ends with 4009) when it is
        over ``MAX_CLIENT_MESSAGE_BYTES``."""
        self.metrics.bytes_in += size
        if size <= MAX_CLIENT_MESSAGE_BYTES:
            return False
        self.end(CloseCode.PROTOCOL_VIOLATION, ErrorCode.INVALID_MESSAGE,
                 f"message of {size} bytes exceeds the {MAX_CLIENT_MESSAGE_BYTES} byte limit")
        return True

    async def _interrupt(self) -> None:
        played_ms = int(self.played_bytes * 1000 / (2 * self.out_rate))
        self._drop_audio()
        await self._send_up(self.codec.interrupt(played_ms))

    async def _send_up(self, messages: list[Outbound]) -> None:
        if not messages:
            return
        if not self.ready.is_set():
            for m in messages:
                self.held.append(m)
                self.held_bytes += len(m)
            if self.held_bytes > HELD_AUDIO_MAX_BYTES:
                await self.ready.wait()  # backpressure: stop reading the client
            return
        upstream = self.upstream
        for m in messages:
            if isinstance(m, str):
                await upstream.send_str(m)
            else:
                await upstream.send_bytes(m)

    # -- upstream -> client ----------------------------------------------------------------

    async def _upstream(self) -> None:
        if self.spec is None or self.codec is None:
            self.end(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR,
                     f"provider {self.record.provider!r} is not available on this server")
            return
        upstream = await self._connect()
        while upstream is not None:
            reconnect = await self._pump(upstream)
            if self.outcome is not None:
                return
            if reconnect is None:
                fatal = self.codec.upstream_closed(upstream.close_code, self._upstream_reason)
                self.end(fatal.close_code, fatal.error_code, fatal.message)
                return
            # The provider is about to drop this connection: hold client audio, resume on
            # a new one, and let the old one go. The client sees no break.
            log.info("upstream reconnect: %s", reconnect.reason, extra=self.log_context)
            self.ready.clear()
            old = upstream
            upstream = await self._connect()
            self._spawn(old.close())

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        """Open the upstream socket and send the codec's start messages; on failure end the
        session with the mapped code and return None."""
        endpoint = self.state.endpoints[self.spec.name]
        url = self.spec.url(endpoint.url, self.params)
        headers = self.spec.headers(endpoint.api_key or "")
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.state.settings.upstream_connect_timeout):
                upstream = await self.state.http.ws_connect(
                    url, headers=headers, max_msg_size=UPSTREAM_MAX_MESSAGE_BYTES,
                    autoping=True, compress=0,
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                self.end(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_AUTH_FAILED,
                         f"provider refused the credentials (HTTP {exc.status})")
            elif exc.status == 429:
                self.end(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR,
                         "provider rate limit or quota reached (HTTP 429)")
            else:
                self.end(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE,
                         f"provider handshake failed (HTTP {exc.status})")
            return None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.end(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE,
                     f"cannot reach the provider: {type(exc).__name__}")
            return None
        self.upstream = upstream
        elapsed = time.monotonic() - started
        self.metrics.connect.observe(elapsed)
        log.debug("upstream connected", extra={**self.log_context, "upstream_ms": round(elapsed * 1000, 1)})
        for m in self._start_messages():
            await upstream.send_str(m) if isinstance(m, str) else await upstream.send_bytes(m)
        return upstream

    async def _pump(self, upstream: aiohttp.ClientWebSocketResponse) -> Reconnect | None:
        """Read one upstream socket until it closes (None) or the codec asks to reconnect."""
        receive = upstream.receive
        codec = self.codec
        stats = codec.stats
        monotonic = time.monotonic
        TEXT, BINARY = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        while True:
            msg = await receive()
            if msg.type is TEXT or msg.type is BINARY:
                self.last_upstream = monotonic()
                if self.passthrough:
                    data = msg.data
                    await self._put(data if type(data) is str else data.decode("utf-8", "replace"))
                malformed = stats.malformed_events
                events = codec.receive(msg.data)
                if stats.malformed_events != malformed:
                    self._malformed()
                    if self.outcome is not None:
                        return None
                else:
                    self.malformed_run = 0
                reconnect = await self._handle(events)
                drained = codec.drain_outbound()
                if drained:
                    await self._send_up(drained)
                if self.outcome is not None or reconnect is not None:
                    return reconnect
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                self._upstream_reason = msg.extra or ""
                return None
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                              aiohttp.WSMsgType.ERROR):
                return None

    def _malformed(self) -> None:
        self.metrics.malformed.inc()
        self.malformed_run += 1
        if self.malformed_run >= MALFORMED_RUN_MAX:
            self.end(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_ERROR,
                     f"provider sent {self.malformed_run} unreadable messages in a row")

    def _start_messages(self) -> list[Outbound]:
        """What opens the upstream session: the codec's config from the minted params."""
        return self.codec.start()

    async def _flush_held(self) -> None:
        upstream = self.upstream
        while self.held:
            m = self.held.popleft()
            await upstream.send_str(m) if isinstance(m, str) else await upstream.send_bytes(m)
        self.held_bytes = 0
        self.ready.set()

    async def _put(self, item) -> None:
        """Queue for the client; a client that leaves the queue full past the send timeout
        is not reading and ends the session (memory stays bounded meanwhile: the upstream
        reader waits here, and TCP pushes back on the provider)."""
        try:
            self.outbox.put_nowait(item)
            return
        except asyncio.QueueFull:
            pass
        timeout = self.state.settings.client_send_timeout
        drops = self.drops
        try:
            async with asyncio.timeout(timeout):
                await self.outbox.put(item)
        except TimeoutError:
            self.end(CloseCode.PROTOCOL_VIOLATION, ErrorCode.INVALID_MESSAGE,
                     f"client is not reading: nothing it was sent was taken for {timeout:g} s")
            await asyncio.Event().wait()  # the session is over; the runner cancels us
        if self.drops != drops and type(item) is tuple:
            # interrupted while this chunk waited for room (the drop made the room): it is
            # as stale as the chunks that were queued, and goes the same way
            self._drop_audio()

    # -- what the client hears: the RealtimeFrame protocol (CompatSession overrides these) --

    async def _frame(self, ev) -> None:
        await self._put(encode_frame(ev))

    async def _audio(self, item_id: str | None, pcm: bytes) -> None:
        await self._put((item_id, pcm))

    async def _send_audio(self, item: tuple) -> None:
        await self.ws.send_bytes(item[1])

    def _final_messages(self) -> list[str]:
        code, error_code, message = self.outcome
        out = [encode_frame(Error(error_code, message))] if error_code is not None else []
        return out + [encode_frame(Close(code, message))]

    async def _handle(self, events: list) -> Reconnect | None:
        frame, audio = self._frame, self._audio
        reconnect = None
        for ev in events:
            kind = type(ev)
            if kind is AudioOut:
                if ev.item_id in self.muted_items:
                    self.metrics.dropped.inc(len(ev.pcm))
                    continue
                if self.resample_out is None or self.resample_out.in_rate != ev.sample_rate:
                    self.resample_out = Resampler(ev.sample_rate, self.out_rate)
                pcm = self.resample_out.process(ev.pcm)
                if pcm:
                    await audio(ev.item_id, pcm)
                self.last_item = ev.item_id
            elif kind is Transcript or kind is ToolCall:
                await frame(ev)
            elif kind is Error:
                self.reply_due = False  # a refused request gets no reply to wait for
                await frame(ev)
            elif kind is AudioDone:
                if self.resample_out is not None:
                    tail = self.resample_out.flush()
                    if tail:
                        await audio(self.last_item, tail)
            elif kind is Usage:
                self.reply_due = False
                self.usage.input_audio_tokens += ev.input_audio_tokens
                self.usage.output_audio_tokens += ev.output_audio_tokens
                self.metrics.tokens_in.inc(ev.input_audio_tokens)
                self.metrics.tokens_out.inc(ev.output_audio_tokens)
                await frame(ev)
                self._record_usage(ev)
            elif kind is Ready:
                if not self.ready.is_set():
                    await self._flush_held()
            elif kind is ClearAudio:
                self._drop_audio()
            elif kind is Reconnect:
                reconnect = ev
            elif kind is Fatal:
                self.end(ev.close_code, ev.error_code, ev.message)
                return None
        return reconnect

    def _drop_audio(self) -> None:
        """Drop assistant audio not yet sent to the client, and mute late deltas of the
        same items (the provider may still be sending them when the cancel lands)."""
        self.drops += 1
        muted = self.muted_items
        if len(muted) > MUTED_ITEMS_MAX:
            muted.clear()
        muted.add(self.playing_item)
        kept = []
        while not self.outbox.empty():
            item = self.outbox.get_nowait()
            if isinstance(item, tuple):
                muted.add(item[0])
                self.metrics.dropped.inc(len(item[1]))
            else:
                kept.append(item)
        # Providers without item ids stop by themselves (their codec says ClearAudio).
        muted.discard(None)
        for item in kept:
            self.outbox.put_nowait(item)
        if self.resample_out is not None:
            self.resample_out.reset()

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _record_usage(self, usage: Usage) -> None:
        self._spawn(self._add_usage(UsageTotals(usage.input_audio_tokens, usage.output_audio_tokens)))

    async def _add_usage(self, delta: UsageTotals) -> None:
        try:
            await self.state.store.add_usage(self.session_id, delta)
        except StoreUnavailable as exc:
            # the totals still reach the record at the end of the session (finish)
            log.warning("live usage not written: %s", exc, extra=self.log_context)

    # -- client writer ---------------------------------------------------------------------

    async def _client_writer(self) -> None:
        """Send the outbox to the client. Audio chunks of one item already queued behind the
        one in hand go out as one message (up to ``COALESCE_MAX_BYTES``): the bytes and
        their order are the same, but a client or server that fell behind catches up with
        fewer, larger messages instead of paying per-message costs for every 20 ms.

        It waits until the socket takes writes *before* it takes the next item: an item is
        never held while the client is behind, so an interrupt drops every chunk not yet
        written (only a chunk taken while joining can be held; it is dropped when taken
        back), and what was written is what the client gets and the truncation counts."""
        ws = self.ws
        writable = _writable(ws)
        outbox = self.outbox
        send_audio = self._send_audio
        metrics = self.metrics
        carried = None  # an item taken while coalescing that did not join; sent next
        carried_at = 0  # self.drops when it was taken
        try:
            while True:
                await writable()
                if carried is not None:
                    item, carried = carried, None
                    if type(item) is tuple and self.drops != carried_at:
                        # interrupted while held here: dropped and muted like the queued ones
                        metrics.dropped.inc(len(item[1]))
                        if item[0] is not None:
                            self.muted_items.add(item[0])
                        continue
                else:
                    item = await outbox.get()
                metrics.frames_out += 1
                if type(item) is str:
                    metrics.bytes_out += len(item)
                    await ws.send_text(item)
                    continue
                if not outbox.empty():
                    item, carried = _coalesce(item, outbox)
                    carried_at = self.drops
                item_id, pcm = item[0], item[1]
                if item_id != self.playing_item:
                    self.playing_item = item_id
                    self.played_bytes = 0
                await send_audio(item)
                metrics.bytes_out += len(pcm)
                self.played_bytes += len(pcm)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.end(CloseCode.NORMAL, None, "client connection lost")


def _coalesce(item: tuple, outbox: asyncio.Queue) -> tuple[tuple, object]:
    """Join the audio chunks queued right behind ``item`` that belong to the same item (same
    id and, for the OpenAI-compatible endpoint, the same place in the response). Returns the
    joined item and the first queued item that did not join (or None)."""
    parts = [item[1]]
    size = len(item[1])
    head, rest = item[0], item[2:]
    while not outbox.empty():
        nxt = outbox.get_nowait()
        if (type(nxt) is not tuple or nxt[0] != head or nxt[2:] != rest
                or size + len(nxt[1]) > COALESCE_MAX_BYTES):
            return (head, b"".join(parts), *rest), nxt
        parts.append(nxt[1])
        size += len(nxt[1])
    return (head, b"".join(parts), *rest), None
