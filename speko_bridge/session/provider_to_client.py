"""The upstream reader: provider messages -> provider codec -> frames -> client codec -> outbox.

It opens the provider socket (and a new one when the provider announces it will drop this
one), reads until it closes, resamples assistant audio to the client's rate, and keeps the
malformed-message guard: single unreadable messages are skipped and counted,
``MALFORMED_RUN_MAX`` in a row end the session with 4500 ``provider_error``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

import aiohttp

from ..audio import Resampler
from ..frames import CloseCode, Error, ErrorCode, Speech, ToolCall, Transcript, Usage
from ..providers.base import (
    AudioDone,
    AudioOut,
    ClearAudio,
    Fatal,
    Malformed,
    Ready,
    Reconnect,
    SpeechStarted,
    SpeechStopped,
)
from ..store import UsageTotals
from . import record
from .phase import Phase
from .upstream import UpstreamFailed, buffered

if TYPE_CHECKING:
    from .runner import Session

log = logging.getLogger("speko_bridge.session")

#: Unreadable upstream messages in a row after which the provider is deemed unusable.
MALFORMED_RUN_MAX = 32


class ProviderToClient:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.resample_out: Resampler | None = None  # made on the first audio (rate from provider)
        self.last_item: str | None = None  # the provider item of the latest assistant audio
        self.malformed_run = 0
        self._declared = session.client.declared_tools()
        self.speaking = False  # between speech: started and speech: stopped (server turns)
        self._redo = False  # the client's new session needs a new upstream connection

    async def run(self) -> None:
        session = self.session
        if session.provider is None:
            session.end(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR,
                        f"provider {session.record.provider!r} is not available on this server")
            return
        socket = await self._connect()
        while socket is not None:
            reconnect = await self._pump(socket)
            if session.outcome is not None:
                return
            if reconnect is None:
                fatal = session.provider.upstream_closed(socket.close_code, session.upstream.close_reason)
                session.end(fatal.close_code, fatal.error_code, fatal.message)
                return
            # The provider is about to drop this connection: hold client audio, resume on a
            # new one, and let the old one go. The client sees no break.
            log.info("upstream reconnect: %s", reconnect.reason, extra=session.log_context)
            session.set_upstream_phase(Phase.RECONNECTING)
            old = socket
            socket = await self._connect()
            session.spawn(session.upstream.close(old))

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        try:
            return await self.session.upstream.connect(self._start_messages)
        except UpstreamFailed as exc:
            fatal = exc.fatal
            self.session.end(fatal.close_code, fatal.error_code, fatal.message)
            return None

    def _start_messages(self) -> list:
        self._redo = False  # this start carries the session as it is now
        return self.session.client.upstream_start(self.session.provider.start())

    def redo(self) -> None:
        """The provider codec needs a new connection for the client's new session (Gemini's
        ``setup``): hold client messages from now, and close the current socket; the reader
        then reconnects as for a ``goAway`` (nothing more is read from the old socket)."""
        session = self.session
        self._redo = True
        session.upstream.ready.clear()
        session.set_upstream_phase(Phase.RECONNECTING)
        if session.upstream.socket is not None:
            session.spawn(session.upstream.close(session.upstream.socket))

    def tools_changed(self) -> None:
        """The client's session declares other tools now: those are the ones it may be asked to run."""
        self._declared = self.session.client.declared_tools()

    async def _pump(self, socket: aiohttp.ClientWebSocketResponse) -> Reconnect | None:
        """Read one upstream socket until it closes (None) or the codec asks to reconnect."""
        session = self.session
        receive = socket.receive
        provider = session.provider
        forward = session.client.raw_forwarder()
        monotonic = time.monotonic
        TEXT, BINARY = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        session.upstream_buffered = buffered(socket)
        while True:
            msg = await receive()
            if self._redo:  # the client's new session needs a new connection: drop this one
                return Reconnect("the client changed the session")
            if msg.type is TEXT or msg.type is BINARY:
                session.last_upstream = monotonic()
                if forward is not None:
                    await session.put(forward(msg.data))
                reconnect = await self._handle(provider.receive(msg.data))
                drained = provider.drain_outbound()
                if drained:
                    await session.upstream.send(drained)
                if session.outcome is not None or reconnect is not None:
                    return reconnect
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                session.upstream.close_reason = msg.extra or ""
                return None
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                              aiohttp.WSMsgType.ERROR):
                return None

    async def _handle(self, events: list) -> Reconnect | None:
        session = self.session
        client = session.client
        put_all = session.put_all
        reconnect = None
        malformed = False
        for ev in events:
            kind = type(ev)
            if kind is AudioOut:
                if ev.item_id in session.outbox.muted:
                    session.metrics.dropped.inc(len(ev.pcm))
                    continue
                if self.resample_out is None or self.resample_out.in_rate != ev.sample_rate:
                    self.resample_out = Resampler(ev.sample_rate, client.output_rate)
                pcm = self.resample_out.process(ev.pcm)
                if pcm:
                    await put_all(client.audio(ev.item_id, pcm))
                self.last_item = ev.item_id
            elif kind is Transcript:
                await put_all(client.frame(ev))
            elif kind is ToolCall:
                if self._declared is not None and ev.name not in self._declared:
                    await self._refuse_tool(ev)
                else:
                    await put_all(client.frame(ev))
            elif kind is Error:
                session.reply_due = False  # a refused request gets no reply to wait for
                await put_all(client.frame(ev))
            elif kind is AudioDone:
                tail = self.resample_out.flush() if self.resample_out is not None else b""
                if tail:
                    await put_all(client.audio(self.last_item, tail))
            elif kind is Usage:
                self._count_usage(ev)
                await put_all(client.frame(ev))
            elif kind is Ready:
                if not session.upstream.ready.is_set() and not self._redo:
                    await session.upstream.flush_held()
                    if self._redo:  # the client changed the session meanwhile: hold again
                        session.upstream.ready.clear()
                    else:
                        session.set_upstream_phase(Phase.READY)
            elif kind is ClearAudio:  # the provider cut its reply itself (the user took the turn)
                self.drop_audio()
                await put_all(client.cancelled(barge_in=True))
            elif kind is SpeechStarted:
                if not self.speaking:
                    await self.barge_in()
            elif kind is SpeechStopped:
                await self.speech_stopped()
            elif kind is Reconnect:
                reconnect = ev
            elif kind is Malformed:
                malformed = True
                self._malformed()
                if session.outcome is not None:
                    return None
            elif kind is Fatal:
                session.end(ev.close_code, ev.error_code, ev.message)
                return None
        if not malformed:
            self.malformed_run = 0
        return reconnect

    async def _refuse_tool(self, call: ToolCall) -> None:
        """The provider called a tool the session never declared (models do): the client is
        not asked to run it; the provider gets an error result naming the tools there are,
        so the model can correct itself, and the reply it then owes is awaited."""
        session = self.session
        session.metrics.tools_refused.inc()
        log.warning("provider called an undeclared tool %r", call.name[:64], extra=session.log_context)
        available = ", ".join(sorted(self._declared)) or "none"
        output = json.dumps({"error": f"unknown tool {call.name[:64]!r}; the tools are: {available}"})
        session.expect_reply()
        await session.upstream.send(session.provider.tool_result(call.call_id, output))

    def _count_usage(self, usage: Usage) -> None:
        session = self.session
        session.reply_due = False
        delta = UsageTotals(usage.input_audio_tokens, usage.output_audio_tokens)
        session.usage.input_audio_tokens += delta.input_audio_tokens
        session.usage.output_audio_tokens += delta.output_audio_tokens
        session.metrics.tokens_in.inc(delta.input_audio_tokens)
        session.metrics.tokens_out.inc(delta.output_audio_tokens)
        session.spawn(record.add_usage(session.state.store, session.session_id, delta, session.log_context))

    def _malformed(self) -> None:
        self.session.metrics.malformed.inc()
        self.malformed_run += 1
        if self.malformed_run >= MALFORMED_RUN_MAX:
            self.session.end(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_ERROR,
                             f"provider sent {self.malformed_run} unreadable messages in a row")

    async def barge_in(self) -> None:
        """The provider heard the user start speaking over the reply (server/semantic turns):
        cancel it and cut the provider's copy at the audio delivered, exactly as a client's
        ``interrupt``, and only then tell the client ``speech: started``: everything of the
        old reply still queued was dropped and its item muted, so no audio of it follows."""
        self.speaking = True
        await self.session.cancel_reply(barge_in=True)
        await self.session.put_all(self.session.client.frame(Speech("started")))

    async def speech_stopped(self) -> None:
        """The user's turn is over: by the provider's detection, or by the client's
        ``commit`` while the provider heard speech (every ``started`` gets its ``stopped``,
        once)."""
        if not self.speaking:
            return
        self.speaking = False
        self.session.expect_reply()
        await self.session.put_all(self.session.client.frame(Speech("stopped")))

    def drop_audio(self) -> None:
        """Drop assistant audio not yet sent (interrupt, or the provider cut its reply)."""
        dropped = self.session.outbox.drop_audio()
        if dropped:
            self.session.metrics.dropped.inc(dropped)
        if self.resample_out is not None:
            self.resample_out.reset()
