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
from ..params import ServerTurns, SessionParams, hands_free, turn_detection
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

OPENAI_RATE = 24000
DEFAULT_VOICE = "marin"
#: The transcription model that makes user transcripts arrive (providers.md 2.2).
TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
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


# ---------------------------------------------------------------- typed view of server events
# Only the fields the handlers read; everything else is skipped by msgspec without building
# Python objects, which keeps the audio-delta path cheap.


class _Err(msgspec.Struct):
    type: str | None = None
    code: str | None = None
    message: str | None = None
    event_id: str | None = None  # the client event the error answers, when it had an id
    param: str | None = None


class _TokenDetails(msgspec.Struct):
    audio_tokens: int = 0


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_token_details: _TokenDetails | None = None
    output_token_details: _TokenDetails | None = None


class _StatusDetails(msgspec.Struct):
    type: str | None = None
    reason: str | None = None
    error: _Err | None = None


class _OutputItem(msgspec.Struct):
    type: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class _Response(msgspec.Struct):
    id: str | None = None
    status: str | None = None
    status_details: _StatusDetails | None = None
    usage: _Usage | None = None
    output: list[_OutputItem] | None = None


class _Event(msgspec.Struct):
    type: str
    delta: str | None = None
    transcript: str | None = None
    text: str | None = None
    item_id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    response: _Response | None = None
    error: _Err | None = None
    usage: _Usage | None = None  # xAI puts usage at the top level of response.done
    status: str | None = None  # xAI: a transcription ``.completed`` that is still in progress


_decoder = msgspec.json.Decoder(_Event)
_encoder = msgspec.json.Encoder()

#: ``sensitivity`` -> server_vad ``threshold`` (0..1, OpenAI's default 0.5): a higher
#: threshold needs louder audio to count as speech, so it is the *less* sensitive setting.
VAD_THRESHOLDS = {"low": 0.7, "medium": 0.5, "high": 0.3}


def vad_fields(turn: ServerTurns) -> dict[str, Any]:
    """The server_vad fields a ``server`` turn detection sets (the rest: provider defaults)."""
    out: dict[str, Any] = {}
    if turn.sensitivity is not None:
        out["threshold"] = VAD_THRESHOLDS[turn.sensitivity]
    if turn.prefix_ms is not None:
        out["prefix_padding_ms"] = turn.prefix_ms
    if turn.silence_ms is not None:
        out["silence_duration_ms"] = turn.silence_ms
    return out


def openai_turn_detection(params: SessionParams) -> dict[str, Any] | None:
    """``audio.input.turn_detection`` for the minted turn detection (None: manual)."""
    turn = turn_detection(params)
    if turn.type == "server":
        return {"type": "server_vad", **vad_fields(turn), "create_response": True, "interrupt_response": True}
    if turn.type == "semantic":
        eagerness = {"eagerness": turn.eagerness} if turn.eagerness is not None else {}
        return {"type": "semantic_vad", **eagerness, "create_response": True, "interrupt_response": True}
    return None


_APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"'
_APPEND_TAIL = '"}'
_COMMIT = '{"type":"input_audio_buffer.commit"}'
_RESPONSE_CREATE = '{"type":"response.create","event_id":"%s"}'


def openai_session_config(params: SessionParams) -> dict[str, Any]:
    """The GA ``session`` object of the first ``session.update`` for these params."""
    session: dict[str, Any] = {
        "type": "realtime",
        "model": params.model,
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": OPENAI_RATE},
                "turn_detection": openai_turn_detection(params),
                "transcription": {"model": TRANSCRIPTION_MODEL},
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": OPENAI_RATE},
                "voice": params.voice or DEFAULT_VOICE,
            },
        },
    }
    if params.system_prompt:
        session["instructions"] = params.system_prompt
    if params.tools:
        session["tools"] = [function_tool(t) for t in params.tools]
        session["tool_choice"] = "auto"
    return session


