"""A fake OpenAI Realtime server (GA protocol) over a real WebSocket, for tests and offline dev.

It follows providers.md section 2 and validates every client event against the ``openai``
package's ``RealtimeClientEventParam`` (strictly: unknown keys are violations too), so a
codec that drifts from the real API fails its tests here.

Deterministic rules (so tests can assert content):

- The user's words: committing N ms of audio yields the transcript
  ``"I spoke for S seconds."`` (S = N/1000 to one decimal), as transcription deltas
  (one per word) and a ``completed`` event, when ``audio.input.transcription`` is set.
- A response that follows user audio, in a session with tools, is a **function call** to
  the first tool, with arguments built from its JSON Schema properties: strings
  ``"Paris"``, numbers and integers ``1``, booleans ``true``, arrays ``[]``, objects ``{}``.
- Any other response is spoken: ``reply_ms`` of a 24 kHz two-tone signal in 100 ms deltas,
  with transcript ``"You spoke for S seconds."``, ``"The tool said: <output>"`` after a
  ``function_call_output``, or ``"You wrote: <text>"`` after a user ``input_text`` item.
- Usage: input audio tokens = ceil(input ms / 100), output audio tokens = ceil(output
  ms / 50); text tokens: 10 in, words out.
- Turn detection (``server_vad``/``semantic_vad`` in the session): speech start/stop from
  the audio's energy (:mod:`.vad`) with the session's ``threshold``, ``prefix_padding_ms``
  and ``silence_duration_ms`` (semantic: the silence grows as ``eagerness`` falls; the
  simulator has no language model). Events in the service's order (providers.md 2.3):
  ``input_audio_buffer.speech_started{audio_start_ms,item_id}``, and when speech starts
  during a response with ``interrupt_response`` (OpenAI's default true), that response is
  cancelled (``response.done`` status ``cancelled``, reason ``turn_detected``); at the end,
  ``speech_stopped{audio_end_ms,item_id}``, ``committed`` and the user item, then with
  ``create_response`` a response. The spoken seconds are the speech, prefix included.
- ``conversation.item.retrieve`` is answered with ``conversation.item.retrieved`` and the item
  as the events so far describe it (user transcript filled in, a truncated reply's removed),
  an unknown id with an ``error``; the Agents SDK asks after every transcription and truncate.
- With ``refuse_responses``, every ``response.create`` is answered with an ``error`` event
  (``invalid_request_error``, its ``event_id`` echoed) and no response, as the service
  answers a request it will not serve; the connection stays open.
"""

from __future__ import annotations

import asyncio
import binascii
import itertools
import math
import time
import typing
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import numpy as np
import typing_extensions
from aiohttp import WSMsgType, web

from .base import SimulatorServer
from .vad import EnergyVad

RATE = 24000
DELTA_MS = 100  # audio per output delta, as the real service sends roughly
INVALID_KEY_CLOSE = 3000  # observed: 101, error invalid_api_key, close 3000
VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"})

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


# ------------------------------------------------------------------------ validation


def client_event_checker():
    """Build ``check(event) -> str | None`` from the openai package's TypedDicts."""
    import pydantic
    from openai.types.realtime.realtime_client_event_param import RealtimeClientEventParam

    members, adapters = {}, {}
    for td in typing.get_args(RealtimeClientEventParam):
        hints = typing_extensions.get_type_hints(td, include_extras=True)
        (literal,) = typing.get_args(_unwrap(hints["type"]))
        members[literal] = td
        adapters[literal] = pydantic.TypeAdapter(td)

    def check(event: dict) -> str | None:
        td = members.get(event.get("type"))
        if td is None:
            return f"unknown client event type {event.get('type')!r}"
        try:
            adapters[event["type"]].validate_python(_without_nulls(event))
        except pydantic.ValidationError as exc:
            return f"{event.get('type')}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        extra = _unknown_keys(event, td, "")
        return f"{event['type']}: unknown field(s) {extra}" if extra else None

    return check


