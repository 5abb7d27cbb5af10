"""Google Gemini Live codec (BidiGenerateContent, providers.md section 3).

Sans-IO. Gemini differs from OpenAI in shape, not in what the client sees:

- **Setup first.** ``start()`` sends one ``setup``; nothing else goes upstream before
  ``setupComplete`` (the bridge holds client messages until :class:`Ready`).
- **Turns** are bracketed by ``activityStart``/``activityEnd`` (automatic activity
  detection is off: the client's ``commit`` ends a turn, and Gemini answers after
  ``activityEnd``). A ``commit`` with no audio sends an empty activity.
- **Server turns** (``turnDetection`` ``server``): ``automaticActivityDetection`` is on with
  ``silenceDurationMs``/``prefixPaddingMs`` from ``silenceMs``/``prefixMs`` and both
  ``start``/``endOfSpeechSensitivity`` ``HIGH`` or ``LOW`` (Gemini has no middle setting:
  ``medium`` leaves its default), and ``activityHandling`` ``START_OF_ACTIVITY_INTERRUPTS``.
  The bridge then sends no ``activityStart``/``activityEnd`` (explicit activity signals are
  refused under automatic detection); a ``commit`` sends ``audioStreamEnd``, which flushes
  the audio and ends the turn. Speech start/stop come from ``voiceActivity``
  (``ACTIVITY_START``/``ACTIVITY_END``, google-genai ``LiveServerMessage.voice_activity``);
  where Gemini sends none, ``interrupted`` counts as the start and the first reply part as
  the stop. An ``interrupt`` in this mode only drops the rest of the reply (Gemini cuts its
  reply when it hears speech; there is no message to cut it otherwise).
- **Interrupt** starts a new activity, which interrupts Gemini; the codec drops the rest
  of the interrupted reply's audio until Gemini confirms with ``interrupted`` or
  ``turnComplete`` (Gemini has no item ids to tell replies apart).
- **Audio** goes up at 16 kHz (``audio/pcm;rate=16000``); the reply's rate is read from
  each ``inlineData.mimeType`` (bare ``audio/pcm`` means 24 kHz), never assumed.
- **Transcripts** are fragments: each is a delta; the ``final`` assistant transcript (the
  whole text) comes at ``turnComplete``, the user's when the model starts answering (its
  first audio, text or tool call) or at ``turnComplete``, whichever comes first.
- **Tool calls**: ``args`` (an object) is passed through as JSON text. A call without an
  ``id`` gets ``call_<n>``. ``tool_result`` sends ``toolResponse.functionResponses`` with
  the call's id and remembered name; an ``output`` that is a JSON object goes as the
  ``response`` object, anything else as ``{"output": <text>}``.
- **toolCallCancellation** (after an interruption): the cancelled ids are forgotten and a
  later ``tool_result`` for them is not forwarded (Gemini no longer expects it). docs/protocol.md
  has no cancel frame, so the client is not told; it already saw the interruption.
- **Usage** counts the ``AUDIO`` entries of ``promptTokensDetails`` and
  ``responseTokensDetails``.
- **goAway**: the codec asks the bridge to :class:`Reconnect` at the next point where the
  session can resume without losing anything: at once when the model is idle and the
  latest ``sessionResumptionUpdate`` was resumable, otherwise on the first resumable handle
  after the current turn (a handle issued mid-turn, or while a tool call waits, would
  replay or lose part of it). ``start()`` then sends ``setup`` with that handle. Without
  any handle there is nothing to resume; the connection ends when Gemini closes it.
- **Errors** arrive only as close codes (:data:`CLOSE_CODES`).
"""

from __future__ import annotations

import binascii
import re
from typing import Any

import msgspec

from ..codes import CloseCode, ErrorCode
from ..frames import ToolCall, Transcript, Usage
from ..params import SessionParams, hands_free, turn_detection
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
    Reconnect,
    SpeechStarted,
    SpeechStopped,
)

GEMINI_INPUT_RATE = 16000
#: Gemini's output rate when the mimeType does not say (providers.md 3.4).
GEMINI_DEFAULT_OUTPUT_RATE = 24000
DEFAULT_VOICE = "Puck"
#: Key under which a non-object tool output is wrapped.
TOOL_OUTPUT_KEY = "output"
MAX_REMEMBERED_CALLS = 4096