def function_tool(tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description:
        spec["description"] = tool.description
    spec["parameters"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    return spec


def _json(event: dict[str, Any]) -> str:
    return _encoder.encode(event).decode()


class OpenAICodec(Codec):
    provider = "openai"

    def __init__(self, params: SessionParams) -> None:
        super().__init__(params)
        #: PCM rates on the wire to the provider (OpenAI: 24 kHz both ways, fixed).
        self._in_rate = OPENAI_RATE
        self._out_rate = OPENAI_RATE
        self._ready = False
        self._audio_since_commit = False
        self._response_active = False  # requested or in progress
        self._response_id: str | None = None
        self._create_deferred = False
        self._create_seq = 0
        self._create_id: str | None = None  # event_id of the response.create not yet answered
        self._outbound: list[Outbound] = []
        # assistant audio of the item being received: for truncate on interrupt
        self._audio_item: str | None = None
        self._audio_item_bytes = 0
        self._audio_open = False  # deltas seen since the last AudioDone
        self._calls_sent: set[str] = set()
        self._hands_free = hands_free(params)
        self._handlers = {
            "session.updated": self._on_session_updated,
            "response.created": self._on_response_created,
            "response.done": self._on_response_done,
            "response.output_audio.delta": self._on_audio_delta,
            "response.audio.delta": self._on_audio_delta,
            "response.output_audio.done": self._on_audio_done,
            "response.audio.done": self._on_audio_done,
            "response.output_audio_transcript.delta": self._on_assistant_delta,
            "response.audio_transcript.delta": self._on_assistant_delta,
            "response.output_text.delta": self._on_assistant_delta,
            "response.text.delta": self._on_assistant_delta,
            "response.output_audio_transcript.done": self._on_assistant_done,
            "response.audio_transcript.done": self._on_assistant_done,
            "response.output_text.done": self._on_assistant_done,
            "response.text.done": self._on_assistant_done,
            "conversation.item.input_audio_transcription.delta": self._on_user_delta,
            "conversation.item.input_audio_transcription.completed": self._on_user_done,
            "conversation.item.input_audio_transcription.failed": self._on_user_failed,
            "response.function_call_arguments.done": self._on_call_done,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "input_audio_buffer.committed": self._on_committed,
            "error": self._on_error,
        }
        #: Events that need no action but are part of the protocol (not "unknown").
        self._known_quiet = frozenset({
            "session.created", "conversation.created", "conversation.item.added",
            "conversation.item.done", "conversation.item.created", "conversation.item.truncated",
            "conversation.item.deleted", "conversation.item.retrieved",
            "conversation.item.input_audio_transcription.segment",
            "input_audio_buffer.cleared", "input_audio_buffer.timeout_triggered",
            "response.output_item.added", "response.output_item.done",
            "response.content_part.added", "response.content_part.done",
            "response.function_call_arguments.delta", "rate_limits.updated",
        })

    @property
    def input_rate(self) -> int:
        return self._in_rate

    # -------------------------------------------------------------------- client intents

    def start(self) -> list[Outbound]:
        return [_json({"type": "session.update", "session": openai_session_config(self.params)})]

    def audio(self, pcm: bytes) -> list[Outbound]:
        self._audio_since_commit = True
        return [_APPEND_HEAD + binascii.b2a_base64(pcm, newline=False).decode("ascii") + _APPEND_TAIL]

    def _create_response(self) -> list[Outbound]:
        if self._response_active:
            self._create_deferred = True
            return []
        return [self._response_create()]

    def _response_create(self) -> str:
        self._response_active = True
        self._create_seq += 1
        self._create_id = f"speko_create_{self._create_seq}"
        return _RESPONSE_CREATE % self._create_id

    def commit(self) -> list[Outbound]:
        out: list[Outbound] = []
        if self._audio_since_commit:
            out.append(_COMMIT)
            self._audio_since_commit = False
        return out + self._create_response()

    def text(self, text: str, respond: bool = True) -> list[Outbound]:
        """A user message item with ``input_text`` (GA ``conversation.item.create``), then a
        response: in every turn mode (the VAD answers audio only). Without ``respond`` the
        item alone: a later :meth:`commit` asks for the response."""
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        return [_json({"type": "conversation.item.create", "item": item}),
                *(self._create_response() if respond else ())]

    def interrupt(self, played_ms: int) -> list[Outbound]:
        out: list[Outbound] = []
        if self._response_active:
            cancel: dict[str, Any] = {"type": "response.cancel"}
            if self._response_id:
                cancel["response_id"] = self._response_id
            out.append(_json(cancel))
        return out + self._truncate(played_ms)

    def barge_in(self, played_ms: int) -> list[Outbound]:
        """As :meth:`interrupt`, but only a response the provider had begun (``response.created``
        seen): the provider's events are in order, so a ``response.create`` it has not answered
        yet reached it after it heard the user (a commit or typed turn sent meanwhile), and is
        the answer to come, not the reply to cut."""
        out: list[Outbound] = []
        if self._response_active and self._response_id:
            out.append(_json({"type": "response.cancel", "response_id": self._response_id}))
        return out + self._truncate(played_ms)

    def _truncate(self, played_ms: int) -> list[Outbound]:
        out: list[Outbound] = []
        if self._audio_item is not None and self._audio_item_bytes:
            received_ms = self._audio_item_bytes * 1000 // (2 * self._out_rate)
            out.append(_json({
                "type": "conversation.item.truncate",
                "item_id": self._audio_item,
                "content_index": 0,
                "audio_end_ms": max(0, min(int(played_ms), received_ms)),
            }))
            self._audio_item = None
            self._audio_item_bytes = 0
        return out

    def tool_result(self, call_id: str, output: str) -> list[Outbound]:
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        return [_json({"type": "conversation.item.create", "item": item}), *self._create_response()]

    def drain_outbound(self) -> list[Outbound]:
        out, self._outbound = self._outbound, []
        return out

    # -------------------------------------------------------------------- server events

    def receive(self, data: str | bytes) -> list[CodecEvent]:
        try:
            event = _decoder.decode(data)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            return self._malformed("not a JSON event of the expected shape")
        except UNREADABLE as exc:
            return self._malformed(f"unreadable event: {type(exc).__name__}")
        stats = self.stats
        stats.events += 1
        kind = event.type
        handler = self._handlers.get(kind)
        if handler is None and kind not in self._known_quiet:
            # counted, but not by name: an upstream could invent types without end
            stats.unknown_events += 1
            return []
        stats.counts[kind] = stats.counts.get(kind, 0) + 1
        return handler(event) if handler is not None else []

    def _on_session_updated(self, ev: _Event) -> list[CodecEvent]:
        if self._ready:
            return []
        self._ready = True
        return [Ready()]

    def _on_response_created(self, ev: _Event) -> list[CodecEvent]:
        self._response_active = True
        self._create_id = None
        self._response_id = ev.response.id if ev.response else None
        return []

    def _on_audio_delta(self, ev: _Event) -> list[CodecEvent]:
        if ev.delta is None:
            return self._malformed(f"{ev.type} without delta")
        try:
            pcm = binascii.a2b_base64(ev.delta)
        except (binascii.Error, ValueError):
            return self._malformed(f"{ev.type} delta is not base64")
        if ev.item_id != self._audio_item:
            self._audio_item = ev.item_id
            self._audio_item_bytes = 0
        self._audio_item_bytes += len(pcm)
        self._audio_open = True
        return [AudioOut(pcm, self._out_rate, ev.item_id)]

    def _on_audio_done(self, ev: _Event) -> list[CodecEvent]:
        if not self._audio_open:
            return []
        self._audio_open = False
        return [AudioDone()]

    def _on_assistant_delta(self, ev: _Event) -> list[CodecEvent]:
        if ev.delta is None:
            return self._malformed(f"{ev.type} without delta")
        return [Transcript("assistant", ev.delta, False)]

    def _on_assistant_done(self, ev: _Event) -> list[CodecEvent]:
        text = ev.transcript if ev.transcript is not None else ev.text
        if text is None:
            return self._malformed(f"{ev.type} without text")
        return [Transcript("assistant", text, True)]

    def _on_user_delta(self, ev: _Event) -> list[CodecEvent]:
        if ev.delta is None:
            return self._malformed(f"{ev.type} without delta")
        return [Transcript("user", ev.delta, False)]

    def _on_user_done(self, ev: _Event) -> list[CodecEvent]:
        if ev.transcript is None:
            return self._malformed(f"{ev.type} without transcript")
        return [Transcript("user", ev.transcript, True)]

    def _on_user_failed(self, ev: _Event) -> list[CodecEvent]:
        message = ev.error.message if ev.error and ev.error.message else "transcription failed"
        return [ErrorFrame(ErrorCode.PROVIDER_ERROR, f"user transcription failed: {message}")]

    def _tool_call(self, call_id: str | None, name: str | None, arguments: str | None) -> list[CodecEvent]:
        if not call_id or name is None or call_id in self._calls_sent:
            return []
        if len(self._calls_sent) >= MAX_REMEMBERED_CALLS:
            self._calls_sent.clear()
        self._calls_sent.add(call_id)
        return [ToolCall(call_id, name, arguments if arguments is not None else "{}")]

    def _on_call_done(self, ev: _Event) -> list[CodecEvent]:
        return self._tool_call(ev.call_id, ev.name, ev.arguments)

    def _on_response_done(self, ev: _Event) -> list[CodecEvent]:
        out: list[CodecEvent] = []
        if self._audio_open:
            self._audio_open = False
            out.append(AudioDone())
        self._response_active = False
        self._response_id = None
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
                err = details.error if details and details.error else _Err()
                message = err.message or "the provider failed the response"
                if err.code in REFUSED_ERRORS or err.code in AUTH_ERRORS:
                    code = ErrorCode.PROVIDER_AUTH_FAILED if err.code in AUTH_ERRORS else ErrorCode.PROVIDER_ERROR
                    out += [usage, Fatal(CloseCode.PROVIDER_REFUSED, code, message)]
                    return out
                out.append(ErrorFrame(ErrorCode.PROVIDER_ERROR, message))
            out.append(usage)
        if self._create_deferred:
            self._create_deferred = False
            self._outbound.append(self._response_create())
        return out

    def _usage(self, ev: _Event) -> Usage | None:
        """OpenAI reports audio tokens in ``response.usage.*_token_details``."""
        usage = ev.response.usage if ev.response is not None else None
        if usage is None:
            return None
        in_d, out_d = usage.input_token_details, usage.output_token_details
        return Usage(in_d.audio_tokens if in_d else 0, out_d.audio_tokens if out_d else 0)

    def _on_speech_started(self, ev: _Event) -> list[CodecEvent]:
        if self._hands_free:
            return [SpeechStarted()]
        # manual turns: only when a client of the OpenAI-compatible endpoint turned VAD on
        # itself; the provider cut its own reply and that client truncates it itself
        return [ClearAudio()]

    def _on_speech_stopped(self, ev: _Event) -> list[CodecEvent]:
        return [SpeechStopped()] if self._hands_free else []

    def _on_committed(self, ev: _Event) -> list[CodecEvent]:
        # the VAD committed the buffer (or our own commit was applied): a later commit
        # with no new audio would be an empty-buffer error
        self._audio_since_commit = False
        return []

    def _on_error(self, ev: _Event) -> list[CodecEvent]:
        err = ev.error or _Err()
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
        if err.event_id is not None and err.event_id == self._create_id:
            # our response.create was refused: no response is active after all
            self._response_active = False
            self._create_id = None
            if self._create_deferred:
                self._create_deferred = False
                self._outbound.append(self._response_create())
        if not self._ready:
            # Nothing but the session config has gone up (client messages wait for Ready), and
            # the provider sends no session.updated after refusing it: end now with its reason
            # instead of waiting out the read timeout (4500).
            where = f" (at {err.param})" if err.param else ""
            return [Fatal(CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR,
                          f"the provider refused the session config{where}: {message}")]
        return [ErrorFrame(ErrorCode.PROVIDER_ERROR, message)]