def _without_nulls(value):
    """Optional fields sent as ``null``: the API takes null as "not set" (OpenAI's own Agents SDK
    sends ``noise_reduction: null``), while the SDK's TypedDicts only say the key may be absent."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _unwrap(tp):
    while True:
        origin = typing.get_origin(tp)
        if origin in (typing.Annotated, typing.Required, typing.NotRequired,
                      typing_extensions.Required, typing_extensions.NotRequired):
            tp = typing.get_args(tp)[0]
        else:
            return tp


def _unknown_keys(value: Any, tp: Any, path: str) -> list[str]:
    """Keys in ``value`` that the TypedDict type ``tp`` (recursively) does not declare."""
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        results = [_unknown_keys(value, arm, path) for arm in typing.get_args(tp)
                   if _shape_fits(value, arm)]
        return min(results, key=len) if results else []
    if typing_extensions.is_typeddict(tp) and isinstance(value, dict):
        hints = typing_extensions.get_type_hints(tp, include_extras=True)
        problems = [f"{path}.{k}" for k in value if k not in hints]
        for k, v in value.items():
            if k in hints:
                problems += _unknown_keys(v, hints[k], f"{path}.{k}")
        return problems
    if origin in (list, typing.Iterable, typing.Sequence) or str(origin) in (
        "<class 'collections.abc.Iterable'>", "<class 'collections.abc.Sequence'>"):
        (arm,) = typing.get_args(tp) or (Any,)
        if isinstance(value, list):
            return [p for i, v in enumerate(value) for p in _unknown_keys(v, arm, f"{path}[{i}]")]
    return []


def _shape_fits(value: Any, arm: Any) -> bool:
    arm = _unwrap(arm)
    if typing_extensions.is_typeddict(arm):
        if not isinstance(value, dict):
            return False
        hints = typing_extensions.get_type_hints(arm, include_extras=True)
        t = hints.get("type")
        if t is not None and typing.get_origin(_unwrap(t)) is Literal and "type" in value:
            return value["type"] in typing.get_args(_unwrap(t))
        return True
    return not isinstance(value, dict) or arm is Any or typing.get_origin(arm) is dict or arm is dict or arm is object


# ------------------------------------------------------------------------ config


@dataclass
class OpenAISimConfig:
    api_key: str | None = "sk-sim"
    #: How a wrong key is refused. "error_close" is what the service does today: the upgrade
    #: succeeds, an ``error`` event ``invalid_api_key`` follows, then close 3000
    #: "invalid_request_error.invalid_api_key" (twilio-samples/speech-assistant-openai-realtime-
    #: api-python#4; openai/openai-realtime-api-beta#2: "a random string for the API key" gets a
    #: connection and an error message). "401"/"403" refuse the upgrade itself (a key without
    #: realtime access got 403 in the same thread).
    bad_key: Literal["401", "403", "error_close"] = "error_close"
    refuse_status: int | None = None
    fail: Literal[None, "drop_mid_response", "stall_mid_response", "error_mid_response",
                  "close_mid_response", "invalid_json_mid_response", "garbage_mid_response",
                  "oversized_mid_response"] = None
    #: The response (1 = first of the connection) at whose first audio delta ``fail`` acts.
    fail_on_response: int = 1
    #: Close code for ``close_mid_response``.
    fail_close_code: int = 1000
    #: Accept the TCP connection and never answer the upgrade request.
    stall_handshake: bool = False
    delta_interval: float = 0.0
    reply_ms: int = 1000
    echo: bool = False
    validate: bool = True
    session_max_seconds: float | None = None
    #: Call a function by this name instead of the session's first tool: models do call
    #: functions the session never declared (openai/openai-agents-python#3286,
    #: openai/openai-agents-js#1310, livekit/agents#6085 "when a model hallucinates a tool name").
    undeclared_tool: str | None = None
    #: Answer ``response.create`` with an ``error`` event and start no response.
    refuse_responses: bool = False
    #: Wait before a response's first audio (the model's latency): a cancel can land before it.
    first_audio_delay: float = 0.0


def _tone(ms: int, rate: int = RATE) -> bytes:
    n = rate * ms // 1000
    t = np.arange(n) / rate
    signal = 0.25 * np.sin(2 * np.pi * 330 * t) + 0.15 * np.sin(2 * np.pi * 523 * t)
    return (signal * 32767).astype("<i2").tobytes()


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + " " for p in parts[:-1]] + [parts[-1]]


def _example_args(parameters: dict | None) -> dict:
    props = (parameters or {}).get("properties") or {}
    values = {"string": "Paris", "number": 1, "integer": 1, "boolean": True, "array": [], "object": {}}
    return {name: values.get((schema or {}).get("type"), "Paris") for name, schema in props.items()}


class _Conn:
    def __init__(self, model: str) -> None:
        self.ids = itertools.count(1)
        self.session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": f"sess_{int(time.time() * 1000) % 10**9}",
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": None,
                    "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                       "silence_duration_ms": 500, "create_response": True,
                                       "interrupt_response": True},
                },
                "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "marin", "speed": 1.0},
            },
            "expires_at": int(time.time()) + 3600,
        }
        self.buffer = bytearray()
        self.items: dict[str, dict] = {}
        #: Each conversation item as ``conversation.item.retrieve`` shows it (see ``_remember``).
        self.shown: dict[str, dict] = {}
        self.last_input: dict | None = None  # the latest user or function_call_output item
        self.calls: dict[str, str] = {}  # call_id -> name
        self.response: asyncio.Task | None = None
        self.response_id: str | None = None
        self.cancelled = False
        self.input_ms_total = 0
        self.responses = 0
        self.response_audio_ms = 0  # audio sent by the current response
        self.cancel_reason = "client_cancelled"
        self.vad: EnergyVad | None = None
        self.vad_config: Any = None  # the turn_detection the detector was built from
        self.vad_item: str | None = None  # the user item the current speech will become

    def nid(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids)}"


def _merge(into: dict, update: dict) -> None:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _remember(shown: dict[str, dict], event: dict) -> None:
    """Keep the server's view of each item up to date from the events that describe it, for
    ``conversation.item.retrieve`` (answered with ``conversation.item.retrieved`` and the
    whole item; openai ``ConversationItemRetrieveEvent``, "an error" if it does not exist).
    The user's transcript lands in its item when transcription completes, and a truncated
    assistant item loses its transcript (OpenAI's truncate "will delete the server-side text
    transcript"). Audio bytes are not kept: the item shows no ``audio``."""
    kind = event["type"]
    if kind in ("conversation.item.added", "conversation.item.done"):
        item = event["item"]
        shown[item["id"]] = {"object": "realtime.item", **item, "content": [dict(c) for c in item.get("content") or ()]}
    elif kind in ("conversation.item.input_audio_transcription.completed", "conversation.item.truncated"):
        item = shown.get(event["item_id"])
        content = item["content"] if item is not None else []
        index = event.get("content_index", 0)
        if index < len(content):
            content[index]["transcript"] = event.get("transcript", "")


#: semantic_vad has no language model here: the silence that ends a turn, per eagerness
#: (OpenAI: low waits longest, high answers soonest).
SEMANTIC_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700, "high": 400}