#: Gemini's own close code (standard WebSocket codes, not ours) -> (bridge close code, error
#: code). 1007: bad key or invalid setup; 1008: unknown model or policy; 1011: server error.
#: Anything else: provider went away.
CLOSE_CODES: dict[int, tuple[CloseCode, ErrorCode]] = {
    1007: (CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR),
    1008: (CloseCode.PROVIDER_REFUSED, ErrorCode.PROVIDER_ERROR),
    1011: (CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE),
}
_GONE = (CloseCode.PROVIDER_FAILED, ErrorCode.PROVIDER_UNAVAILABLE)

_ACTIVITY_START = '{"realtimeInput":{"activityStart":{}}}'
_ACTIVITY_END = '{"realtimeInput":{"activityEnd":{}}}'
_STREAM_END = '{"realtimeInput":{"audioStreamEnd":true}}'
#: ``sensitivity`` -> Gemini's two-level start/end-of-speech sensitivities.
SENSITIVITIES = {"low": "LOW", "high": "HIGH"}
_AUDIO_HEAD = '{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"'
_AUDIO_TAIL = '"}}}'
_RATE_RE = re.compile(r"rate=(\d+)")


class _InlineData(msgspec.Struct):
    mimeType: str | None = None
    data: str | None = None


class _Part(msgspec.Struct):
    inlineData: _InlineData | None = None
    text: str | None = None


class _ModelTurn(msgspec.Struct):
    parts: list[_Part] | None = None


class _Transcription(msgspec.Struct):
    text: str | None = None


class _ServerContent(msgspec.Struct):
    modelTurn: _ModelTurn | None = None
    turnComplete: bool | None = None
    generationComplete: bool | None = None
    interrupted: bool | None = None
    inputTranscription: _Transcription | None = None
    outputTranscription: _Transcription | None = None


class _FunctionCall(msgspec.Struct):
    id: str | None = None
    name: str | None = None
    args: msgspec.Raw = msgspec.Raw(b"")


class _ToolCall(msgspec.Struct):
    functionCalls: list[_FunctionCall] | None = None


class _Cancellation(msgspec.Struct):
    ids: list[str] | None = None


class _TokenCount(msgspec.Struct):
    modality: str | None = None
    tokenCount: int | None = None


class _UsageMetadata(msgspec.Struct):
    promptTokensDetails: list[_TokenCount] | None = None
    responseTokensDetails: list[_TokenCount] | None = None


class _GoAway(msgspec.Struct):
    timeLeft: str | None = None


class _Resumption(msgspec.Struct):
    newHandle: str | None = None
    resumable: bool | None = None


class _VoiceActivity(msgspec.Struct):
    voiceActivityType: str | None = None


class _Message(msgspec.Struct):
    setupComplete: dict | None = None
    serverContent: _ServerContent | None = None
    toolCall: _ToolCall | None = None
    toolCallCancellation: _Cancellation | None = None
    usageMetadata: _UsageMetadata | None = None
    goAway: _GoAway | None = None
    sessionResumptionUpdate: _Resumption | None = None
    voiceActivity: _VoiceActivity | None = None


_decoder = msgspec.json.Decoder(_Message)
_encoder = msgspec.json.Encoder()
_any_decoder = msgspec.json.Decoder()


def google_url(base_url: str, params: SessionParams) -> str:
    return base_url  # the model travels in setup; the key in a header


def google_headers(api_key: str) -> dict[str, str]:
    return {"x-goog-api-key": api_key}


_SCHEMA_TYPES = {"string", "number", "integer", "boolean", "array", "object"}


