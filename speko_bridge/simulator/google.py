"""A fake Gemini Live server (BidiGenerateContent, providers.md section 3) over a real WebSocket.

It speaks what the real service speaks: JSON in **binary** frames (``text_frames=True``
sends text frames instead, which the real server also does at times), ``setupComplete``
after a valid ``setup``, transcription fragments, tool calls, ``usageMetadata``,
``sessionResumptionUpdate`` handles, ``goAway`` and errors only as close codes:

- bad or missing key: close 1007 "API key not valid. Please pass a valid API key."
  (after the ``setup``, as observed: the upgrade itself succeeds);
- a model that is not one of the Gemini API's Live models: close 1008 "models/X is not found ...";
- any client message that the ``google-genai`` package's ``LiveClientMessage`` rejects
  (strictly: unknown fields too), a message before ``setup``, or more than one key in a
  message: close 1007 "Request contains an invalid argument." and a recorded violation.

``setup.realtimeInputConfig`` is checked with ``types.RealtimeInputConfig``: the SDK's
``LiveClientSetup`` type lacks the field, but its own converter sends it there.

Deterministic turns (manual activity detection, as the bridge configures it):

- ``activityStart`` opens a user activity; audio inside it is counted; ``activityEnd``
  closes it and the model answers. The user's words, as ``inputTranscription`` fragments
  (one per word): ``"I spoke for S seconds."``.
- After user audio, in a session with tools: a ``toolCall`` for the first declared
  function (id ``function-call-N``, args built from the schema: strings ``"Paris"``,
  numbers ``1``, booleans ``true``), then ``sessionResumptionUpdate{resumable: false}``.
  The model continues by itself after the matching ``toolResponse``.
- Otherwise a spoken reply: ``reply_ms`` of 24 kHz tone in 100 ms ``inlineData`` chunks
  (``audio/pcm;rate=24000``), ``outputTranscription`` word fragments ("You spoke for S
  seconds.", "The tool said: <response JSON>", or "You wrote: <text>" after a typed
  turn), ``generationComplete``, then ``turnComplete`` with ``usageMetadata`` and a resumable ``sessionResumptionUpdate``.
- ``activityStart`` during a reply interrupts it: ``interrupted`` then ``turnComplete``
  (no ``generationComplete``), and a ``toolCallCancellation`` for a pending call. With
  ``send_interrupted=False`` the turn ends with ``turnComplete`` alone: the service does
  not promise the ``interrupted`` flag, and a client must not wait for it.
- Real-service behaviours (issue 19), each citing its source where it is implemented:
  realtime input while a BLOCKING call is unanswered closes 1008; a declaration without
  ``behavior`` is NON_BLOCKING (the model says "Let me check that." and ends its turn
  without waiting); without ``contextWindowCompression`` the session closes after
  ``session_cap_seconds``; the user's transcription arrives late and split around the
  reply's first audio; ``reject_turn`` answers a turn with only ``turnCompleteReason``.
- Automatic activity detection (``realtimeInputConfig.automaticActivityDetection`` not
  disabled): speech start/stop from the audio's energy (:mod:`.vad`) with
  ``silenceDurationMs``, ``prefixPaddingMs`` and the start sensitivity (``HIGH``/``LOW``),
  announced as ``voiceActivity{voiceActivityType: ACTIVITY_START|ACTIVITY_END}``
  (google-genai ``LiveServerMessage.voice_activity``). A start during a reply interrupts it
  (``activityHandling`` ``START_OF_ACTIVITY_INTERRUPTS``, the default); the end starts the
  reply. ``audioStreamEnd`` ends speech in progress. ``activityStart``/``activityEnd`` in
  this mode close 1007 (providers.md 3.3). ``realtimeInput.text`` is a typed turn in either
  mode.
- Usage: prompt AUDIO tokens = ceil(input ms * 32 / 1000) (Gemini counts 32 tokens per
  second of audio), TEXT 10; response AUDIO tokens = ceil(output ms * 32 / 1000).
- With ``sessionResumption`` in the setup, a handle is issued right after
  ``setupComplete`` and after every turn; a ``setup`` carrying a known handle resumes
  that conversation (``resumed`` counts them), an unknown one closes 1007.
- ``go_away_after`` seconds after ``setupComplete`` (on the first ``go_away_connections``
  connections) the server sends ``goAway{timeLeft}`` and closes 1011 "Deadline expired"
  ``go_away_grace`` seconds later, as the real service does at its connection limit.
"""

