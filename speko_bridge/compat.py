"""``GET /v1/openai/realtime``: OpenAI's GA Realtime protocol toward the client, any provider
behind it.

Existing OpenAI Realtime code (the ``openai`` SDKs, the Agents SDK, gateways "identical to
OpenAI Realtime") points at the bridge and passes a minted token where it passes a key:
``Authorization: Bearer <token>`` (server-side SDKs) or the ``openai-insecure-api-key.<token>``
subprotocol next to ``realtime`` (browsers). Token rules are those of ``/v1/realtime``:
single use, expiry, revocation, origin, limits. ``?model=`` is ignored: the minted session
names the provider and model. Audio is OpenAI's ``audio/pcm``: PCM16 at 24 kHz both ways,
whatever rates the mint asked for.

- **OpenAI behind it**: after auth and the minted session config, events go both ways
  untouched (the fast path). The client's own ``session.update`` applies, as it would at
  OpenAI; provider and model stay the minted ones.
- **Gemini, xAI behind it**: :class:`CompatSession` reads OpenAI client events into the
  bridge's intents and writes the ``RealtimeFrame`` stream back as OpenAI server events with
  their ids and order (``response.created``, output item and content part, audio and
  transcript deltas and dones, ``function_call_arguments.done``, ``response.done`` with
  usage). Turns are manual, as on ``/v1/realtime``: ``input_audio_buffer.commit`` then
  ``response.create``. What the provider cannot do is answered with an OpenAI-style
  ``error`` event (code ``unsupported_for_provider``), never silence: server VAD, changing
  instructions/tools/voice after the mint, ``input_audio_buffer.clear`` (audio is already
  streamed), text items, item retrieval and deletion.

Errors of the bridge itself (bad token, TTL, revocation, provider failure) arrive as an
``error`` event whose ``code`` is the bridge's error code, then the close code of
PROTOCOL.md (4001, 4008, 4004, 4500, ...).
"""

from __future__ import annotations

import binascii
import itertools
import time
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from .bridge import BridgeSession, serve_socket, utf8_len
from .frames import Error, ToolCall, Transcript, Usage
from .params import SessionParams
from .store import SessionRecord

OPENAI_RATE = 24000
INSECURE_KEY_PREFIX = "openai-insecure-api-key."

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class _Type(msgspec.Struct):
    type: str = ""


_decode_type = msgspec.json.Decoder(_Type).decode


def _error_event(code: str, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, event_id: str | None = None) -> str:
    return _encode({"type": "error", "event_id": f"event_err_{time.monotonic_ns()}", "error": {
        "type": kind, "code": code, "message": message, "param": param, "event_id": event_id}}).decode()


