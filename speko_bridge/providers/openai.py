"""OpenAI Realtime codec (GA protocol; beta event names accepted on the way in).

Sans-IO: client intents in -> GA client events out (JSON text); server events in ->
:mod:`speko_bridge.frames` frames and bridge events out. Field names follow the ``openai``
package's ``types/realtime`` (the tests validate every event we emit against
``RealtimeClientEventParam``).

Turn model: with ``manual`` turns (the default) ``turn_detection`` is off, so the client's
``commit`` ends a turn and the codec asks for a response (``input_audio_buffer.commit`` +
``response.create``). With ``server`` turns it is ``server_vad`` (``silenceMs`` ->
``silence_duration_ms``, ``prefixMs`` -> ``prefix_padding_ms``, ``sensitivity`` ->
``threshold`` per :data:`VAD_THRESHOLDS`), with ``semantic`` turns ``semantic_vad``
(``eagerness``); both with ``create_response`` and ``interrupt_response``, so OpenAI commits,
answers and cuts its own reply. ``input_audio_buffer.speech_started``/``speech_stopped``
become :class:`SpeechStarted`/:class:`SpeechStopped` in those modes (the bridge then
truncates the reply at the audio delivered, as for ``interrupt``).

Decisions (docs/protocol.md is silent on these):

- A ``commit`` with no audio since the previous one sends only ``response.create``: an
  empty commit is an upstream error (``input_audio_buffer_commit_empty``).
- A ``response.create`` while a response is active would fail
  (``conversation_already_has_active_response``); it is deferred and sent when the
  active response is done (through :meth:`drain_outbound`). At most one is pending.
- Each ``response.create`` carries its own ``event_id``: an ``error`` event naming it
  means no response will come, so the next turn asks again instead of waiting behind a
  response that never started.
- ``interrupt`` cancels the active response and truncates the assistant item at the
  audio the client actually received, so the model's memory matches what the user heard.
- ``temperature`` is not sent: the GA session does not accept it.

Upstream ``error`` events, by ``error.code``:

=====================================================  ====================================
code                                                   becomes
=====================================================  ====================================
``invalid_api_key``, ``authentication_error``          ``Fatal`` 4502 ``provider_auth_failed``
``insufficient_quota``, ``model_not_found``,           ``Fatal`` 4502 ``provider_error``
``account_deactivated``, ``billing_*``
any error before ``session.updated`` (the session       ``Fatal`` 4502 ``provider_error``
config was refused, e.g. an invalid voice)
``session_expired``                                    ``Fatal`` 4500 ``provider_unavailable``
``response_cancel_not_active``,                        swallowed (counted): races the bridge
``conversation_already_has_active_response``           itself can cause around a cancel
anything else                                          ``error`` frame ``provider_error``
=====================================================  ====================================
"""

from __future__ import annotations

import binascii
from typing import Any

import msgspec

from ..codes import CloseCode, ErrorCode
from ..frames import Error as ErrorFrame
from ..frames import ToolCall, Transcript, Usage
from ..params import SessionParams, hands_free
from .base import (
    UNREADABLE,
    AudioDone,
    AudioOut,
    ClearAudio,
    Codec,
    CodecEvent,
    Fatal,
    Outbound,
    Ready,
    SpeechStarted,
    SpeechStopped,
)
from .openai_setup import OPENAI_RATE, function_tool, openai_session_config
from .openai_wire import (
    APPEND_HEAD,
    APPEND_TAIL,
    COMMIT,
    HANDLERS,
    QUIET_EVENTS,
    RESPONSE_CREATE,
    Err,
    Event,
    decoder,
    to_json,
)

__all__ = ["OPENAI_RATE", "OpenAICodec", "ReplyAudio", "ResponseSlot", "function_tool"]

#: Call ids remembered to send exactly one tool_call per id; a session makes few calls,
#: but the set is bounded so a runaway upstream cannot grow it.
MAX_REMEMBERED_CALLS = 4096

AUTH_ERRORS = frozenset({"invalid_api_key", "authentication_error", "invalid_authentication"})
#: The account or the request can never work: end at once with the provider's reason
#: (platform.openai.com/docs/guides/error-codes: quota, billing and deactivation codes).
REFUSED_ERRORS = frozenset({"insufficient_quota", "model_not_found", "account_deactivated",
                            "billing_hard_limit_reached", "billing_not_active",
                            "unsupported_country_region_territory"})
ENDED_ERRORS = frozenset({"session_expired"})
BENIGN_ERRORS = frozenset({"response_cancel_not_active", "conversation_already_has_active_response"})