from __future__ import annotations

import asyncio
import binascii
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from aiohttp import WSMsgType, web

from ..models import KNOWN_MODELS
from .base import SimulatorServer
from .openai import _example_args, _tone, _words
from .vad import EnergyVad

OUTPUT_RATE = 24000
CHUNK_MS = 100
TOKENS_PER_SECOND = 32
PATH = "/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
MAX_REASON_BYTES = 123  # observed: Gemini truncates close reasons
#: Gemini documents no defaults for silenceDurationMs/prefixPaddingMs: OpenAI's are used.
DEFAULT_SILENCE_MS, DEFAULT_PREFIX_MS = 500, 300
#: startOfSpeechSensitivity -> the detector's threshold (HIGH: quieter speech counts).
SENSITIVITY_THRESHOLDS = {"START_SENSITIVITY_HIGH": 0.3, "START_SENSITIVITY_LOW": 0.7}

BAD_KEY = (1007, "API key not valid. Please pass a valid API key.")
INVALID_ARGUMENT = (1007, "Request contains an invalid argument.")
INTERNAL = (1011, "Internal error occurred.")
DEADLINE = (1011, "Deadline expired before operation could complete.")
CONTEXT_LIMIT = (1011, "Deadline expired before operation could complete.")
#: Realtime input while a BLOCKING call is unanswered: the service closes 1008 with no
#: reason (observed as "1008 None", autonomous-ai/autonomous-os#231; pipecat and LiteLLM
#: gate their input for the same reason, BerriAI/litellm#26590).
INPUT_DURING_CALL = (1008, "")

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _get(obj: Any, camel: str) -> Any:
    """A field in either case (the real server accepts both, and the SDK mixes them)."""
    if not isinstance(obj, dict):
        return None
    return obj[camel] if camel in obj else obj.get(_snake(camel))


def live_message_checker():
    """``check(message) -> str | None`` from the google-genai package's pydantic types."""
    import pydantic
    from google.genai import types

    def check(message: Any) -> str | None:
        if not isinstance(message, dict) or len(message) != 1:
            return "a client message has exactly one key"
        setup = _get(message, "setup")
        try:
            if isinstance(setup, dict):
                setup = dict(setup)
                ric = setup.pop("realtimeInputConfig", setup.pop("realtime_input_config", None))
                if ric is not None:
                    types.RealtimeInputConfig.model_validate(ric)
                message = {"setup": setup}
            types.LiveClientMessage.model_validate(message)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
        realtime = _get(message, "realtimeInput")
        if isinstance(realtime, dict) and len(realtime) != 1:
            return "realtimeInput carries one field per message"
        return None

    return check