def gemini_schema(schema: Any) -> Any:
    """JSON Schema -> Gemini's OpenAPI-subset Schema (upper-case types). Keeps type,
    description, enum, properties, required, items, nullable; other keywords (pattern,
    formats beyond the basics, $ref, combinators) have no Live equivalent and are dropped."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    t = schema.get("type")
    if isinstance(t, list):  # ["string", "null"]
        out["nullable"] = "null" in t
        t = next((x for x in t if x != "null"), None)
    if t in _SCHEMA_TYPES:
        out["type"] = t.upper()
    for key in ("description", "enum", "required", "format", "nullable"):
        if key in schema:
            out[key] = schema[key]
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: gemini_schema(v) for k, v in schema["properties"].items()}
    if "items" in schema:
        out["items"] = gemini_schema(schema["items"])
    return out


def gemini_input_config(params: SessionParams) -> dict[str, Any]:
    """``realtimeInputConfig`` for the minted turn detection."""
    turn = turn_detection(params)
    if turn.type != "server":
        return {"automaticActivityDetection": {"disabled": True}}
    detection: dict[str, Any] = {"disabled": False}
    level = SENSITIVITIES.get(turn.sensitivity or "")
    if level is not None:
        detection["startOfSpeechSensitivity"] = f"START_SENSITIVITY_{level}"
        detection["endOfSpeechSensitivity"] = f"END_SENSITIVITY_{level}"
    if turn.prefix_ms is not None:
        detection["prefixPaddingMs"] = turn.prefix_ms
    if turn.silence_ms is not None:
        detection["silenceDurationMs"] = turn.silence_ms
    return {"automaticActivityDetection": detection, "activityHandling": "START_OF_ACTIVITY_INTERRUPTS"}


def gemini_setup(params: SessionParams, handle: str | None) -> dict[str, Any]:
    model = params.model if params.model.startswith("models/") else f"models/{params.model}"
    generation: dict[str, Any] = {
        "responseModalities": ["AUDIO"],
        "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": params.voice or DEFAULT_VOICE}}},
    }
    if params.temperature is not None:
        generation["temperature"] = params.temperature
    setup: dict[str, Any] = {
        "model": model,
        "generationConfig": generation,
        "realtimeInputConfig": gemini_input_config(params),
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
        "sessionResumption": {"handle": handle} if handle else {},
    }
    if params.system_prompt:
        setup["systemInstruction"] = {"parts": [{"text": params.system_prompt}], "role": "user"}
    if params.tools:
        declarations = []
        for tool in params.tools:
            decl: dict[str, Any] = {"name": tool.name}
            if tool.description:
                decl["description"] = tool.description
            if tool.parameters and tool.parameters.get("properties"):
                decl["parameters"] = gemini_schema(tool.parameters)
            declarations.append(decl)
        setup["tools"] = [{"functionDeclarations": declarations}]
    return {"setup": setup}


class GoogleCodec(Codec):
    provider = "google"

    def __init__(self, params: SessionParams) -> None:
        super().__init__(params)
        self._handle: str | None = None
        self._resumable = False
        self._go_away = False
        self._in_activity = False
        self._gated = False  # drop the interrupted reply's audio until Gemini confirms
        self._responding = False
        self._audio_open = False
        self._user_text: list[str] = []
        self._user_pending = False  # user fragments not yet closed by a final
        self._assistant_text: list[str] = []
        self._calls: dict[str, str] = {}
        self._cancelled: set[str] = set()
        self._call_seq = 0
        self._hands_free = hands_free(params)
        self._speaking = False  # server turns: the user is speaking (voiceActivity)
        self._turn_usage = False  # a usageMetadata came during the current model turn
        self._model_output = False  # the model produced output since its last turnComplete

    @property
    def input_rate(self) -> int:
        return GEMINI_INPUT_RATE

    # -------------------------------------------------------------------- client intents

    def start(self) -> list[Outbound]:
        self._in_activity = False
        self._go_away = False
        self._responding = self._gated = self._audio_open = False
        return [_encoder.encode(gemini_setup(self.params, self._handle)).decode()]

    def audio(self, pcm: bytes) -> list[Outbound]:
        frame = _AUDIO_HEAD + binascii.b2a_base64(pcm, newline=False).decode("ascii") + _AUDIO_TAIL
        if self._in_activity or self._hands_free:
            return [frame]
        self._in_activity = True
        return [_ACTIVITY_START, frame]

    def commit(self) -> list[Outbound]:
        if self._hands_free:
            self._responding = True
            return [_STREAM_END]
        out = [] if self._in_activity else [_ACTIVITY_START]
        self._in_activity = False
        self._responding = True  # the model answers after activityEnd
        return out + [_ACTIVITY_END]

    def text(self, text: str) -> list[Outbound]:
        """Server turns: ``realtimeInput.text``, real-time input like speech (it interrupts a
        reply, and the model answers it). Manual turns: a complete ``clientContent`` user
        turn (``turnComplete``), which the model answers with no activity signals (google-genai
        ``LiveClientRealtimeInput.text`` / ``LiveClientContent``)."""
        self._responding = True
        if self._hands_free:
            return [_encoder.encode({"realtimeInput": {"text": text}}).decode()]
        turn = {"role": "user", "parts": [{"text": text}]}
        return [_encoder.encode({"clientContent": {"turns": [turn], "turnComplete": True}}).decode()]

    def interrupt(self, played_ms: int) -> list[Outbound]:
        if not self._responding:
            return []
        self._gated = True
        if self._in_activity or self._hands_free:
            return []  # the open activity already interrupts
        self._in_activity = True
        return [_ACTIVITY_START]

    def barge_in(self, played_ms: int) -> list[Outbound]:
        # Gemini cuts its own reply when it hears speech (START_OF_ACTIVITY_INTERRUPTS); the
        # codec drops the rest of a reply already under way until Gemini confirms. A reply
        # not begun yet (asked by a commit or typed turn meanwhile) is the answer to come.
        return self.interrupt(played_ms) if self._model_output else []

    def tool_result(self, call_id: str, output: str) -> list[Outbound]:
        if call_id in self._cancelled:
            return []
        try:
            value = _any_decoder.decode(output)
        except (msgspec.DecodeError, RecursionError):  # not JSON, or nested too deep to read
            value = None
        response = value if isinstance(value, dict) else {TOOL_OUTPUT_KEY: output}
        reply = {"id": call_id, "name": self._calls.get(call_id, ""), "response": response}
        self._responding = True  # the model continues by itself
        return [_encoder.encode({"toolResponse": {"functionResponses": [reply]}}).decode()]

    # -------------------------------------------------------------------- server messages

    def receive(self, data: str | bytes) -> list[CodecEvent]:
        try:
            msg = _decoder.decode(data)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            return self._malformed("not a JSON message of the expected shape")
        except UNREADABLE as exc:
            return self._malformed(f"unreadable message: {type(exc).__name__}")
        self.stats.events += 1
        out: list[CodecEvent] = []
        known = False
        if msg.setupComplete is not None:
            known = True
            out.append(Ready())
        if msg.serverContent is not None:
            known = True
            self._server_content(msg.serverContent, out)
        if msg.toolCall is not None:
            known = True
            self._tool_call(msg.toolCall, out)
        if msg.toolCallCancellation is not None:
            known = True
            if len(self._cancelled) >= MAX_REMEMBERED_CALLS:
                self._cancelled.clear()
            for call_id in msg.toolCallCancellation.ids or ():
                self._calls.pop(call_id, None)
                self._cancelled.add(call_id)
        if msg.usageMetadata is not None:
            known = True
            self._turn_usage = True
            out.append(Usage(_audio_tokens(msg.usageMetadata.promptTokensDetails),
                             _audio_tokens(msg.usageMetadata.responseTokensDetails)))
        if msg.serverContent is not None and msg.serverContent.turnComplete:
            # protocol v2: one usage ends every model turn; Gemini may send no
            # usageMetadata for a turn (usually it rides on turnComplete, or comes just
            # before it): zeros then
            if not self._turn_usage:
                out.append(Usage(0, 0))
            self._turn_usage = False
        if msg.sessionResumptionUpdate is not None:
            known = True
            update = msg.sessionResumptionUpdate
            self._resumable = bool(update.resumable and update.newHandle)
            if self._resumable:
                self._handle = update.newHandle
                if self._go_away and self._idle:
                    out.append(Reconnect("goAway: resuming at the end of the turn"))
        if msg.voiceActivity is not None:
            known = True
            kind = msg.voiceActivity.voiceActivityType
            if kind == "ACTIVITY_START":
                self._speech_started(out)
            elif kind == "ACTIVITY_END":
                self._speech_stopped(out)
        if msg.goAway is not None:
            known = True
            self._go_away = True
            if self._resumable and self._idle:
                out.append(Reconnect(f"goAway (time left {msg.goAway.timeLeft})"))
        if not known:
            self.stats.unknown_events += 1
        return out

    @property
    def _idle(self) -> bool:
        """No user activity open and no model turn under way: safe to resume elsewhere."""
        return not self._in_activity and not self._responding

    def _speech_started(self, out: list[CodecEvent]) -> None:
        if self._hands_free and not self._speaking:
            self._speaking = True
            out.append(SpeechStarted())

    def _speech_stopped(self, out: list[CodecEvent]) -> None:
        if self._hands_free and self._speaking:
            self._speaking = False
            out.append(SpeechStopped())

    def _model_answers(self, out: list[CodecEvent]) -> None:
        """The model's reply began: the user's turn is over (where Gemini sent no
        ``ACTIVITY_END``, this is the stop), and the user's transcript is final."""
        self._model_output = True
        self._speech_stopped(out)
        self._close_user_turn(out)

    def _close_user_turn(self, out: list[CodecEvent]) -> None:
        if self._user_pending:
            self._user_pending = False
            out.append(Transcript("user", "".join(self._user_text), True))
            self._user_text = []

    def _server_content(self, content: _ServerContent, out: list[CodecEvent]) -> None:
        if content.inputTranscription is not None and content.inputTranscription.text:
            text = content.inputTranscription.text
            self._user_text.append(text)
            self._user_pending = True
            out.append(Transcript("user", text, False))
        if content.modelTurn is not None:
            for part in content.modelTurn.parts or ():
                inline = part.inlineData
                if inline is None or inline.data is None:
                    continue
                try:
                    pcm = binascii.a2b_base64(inline.data)
                except (binascii.Error, ValueError):
                    self._malformed("modelTurn audio is not base64", out)
                    continue
                self._model_answers(out)
                self._responding = True
                if self._gated or not pcm:
                    continue
                self._audio_open = True
                out.append(AudioOut(pcm, _rate(inline.mimeType)))
        if content.outputTranscription is not None and content.outputTranscription.text:
            self._model_answers(out)
            self._responding = True
            text = content.outputTranscription.text
            self._assistant_text.append(text)
            out.append(Transcript("assistant", text, False))
        if content.interrupted:
            self._speech_started(out)  # Gemini cut its reply because it heard the user
            self._gated = False
            self._audio_open = False
            out.append(ClearAudio())
        if content.generationComplete and self._audio_open:
            self._audio_open = False
            out.append(AudioDone())
        if content.turnComplete:
            if self._audio_open:
                self._audio_open = False
                out.append(AudioDone())
            self._close_user_turn(out)
            if self._assistant_text:
                out.append(Transcript("assistant", "".join(self._assistant_text), True))
                self._assistant_text = []
            self._responding = False
            self._gated = False
            self._model_output = False

    def _tool_call(self, call: _ToolCall, out: list[CodecEvent]) -> None:
        self._model_answers(out)
        for fc in call.functionCalls or ():
            if not fc.name:
                self._malformed("functionCall without name", out)
                continue
            call_id = fc.id
            if not call_id:
                self._call_seq += 1
                call_id = f"call_{self._call_seq}"
            if call_id in self._calls or call_id in self._cancelled:
                continue  # one tool_call per id
            try:
                args = bytes(fc.args).decode()  # the object as sent, no re-encoding
            except UnicodeDecodeError:  # msgspec checks strings, not a Raw's bytes
                self._malformed("functionCall args are not UTF-8", out)
                continue
            if len(self._calls) >= MAX_REMEMBERED_CALLS:
                self._calls.clear()
            self._calls[call_id] = fc.name
            out.append(ToolCall(call_id, fc.name, args if args.lstrip().startswith("{") else "{}"))
        self._responding = False  # the model waits for the client's tool_result

    def upstream_closed(self, code: int | None, reason: str) -> Fatal:
        close, error = CLOSE_CODES.get(code or 0, _GONE)
        if code in (1007, 1008) and "api key" in reason.lower():
            error = ErrorCode.PROVIDER_AUTH_FAILED
        detail = f"provider closed the connection (code {code}{': ' + reason if reason else ''})"
        return Fatal(close, error, detail)


def _rate(mime: str | None) -> int:
    if mime:
        match = _RATE_RE.search(mime)
        if match:
            return int(match.group(1))
    return GEMINI_DEFAULT_OUTPUT_RATE


def _audio_tokens(details: list[_TokenCount] | None) -> int:
    return sum(d.tokenCount or 0 for d in details or () if d.modality == "AUDIO")
