"""``/v1/openai/realtime``: OpenAI's GA Realtime protocol toward the client, any provider behind it.

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
- **Gemini, xAI behind it**: OpenAI client events become the bridge's intents, and the
  provider's ``RealtimeFrame`` stream is written back as OpenAI server events with their ids
  and order (``response.created``, output item and content part, audio and transcript deltas
  and dones, ``function_call_arguments.done``, ``response.done`` with usage). Turns are
  manual, as on ``/v1/realtime``: ``input_audio_buffer.commit`` then ``response.create``.
  What the provider cannot do is answered with an OpenAI-style ``error`` event (code
  ``unsupported_for_provider``), never silence: server VAD, changing instructions/tools/voice
  after the mint, ``input_audio_buffer.clear`` (audio is already streamed), text items, item
  retrieval and deletion.

Errors of the bridge itself (bad token, TTL, revocation, provider failure) arrive as an
``error`` event whose ``code`` is the bridge's error code, then the close code of the
protocol reference (4001, 4008, 4004, 4500, ...).
"""

from __future__ import annotations

import binascii
import itertools
from typing import Any

import msgspec

from ..codes import CloseCode, ErrorCode
from ..providers.openai import OPENAI_RATE, function_tool
from .base import (
    AudioChunk,
    Cancel,
    ClientCodec,
    FlushAudio,
    Forward,
    Handshake,
    Intent,
    Invalid,
    OutboxItem,
    Reply,
    Respond,
    SendAudio,
    TextMessage,
    ToolOutput,
)
from .openai_events import ResponseWriter, error_event

INSECURE_KEY_PREFIX = "openai-insecure-api-key."
#: Longest event ``type`` quoted back in an error (the rest of a hostile one is noise).
MAX_QUOTED_TYPE = 64

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_refusal_ids = itertools.count(1)


class _Type(msgspec.Struct):
    type: str = ""


_decode_type = msgspec.json.Decoder(_Type).decode


#: ``session`` fields that are not the conversation's: the model is the minted one (provider and
#: model never change), and ``tracing``/``include`` are OpenAI dashboard and payload options with
#: no effect elsewhere.
_IGNORED_SESSION_FIELDS = frozenset({"type", "model", "object", "id", "expires_at", "tracing", "include"})