@dataclass
class GoogleSimConfig:
    api_key: str | None = "sk-sim"
    fail: Literal[None, "drop_mid_response", "close_mid_response", "stall_mid_response"] = None
    #: Close code and reason for ``close_mid_response``.
    fail_close: tuple[int, str] = INTERNAL
    delta_interval: float = 0.0
    reply_ms: int = 1000
    echo: bool = False
    validate: bool = True
    text_frames: bool = False
    #: Send ``interrupted`` before the ``turnComplete`` of an interrupted reply.
    send_interrupted: bool = True
    go_away_after: float | None = None
    go_away_grace: float = 2.0
    go_away_connections: int = 1
    #: The Live models this server serves (``setup.model`` is ``models/<id>``).
    models: tuple[str, ...] = KNOWN_MODELS["google"]
    #: A declaration without ``behavior`` behaves so (newer Live models: NON_BLOCKING).
    default_behavior: Literal["BLOCKING", "NON_BLOCKING"] = "NON_BLOCKING"
    #: Without ``contextWindowCompression`` the session ends after this long (the real
    #: service: ~15 minutes of audio fill its 128k-token window); None: never.
    session_cap_seconds: float | None = 15 * 60
    #: "late": half the user's words before the reply's first audio, the rest after it (the
    #: real service's usual order); "early": all before it; "after_turn": all after turnComplete.
    input_transcription: Literal["late", "early", "after_turn"] = "late"
    #: The model turn (1 = first) answered with no content, ``turnComplete`` and this
    #: ``turnCompleteReason`` (and no usage); None: never.
    reject_turn: int | None = None
    reject_reason: str = "RESPONSE_REJECTED"


@dataclass
class _Conversation:
    """What survives a resumption: the model's side of the conversation."""

    tools: list[dict] = field(default_factory=list)
    calls: dict[str, str] = field(default_factory=dict)  # pending call id -> name
    turns: int = 0
    blocking: set[str] = field(default_factory=set)  # pending calls the model waits on
    started: float = field(default_factory=time.monotonic)
    compressed: bool = False


class _Conn:
    def __init__(self) -> None:
        self.setup_done = False
        self.transcribe_in = False
        self.transcribe_out = False
        self.resumption = False
        self.conversation = _Conversation()
        self.in_activity = False
        self.audio = bytearray()
        self.audio_rate = 16000
        self.reply: asyncio.Task | None = None
        self.interrupted = False
        self.vad: EnergyVad | None = None  # automatic activity detection is on


