"""The session runner: one client codec and one provider codec, composed, with all the IO.

One :class:`Session` per admitted token, three tasks::

    client reader  : client WS -> client codec -> intents -> Resampler(in) -> provider codec -> upstream
    upstream reader: upstream WS -> provider codec -> frames -> Resampler(out) -> client codec -> outbox
    client writer  : outbox (bounded) -> client WS

The two client tasks belong to the socket (``client_link.py``), not to the session: a socket
that drops without a close handshake leaves the session waiting for its client for a grace
window (``grace.py``), and a new socket with the same token is attached to the same session
(:meth:`Session.attach`). The upstream reader, the TTL and the watchdog belong to the session.

The runner never asks which endpoint or which provider it serves: everything protocol-specific
is in the two codecs. Every way a session ends goes through :meth:`Session.end`, first caller
wins; the runner then sends the client codec's final messages, closes the socket with the
same code, closes upstream and writes the record. Nothing else closes anything.

Bounds (memory per session stays fixed whatever the peers do): the outbox
(``session/outbox.py``), client messages held while the provider is not ready
(``session/upstream.py``), one client message at most ``MAX_CLIENT_MESSAGE_BYTES`` (else
4009); a client that leaves the outbox full for ``SPEKO_CLIENT_SEND_TIMEOUT`` (it stopped
reading) is closed with 4009, and its close handshake gets ``CLIENT_CLOSE_TIMEOUT`` before
the TCP connection is aborted. Audio already waiting when the client reader gets to it
(messages the server has queued) goes upstream joined, up to ``COALESCE_MAX_BYTES``.

Faults of the provider, each ending the session with a mapped code (never a hang):
- no message for ``SPEKO_UPSTREAM_READ_TIMEOUT`` while a reply is due (from a request for a
  response or a tool result until that reply's usage) -> 4500 ``provider_unavailable``;
- ``MALFORMED_RUN_MAX`` unreadable messages in a row -> 4500 ``provider_error`` (single
  ones are skipped and counted);
- a message over ``UPSTREAM_MAX_MESSAGE_BYTES``, a dropped connection -> 4500.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import msgspec
from starlette.websockets import WebSocket

from ..clientproto.base import AudioChunk, ClientCodec
from ..codes import CloseCode, ErrorCode
from ..providers import get_provider
from ..store import UsageTotals
from . import record
from .admission import Admission
from .client_link import ClientLink
from .client_to_provider import client_close
from .grace import Grace
from .outbox import Outbox
from .phase import Outcome, Phase
from .provider_to_client import ProviderToClient
from .upstream import Upstream, buffered

log = logging.getLogger("speko_bridge.session")


class Session:
    def __init__(self, ws: WebSocket, admission: Admission, state, client_codec: type[ClientCodec]) -> None:
        record_ = admission.record
        self.record = record_
        self.slot = admission.slot
        self.session_id = record_.session_id
        self.state = state
        self.phase = Phase.CONNECTING
        self.outcome: Outcome | None = None
        self.done = asyncio.Event()
        self.client = client_codec(record_.params, self.session_id, record_.provider,
                                   int(time.time()) + record_.ttl_seconds)
        # The provider hears the client's rates (they decide, e.g., what xAI is asked for).
        params = msgspec.structs.replace(record_.params, input_sample_rate=self.client.input_rate,
                                         output_sample_rate=self.client.output_rate)
        self.spec = get_provider(record_.provider)
        self.provider = self.spec.codec(params) if self.spec else None
        self.outbox = Outbox()
        #: Provider messages read and not yet handled (``upstream.buffered``); until the
        #: provider socket opens, "some" (the fast path waits for the first real answer).
        self.upstream_buffered = buffered(None)
        self.metrics = state.metrics.for_session(record_.provider)
        self.log_context = {"session_id": self.session_id, "provider": record_.provider}
        self.upstream = self._upstream_link() if self.spec else None
        self.usage = UsageTotals()
        self.background: set[asyncio.Task] = set()  # usage writes, old upstream closes
        # read timeout: armed while a reply is due, measured from the last upstream message
        self.reply_due = False
        self.last_upstream = time.monotonic()
        self.toward_client = ProviderToClient(self)
        self.grace = Grace(self)
        #: The client socket attached now; None while the client is away.
        self.link: ClientLink | None = ClientLink(self, ws)
        self.task: asyncio.Task | None = None  # what runs :meth:`run` (held: see endpoints.py)

    def _upstream_link(self) -> Upstream:
        endpoint = self.state.endpoints[self.spec.name]
        return Upstream(self.state.http, self.spec.url(endpoint.url, self.provider.params),
                        self.spec.headers(endpoint.api_key or ""),
                        self.state.settings.upstream_connect_timeout, self.metrics, self.log_context)

    def end(self, code: int, error_code: str | None, message: str) -> None:
        """Ask the session to end with ``code``; the first caller decides."""
        if self.outcome is None:
            self.outcome = Outcome(int(code), error_code, message)
            self.phase = Phase.ENDING
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
        for item in self.client.opening():
            self.outbox.put_nowait(item)
        upstream = asyncio.create_task(self.toward_client.run(), name="upstream")
        upstream.add_done_callback(self._task_done)
        self.link.start()
        self._watchdog_handle = loop.call_later(self._watch_interval(), self._watchdog)
        try:
            await self.done.wait()
        finally:
            ttl.cancel()
            self.grace.cancel()
            self._watchdog_handle.cancel()
            upstream.cancel()
            await asyncio.gather(upstream, return_exceptions=True)
            link, self.link = self.link, None
            try:
                await self._finish(link)
            finally:
                if link is not None:
                    # last: the socket's handler returns (and the server lets the connection
                    # go) only once the record is final
                    link.finished.set()

    async def _finish(self, link: ClientLink | None) -> None:
        """Close the client socket (if one is attached) and the provider's, write the record."""
        if link is not None:
            await link.stop()
            await link.close(self.outcome)
        if self.upstream is not None:
            await self.upstream.close()
        self.metrics.flush()
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        outcome = self.outcome
        await record.write_final(self.state, self.session_id, outcome.code, outcome.message,
                                 self.usage, self.log_context)
        self.metrics.closed(outcome.code)
        log.info("session ended", extra={**self.log_context, "close_code": outcome.code})
        self.state.registry.remove(self)
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
        """A task that dies of anything but cancellation ends the session, never hangs it."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, (aiohttp.ClientConnectionError, ConnectionError)):
            self.end(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE, "provider connection lost")
            return
        log.error("session task %s failed", task.get_name(), exc_info=exc, extra=self.log_context)
        self.end(CloseCode.INTERNAL_ERROR, ErrorCode.INTERNAL_ERROR, "internal error")

    # -- the client socket: leaving, coming back --------------------------------------------

    def client_left(self, ws: WebSocket, code: int | None) -> None:
        """The reader of ``ws`` saw it end with ``code``: a dropped socket leaves a resumable
        session waiting for its client (``grace.py``); any other end ends the session."""
        link = self.link
        if link is None or link.ws is not ws:
            return
        if not self.grace.applies(code):
            self.end(*client_close(code))
            return
        self.link = None
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        link.finished.set()
        self.grace.begin()

    async def attach(self, ws: WebSocket) -> None:
        """Serve ``ws``, a socket that took this session back (:meth:`Grace.take_back`):
        ``resumed`` first, then the conversation goes on; returns when the socket is done
        with (dropped again, or closed by the session's end)."""
        self.outbox.clear()
        for item in self.client.resumed():
            self.outbox.put_nowait(item)
        self.link = link = ClientLink(self, ws)
        link.start()
        self.state.metrics.resumes_succeeded.inc()
        log.info("session resumed", extra=self.log_context)
        await self.serve_link(link)

    async def serve_link(self, link: ClientLink) -> None:
        """Wait in the socket's ASGI handler until ``link`` is done with. A handler the server
        cancels (its graceful shutdown ran out) ends the session."""
        try:
            await link.finished.wait()
        except asyncio.CancelledError:
            self.end(CloseCode.GOING_AWAY, None, "server shutting down")
            raise

    def set_upstream_phase(self, phase: Phase) -> None:
        """The provider side moved to ``phase``; while the client is away that is where the
        session goes when it comes back."""
        if self.phase is Phase.CLIENT_AWAY:
            self.grace.resume_phase = phase
        elif self.phase is not Phase.ENDING:
            self.phase = phase

    def expect_reply(self) -> None:
        """The provider owes a reply from now: the read timeout is armed."""
        if not self.reply_due:
            self.reply_due = True
            self.last_upstream = time.monotonic()

    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def put(self, item) -> None:
        """Queue for the client; a client that leaves the outbox full past the send timeout
        is not reading and ends the session (memory stays bounded meanwhile: the upstream
        reader waits here, and TCP pushes back on the provider). While the client is away
        nothing is queued for it."""
        if self.phase is Phase.CLIENT_AWAY:
            if type(item) is AudioChunk:
                self.metrics.dropped.inc(len(item.pcm))
            return
        outbox = self.outbox
        # sent at once by this task when the writer is idle and no provider message that
        # could join this one is waiting (outbox.py's fast path), else queued
        if (not self.upstream_buffered() and await outbox.send_now(item)) or outbox.put_nowait(item):
            return
        timeout = self.state.settings.client_send_timeout
        epoch = outbox.epoch
        try:
            async with asyncio.timeout(timeout):
                await outbox.put(item)
        except TimeoutError:
            self.end(CloseCode.PROTOCOL_VIOLATION, ErrorCode.INVALID_MESSAGE,
                     f"client is not reading: nothing it was sent was taken for {timeout:g} s")
            await asyncio.Event().wait()  # the session is over; the runner cancels us
        if outbox.epoch != epoch and type(item) is AudioChunk:
            # interrupted while this chunk waited for room (the drop made the room): it is as
            # stale as the chunks that were queued, and goes the same way
            self.toward_client.drop_audio()

    async def put_all(self, items: list) -> None:
        for item in items:
            await self.put(item)

    def played_ms(self) -> int:
        """How much of the current assistant item the client's socket was given, in ms: where
        a cut reply is truncated."""
        return int(self.outbox.played_bytes * 1000 / (2 * self.client.output_rate))

    async def cancel_reply(self, barge_in: bool = False) -> None:
        """Cancel the assistant's reply at the audio the client received (a client's
        ``interrupt``, or the provider hearing the user: ``barge_in``): unsent audio is dropped
        and its item muted, then the provider is asked to cancel and to cut its copy of the
        reply there."""
        played_ms = self.played_ms()
        self.toward_client.drop_audio()
        for item in self.client.cancelled(barge_in):
            await self.put(item)
        if self.provider is not None:
            provider = self.provider
            await self.upstream.send(provider.barge_in(played_ms) if barge_in else provider.interrupt(played_ms))