class OpenAICompatCodec(ClientCodec):
    no_token_message = ("no token: send it as `Authorization: Bearer <token>` or the "
                        "`openai-insecure-api-key.<token>` subprotocol")

    def __init__(self, params, session_id: str, provider: str, expires_at: int = 0) -> None:
        super().__init__(params, session_id, provider, expires_at)
        #: OpenAI behind it: the provider's events are the client's (the fast path).
        self._same_protocol = provider == "openai"
        self._ids = itertools.count(1)
        self._pending_audio = False  # audio appended since the last commit
        self._pending_bytes = 0  # how much: the user item's duration, for its transcription usage
        self._tool_continues = False  # the provider goes on after a tool result by itself
        self._out = ResponseWriter(self._id)
        self._handlers = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": lambda e: self._unsupported(
                e, "input_audio_buffer.clear (audio is streamed to the provider as it arrives)"),
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "conversation.item.create": self._on_item_create,
            "conversation.item.truncate": self._on_truncate,
            "conversation.item.retrieve": lambda e: self._unsupported(e, "conversation.item.retrieve"),
            "conversation.item.delete": lambda e: self._unsupported(e, "conversation.item.delete"),
            "output_audio_buffer.clear": lambda e: self._unsupported(
                e, "output_audio_buffer.clear (WebRTC only)"),
        }

    # -- opening ------------------------------------------------------------------------------

    @staticmethod
    def handshake(subprotocols: list[str], headers: dict[str, str]) -> Handshake:
        """The bearer header, else the insecure-key subprotocol (browsers)."""
        selected = "realtime" if "realtime" in subprotocols else None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and auth[7:].strip():
            return Handshake(auth[7:].strip(), selected)
        for proto in subprotocols:
            if proto.startswith(INSECURE_KEY_PREFIX):
                return Handshake(proto[len(INSECURE_KEY_PREFIX):] or None, selected or proto)
        return Handshake(None, selected)

    @staticmethod
    def refusal(code, error_code, message: str) -> list[str]:
        return [error_event(error_code, message, event_id=f"event_refused_{next(_refusal_ids)}")]

    @property
    def input_rate(self) -> int:
        return OPENAI_RATE

    @property
    def output_rate(self) -> int:
        return OPENAI_RATE

    def opening(self) -> list[OutboxItem]:
        if self._same_protocol:
            return []  # OpenAI's own session.created passes through
        return [self._out.event({"type": "session.created", "session": self._session()})]

    def upstream_start(self, messages: list[str | bytes]) -> list[str | bytes]:
        if not self._same_protocol:
            return messages
        # The minted config, minus turn detection: OpenAI's default (server VAD) stays, as the
        # client expects of OpenAI; its own session.update may change it.
        out: list[str | bytes] = []
        for m in messages:
            event = _decode(m)
            if event.get("type") == "session.update":
                event["session"].get("audio", {}).get("input", {}).pop("turn_detection", None)
            out.append(_encode(event).decode())
        return out

    def declared_tools(self) -> frozenset[str] | None:
        # OpenAI behind it: the client's own session.update may declare any tools
        return None if self._same_protocol else super().declared_tools()

    def raw_forwarder(self):
        if not self._same_protocol:
            return None

        def forward(data: str | bytes) -> TextMessage:
            return TextMessage(data if type(data) is str else data.decode("utf-8", "replace"))

        return forward

    # -- helpers ------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{self.session_id[-8:]}{next(self._ids)}"

    def _error(self, code: str, message: str, *, param: str | None = None, event: dict | None = None,
               kind: str = "invalid_request_error") -> str:
        client_event_id = event.get("event_id") if event is not None else None
        return self._out.error(code, message, kind=kind, param=param,
                               client_event_id=client_event_id if isinstance(client_event_id, str) else None)

    def _invalid(self, code: str, message: str, *, param: str | None = None,
                 event: dict | None = None) -> list[Intent]:
        return [Invalid(self._error(code, message, param=param, event=event))]

    def _unsupported(self, event: dict, what: str, param: str | None = None) -> list[Intent]:
        return [Reply(self._error(
            ErrorCode.UNSUPPORTED_FOR_PROVIDER,
            f"{what} is not supported through the bridge for provider '{self.provider}'.",
            param=param, event=event))]

    def _session(self) -> dict:
        p = self.params
        tools = [function_tool(t) for t in p.tools or ()]
        return {
            "type": "realtime", "object": "realtime.session", "id": self.session_id,
            "model": p.model, "output_modalities": ["audio"], "instructions": p.system_prompt or "",
            "tools": tools, "tool_choice": "auto",
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": OPENAI_RATE}, "turn_detection": None,
                          "transcription": {"model": "provider-default"}},
                "output": {"format": {"type": "audio/pcm", "rate": OPENAI_RATE}, "voice": p.voice or ""},
            },
            "expires_at": self.expires_at,
        }

    # -- client -> intents --------------------------------------------------------------------

    def receive_bytes(self, data: bytes) -> list[Intent]:
        return self._invalid("invalid_json", "Binary frames are not supported: send audio as "
                             "input_audio_buffer.append.")

    def receive_text(self, text: str) -> list[Intent]:
        if self._same_protocol:
            try:
                kind = _decode_type(text).type
            except (msgspec.DecodeError, RecursionError):
                kind = ""  # OpenAI answers what it cannot read
            return [Forward(text, kind == "response.create" or kind == "input_audio_buffer.commit")]
        try:
            event = _decode(text)
        except msgspec.DecodeError as exc:
            return self._invalid("invalid_json", f"The message is not valid JSON: {exc}")
        except RecursionError:
            return self._invalid("invalid_json", "The message is nested too deeply to read.")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return self._invalid("invalid_value", "An event must be a JSON object with a string "
                                 "`type`.", param="type")
        handler = self._handlers.get(event["type"])
        if handler is None:
            return self._invalid(
                "invalid_value", f"Invalid value: '{event['type'][:MAX_QUOTED_TYPE]}'. Supported "
                "values are: " + ", ".join(sorted(self._handlers)) + ".", param="type", event=event)
        return handler(event)

    def _on_append(self, event: dict) -> list[Intent]:
        audio = event.get("audio")
        try:
            if not isinstance(audio, str):
                raise ValueError
            pcm = binascii.a2b_base64(audio, strict_mode=True)
        except (binascii.Error, ValueError):
            return self._invalid("invalid_value", "`audio` must be base64-encoded PCM16.",
                                 param="audio", event=event)
        self._pending_audio = self._pending_audio or bool(pcm)
        self._pending_bytes += len(pcm)
        return [SendAudio(pcm)]

    def _on_commit(self, event: dict) -> list[Intent]:
        if not self._pending_audio:
            return self._invalid("input_audio_buffer_commit_empty",
                                 "Error committing input audio buffer: buffer too small.", event=event)
        self._pending_audio = False
        self._out.user_seconds = self._pending_bytes / (2 * OPENAI_RATE)
        self._pending_bytes = 0
        item_id = self._id("item")
        out = self._out
        previous, out.previous_item, out.user_item = out.previous_item, item_id, item_id
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
        return [FlushAudio(), *self._replies(
            {"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id},
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item})]

    def _replies(self, *events: dict) -> list[Intent]:
        return [Reply(self._out.event(e).text) for e in events]

    def _on_response_create(self, event: dict) -> list[Intent]:
        out: list[Intent] = []
        overrides = event.get("response")
        if isinstance(overrides, dict) and overrides:
            out += self._unsupported(event, "response.create parameters (" + ", ".join(sorted(overrides))
                                     + "); the response uses the session's", param="response")
        if self._tool_continues:  # the provider already goes on after the tool result
            self._tool_continues = False
            return out
        return out + [Respond()]

    def _on_response_cancel(self, event: dict) -> list[Intent]:
        self._out.cancel()
        return [Cancel()]

    def _on_item_create(self, event: dict) -> list[Intent]:
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call_output":
            return self._unsupported(event, "conversation.item.create with an item other than "
                                     "function_call_output", param="item.type")
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not isinstance(output, str):
            return self._invalid("invalid_value", "function_call_output needs string `call_id` and "
                                 "`output`.", param="item", event=event)
        item_id = item.get("id") if isinstance(item.get("id"), str) else self._id("item")
        done = {"id": item_id, "object": "realtime.item", "type": "function_call_output",
                "call_id": call_id, "output": output, "status": "completed"}
        previous, self._out.previous_item = self._out.previous_item, item_id
        self._tool_continues = True
        return [*self._replies(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": done},
            {"type": "conversation.item.done", "previous_item_id": previous, "item": done}),
            ToolOutput(call_id, output)]

    def _on_truncate(self, event: dict) -> list[Intent]:
        item_id, index, end_ms = event.get("item_id"), event.get("content_index", 0), event.get("audio_end_ms")
        if not isinstance(item_id, str) or type(index) is not int or type(end_ms) is not int or end_ms < 0:
            return self._invalid("invalid_value", "conversation.item.truncate needs a string `item_id`, "
                                 "an integer `content_index` and a non-negative integer `audio_end_ms`.",
                                 param="item_id", event=event)
        # The bridge already truncated at the audio it delivered when the response was cancelled.
        return self._replies({"type": "conversation.item.truncated", "item_id": item_id,
                              "content_index": index, "audio_end_ms": end_ms})

    def _on_session_update(self, event: dict) -> list[Intent]:
        session = event.get("session")
        if not isinstance(session, dict):
            return self._invalid("invalid_value", "`session` must be an object.", param="session",
                                 event=event)
        current = self._session()
        refused = _refused_session_fields(session, current)
        out: list[Intent] = []
        if refused:
            out += self._unsupported(event, "Changing " + ", ".join(f"session.{k}" for k in refused)
                                     + " after the mint (set systemPrompt, voice and tools when minting; "
                                     "turns are committed by the client)", param=f"session.{refused[0]}")
        return out + self._replies({"type": "session.updated", "session": current})

    # -- provider frames -> OpenAI server events ----------------------------------------------

    def audio(self, item_id: str | None, pcm: bytes) -> list[OutboxItem]:
        return [] if self._same_protocol else self._out.audio(item_id, pcm)

    def audio_message(self, chunk: AudioChunk) -> str:
        return self._out.audio_message(chunk)

    def frame(self, frame) -> list[OutboxItem]:
        return [] if self._same_protocol else self._out.frame(frame)

    def final(self, code: int, error_code: str | None, message: str) -> list[str]:
        if error_code is None:
            return []
        return [self._error(error_code, message,
                            kind="server_error" if code >= CloseCode.PROVIDER_FAILED or code == CloseCode.INTERNAL_ERROR
                            else "invalid_request_error")]


def _refused_session_fields(session: dict, current: dict) -> list[str]:
    """Which fields of a ``session.update`` the bridge cannot honour for this session."""
    refused: list[str] = []
    for key, value in session.items():
        if key in _IGNORED_SESSION_FIELDS:
            continue
        if key == "audio":
            refused += _audio_differences(value, current["audio"])
        elif key == "output_modalities":
            if value != ["audio"]:
                refused.append("output_modalities")
        elif key == "tools":
            if not isinstance(value, list):
                refused.append("tools")
                continue
            names = sorted(str(t.get("name")) for t in value if isinstance(t, dict))
            if names != sorted(t["name"] for t in current["tools"]):
                refused.append("tools")
        elif key == "tool_choice":
            if value not in ("auto", None):
                refused.append("tool_choice")
        elif value != current.get(key) and value not in (None, ""):
            refused.append(key)
    return refused


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