class GoogleSimulator(SimulatorServer):
    PATHS = tuple(PATH.format(version=v) for v in ("v1beta", "v1", "v1alpha"))

    def __init__(self, config: GoogleSimConfig | None = None) -> None:
        super().__init__()
        self.config = config or GoogleSimConfig()
        self.resumed = 0  # setups that resumed a conversation with a handle
        self.capped = 0  # sessions ended by the context cap
        self._handles: dict[str, _Conversation] = {}
        self._ids = itertools.count(1)

    def make_checker(self):
        return live_message_checker()

    # ------------------------------------------------------------------ socket

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        self.connections += 1
        self.open_sockets += 1
        number = self.connections
        log: list[dict] = []
        self.received.append(log)
        conn = _Conn()
        timers: list[asyncio.TimerHandle] = []
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    message = _decoder.decode(msg.data)
                except (msgspec.DecodeError, UnicodeDecodeError):
                    await self._close(ws, INVALID_ARGUMENT)
                    break
                log.append(message)
                if self.config.echo and conn.setup_done and _get(message, "realtimeInput"):
                    audio = _get(_get(message, "realtimeInput"), "audio")
                    if audio:
                        await self._send(ws, {"serverContent": {"modelTurn": {"parts": [{"inlineData": {
                            "mimeType": "audio/pcm;rate=16000", "data": _get(audio, "data")}}]}}})
                        continue
                if self.config.validate:
                    problem = self._check(message)
                    if problem is None and not conn.setup_done and _get(message, "setup") is None:
                        problem = "the first message must be setup"
                    if problem is not None:
                        self.violations.append(problem)
                        await self._close(ws, INVALID_ARGUMENT)
                        break
                if _get(message, "setup") is not None:
                    if conn.setup_done:
                        self.violations.append("setup sent twice")
                        await self._close(ws, INVALID_ARGUMENT)
                        break
                    if self.config.api_key is not None and key != self.config.api_key:
                        await self._close(ws, BAD_KEY)
                        break
                    if not await self._setup(ws, conn, _get(message, "setup")):
                        break
                    cap = self.config.session_cap_seconds
                    if cap is not None and not conn.conversation.compressed:
                        left = max(0.0, cap - (time.monotonic() - conn.conversation.started))
                        timers.append(asyncio.get_running_loop().call_later(
                            left, lambda: asyncio.ensure_future(self._cap_reached(ws))))
                    if self.config.go_away_after is not None and number <= self.config.go_away_connections:
                        loop = asyncio.get_running_loop()
                        timers.append(loop.call_later(
                            self.config.go_away_after, lambda: asyncio.ensure_future(self._go_away(ws))))
                    continue
                if not await self._on_message(ws, conn, message):
                    break
        finally:
            self.open_sockets -= 1
            for timer in timers:
                timer.cancel()
            if conn.reply is not None:
                conn.reply.cancel()
        return ws

    async def _send(self, ws: web.WebSocketResponse, message: dict) -> None:
        data = _encoder.encode(message)
        if self.config.text_frames:
            await ws.send_str(data.decode())
        else:
            await ws.send_bytes(data)

    async def _close(self, ws: web.WebSocketResponse, close: tuple[int, str]) -> None:
        code, reason = close
        await ws.close(code=code, message=reason.encode()[:MAX_REASON_BYTES])

    def _new_handle(self, conv: _Conversation) -> str:
        handle = f"Cg4{next(self._ids):08d}sim"
        self._handles[handle] = conv
        return handle

    async def _go_away(self, ws: web.WebSocketResponse) -> None:
        if ws.closed:
            return
        grace = self.config.go_away_grace
        await self._send(ws, {"goAway": {"timeLeft": f"{grace:g}s"}})
        await asyncio.sleep(grace)
        if not ws.closed:
            await self._close(ws, DEADLINE)

    async def _cap_reached(self, ws: web.WebSocketResponse) -> None:
        # ai.google.dev/gemini-api/docs/live-session: "audio-only sessions are limited to 15
        # minutes" without context window compression. The close code is not documented;
        # 1011 (the code of the service's other deadlines) is our assumption.
        self.capped += 1
        if not ws.closed:
            await self._close(ws, CONTEXT_LIMIT)

    # ------------------------------------------------------------------ setup

    async def _setup(self, ws, conn: _Conn, setup: dict) -> bool:
        model = str(_get(setup, "model") or "")
        # The Gemini API serves a fixed list of Live models; any other id (a Vertex id such as
        # gemini-live-2.5-flash-native-audio, a shut-down one such as gemini-2.0-flash-live-001)
        # closes 1008 (ai.google.dev/gemini-api/docs/models; LiveKit's google plugin README keeps
        # the same list per API).
        if model.removeprefix("models/") not in self.config.models or not model.startswith("models/"):
            await self._close(ws, (1008, f"{model} is not found for API version v1beta, or is not "
                                         "supported for bidiGenerateContent. Call ListModels to see the "
                                         "list of available models and their supported methods."))
            return False
        generation = _get(setup, "generationConfig") or {}
        modalities = _get(generation, "responseModalities") or ["AUDIO"]
        if len(modalities) != 1:
            self.violations.append("responseModalities takes one value")
            await self._close(ws, INVALID_ARGUMENT)
            return False
        resumption = _get(setup, "sessionResumption")
        conv = _Conversation()
        if isinstance(resumption, dict) and _get(resumption, "handle"):
            conv = self._handles.get(_get(resumption, "handle"))
            if conv is None:
                await self._close(ws, INVALID_ARGUMENT)
                return False
            self.resumed += 1
        else:
            for tool in _get(setup, "tools") or []:
                for decl in _get(tool, "functionDeclarations") or []:
                    conv.tools.append(decl)
            conv.compressed = _get(setup, "contextWindowCompression") is not None
        conn.conversation = conv
        conn.resumption = resumption is not None
        conn.transcribe_in = _get(setup, "inputAudioTranscription") is not None
        conn.transcribe_out = _get(setup, "outputAudioTranscription") is not None
        detection = _get(_get(setup, "realtimeInputConfig") or {}, "automaticActivityDetection") or {}
        if not _get(detection, "disabled"):
            conn.vad = EnergyVad(
                16000, SENSITIVITY_THRESHOLDS.get(_get(detection, "startOfSpeechSensitivity"), 0.5),
                _get(detection, "silenceDurationMs") or DEFAULT_SILENCE_MS,
                _get(detection, "prefixPaddingMs") if _get(detection, "prefixPaddingMs") is not None
                else DEFAULT_PREFIX_MS)
        conn.setup_done = True
        await self._send(ws, {"setupComplete": {}})
        if conn.resumption:
            await self._send(ws, {"sessionResumptionUpdate": {
                "newHandle": self._new_handle(conv), "resumable": True}})
        return True

    # ------------------------------------------------------------------ client content

    async def _on_message(self, ws, conn: _Conn, message: dict) -> bool:
        realtime = _get(message, "realtimeInput")
        if realtime is not None:
            if conn.conversation.blocking:
                self.violations.append("realtime input while a BLOCKING function call is unanswered")
                await self._close(ws, INPUT_DURING_CALL)
                return False
            if conn.vad is not None and (_get(realtime, "activityStart") is not None
                                         or _get(realtime, "activityEnd") is not None):
                self.violations.append("activity signals while automatic activity detection is on")
                await self._close(ws, INVALID_ARGUMENT)
                return False
            if _get(realtime, "text") is not None:
                await self._interrupt(ws, conn)
                self._start_reply(ws, conn, {"kind": "text", "text": str(_get(realtime, "text"))})
                return True
            if _get(realtime, "audioStreamEnd"):
                if conn.vad is not None and conn.vad.speaking:
                    await self._speech_stopped(ws, conn, conn.vad.stop())
                return True
            if _get(realtime, "activityStart") is not None:
                if conn.reply is not None and not conn.reply.done():
                    conn.interrupted = True
                    await conn.reply
                conn.in_activity = True
                conn.audio.clear()
            elif _get(realtime, "activityEnd") is not None:
                if not conn.in_activity:
                    self.violations.append("activityEnd without activityStart")
                    await self._close(ws, INVALID_ARGUMENT)
                    return False
                conn.in_activity = False
                ms = len(conn.audio) * 1000 // (2 * conn.audio_rate)
                conn.audio.clear()
                self._start_reply(ws, conn, {"kind": "audio", "ms": ms})
            else:
                audio = _get(realtime, "audio")
                if audio is not None:
                    if not conn.in_activity and conn.vad is None:
                        self.violations.append("audio outside an activity (automatic detection is off)")
                    mime = str(_get(audio, "mimeType") or "")
                    rate = mime.partition("rate=")[2]
                    conn.audio_rate = int(rate) if rate.isdigit() else 16000
                    try:
                        pcm = binascii.a2b_base64(_get(audio, "data") or "")
                    except (binascii.Error, ValueError):
                        await self._close(ws, INVALID_ARGUMENT)
                        return False
                    conn.audio += pcm
                    if conn.vad is not None:
                        for ev in conn.vad.feed(pcm):
                            if ev.kind == "start":
                                await self._send(ws, {"voiceActivity": {"voiceActivityType": "ACTIVITY_START"}})
                                await self._interrupt(ws, conn)
                            else:
                                await self._speech_stopped(ws, conn, ev)
            return True
        response = _get(message, "toolResponse")
        if response is not None:
            calls = conn.conversation.calls
            for reply in _get(response, "functionResponses") or []:
                call_id = _get(reply, "id")
                if call_id not in calls:
                    self.violations.append(f"toolResponse for unknown call id {call_id!r}")
                    continue
                conn.conversation.blocking.discard(call_id)
                if _get(reply, "name") != calls.pop(call_id):
                    self.violations.append(f"toolResponse name {_get(reply, 'name')!r} does not match")
                output = _encoder.encode(_get(reply, "response")).decode()
                self._start_reply(ws, conn, {"kind": "tool", "output": output})
            return True
        # clientContent: a text turn.
        content = _get(message, "clientContent")
        if content is not None and _get(content, "turnComplete"):
            words = [str(_get(p, "text")) for t in _get(content, "turns") or () for p in _get(t, "parts") or ()
                     if _get(p, "text") is not None]
            await self._interrupt(ws, conn)
            self._start_reply(ws, conn, {"kind": "text", "text": " ".join(words)})
        return True

    async def _hear(self, ws, words: list[str]) -> None:
        for word in words:
            await self._send(ws, {"serverContent": {"inputTranscription": {"text": word}}})
    async def _interrupt(self, ws, conn: _Conn) -> None:
        """New user input during a reply cuts it (START_OF_ACTIVITY_INTERRUPTS)."""
        if conn.reply is not None and not conn.reply.done():
            conn.interrupted = True
            await conn.reply

    async def _speech_stopped(self, ws, conn: _Conn, ev) -> None:
        await self._send(ws, {"voiceActivity": {"voiceActivityType": "ACTIVITY_END"}})
        conn.audio.clear()
        self._start_reply(ws, conn, {"kind": "audio", "ms": ev.speech_ms})

    def _start_reply(self, ws, conn: _Conn, last: dict) -> None:
        conn.interrupted = False
        conn.reply = asyncio.create_task(self._reply(ws, conn, last))

    # ------------------------------------------------------------------ model turns

    async def _fail_point(self, ws) -> bool:
        fail = self.config.fail
        if await self._drop_or_stall(ws, fail):
            return True
        if fail == "close_mid_response":
            await self._close(ws, self.config.fail_close)
            return True
        return False

    async def _reply(self, ws, conn: _Conn, last: dict) -> None:
        try:
            await self._reply_inner(ws, conn, last)
        except (ConnectionError, RuntimeError):
            pass  # the socket went away mid-reply
        finally:
            self.replies_ended += 1

    async def _reply_inner(self, ws, conn: _Conn, last: dict) -> None:
        cfg = self.config
        conv = conn.conversation
        conv.turns += 1
        self.replies += 1
        in_ms = last.get("ms", 0)
        # Input transcription is not ordered against the reply (google-genai ``Transcription``
        # has a ``finished`` flag, which 2.5 models never set: googleapis/js-genai#1429).
        heard = (_words(f"I spoke for {in_ms / 1000:.1f} seconds.")
                 if last["kind"] == "audio" and conn.transcribe_in else [])
        split = {"early": len(heard), "late": len(heard) // 2, "after_turn": 0}[cfg.input_transcription]
        await self._hear(ws, heard[:split])
        later = heard[split:]
        prompt = [{"modality": "TEXT", "tokenCount": 10},
                  {"modality": "AUDIO", "tokenCount": math.ceil(in_ms * TOKENS_PER_SECOND / 1000)}]
        if cfg.reject_turn == conv.turns:
            # google-genai ``LiveServerContent.turn_complete_reason`` (RESPONSE_REJECTED,
            # MALFORMED_FUNCTION_CALL, ...): the turn ends with no content and no usage.
            await self._hear(ws, later)
            await self._send(ws, {"serverContent": {"turnComplete": True, "turnCompleteReason": cfg.reject_reason}})
            return
        text = None
        if last["kind"] == "audio" and conv.tools:
            tool = conv.tools[0]
            call_id = f"function-call-{next(self._ids)}"
            conv.calls[call_id] = _get(tool, "name")
            # google-genai ``types.Behavior``: without it newer Live models do not wait
            # (NON_BLOCKING); the model keeps talking and ends its turn before the result.
            blocking = (_get(tool, "behavior") or cfg.default_behavior) == "BLOCKING"
            if blocking:
                conv.blocking.add(call_id)
            args = _example_args(_lower_schema(_get(tool, "parameters")))
            await self._send(ws, {"toolCall": {"functionCalls": [
                {"id": call_id, "name": _get(tool, "name"), "args": args}]}})
            await self._hear(ws, later)
            later = []
            await self._send(ws, {"sessionResumptionUpdate": {"resumable": False}})
            await self._send(ws, {"usageMetadata": _usage(prompt, 0)})
            if blocking:
                return
            text = "Let me check that."
        if text is None:
            text = (f"The tool said: {last['output']}" if last["kind"] == "tool"
                    else f"You wrote: {last['text']}" if last.get("text")
                    else f"You spoke for {in_ms / 1000:.1f} seconds.")
        audio = _tone(cfg.reply_ms, OUTPUT_RATE)
        step = 2 * OUTPUT_RATE * CHUNK_MS // 1000
        chunks = [audio[i:i + step] for i in range(0, len(audio), step)]
        words = _words(text)
        sent_ms = 0
        spoken = 0
        for i, chunk in enumerate(chunks):
            if conn.interrupted:
                break
            await self._send(ws, {"serverContent": {"modelTurn": {"parts": [{"inlineData": {
                "mimeType": f"audio/pcm;rate={OUTPUT_RATE}",
                "data": binascii.b2a_base64(chunk, newline=False).decode()}}]}}})
            sent_ms += CHUNK_MS * len(chunk) // step
            if conn.transcribe_out and i < len(words):
                spoken += 1
                await self._send(ws, {"serverContent": {"outputTranscription": {"text": words[i]}}})
            if i == 0 and cfg.input_transcription == "late":
                await self._hear(ws, later)
                later = []
            if i == 0 and cfg.fail and await self._fail_point(ws):
                return
            await asyncio.sleep(cfg.delta_interval)
        response = [{"modality": "AUDIO", "tokenCount": math.ceil(sent_ms * TOKENS_PER_SECOND / 1000)}]
        if conn.interrupted:
            if cfg.send_interrupted:
                await self._send(ws, {"serverContent": {"interrupted": True}})
            for call_id in list(conv.calls):
                conv.calls.pop(call_id)
                await self._send(ws, {"toolCallCancellation": {"ids": [call_id]}})
        else:
            if conn.transcribe_out and spoken < len(words):
                await self._send(ws, {"serverContent": {"outputTranscription": {
                    "text": "".join(words[spoken:])}}})
            await self._send(ws, {"serverContent": {"generationComplete": True}})
        if cfg.input_transcription != "after_turn":
            await self._hear(ws, later)  # a reply shorter than one chunk, or interrupted at once
            later = []
        await self._send(ws, {"serverContent": {"turnComplete": True}, "usageMetadata": _usage(prompt, response)})
        await self._hear(ws, later)
        if conn.resumption:
            await self._send(ws, {"sessionResumptionUpdate": {
                "newHandle": self._new_handle(conv), "resumable": True}})


def _usage(prompt: list[dict], response: list[dict] | int) -> dict:
    response = response or []
    p = sum(d["tokenCount"] for d in prompt)
    r = sum(d["tokenCount"] for d in response)
    out = {"promptTokenCount": p, "responseTokenCount": r, "totalTokenCount": p + r,
           "promptTokensDetails": prompt}
    if response:
        out["responseTokensDetails"] = response
    return out


def _lower_schema(schema: Any) -> dict | None:
    """Gemini's upper-case schema types -> JSON Schema's, for the example arguments."""
    if not isinstance(schema, dict):
        return None
    props = _get(schema, "properties") or {}
    return {"properties": {k: {"type": str(_get(v, "type") or "").lower()} for k, v in props.items()}}