class ResponseSlot:
    """The one response OpenAI runs at a time, from ``response.create`` to ``response.done``.

    A second ``response.create`` while one is active would be refused
    (``conversation_already_has_active_response``), so it is *deferred*: at most one waits,
    and it is sent when the active response ends (or its create is refused). Each create
    carries its own ``event_id`` (:attr:`pending_create` until ``response.created``), so an
    ``error`` naming it tells that no response is coming.
    """

    __slots__ = ("_seq", "active", "deferred", "id", "pending_create")

    def __init__(self) -> None:
        self.active = False  # requested or in progress
        self.id: str | None = None  # the provider's id, from response.created
        self.deferred = False  # a response.create waits for the active response to end
        self.pending_create: str | None = None  # event_id of the response.create not yet answered
        self._seq = 0

    def ask(self) -> list[Outbound]:
        """A new response: ``response.create`` now, or nothing yet (deferred) while one runs."""
        if self.active:
            self.deferred = True
            return []
        return [self.create()]

    def create(self) -> str:
        self.active = True
        self._seq += 1
        self.pending_create = f"speko_create_{self._seq}"
        return RESPONSE_CREATE % self.pending_create

    def started(self, response_id: str | None) -> None:
        """``response.created``: the provider began a response (ours, or its VAD's own)."""
        self.active = True
        self.pending_create = None
        self.id = response_id

    def ended(self) -> None:
        """``response.done``: none is active any more (the deferred create is sent apart,
        by :meth:`send_deferred`, as a fatal failure sends none)."""
        self.active = False
        self.id = None

    def refused(self, event_id: str | None) -> list[Outbound]:
        """An ``error`` answering ``event_id``: if it is our pending create, no response is
        active after all, and the deferred one (if any) is asked for now."""
        if event_id is None or event_id != self.pending_create:
            return []
        self.active = False
        self.pending_create = None
        return self.send_deferred()

    def send_deferred(self) -> list[Outbound]:
        if not self.deferred:
            return []
        self.deferred = False
        return [self.create()]


class ReplyAudio:
    """The assistant audio item being received: how much of it reached the bridge (for the
    ``conversation.item.truncate`` of an interrupt) and whether a stretch of deltas is open
    (one :class:`AudioDone` closes it)."""

    __slots__ = ("item", "open", "received_bytes")

    def __init__(self) -> None:
        self.item: str | None = None
        self.received_bytes = 0
        self.open = False  # deltas seen since the last AudioDone

    def received(self, item_id: str | None, nbytes: int) -> None:
        if item_id != self.item:
            self.item = item_id
            self.received_bytes = 0
        self.received_bytes += nbytes
        self.open = True

    def close(self) -> list[CodecEvent]:
        """:class:`AudioDone` if deltas came since the last one."""
        if not self.open:
            return []
        self.open = False
        return [AudioDone()]

    def truncate(self, played_ms: int, rate: int) -> list[Outbound]:
        """Cut the item at what the client heard (never past what was received), once."""
        if self.item is None or not self.received_bytes:
            return []
        received_ms = self.received_bytes * 1000 // (2 * rate)
        out = [to_json({
            "type": "conversation.item.truncate",
            "item_id": self.item,
            "content_index": 0,
            "audio_end_ms": max(0, min(int(played_ms), received_ms)),
        })]
        self.item = None
        self.received_bytes = 0
        return out


