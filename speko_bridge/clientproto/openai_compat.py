"""``/v1/openai/realtime``: OpenAI's GA Realtime protocol toward the client, any provider behind it.

Existing OpenAI Realtime code (the ``openai`` SDKs, the Agents SDK, Mastra, gateways
"identical to OpenAI Realtime") points at the bridge and passes a minted token where it passes
a key: ``Authorization: Bearer <token>`` (server-side SDKs) or the
``openai-insecure-api-key.<token>`` subprotocol next to ``realtime`` (browsers). Token rules are
those of ``/v1/realtime``: single use, expiry, revocation, origin, limits. ``?model=`` is
ignored: the minted session names the provider and model. Audio is OpenAI's ``audio/pcm``:
PCM16 at 24 kHz both ways, whatever rates the mint asked for.

- **OpenAI behind it**: after auth and the minted session config, events go both ways
  untouched (the fast path). The client's own ``session.update`` applies, as it would at
  OpenAI; provider and model stay the minted ones.
- **Gemini, xAI behind it**: OpenAI client events become the bridge's intents, and the
  provider's ``RealtimeFrame`` stream is written back as OpenAI server events with their ids
  and order (``openai_events.py``: ``response.created``, output item and content part, audio
  and transcript deltas and dones, ``function_call_arguments.done``, ``response.done`` with
  usage).

  ``session.update`` (``openai_session.py`` says how each field maps) is applied by the
  provider codec (``Codec.configure``) and answered with ``session.updated`` showing the
  session in effect. **xAI** takes it at any time (its own ``session.update``). **Gemini**
  takes its config in the connection's ``setup``: until any of the client's input went
  upstream the bridge opens a new Gemini connection with the new setup (clients configure
  right after connecting, so this is the common case and costs one setup round trip); after
  that, changed instructions, voice, tools or turn detection are refused with an
  ``unsupported_for_provider`` error naming them (a new setup would forget the conversation,
  and Gemini documents no config change on resumption). A voice that is not the provider's
  (OpenAI's ``alloy`` sent to Gemini) keeps the session's voice, with no error.

  Turn detection ``server_vad`` (and ``semantic_vad``, which becomes the provider's server
  VAD where it has no semantic one) makes the provider's detector end turns: the client hears
  ``input_audio_buffer.speech_started``/``speech_stopped``, ``committed`` and the user item,
  then the response the provider began (opened with ``response.created`` like one the client
  asked for); speech over a reply ends it with ``response.done`` ``cancelled``
  (``turn_detected``), its audio cut at what was delivered. ``create_response`` and
  ``interrupt_response`` ``false`` cannot be honoured.

  A user ``message`` item of ``input_text`` goes upstream as the user's words and is answered
  at the client's ``response.create``, as at OpenAI. A ``response.create`` over audio that was
  not committed commits it first (``committed`` and the user item, as an explicit commit).
  ``conversation.item.retrieve`` answers with the item as the bridge last described it (the
  Agents SDK asks after each truncation and user transcript). What the provider cannot do is
  an OpenAI-style ``error`` event (code ``unsupported_for_provider``), never silence:
  ``input_audio_buffer.clear`` (audio is already streamed), items other than user text and
  tool output, item deletion, response parameters.

Errors of the bridge itself (bad token, TTL, revocation, provider failure) arrive as an
``error`` event whose ``code`` is the bridge's error code, then the close code of the
protocol reference (4001, 4008, 4004, 4500, ...).
"""

from __future__ import annotations

import binascii
import itertools

import msgspec

from ..codes import CloseCode, ErrorCode
from ..frames import Speech
from ..params import hands_free
from ..providers.openai_setup import OPENAI_RATE
from . import openai_session
from .base import (
    AudioChunk,
    Cancel,
    ClientCodec,
    Configure,
    FlushAudio,
    Forward,
    Handshake,
    Intent,
    Invalid,
    OutboxItem,
    Reply,
    Respond,
    SendAudio,
    SendText,
    TextMessage,
    ToolOutput,
)
from .openai_events import InputBuffer, ResponseWriter, error_event

INSECURE_KEY_PREFIX = "openai-insecure-api-key."
#: Longest event ``type`` quoted back in an error (the rest of a hostile one is noise).
MAX_QUOTED_TYPE = 64

_decode = msgspec.json.Decoder().decode
_refusal_ids = itertools.count(1)


#: Client events the bridge cannot carry out for Gemini or xAI, and why (the error says so).
_UNSUPPORTED = {
    "input_audio_buffer.clear": "input_audio_buffer.clear (audio is streamed to the provider as it arrives)",
    "conversation.item.delete": "conversation.item.delete",
    "output_audio_buffer.clear": "output_audio_buffer.clear (WebRTC only)",
}


class _Type(msgspec.Struct):
    type: str = ""


_decode_type = msgspec.json.Decoder(_Type).decode