async def _refuse(ws: WebSocket, code: int, error_code: str, message: str) -> None:
    ws.app.state.metrics.sockets_refused.labels(str(int(code))).inc()
    try:
        await ws.send_text(_error_event(error_code, message))
        await ws.close(code, message[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


def presented_token(ws: WebSocket) -> tuple[str | None, str | None]:
    """(token, subprotocol to select): the bearer header, else the insecure-key subprotocol."""
    offered = ws.scope.get("subprotocols") or []
    selected = "realtime" if "realtime" in offered else None
    auth = ws.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip(), selected
    for proto in offered:
        if proto.startswith(INSECURE_KEY_PREFIX):
            return proto[len(INSECURE_KEY_PREFIX):] or None, selected or proto
    return None, selected


async def openai_realtime_endpoint(ws: WebSocket) -> None:
    token, subprotocol = presented_token(ws)
    await ws.accept(subprotocol=subprotocol)
    await serve_socket(ws, token, CompatSession, _refuse,
                       "no token: send it as `Authorization: Bearer <token>` or the "
                       "`openai-insecure-api-key.<token>` subprotocol")


class CompatSession(BridgeSession):
    def __init__(self, ws: WebSocket, record: SessionRecord, state) -> None:
        params = msgspec.structs.replace(record.params, input_sample_rate=OPENAI_RATE,
                                         output_sample_rate=OPENAI_RATE)
        super().__init__(ws, msgspec.structs.replace(record, params=params), state)
        self.passthrough = record.provider == "openai"
        self._ids = itertools.count(1)
        self._pending_audio = False  # audio appended since the last commit
        self._user_item: str | None = None
        self._previous_item: str | None = None
        self._tool_continues = False  # the provider goes on after a tool result by itself
        # the response being written to the client
        self._response: str | None = None
        self._output: list[dict] = []
        self._cancelled = False
        self._audio_item: dict | None = None
        self._audio_prefix = ""
        self._transcript: list[str] = []
        self._final_transcript: str | None = None

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{self.session_id[-8:]}{next(self._ids)}"

    async def _event(self, event: dict) -> None:
        event["event_id"] = self._id("event")
        await self._put(_encode(event).decode())

    # -- start: what OpenAI says first ---------------------------------------------------------

    def _session(self) -> dict:
        p: SessionParams = self.params
        tools = [{"type": "function", "name": t.name, "description": t.description or "",
                  "parameters": t.parameters or {"type": "object", "properties": {}}}
                 for t in p.tools or ()]
        return {
            "type": "realtime", "object": "realtime.session", "id": self.session_id,
            "model": p.model, "output_modalities": ["audio"], "instructions": p.system_prompt or "",
            "tools": tools, "tool_choice": "auto",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": OPENAI_RATE}, "turn_detection": None,
                          "transcription": {"model": "provider-default"}},
                "output": {"format": {"type": "audio/pcm", "rate": OPENAI_RATE}, "voice": p.voice or ""},
            },
            "expires_at": int(time.time()) + self.record.ttl_seconds,
        }

    def _start_messages(self) -> list:
        if not self.passthrough:
            return super()._start_messages()
        # The minted config, minus turn detection: OpenAI's default (server VAD) stays, as
        # the client expects of OpenAI; its own session.update may change it.
        out = []
        for m in super()._start_messages():
            event = _decode(m)
            if event.get("type") == "session.update":
                event["session"].get("audio", {}).get("input", {}).pop("turn_detection", None)
            out.append(_encode(event).decode())
        return out

    # -- client -> bridge ----------------------------------------------------------------------

    async def _client_reader(self) -> None:
        ws = self.ws
        metrics = self.metrics
        if not self.passthrough:
            await self._event({"type": "session.created", "session": self._session()})
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                self.end(message.get("code") or 1000, None, "client closed the connection")
                return
            metrics.frames_in += 1
            text = message.get("text")
            if text is None:
                if message.get("bytes") is not None:
                    await self._put(_error_event("invalid_json", "Binary frames are not supported: "
                                                 "send audio as input_audio_buffer.append."))
                continue
            if self._over_limit(utf8_len(text)):
                return
            if self.passthrough:
                try:
                    kind = _decode_type(text).type
                except msgspec.DecodeError:
                    kind = ""
                if kind == "response.create" or kind == "input_audio_buffer.commit":
                    self._reply_due()
                await self._send_up([text])
                continue
            try:
                event = _decode(text)
            except msgspec.DecodeError as exc:
                await self._put(_error_event("invalid_json", f"The message is not valid JSON: {exc}"))
                continue
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                await self._put(_error_event("invalid_value", "An event must be a JSON object with a "
                                             "string `type`.", param="type"))
                continue
            handler = _CLIENT_EVENTS.get(event["type"])
            if handler is None:
                await self._put(_error_event(
                    "invalid_value", f"Invalid value: '{event['type'][:64]}'. Supported values are: "
                    + ", ".join(sorted(_CLIENT_EVENTS)) + ".", param="type",
                    event_id=_client_event_id(event)))
                continue
            await handler(self, event)

    async def _unsupported(self, event: dict, what: str, param: str | None = None) -> None:
        await self._put(_error_event(
            "unsupported_for_provider",
            f"{what} is not supported through the bridge for provider '{self.record.provider}'.",
            param=param, event_id=_client_event_id(event)))

    async def _on_append(self, event: dict) -> None:
        audio = event.get("audio")
        try:
            if not isinstance(audio, str):
                raise ValueError
            pcm = binascii.a2b_base64(audio, strict_mode=True)
        except (binascii.Error, ValueError):
            await self._put(_error_event("invalid_value", "`audio` must be base64-encoded PCM16.",
                                         param="audio", event_id=_client_event_id(event)))
            return
        self._pending_audio = self._pending_audio or bool(pcm)
        pcm = self.resample_in.process(pcm)
        if pcm:
            await self._send_up(self.codec.audio(pcm))

    async def _on_commit(self, event: dict) -> None:
        if not self._pending_audio:
            await self._put(_error_event("input_audio_buffer_commit_empty",
                                         "Error committing input audio buffer: buffer too small.",
                                         event_id=_client_event_id(event)))
            return
        self._pending_audio = False
        tail = self.resample_in.flush()
        if tail:
            await self._send_up(self.codec.audio(tail))
        item_id = self._id("item")
        previous, self._previous_item, self._user_item = self._previous_item, item_id, item_id
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
        await self._event({"type": "input_audio_buffer.committed", "previous_item_id": previous,
                           "item_id": item_id})
        await self._event({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self._event({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    async def _on_clear(self, event: dict) -> None:
        await self._unsupported(event, "input_audio_buffer.clear (audio is streamed to the provider "
                                "as it arrives)")

    async def _on_response_create(self, event: dict) -> None:
        overrides = event.get("response")
        if isinstance(overrides, dict) and overrides:
            await self._unsupported(event, "response.create parameters (" + ", ".join(sorted(overrides))
                                    + "); the response uses the session's", param="response")
        if self._tool_continues:  # the provider already goes on after the tool result
            self._tool_continues = False
            return
        self._reply_due()
        await self._send_up(self.codec.commit())

    async def _on_response_cancel(self, event: dict) -> None:
        if self._response is not None:
            self._cancelled = True
        await self._interrupt()

    async def _on_item_create(self, event: dict) -> None:
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call_output":
            await self._unsupported(event, "conversation.item.create with an item other than "
                                    "function_call_output", param="item.type")
            return
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not isinstance(output, str):
            await self._put(_error_event("invalid_value", "function_call_output needs string "
                                         "`call_id` and `output`.", param="item",
                                         event_id=_client_event_id(event)))
            return
        item_id = item.get("id") if isinstance(item.get("id"), str) else self._id("item")
        done = {"id": item_id, "object": "realtime.item", "type": "function_call_output",
                "call_id": call_id, "output": output, "status": "completed"}
        previous, self._previous_item = self._previous_item, item_id
        await self._event({"type": "conversation.item.added", "previous_item_id": previous, "item": done})
        await self._event({"type": "conversation.item.done", "previous_item_id": previous, "item": done})
        self._reply_due()
        self._tool_continues = True
        await self._send_up(self.codec.tool_result(call_id, output))

    async def _on_truncate(self, event: dict) -> None:
        # The bridge already truncated at the audio it delivered when the response was cancelled.
        await self._event({"type": "conversation.item.truncated", "item_id": event.get("item_id"),
                           "content_index": event.get("content_index", 0),
                           "audio_end_ms": event.get("audio_end_ms", 0)})

    async def _on_session_update(self, event: dict) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            await self._put(_error_event("invalid_value", "`session` must be an object.",
                                         param="session", event_id=_client_event_id(event)))
            return
        current = self._session()
        refused = []
        for key, value in session.items():
            if key in _IGNORED_SESSION_FIELDS:
                continue
            if key == "audio":
                refused += _audio_differences(value, current["audio"])
            elif key == "output_modalities":
                if value != ["audio"]:
                    refused.append("output_modalities")
            elif key == "tools":
                names = sorted(t.get("name") for t in value or () if isinstance(t, dict))
                if names != sorted(t["name"] for t in current["tools"]):
                    refused.append("tools")
            elif key == "tool_choice":
                if value not in ("auto", None):
                    refused.append("tool_choice")
            elif value != current.get(key) and value not in (None, ""):
                refused.append(key)
        if refused:
            await self._unsupported(event, "Changing " + ", ".join(f"session.{k}" for k in refused)
                                    + " after the mint (set systemPrompt, voice and tools when minting; "
                                    "turns are committed by the client)", param=f"session.{refused[0]}")
        await self._event({"type": "session.updated", "session": current})

    # -- bridge -> client: frames as OpenAI server events ---------------------------------------

    async def _ensure_response(self) -> None:
        if self._response is None:
            self._response = self._id("resp")
            self._output, self._cancelled = [], False
            await self._event({"type": "response.created", "response": {
                "id": self._response, "object": "realtime.response", "status": "in_progress",
                "output": [], "output_modalities": ["audio"]}})

    async def _ensure_audio_item(self) -> None:
        await self._ensure_response()
        if self._audio_item is not None:
            return
        item_id = self._id("item")
        index = len(self._output)
        self._audio_item = {"id": item_id, "object": "realtime.item", "type": "message",
                            "role": "assistant", "status": "in_progress", "content": []}
        self._output.append(self._audio_item)
        self._transcript, self._final_transcript = [], None
        where = {"response_id": self._response, "item_id": item_id, "output_index": index, "content_index": 0}
        self._audio_where = where
        await self._event({"type": "response.output_item.added", "response_id": self._response,
                           "output_index": index, "item": self._audio_item})
        await self._event({"type": "conversation.item.added", "previous_item_id": self._previous_item,
                           "item": self._audio_item})
        self._previous_item = item_id
        await self._event({"type": "response.content_part.added", **where,
                           "part": {"type": "audio", "transcript": ""}})
        # every delta: this head + its own event id + the fixed ids + the base64 audio
        self._audio_prefix = '",' + _encode(where)[1:-1].decode() + ',"delta":"'

    async def _audio(self, item_id: str | None, pcm: bytes) -> None:
        if self.passthrough:
            return
        await self._ensure_audio_item()
        await self._put((item_id, pcm, self._audio_prefix))

    async def _send_audio(self, item: tuple) -> None:
        await self.ws.send_text('{"type":"response.output_audio.delta","event_id":"' + self._id("event")
                                + item[2] + binascii.b2a_base64(item[1], newline=False).decode() + '"}')

    async def _frame(self, ev) -> None:
        if self.passthrough:
            return
        kind = type(ev)
        if kind is Transcript and ev.role == "user":
            item_id = self._user_item or self._id("item")
            if ev.final:
                await self._event({"type": "conversation.item.input_audio_transcription.completed",
                                   "item_id": item_id, "content_index": 0, "transcript": ev.text})
            else:
                await self._event({"type": "conversation.item.input_audio_transcription.delta",
                                   "item_id": item_id, "content_index": 0, "delta": ev.text})
        elif kind is Transcript:
            await self._ensure_audio_item()
            if ev.final:  # OpenAI sends transcript.done after audio.done: held until then
                self._final_transcript = ev.text
            else:
                self._transcript.append(ev.text)
                await self._event({"type": "response.output_audio_transcript.delta", **self._audio_where,
                                   "delta": ev.text})
        elif kind is ToolCall:
            await self._ensure_response()
            await self._close_audio_item()
            index = len(self._output)
            item = {"id": self._id("item"), "object": "realtime.item", "type": "function_call",
                    "status": "in_progress", "call_id": ev.call_id, "name": ev.name, "arguments": ""}
            self._output.append(item)
            await self._event({"type": "response.output_item.added", "response_id": self._response,
                               "output_index": index, "item": dict(item)})
            await self._event({"type": "response.function_call_arguments.done",
                               "response_id": self._response, "item_id": item["id"], "output_index": index,
                               "call_id": ev.call_id, "name": ev.name, "arguments": ev.arguments})
            item.update(status="completed", arguments=ev.arguments)
            await self._event({"type": "response.output_item.done", "response_id": self._response,
                               "output_index": index, "item": item})
        elif kind is Usage:
            await self._ensure_response()
            await self._close_audio_item()
            status = "cancelled" if self._cancelled else "completed"
            total_in, total_out = ev.input_audio_tokens, ev.output_audio_tokens
            await self._event({"type": "response.done", "response": {
                "id": self._response, "object": "realtime.response", "status": status,
                "status_details": {"type": "cancelled", "reason": "client_cancelled"} if self._cancelled else None,
                "output": self._output, "output_modalities": ["audio"],
                "usage": {"total_tokens": total_in + total_out, "input_tokens": total_in,
                          "output_tokens": total_out,
                          "input_token_details": {"audio_tokens": total_in, "text_tokens": 0, "cached_tokens": 0},
                          "output_token_details": {"audio_tokens": total_out, "text_tokens": 0}}}})
            self._response = None
        elif kind is Error:
            await self._put(_error_event(ev.code, ev.message, kind="server_error"))

    async def _close_audio_item(self) -> None:
        item = self._audio_item
        if item is None:
            return
        where = self._audio_where
        await self._event({"type": "response.output_audio.done", **where})
        transcript = self._final_transcript
        if transcript is None:
            transcript = "".join(self._transcript)
        await self._event({"type": "response.output_audio_transcript.done", **where,
                           "transcript": transcript})
        item["content"] = [{"type": "output_audio", "transcript": transcript}]
        await self._event({"type": "response.content_part.done", **where,
                           "part": {"type": "audio", "transcript": transcript}})
        item["status"] = "incomplete" if self._cancelled else "completed"
        await self._event({"type": "response.output_item.done", "response_id": self._response,
                           "output_index": where["output_index"], "item": item})
        await self._event({"type": "conversation.item.done", "previous_item_id": None, "item": item})
        self._audio_item = None

    def _final_messages(self) -> list[str]:
        code, error_code, message = self.outcome
        if error_code is None:
            return []
        return [_error_event(error_code, message, kind="server_error" if code >= 4500 or code == 1011
                             else "invalid_request_error")]


#: Not the conversation's: the model is the minted one (provider and model never change), and
#: ``tracing``/``include`` are OpenAI dashboard and payload options with no effect elsewhere.
_IGNORED_SESSION_FIELDS = frozenset({"type", "model", "object", "id", "expires_at", "tracing", "include"})


def _client_event_id(event: dict) -> str | None:
    value = event.get("event_id")
    return value if isinstance(value, str) else None


def _audio_differences(value: Any, current: dict) -> list[str]:
    """Which parts of a session.audio update the bridge cannot honour."""
    if not isinstance(value, dict):
        return ["audio"]
    refused = []
    for side in ("input", "output"):
        part = value.get(side)
        if not isinstance(part, dict):
            continue
        fmt = part.get("format")
        if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") in ("audio/pcm", "pcm16")
                                    and fmt.get("rate", OPENAI_RATE) == OPENAI_RATE):
            refused.append(f"audio.{side}.format")
        if side == "input" and part.get("turn_detection") is not None:
            refused.append("audio.input.turn_detection")
        if side == "output" and part.get("voice") not in (None, "", current["output"]["voice"]):
            refused.append("audio.output.voice")
    return refused


_CLIENT_EVENTS = {
    "session.update": CompatSession._on_session_update,
    "input_audio_buffer.append": CompatSession._on_append,
    "input_audio_buffer.commit": CompatSession._on_commit,
    "input_audio_buffer.clear": CompatSession._on_clear,
    "response.create": CompatSession._on_response_create,
    "response.cancel": CompatSession._on_response_cancel,
    "conversation.item.create": CompatSession._on_item_create,
    "conversation.item.truncate": CompatSession._on_truncate,
    "conversation.item.retrieve": lambda self, e: self._unsupported(e, "conversation.item.retrieve"),
    "conversation.item.delete": lambda self, e: self._unsupported(e, "conversation.item.delete"),
    "output_audio_buffer.clear": lambda self, e: self._unsupported(e, "output_audio_buffer.clear (WebRTC only)"),
}