class OpenAICodec(Codec):
    """The OpenAI Realtime session as a state machine: client intents -> client events,
    server events -> frames and codec events (module docstring: the turn model and the
    decisions). Its state: whether the session config was accepted, whether audio went up
    since the last commit, the :class:`ResponseSlot`, the :class:`ReplyAudio` being
    received, and the tool call ids already handed on."""

    provider = "openai"

    def __init__(self, params: SessionParams) -> None:
        super().__init__(params)
        #: PCM rates on the wire to the provider (OpenAI: 24 kHz both ways, fixed).
        self._in_rate = OPENAI_RATE
        self._out_rate = OPENAI_RATE
        self._ready = False
        self._audio_since_commit = False
        self._response = ResponseSlot()
        self._reply_audio = ReplyAudio()
        self._outbound: list[Outbound] = []
        self._calls_sent: set[str] = set()
        self._hands_free = hands_free(params)
        # bound here, by name, so a subclass's override of a handler is the one dispatched
        self._handlers = {kind: getattr(self, name) for kind, name in HANDLERS.items()}

    @property
    def input_rate(self) -> int:
        return self._in_rate

    # -------------------------------------------------------------------- client intents

    def start(self) -> list[Outbound]:
        return [to_json({"type": "session.update", "session": openai_session_config(self.params)})]

    def audio(self, pcm: bytes) -> list[Outbound]:
        self._audio_since_commit = True
        return [APPEND_HEAD + binascii.b2a_base64(pcm, newline=False).decode("ascii") + APPEND_TAIL]

    def _create_response(self) -> list[Outbound]:
        return self._response.ask()

    def commit(self) -> list[Outbound]:
        out: list[Outbound] = []
        if self._audio_since_commit:
            out.append(COMMIT)
            self._audio_since_commit = False
        return out + self._create_response()

    def respond(self) -> list[Outbound]:
        return self._create_response()  # response.create alone: the buffer stays the VAD's

    def text(self, text: str, respond: bool = True) -> list[Outbound]:
        """A user message item with ``input_text`` (GA ``conversation.item.create``), then a
        response: in every turn mode (the VAD answers audio only). Without ``respond`` the
        item alone: a later :meth:`commit` asks for the response."""
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        return [to_json({"type": "conversation.item.create", "item": item}),
                *(self._create_response() if respond else ())]

    def interrupt(self, played_ms: int) -> list[Outbound]:
        out: list[Outbound] = []
        if self._response.active:
            cancel: dict[str, Any] = {"type": "response.cancel"}
            if self._response.id:
                cancel["response_id"] = self._response.id
            out.append(to_json(cancel))
        return out + self._reply_audio.truncate(played_ms, self._out_rate)

    def barge_in(self, played_ms: int) -> list[Outbound]:
        """As :meth:`interrupt`, but only a response the provider had begun (``response.created``
        seen): the provider's events are in order, so a ``response.create`` it has not answered
        yet reached it after it heard the user (a commit or typed turn sent meanwhile), and is
        the answer to come, not the reply to cut."""
        out: list[Outbound] = []
        if self._response.active and self._response.id:
            out.append(to_json({"type": "response.cancel", "response_id": self._response.id}))
        return out + self._reply_audio.truncate(played_ms, self._out_rate)

    def tool_result(self, call_id: str, output: str) -> list[Outbound]:
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        return [to_json({"type": "conversation.item.create", "item": item}), *self._create_response()]

    def drain_outbound(self) -> list[Outbound]:
        out, self._outbound = self._outbound, []
        return out

    # -------------------------------------------------------------------- server events

    def receive(self, data: str | bytes) -> list[CodecEvent]:
        try:
            event = decoder.decode(data)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            return self._malformed("not a JSON event of the expected shape")
        except UNREADABLE as exc:
            return self._malformed(f"unreadable event: {type(exc).__name__}")
        stats = self.stats
        stats.events += 1
        kind = event.type
        handler = self._handlers.get(kind)
        if handler is None and kind not in QUIET_EVENTS:
            # counted, but not by name: an upstream could invent types without end
            stats.unknown_events += 1
            return []
        stats.counts[kind] = stats.counts.get(kind, 0) + 1
        return handler(event) if handler is not None else []

    def _on_session_updated(self, ev: Event) -> list[CodecEvent]:
        if self._ready:
            return []
        self._ready = True
        return [Ready()]

    def _on_response_created(self, ev: Event) -> list[CodecEvent]:
        self._response.started(ev.response.id if ev.response else None)
        return []

    def _on_audio_delta(self, ev: Event) -> list[CodecEvent]:
        if ev.delta is None:
            return self._malformed(f"{ev.type} without delta")
        try:
            pcm = binascii.a2b_base64(ev.delta)
        except (binascii.Error, ValueError):
            return self._malformed(f"{ev.type} delta is not base64")
        self._reply_audio.received(ev.item_id, len(pcm))
        return [AudioOut(pcm, self._out_rate, ev.item_id)]

    def _on_audio_done(self, ev: Event) -> list[CodecEvent]:
        return self._reply_audio.close()

    def _on_assistant_delta(self, ev: Event) -> list[CodecEvent]:
        if ev.delta is None:
            return self._malformed(f"{ev.type} without delta")
        return [Transcript("assistant", ev.delta, False)]

    def _on_assistant_done(self, ev: Event) -> list[CodecEvent]:
        text = ev.transcript if ev.transcript is not None else ev.text
        if text is None:
            return self._malformed(f"{ev.type} without text")
        return [Transcript("assistant", text, True)]

    def _on_user_delta(self, ev: Event) -> list[CodecEvent]:
        if ev.delta is None:
            return self._malformed(f"{ev.type} without delta")
        return [Transcript("user", ev.delta, False)]

    def _on_user_done(self, ev: Event) -> list[CodecEvent]:
        if ev.transcript is None:
            return self._malformed(f"{ev.type} without transcript")
        return [Transcript("user", ev.transcript, True)]

    def _on_user_failed(self, ev: Event) -> list[CodecEvent]:
        message = ev.error.message if ev.error and ev.error.message else "transcription failed"
        return [ErrorFrame(ErrorCode.PROVIDER_ERROR, f"user transcription failed: {message}")]

    def _tool_call(self, call_id: str | None, name: str | None, arguments: str | None) -> list[CodecEvent]:
        if not call_id or name is None or call_id in self._calls_sent:
            return []
        if len(self._calls_sent) >= MAX_REMEMBERED_CALLS:
            self._calls_sent.clear()
        self._calls_sent.add(call_id)
        return [ToolCall(call_id, name, arguments if arguments is not None else "{}")]

    def _on_call_done(self, ev: Event) -> list[CodecEvent]:
        return self._tool_call(ev.call_id, ev.name, ev.arguments)

    def _on_response_done(self, ev: Event) -> list[CodecEvent]:
        out = self._reply_audio.close()
        self._response.ended()
        response = ev.response
        if response is None:
            out.append(Usage(0, 0))
        else:
            for item in response.output or ():
                if item.type == "function_call":
                    out += self._tool_call(item.call_id, item.name, item.arguments)
            # PROTOCOL v2: every response ends with exactly one usage frame, zeros if none;
            # a failure's error frame comes before it (the usage marks the end, as on Gemini),
            # a Fatal after it (the session ends; the response's counts are recorded first).
            usage = self._usage(ev) or Usage(0, 0)
            details = response.status_details
            if response.status == "failed":
                err = details.error if details and details.error else Err()
                message = err.message or "the provider failed the response"
                if err.code in REFUSED_ERRORS or err.code in AUTH_ERRORS:
                    code = ErrorCode.PROVIDER_AUTH_FAILED if err.code in AUTH_ERRORS else ErrorCode.PROVIDER_ERROR
                    out += [usage, Fatal(CloseCode.PROVIDER_REFUSED, code, message)]
                    return out
                out.append(ErrorFrame(ErrorCode.PROVIDER_ERROR, message))
            out.append(usage)
        self._outbound += self._response.send_deferred()
        return out

    def _usage(self, ev: Event) -> Usage | None:
        """OpenAI reports audio tokens in ``response.usage.*_token_details``."""
        usage = ev.response.usage if ev.response is not None else None
        if usage is None:
            return None
        in_d, out_d = usage.input_token_details, usage.output_token_details
        return Usage(in_d.audio_tokens if in_d else 0, out_d.audio_tokens if out_d else 0)

    def _on_speech_started(self, ev: Event) -> list[CodecEvent]:
        if self._hands_free:
            return [SpeechStarted()]
        # manual turns: only when a client of the OpenAI-compatible endpoint turned VAD on
        # itself; the provider cut its own reply and that client truncates it itself
        return [ClearAudio()]

    def _on_speech_stopped(self, ev: Event) -> list[CodecEvent]:
        return [SpeechStopped()] if self._hands_free else []

    def _on_committed(self, ev: Event) -> list[CodecEvent]:
        # the VAD committed the buffer (or our own commit was applied): a later commit
        # with no new audio would be an empty-buffer error
        self._audio_since_commit = False
        return []

    def _on_error(self, ev: Event) -> list[CodecEvent]:
        err = ev.error or Err()
        code = err.code or ""
        message = err.message or "provider error"
        if code in BENIGN_ERRORS:
            self.stats.counts["benign_error"] = self.stats.counts.get("benign_error", 0) + 1
            return []
        if code in AUTH_ERRORS:
            return [Fatal(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_AUTH_FAILED, message)]
        if code in REFUSED_ERRORS:
            return [Fatal(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR, message)]
        if code in ENDED_ERRORS:
            return [Fatal(CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE, message)]
        # our response.create refused: no response is active after all
        self._outbound += self._response.refused(err.event_id)
        if not self._ready:
            # Nothing but the session config has gone up (client messages wait for Ready), and
            # the provider sends no session.updated after refusing it: end now with its reason
            # instead of waiting out the read timeout (4500).
            where = f" (at {err.param})" if err.param else ""
            return [Fatal(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR,
                          f"the provider refused the session config{where}: {message}")]
        return [ErrorFrame(ErrorCode.PROVIDER_ERROR, message)]