def _handshake(subprotocols: list[str], headers: dict[str, str]) -> Handshake:
    """The bearer header, else the insecure-key subprotocol (browsers)."""
    selected = "realtime" if "realtime" in subprotocols else None
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return Handshake(auth[7:].strip(), selected)
    for proto in subprotocols:
        if proto.startswith(INSECURE_KEY_PREFIX):
            return Handshake(proto[len(INSECURE_KEY_PREFIX):] or None, selected or proto)
    return Handshake(None, selected)


def _refusal(code, error_code, message: str) -> list[str]:
    return [error_event(error_code, message, event_id=f"event_refused_{next(_refusal_ids)}")]


def _forward(data: str | bytes) -> TextMessage:
    """OpenAI behind the endpoint: its message, as it is."""
    return TextMessage(data if type(data) is str else data.decode("utf-8", "replace"))


class OpenAICompatCodec(ClientCodec):
    no_token_message = ("no token: send it as `Authorization: Bearer <token>` or the "
                        "`openai-insecure-api-key.<token>` subprotocol")

    def __init__(self, params, session_id: str, provider: str, expires_at: int = 0) -> None:
        super().__init__(params, session_id, provider, expires_at)
        #: OpenAI behind it: the provider's events are the client's (the fast path).
        self._same_protocol = provider == "openai"
        self._ids = itertools.count(1)
        self._tool_continues = False  # the provider goes on after a tool result by itself
        self._tool_choice = "auto"
        self._asked: tuple[object, str] | None = None  # the last Configure's session and tool choice
        self._out = ResponseWriter(self._id)
        self._input = InputBuffer(self._out, self._id, OPENAI_RATE)
        self._handlers = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "conversation.item.create": self._on_item_create,
            "conversation.item.truncate": self._on_truncate,
            "conversation.item.retrieve": self._on_retrieve,
            **{kind: lambda e, what=what: self._unsupported(e, what) for kind, what in _UNSUPPORTED.items()},
        }

    # -- opening ------------------------------------------------------------------------------

    handshake = staticmethod(_handshake)
    refusal = staticmethod(_refusal)

    #: OpenAI's ``audio/pcm``: PCM16 at 24 kHz both ways, whatever rates the mint asked for.
    input_rate = output_rate = OPENAI_RATE

    def opening(self) -> list[OutboxItem]:
        if self._same_protocol:
            return []  # OpenAI's own session.created passes through
        return [self._out.event({"type": "session.created", "session": self._session()})]

    def upstream_start(self, messages: list[str | bytes]) -> list[str | bytes]:
        return [openai_session.without_turn_detection(m) for m in messages] if self._same_protocol else messages

    def declared_tools(self) -> frozenset[str] | None:
        # OpenAI behind it: the client's own session.update may declare any tools
        return None if self._same_protocol else super().declared_tools()

    def raw_forwarder(self):
        return _forward if self._same_protocol else None

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

    def _unsupported(self, event: dict | None, what: str, param: str | None = None) -> list[Intent]:
        return [Reply(self._error(
            ErrorCode.UNSUPPORTED_FOR_PROVIDER,
            f"{what} is not supported through the bridge for provider '{self.provider}'.",
            param=param, event=event))]

    def _session(self) -> dict:
        return openai_session.session_object(self.params, self.session_id, self.expires_at, self._tool_choice,
                                             self.provider)

    def _replies(self, *events: dict) -> list[Intent]:
        return [Reply(self._out.event(e).text) for e in events]

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
        self._input.append(len(pcm))
        return [SendAudio(pcm)]

    def _on_commit(self, event: dict) -> list[Intent]:
        if not self._input.pending:
            return self._invalid("input_audio_buffer_commit_empty",
                                 "Error committing input audio buffer: buffer too small.", event=event)
        return [FlushAudio(), *(Reply(m.text) for m in self._input.commit())]

    def _on_response_create(self, event: dict) -> list[Intent]:
        out: list[Intent] = []
        if self._input.pending and not hands_free(self.params):  # committed with it, as OpenAI does
            out += [FlushAudio(), *(Reply(m.text) for m in self._input.commit())]
        overrides = event.get("response")
        if isinstance(overrides, dict) and overrides:
            out += self._unsupported(event, "response.create parameters (" + ", ".join(sorted(overrides))
                                     + "); the response uses the session's", param="response")
        if self._tool_continues:  # the provider already goes on after the tool result
            self._tool_continues = False
            return out
        return out + [Respond(commit=not hands_free(self.params))]  # server VAD owns the buffer

    def _on_response_cancel(self, event: dict) -> list[Intent]:
        self._out.cancel()
        return [Cancel()]

    def _on_item_create(self, event: dict) -> list[Intent]:
        item = event.get("item")
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message" and item.get("role") == "user":
            return self._on_text_item(event, item)
        if kind != "function_call_output":
            return self._unsupported(event, "conversation.item.create with an item other than a user "
                                     "message or a function_call_output", param="item.type")
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not isinstance(output, str):
            return self._invalid("invalid_value", "function_call_output needs string `call_id` and "
                                 "`output`.", param="item", event=event)
        done = {"id": self._item_id(item), "object": "realtime.item", "type": "function_call_output",
                "call_id": call_id, "output": output, "status": "completed"}
        self._tool_continues = True
        return [*self._added(done), ToolOutput(call_id, output)]

    def _item_id(self, item: dict) -> str:
        return item["id"] if isinstance(item.get("id"), str) else self._id("item")

    def _added(self, item: dict) -> list[Intent]:
        self._out.remember(item)
        previous, self._out.previous_item = self._out.previous_item, item["id"]
        return self._replies({"type": "conversation.item.added", "previous_item_id": previous, "item": item},
                             {"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    def _on_text_item(self, event: dict, item: dict) -> list[Intent]:
        """A user message of ``input_text``: the user's words, answered at ``response.create``."""
        texts = openai_session.user_text(item)
        if texts is None:
            return self._unsupported(event, "A user message whose content is not only input_text",
                                     param="item.content")
        if not "".join(texts).strip():
            return self._invalid("invalid_value", "The message has no text.", param="item.content", event=event)
        done = {"id": self._item_id(item), "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_text", "text": t} for t in texts]}
        return [*self._added(done), SendText("\n".join(texts), respond=False)]

    def _on_retrieve(self, event: dict) -> list[Intent]:  # the item as last described
        item_id = event.get("item_id")
        found = self._out.retrieved(item_id) if isinstance(item_id, str) else None
        return [Reply(found.text)] if found is not None else self._invalid(
            "invalid_value", f"Item with item_id '{str(item_id)[:MAX_QUOTED_TYPE]}' not found.",
            param="item_id", event=event)

    def _on_truncate(self, event: dict) -> list[Intent]:
        item_id, index, end_ms = event.get("item_id"), event.get("content_index", 0), event.get("audio_end_ms")
        if not isinstance(item_id, str) or type(index) is not int or type(end_ms) is not int or end_ms < 0:
            return self._invalid("invalid_value", "conversation.item.truncate needs a string `item_id`, "
                                 "an integer `content_index` and a non-negative integer `audio_end_ms`.",
                                 param="item_id", event=event)
        # The bridge already truncated at the audio it delivered when the response was cancelled.
        self._out.truncated(item_id)
        return self._replies({"type": "conversation.item.truncated", "item_id": item_id,
                              "content_index": index, "audio_end_ms": end_ms})

    def _on_session_update(self, event: dict) -> list[Intent]:
        session = event.get("session")
        if not isinstance(session, dict):
            return self._invalid("invalid_value", "`session` must be an object.", param="session",
                                 event=event)
        try:
            update = openai_session.read_update(session, self.params, self._tool_choice, self.provider)
        except openai_session.Invalid as exc:
            return self._invalid("invalid_value", str(exc), param=exc.param, event=event)
        out: list[Intent] = []
        if update.unsupported:
            out += self._unsupported(event, "Changing " + ", ".join(update.unsupported),
                                     param=update.unsupported[0])
        self._asked = (update.params, update.tool_choice)
        ask = update.params
        if update.tool_choice == "none":  # the model may call none of them: it is not given them
            ask = msgspec.structs.replace(ask, tools=None)
        return out + [Configure(ask)]

    def configured(self, params, refused: tuple[str, ...]) -> list[OutboxItem]:
        asked, tool_choice = self._asked or (self.params, self._tool_choice)
        self.params = openai_session.applied(self.params, asked, params.voice, refused)
        if "tools" not in refused:
            self._tool_choice = tool_choice
        out: list[OutboxItem] = []
        if refused:
            message, param = openai_session.refusal(refused, self.provider)
            out.append(TextMessage(self._error(ErrorCode.UNSUPPORTED_FOR_PROVIDER, message, param=param)))
        return out + [self._out.event({"type": "session.updated", "session": self._session()})]

    # -- provider frames -> OpenAI server events ----------------------------------------------

    def audio(self, item_id: str | None, pcm: bytes) -> list[OutboxItem]:
        return [] if self._same_protocol else self._out.audio(item_id, pcm)

    def audio_message(self, chunk: AudioChunk) -> str:
        return self._out.audio_message(chunk)

    def frame(self, frame) -> list[OutboxItem]:
        if self._same_protocol:
            return []
        if type(frame) is Speech:
            return self._input.speech_started() if frame.state == "started" else self._input.speech_stopped()
        return self._out.frame(frame)

    def cancelled(self, barge_in: bool = False) -> list[OutboxItem]:
        self._out.cancel("turn_detected" if barge_in else "client_cancelled")
        return []

    def final(self, code: int, error_code: str | None, message: str) -> list[str]:
        server = code >= CloseCode.PROVIDER_FAILED or code == CloseCode.INTERNAL_ERROR
        return [] if error_code is None else [
            self._error(error_code, message, kind="server_error" if server else "invalid_request_error")]