class OpenAISimulator(SimulatorServer):
    PATHS = ("/v1/realtime",)
    #: Event types this dialect never sends (xAI omits some of OpenAI's).
    SKIP_EVENTS: frozenset[str] = frozenset()
    #: speech_started/stopped carry audio_start_ms/audio_end_ms (xAI's do not).
    VAD_MS_FIELDS = True
    #: A speech start cuts the response when turn_detection does not say (OpenAI: true).
    INTERRUPT_BY_DEFAULT = True

    def __init__(self, config: OpenAISimConfig | None = None) -> None:
        super().__init__()
        self.config = config or OpenAISimConfig()

    def make_checker(self):
        return client_event_checker()

    # ------------------------------------------------------------------ handshake

    def _presented_key(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:]
        for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
            proto = proto.strip()
            if proto.startswith("openai-insecure-api-key."):
                return proto[len("openai-insecure-api-key."):]
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        cfg = self.config
        if cfg.stall_handshake:
            await self.stall()
            return web.Response(status=503)
        if cfg.refuse_status is not None:
            return web.json_response({"error": {"message": "refused by simulator", "type": "server_error"}},
                                     status=cfg.refuse_status)
        key_ok = cfg.api_key is None or self._presented_key(request) == cfg.api_key
        if not key_ok and cfg.bad_key in ("401", "403"):
            status = int(cfg.bad_key)
            return web.json_response(
                {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                           "code": "invalid_api_key", "param": None}}, status=status)
        ws = web.WebSocketResponse(protocols=("realtime",), max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = self._new_conn(request.query.get("model", "gpt-realtime"))
        if not key_ok:  # error_close: the upgrade succeeds, the error comes as an event
            await self._send(ws, conn, {"type": "error", "error": {
                "type": "invalid_request_error", "code": "invalid_api_key",
                "message": "Incorrect API key provided.", "param": None, "event_id": None}})
            await ws.close(code=INVALID_KEY_CLOSE, message=b"invalid_request_error.invalid_api_key")
            return ws
        self.connections += 1
        self.open_sockets += 1
        log: list[dict] = []
        self.received.append(log)
        expiry = None
        if cfg.session_max_seconds is not None:
            expiry = asyncio.get_running_loop().call_later(
                cfg.session_max_seconds, lambda: asyncio.ensure_future(self._expire(ws, conn)))
        try:
            await self._greet(ws, conn)
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_text(ws, conn, log, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await self._error(ws, conn, "invalid_request_error", "invalid_json",
                                      "Binary frames are not supported.", None, None)
        finally:
            self.open_sockets -= 1
            if expiry is not None:
                expiry.cancel()
            if conn.response is not None:
                conn.response.cancel()
        return ws

    # ------------------------------------------------------------------ dialect hooks

    def _new_conn(self, model: str) -> _Conn:
        return _Conn(model)

    async def _greet(self, ws, conn: _Conn) -> None:
        await self._send(ws, conn, {"type": "session.created", "session": conn.session})

    def _rates(self, conn: _Conn) -> tuple[int, int]:
        audio = conn.session.get("audio") or {}
        return (((audio.get("input") or {}).get("format") or {}).get("rate") or RATE,
                ((audio.get("output") or {}).get("format") or {}).get("rate") or RATE)

    def _transcribing(self, conn: _Conn) -> bool:
        return bool(conn.session["audio"]["input"].get("transcription"))

    async def _transcribe(self, ws, conn: _Conn, item_id: str, text: str, seconds: float) -> None:
        for word in _words(text):
            await self._send(ws, conn, {"type": "conversation.item.input_audio_transcription.delta",
                                        "item_id": item_id, "content_index": 0, "delta": word})
        await self._send(ws, conn, {"type": "conversation.item.input_audio_transcription.completed",
                                    "item_id": item_id, "content_index": 0, "transcript": text,
                                    "usage": {"type": "duration", "seconds": seconds}})

    def _usage(self, in_audio: int, out_audio: int, out_text: int) -> dict:
        return {
            "total_tokens": 10 + in_audio + out_audio + out_text,
            "input_tokens": 10 + in_audio,
            "output_tokens": out_audio + out_text,
            "input_token_details": {"text_tokens": 10, "audio_tokens": in_audio, "cached_tokens": 0,
                                    "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0}},
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }

    async def _expire(self, ws, conn) -> None:
        await self._error(ws, conn, "invalid_request_error", "session_expired",
                          "Your session hit the maximum duration of 60 minutes.", None, None)
        await ws.close(code=1000)

    # ------------------------------------------------------------------ plumbing

    async def _send(self, ws, conn: _Conn, event: dict) -> None:
        if event["type"] in self.SKIP_EVENTS:
            return
        event = {"type": event["type"], "event_id": conn.nid("event"), **{k: v for k, v in event.items() if k != "type"}}
        _remember(conn.shown, event)
        await ws.send_str(_encoder.encode(event).decode())

    async def _error(self, ws, conn, etype, code, message, param, client_event_id) -> None:
        await self._send(ws, conn, {"type": "error", "error": {
            "type": etype, "code": code, "message": message, "param": param, "event_id": client_event_id}})

    async def _on_text(self, ws, conn: _Conn, log: list, text: str) -> None:
        cfg = self.config
        try:
            event = _decoder.decode(text)
        except msgspec.DecodeError:
            await self._error(ws, conn, "invalid_request_error", "invalid_json",
                              "The server could not parse the JSON.", None, None)
            return
        if not isinstance(event, dict):
            await self._error(ws, conn, "invalid_request_error", "invalid_json", "Expected an object.", None, None)
            return
        kind = event.get("type")
        if cfg.echo and kind == "input_audio_buffer.append":
            # not logged: an echo session streams for minutes (benchmarks, soak)
            await ws.send_str(
                '{"type":"response.output_audio.delta","event_id":"' + conn.nid("event")
                + '","response_id":"resp_echo","item_id":"item_echo","output_index":0,"content_index":0,"delta":"'
                + str(event.get("audio", "")) + '"}')
            return
        log.append(event)
        if cfg.validate:
            problem = self._check(event)
            if problem is not None:
                self.violations.append(problem)
                await self._error(ws, conn, "invalid_request_error", "invalid_value", problem, None,
                                  event.get("event_id"))
                return
        handler = getattr(self, "_on_" + str(kind).replace(".", "_"), None)
        if handler is None:
            await self._error(ws, conn, "invalid_request_error", "invalid_value",
                              f"Unsupported event type {kind!r}.", "type", event.get("event_id"))
            return
        await handler(ws, conn, event)

    # ------------------------------------------------------------------ client events

    def _session_refusal(self, session: dict) -> tuple[str, str] | None:
        """(message, param) when the service refuses this session config outright; it then
        sends the ``error`` and no ``session.updated``."""
        voice = ((session.get("audio") or {}).get("output") or {}).get("voice")
        if isinstance(voice, str) and voice not in VOICES:
            # openai types/realtime/realtime_audio_config_output_param.py: the built-in
            # voices (a custom voice is an object {"id": ...}, never a bare string)
            return (f"Invalid value: '{voice}'. Supported values are: "
                    + ", ".join(f"'{v}'" for v in sorted(VOICES)) + ".", "session.audio.output.voice")
        return None

    async def _on_session_update(self, ws, conn: _Conn, event: dict) -> None:
        refusal = self._session_refusal(event.get("session") or {})
        if refusal is not None:
            await self._error(ws, conn, "invalid_request_error", "invalid_value", refusal[0], refusal[1],
                              event.get("event_id"))
            return
        _merge(conn.session, event.get("session") or {})
        await self._send(ws, conn, {"type": "session.updated", "session": conn.session})

    async def _on_input_audio_buffer_append(self, ws, conn: _Conn, event: dict) -> None:
        try:
            pcm = binascii.a2b_base64(event.get("audio", ""))
        except (binascii.Error, ValueError):
            await self._error(ws, conn, "invalid_request_error", "invalid_value",
                              "Invalid base64 audio.", "audio", event.get("event_id"))
            return
        conn.buffer += pcm
        vad = self._vad(conn)
        if vad is not None:
            for ev in vad.feed(pcm):
                await (self._speech_started(ws, conn, ev) if ev.kind == "start" else self._speech_stopped(ws, conn, ev))

    # ------------------------------------------------------------------ voice activity

    def _turn_detection(self, conn: _Conn) -> dict | None:
        td = conn.session["audio"]["input"].get("turn_detection")
        return td if isinstance(td, dict) and td.get("type") in ("server_vad", "semantic_vad") else None

    def _vad(self, conn: _Conn) -> EnergyVad | None:
        td = self._turn_detection(conn)
        if td is None:
            conn.vad = None
            return None
        if conn.vad is None or conn.vad_config != td:
            in_rate, _ = self._rates(conn)
            silence = (SEMANTIC_SILENCE_MS[td.get("eagerness") or "auto"] if td["type"] == "semantic_vad"
                       else td.get("silence_duration_ms") or 500)
            conn.vad = EnergyVad(in_rate, td.get("threshold") or 0.5, silence, td.get("prefix_padding_ms", 300))
            conn.vad_config = dict(td)
        return conn.vad

    def _vad_event(self, kind: str, ms_field: str, ms: int, item_id: str | None) -> dict:
        event = {"type": kind, "item_id": item_id}
        if self.VAD_MS_FIELDS:
            event[ms_field] = ms
        return event

    async def _speech_started(self, ws, conn: _Conn, ev) -> None:
        conn.vad_item = conn.nid("item")
        await self._send(ws, conn, self._vad_event("input_audio_buffer.speech_started", "audio_start_ms",
                                                   ev.at_ms, conn.vad_item))
        td = self._turn_detection(conn) or {}
        if td.get("interrupt_response", self.INTERRUPT_BY_DEFAULT) and conn.response is not None \
                and not conn.response.done():
            conn.cancelled = True
            conn.cancel_reason = "turn_detected"
            await conn.response  # it ends at its next delta with response.done (cancelled)

    async def _speech_stopped(self, ws, conn: _Conn, ev) -> None:
        item_id = conn.vad_item or conn.nid("item")
        conn.vad_item = None
        await self._send(ws, conn, self._vad_event("input_audio_buffer.speech_stopped", "audio_end_ms",
                                                   ev.at_ms, item_id))
        conn.buffer.clear()
        await self._commit(ws, conn, ev.speech_ms, item_id)
        td = self._turn_detection(conn) or {}
        if not td.get("create_response", True):
            return
        if conn.response is None or conn.response.done():
            self._begin_response(ws, conn)
        else:  # a reply still runs (nobody cut it): the new one follows it
            running = conn.response

            async def after() -> None:
                await asyncio.wait([running])
                self._begin_response(ws, conn)

            conn.response = asyncio.create_task(after())

    async def _on_input_audio_buffer_clear(self, ws, conn: _Conn, event: dict) -> None:
        conn.buffer.clear()
        await self._send(ws, conn, {"type": "input_audio_buffer.cleared"})

    async def _on_input_audio_buffer_commit(self, ws, conn: _Conn, event: dict) -> None:
        in_rate, _ = self._rates(conn)
        if len(conn.buffer) < 2 * in_rate // 10:  # the real service wants >= 100 ms
            await self._error(ws, conn, "invalid_request_error", "input_audio_buffer_commit_empty",
                              "Error committing input audio buffer: buffer too small.", None,
                              event.get("event_id"))
            return
        ms = len(conn.buffer) * 1000 // (2 * in_rate)
        conn.buffer.clear()
        if conn.vad is not None and conn.vad.speaking:  # a manual commit ends the speech too
            conn.vad.stop()
        await self._commit(ws, conn, ms, conn.vad_item or conn.nid("item"))
        conn.vad_item = None

    async def _commit(self, ws, conn: _Conn, ms: int, item_id: str) -> None:
        conn.input_ms_total += ms
        previous = conn.last_input["id"] if conn.last_input else None
        item = {"id": item_id, "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}
        conn.items[item_id] = {"role": "user", "ms": ms}
        conn.last_input = {"id": item_id, "kind": "audio", "ms": ms}
        await self._send(ws, conn, {"type": "input_audio_buffer.committed", "previous_item_id": previous,
                                    "item_id": item_id})
        await self._send(ws, conn, {"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self._send(ws, conn, {"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        if self._transcribing(conn):
            await self._transcribe(ws, conn, item_id, f"I spoke for {ms / 1000:.1f} seconds.", ms / 1000)

    async def _on_conversation_item_create(self, ws, conn: _Conn, event: dict) -> None:
        item = event["item"]
        if item.get("type") == "function_call_output":
            if item.get("call_id") not in conn.calls:
                await self._error(ws, conn, "invalid_request_error", "invalid_value",
                                  f"No function call with call_id {item.get('call_id')!r}.",
                                  "item.call_id", event.get("event_id"))
                return
            item_id = conn.nid("item")
            conn.last_input = {"id": item_id, "kind": "tool", "output": item.get("output", "")}
        else:
            item_id = conn.nid("item")
            words = [c.get("text", "") for c in item.get("content") or () if c.get("type") == "input_text"]
            conn.last_input = {"id": item_id, "kind": "text", "text": " ".join(words)}
        added = {"id": item_id, "status": "completed", **item}
        await self._send(ws, conn, {"type": "conversation.item.added", "previous_item_id": None, "item": added})
        await self._send(ws, conn, {"type": "conversation.item.done", "previous_item_id": None, "item": added})

    async def _on_conversation_item_truncate(self, ws, conn: _Conn, event: dict) -> None:
        item = conn.items.get(event.get("item_id"))
        if item is None or item["role"] != "assistant":
            await self._error(ws, conn, "invalid_request_error", "invalid_value",
                              "Only assistant audio items can be truncated.", "item_id", event.get("event_id"))
            return
        if event.get("audio_end_ms", 0) > item["ms"]:
            await self._error(ws, conn, "invalid_request_error", "invalid_value",
                              "audio_end_ms is longer than the audio.", "audio_end_ms", event.get("event_id"))
            return
        await self._send(ws, conn, {"type": "conversation.item.truncated", "item_id": event["item_id"],
                                    "content_index": event.get("content_index", 0),
                                    "audio_end_ms": event["audio_end_ms"]})

    async def _on_conversation_item_retrieve(self, ws, conn: _Conn, event: dict) -> None:
        item = conn.shown.get(event.get("item_id"))
        if item is None:  # "unless the item does not exist ..., in which case ... an error"
            await self._error(ws, conn, "invalid_request_error", "invalid_value",
                              f"Item with item_id {event.get('item_id')!r} not found.", "item_id",
                              event.get("event_id"))
            return
        await self._send(ws, conn, {"type": "conversation.item.retrieved", "item": item})

    async def _on_conversation_item_delete(self, ws, conn, event) -> None:
        conn.items.pop(event.get("item_id"), None)
        conn.shown.pop(event.get("item_id"), None)
        await self._send(ws, conn, {"type": "conversation.item.deleted", "item_id": event.get("item_id")})

    async def _on_response_create(self, ws, conn: _Conn, event: dict) -> None:
        if self.config.refuse_responses:
            await self._error(ws, conn, "invalid_request_error", "invalid_value",
                              "The response could not be created.", "response", event.get("event_id"))
            return
        if conn.response is not None and not conn.response.done():
            await self._error(ws, conn, "invalid_request_error", "conversation_already_has_active_response",
                              "Conversation already has an active response in progress.", None,
                              event.get("event_id"))
            return
        self._begin_response(ws, conn)

    def _begin_response(self, ws, conn: _Conn) -> None:
        conn.cancelled = False
        conn.cancel_reason = "client_cancelled"
        conn.response_id = conn.nid("resp")
        conn.response = asyncio.create_task(self._respond(ws, conn, conn.response_id))

    async def _on_response_cancel(self, ws, conn: _Conn, event: dict) -> None:
        # a response_id names the response to cancel: one that already ended is not active
        # (GA ``response.cancel.response_id``), whatever response runs now
        named = event.get("response_id")
        if conn.response is None or conn.response.done() or (named is not None and named != conn.response_id):
            await self._error(ws, conn, "invalid_request_error", "response_cancel_not_active",
                              "Cancellation failed: no active response found", None, event.get("event_id"))
            return
        conn.cancelled = True

    # ------------------------------------------------------------------ responses

    async def _fail_point(self, ws, request_transport) -> bool:
        """Apply the configured failure after the first audio delta; True = stop."""
        fail = self.config.fail
        if await self._drop_or_stall(ws, fail):
            return True
        if fail == "error_mid_response":
            await ws.send_str(_encoder.encode({"type": "error", "event_id": "event_fail", "error": {
                "type": "server_error", "code": None, "message": "The server had an error.",
                "param": None, "event_id": None}}).decode())
            await ws.close(code=1011)
            return True
        if fail == "close_mid_response":
            await ws.close(code=self.config.fail_close_code)
            return True
        if fail == "invalid_json_mid_response":
            await ws.send_str('{"type": "response.output_audio.delta", "delta": ')  # truncated
            return False
        if fail == "garbage_mid_response":
            while not ws.closed:
                await ws.send_str("\x00not json")
                await asyncio.sleep(0.001)
            return True
        if fail == "oversized_mid_response":
            await ws.send_str(_encoder.encode({"type": "response.output_audio.delta", "delta":
                                               "A" * (16 * 1024 * 1024 + 4)}).decode())
            return False
        return False

    async def _respond(self, ws, conn: _Conn, rid: str) -> None:
        try:
            await self._respond_inner(ws, conn, rid)
        finally:
            self.replies_ended += 1

    async def _respond_inner(self, ws, conn: _Conn, rid: str) -> None:
        cfg = self.config
        conn.responses += 1
        self.replies += 1
        last = conn.last_input or {"kind": "text"}
        response = {"id": rid, "object": "realtime.response", "status": "in_progress", "output": [],
                    "conversation_id": "conv_sim", "output_modalities": ["audio"]}
        await self._send(ws, conn, {"type": "response.created", "response": response})
        await self._send(ws, conn, {"type": "rate_limits.updated", "rate_limits": [
            {"name": "tokens", "limit": 40000, "remaining": 39000, "reset_seconds": 1.5}]})
        tools = conn.session.get("tools") or []
        in_ms = last.get("ms", 0)
        in_tokens = math.ceil(in_ms / 100)
        if last["kind"] == "audio" and tools:
            await self._function_call(ws, conn, rid, tools[0], in_tokens)
            return
        if last["kind"] == "tool":
            text = f"The tool said: {last['output']}"
        elif last.get("text"):
            text = f"You wrote: {last['text']}"
        else:
            text = f"You spoke for {in_ms / 1000:.1f} seconds."
        item_id = conn.nid("item")
        conn.items[item_id] = {"role": "assistant", "ms": 0}
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        await self._send(ws, conn, {"type": "response.output_item.added", "response_id": rid,
                                    "output_index": 0, "item": item})
        await self._send(ws, conn, {"type": "conversation.item.added", "previous_item_id": None, "item": item})
        part_ids = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        await self._send(ws, conn, {"type": "response.content_part.added", **part_ids,
                                    "part": {"type": "audio", "transcript": ""}})
        _, out_rate = self._rates(conn)
        conn.response_audio_ms = 0
        if cfg.first_audio_delay:
            await asyncio.sleep(cfg.first_audio_delay)
        audio = _tone(cfg.reply_ms, out_rate)
        step = 2 * out_rate * DELTA_MS // 1000
        chunks = [audio[i:i + step] for i in range(0, len(audio), step)]
        words = _words(text)
        sent_ms = 0
        spoken: list[str] = []
        for i, chunk in enumerate(chunks):
            if conn.cancelled:
                break
            if i < len(words):
                spoken.append(words[i])
                await self._send(ws, conn, {"type": "response.output_audio_transcript.delta", **part_ids,
                                            "delta": words[i]})
            await self._send(ws, conn, {"type": "response.output_audio.delta", **part_ids,
                                        "delta": binascii.b2a_base64(chunk, newline=False).decode()})
            sent_ms += len(chunk) * 1000 // (2 * out_rate)
            conn.items[item_id]["ms"] = conn.response_audio_ms = sent_ms
            if (i == 0 and cfg.fail and conn.responses >= cfg.fail_on_response
                    and await self._fail_point(ws, None)):
                return
            if cfg.delta_interval:
                await asyncio.sleep(cfg.delta_interval)
            else:
                await asyncio.sleep(0)
        if not conn.cancelled:
            for word in words[len(spoken):]:
                spoken.append(word)
                await self._send(ws, conn, {"type": "response.output_audio_transcript.delta", **part_ids,
                                            "delta": word})
        transcript = "".join(spoken)
        status = "cancelled" if conn.cancelled else "completed"
        await self._send(ws, conn, {"type": "response.output_audio.done", **part_ids})
        await self._send(ws, conn, {"type": "response.output_audio_transcript.done", **part_ids,
                                    "transcript": transcript})
        done_part = {"type": "audio", "transcript": transcript}
        await self._send(ws, conn, {"type": "response.content_part.done", **part_ids, "part": done_part})
        done_item = {**item, "status": "completed" if status == "completed" else "incomplete",
                     "content": [{"type": "output_audio", "transcript": transcript}]}
        await self._send(ws, conn, {"type": "response.output_item.done", "response_id": rid,
                                    "output_index": 0, "item": done_item})
        await self._send(ws, conn, {"type": "conversation.item.done", "previous_item_id": None, "item": done_item})
        out_tokens = math.ceil(sent_ms / 50)
        await self._done(ws, conn, rid, status, [done_item], in_tokens, out_tokens, len(spoken))

    async def _function_call(self, ws, conn: _Conn, rid: str, tool: dict, in_tokens: int) -> None:
        item_id, call_id = conn.nid("item"), conn.nid("call")
        name = self.config.undeclared_tool or tool.get("name", "tool")
        arguments = _encoder.encode(_example_args(tool.get("parameters"))).decode()
        conn.calls[call_id] = name
        item = {"id": item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
                "name": name, "call_id": call_id, "arguments": ""}
        await self._send(ws, conn, {"type": "response.output_item.added", "response_id": rid,
                                    "output_index": 0, "item": item})
        await self._send(ws, conn, {"type": "conversation.item.added", "previous_item_id": None, "item": item})
        ids = {"response_id": rid, "item_id": item_id, "output_index": 0, "call_id": call_id}
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            await self._send(ws, conn, {"type": "response.function_call_arguments.delta", **ids, "delta": piece})
        await self._send(ws, conn, {"type": "response.function_call_arguments.done", **ids, "name": name,
                                    "arguments": arguments})
        done_item = {**item, "status": "completed", "arguments": arguments}
        await self._send(ws, conn, {"type": "response.output_item.done", "response_id": rid,
                                    "output_index": 0, "item": done_item})
        await self._send(ws, conn, {"type": "conversation.item.done", "previous_item_id": None, "item": done_item})
        await self._done(ws, conn, rid, "completed", [done_item], in_tokens, 0, 5)

    async def _done(self, ws, conn, rid, status, output, in_audio, out_audio, out_text) -> None:
        details = {"type": "cancelled", "reason": conn.cancel_reason} if status == "cancelled" else None
        usage = self._usage(in_audio, out_audio, out_text)
        await self._send(ws, conn, {"type": "response.done", "response": {
            "id": rid, "object": "realtime.response", "status": status, "status_details": details,
            "output": output, "conversation_id": "conv_sim", "output_modalities": ["audio"], "usage": usage}})
